/* shed server add | ls | rm: the servers of client.yaml (client_config.h). These commands
 * talk to no server. */
#include <stdio.h>
#include <string.h>

#include "client_config.h"
#include "common/cleanup.h"
#include "common/strv.h"
#include "shed.h"

static const struct cli_option add_options[] = {
    {"token", 0, "TOKEN", "bearer token to store for it (the file is 0600)", OPT_TOKEN},
    {"default", 0, NULL, "make it the server used without -s", OPT_DEFAULT},
    SHED_OPTIONS_END,
};
static const struct cli_option ls_options[] = {SHED_OPTION_JSON, SHED_OPTIONS_END};
static const struct cli_option rm_options[] = {SHED_OPTIONS_END};

static int server_add(const struct cli_call *call)
{
    const char *name = call->operands[0];
    if (!client_server_name_is_valid(name))
        return cli_usage_error(call,
                               "invalid server name '%s' (letters, digits, '.', '_', '-'; at "
                               "most 64)",
                               name);
    struct client_error error = {.code = ""};
    cleanup_free char *url = client_server_url(call->operands[1], &error);
    if (url == NULL)
        return strcmp(error.code, "USAGE") == 0 ? cli_usage_error(call, "%s", error.message)
                                                : shed_fail(&error);
    struct client_config config;
    if (client_config_load(&config, &error) < 0)
        return shed_fail(&error);
    bool replaced = client_config_find(&config, name) != NULL;
    bool make_default = cli_flag(call, OPT_DEFAULT) || config.default_name == NULL;
    int rc = client_config_set(&config, name, url, cli_value(call, OPT_TOKEN), &error);
    if (rc == 0 && make_default) {
        char *copy = strdup(name);
        rc = copy != NULL ? 0 : client_errorf(&error, "NO_MEMORY", "out of memory");
        if (copy != NULL) {
            free(config.default_name);
            config.default_name = copy;
        }
    }
    if (rc == 0)
        rc = client_config_save(&config, &error);
    if (rc == 0)
        printf("%s server %s (%s)%s in %s\n", replaced ? "updated" : "added", name, url,
               make_default ? ", the default," : "", config.path);
    client_config_free(&config);
    return rc == 0 ? CLI_EXIT_OK : shed_fail(&error);
}

static int server_ls(const struct cli_call *call)
{
    struct client_config config;
    struct client_error error;
    if (client_config_load(&config, &error) < 0)
        return shed_fail(&error);
    if (shed_cli_of(call)->json) {
        json_t *servers = json_array();
        for (size_t i = 0; i < config.count; i++) {
            const struct client_server *s = &config.servers[i];
            bool is_default = config.default_name && strcmp(config.default_name, s->name) == 0;
            json_array_append_new(servers,
                                  json_pack("{s:s, s:s?, s:b, s:b}", "name", s->name, "url", s->url,
                                            "default", is_default, "token", s->token != NULL));
        }
        json_t *root = json_pack("{s:s, s:s?, s:o}", "path", config.path, "default",
                                 config.default_name, "servers", servers);
        shed_print_json(root);
        json_decref(root);
    } else if (config.count == 0) {
        printf("No servers in %s; without -s, shed uses %s.\n", config.path,
               CLIENT_DEFAULT_SERVER_URL);
    } else {
        struct table table = {.columns = 4};
        table_add(&table, (const char *[]){"NAME", "URL", "DEFAULT", "TOKEN"});
        for (size_t i = 0; i < config.count; i++) {
            const struct client_server *s = &config.servers[i];
            bool is_default = config.default_name && strcmp(config.default_name, s->name) == 0;
            table_add(&table, (const char *[]){s->name, s->url ? s->url : "(no url)",
                                               is_default ? "yes" : "", s->token ? "set" : ""});
        }
        table_print_free(&table);
    }
    client_config_free(&config);
    return CLI_EXIT_OK;
}

static int server_rm(const struct cli_call *call)
{
    struct client_config config;
    struct client_error error;
    if (client_config_load(&config, &error) < 0)
        return shed_fail(&error);
    int rc = CLI_EXIT_OK;
    struct strv removed = STRV_INIT;
    struct shed_err err = {0};
    for (size_t i = 0; i < call->operand_count; i++) {
        if (client_config_remove(&config, call->operands[i])) {
            if (strv_add(&removed, call->operands[i], &err) < 0)
                rc = shed_fail(&(struct client_error){"NO_MEMORY", "out of memory"});
            continue;
        }
        client_errorf(&error, "CONFIG", "no server \"%s\" in %s", call->operands[i], config.path);
        rc = shed_fail(&error);
    }
    if (removed.count > 0 && client_config_save(&config, &error) < 0)
        rc = shed_fail(&error);
    else
        for (size_t i = 0; i < removed.count; i++)
            printf("removed server %s\n", removed.items[i]);
    strv_free(&removed);
    client_config_free(&config);
    return rc;
}

const struct cli_command shed_server_commands[] = {
    {"add", NULL, "[OPTIONS] NAME URL",
     "Add a server to client.yaml (or replace the one of that name).",
     "URL is http://HOST:PORT, https://HOST:PORT, or HOST:PORT (http:// assumed). The first\n"
     "server added, or one added with --default, is the one used without -s.\n",
     add_options, .run = server_add, .min_operands = 2, .max_operands = 2},
    {"ls", "list", "[OPTIONS]", "List the servers of client.yaml (never their tokens).", NULL,
     ls_options, .run = server_ls, .max_operands = 0},
    {"rm", "remove", "NAME...", "Remove servers from client.yaml.", NULL, rm_options,
     .run = server_rm, .min_operands = 1, .max_operands = -1, .complete_kind = COMPLETE_SERVER},
    {NULL},
};
