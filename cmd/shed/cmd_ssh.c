/* `shed ssh|exec|attach|ssh-config`: the SSH front door through the system's OpenSSH client.
 *
 * Everything ssh needs comes from the server's API: the SSH port (GET /api/info), the host
 * key (GET /api/ssh-host-key) and the sheds (GET /api/sheds); the host is the one of the
 * server's URL. The host key is pinned in a known_hosts file of shed's own
 * ($XDG_CONFIG_HOME/shed/known_hosts or ~/.config/shed/known_hosts), under the alias
 * "shed-<server name>" (HostKeyAlias), and ssh runs with StrictHostKeyChecking yes against
 * it: the key is trusted because the API said so (keep the API on loopback/VPN, or behind
 * api_token), and a different key is refused rather than asked about.
 *
 * ssh is run (execvp, so its exit status is ours) with the options built here and user
 * strings only where ssh takes no options: shed names and tmux session names are checked,
 * and the destination and command come after "--". */
#include "cmd_ssh.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_config.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"

enum { EXIT_OK = CLI_EXIT_OK, EXIT_FAIL = CLI_EXIT_FAILURE };
enum { OPT_TTY = OPT_FIRST_FREE + 40, OPT_INSTALL };

#define KNOWN_HOSTS_MAX (1u << 20)

/* What ssh needs to reach one server. */
struct ssh_target {
    char host[256];      /* the API's host: ssh's destination and HostName */
    char server[64];     /* the server's name (/api/info), safe in a Host pattern */
    char alias[80];      /* HostKeyAlias: "shed-<server>" */
    int port;            /* the SSH port */
    char host_key[1024]; /* "ssh-ed25519 AAAA..." */
    char *known_hosts;   /* shed's known_hosts file (malloc'd) */
};

static int fail(const struct client_error *error)
{
    return shed_fail(error);
}

/* ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ as the server checks it (runtime/instance.c). */
static bool shed_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 63 || name[0] < 'a' || name[0] > 'z' || name[len - 1] == '-')
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

/* ^[A-Za-z0-9][A-Za-z0-9_-]*$ (api.md), at most 128. */
static bool session_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= 128 && isalnum((unsigned char)name[0]) &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

/* ---- the target ----------------------------------------------------------------------- */

/* The host of "http://host:port/..." ("[::1]" kept bracketed for ssh_config, unbracketed
 * for the command line). Refuses what ssh could read as an option or a user@. */
static int url_host(const char *url, char *host, size_t hostlen, struct client_error *error)
{
    const char *start = strstr(url, "://");
    start = start != NULL ? start + 3 : url;
    size_t len;
    if (start[0] == '[') {
        const char *end = strchr(start, ']');
        if (end == NULL)
            return client_errorf(error, "USAGE", "cannot read the host of %s", url);
        start++;
        len = (size_t)(end - start);
    } else {
        len = strcspn(start, ":/");
    }
    if (len == 0 || len >= hostlen || start[0] == '-')
        return client_errorf(error, "USAGE", "cannot read the host of %s", url);
    memcpy(host, start, len);
    host[len] = '\0';
    if (strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != len)
        return client_errorf(error, "USAGE", "unusable host \"%s\" in %s", host, url);
    return 0;
}

/* The directory of shed's client files: as for client.yaml. */
static char *client_dir(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg != NULL && xdg[0] == '/')
        return fs_path_join(xdg, "shed");
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/')
        return NULL;
    return fs_path_join(home, ".config/shed");
}

static json_t *get_json(const struct client *client, const char *path, struct client_error *error)
{
    struct client_response response;
    if (client_request(client, "GET", path, NULL, &response, error) < 0)
        return NULL;
    json_t *body = json_incref(response.json);
    client_response_clear(&response);
    if (body == NULL)
        client_errorf(error, "PROTOCOL", "empty answer to GET %s", path);
    return body;
}

/* The first two fields of an OpenSSH public key line: "type base64" (no comment). */
static int parse_host_key(const char *line, char *out, size_t outlen, struct client_error *error)
{
    char type[64], blob[900];
    if (line == NULL || sscanf(line, "%63s %899s", type, blob) != 2 ||
        strncmp(type, "ssh-", 4) != 0 ||
        strspn(blob, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
            strlen(blob))
        return client_errorf(error, "PROTOCOL", "the server sent no usable SSH host key");
    snprintf(out, outlen, "%s %s", type, blob);
    return 0;
}

static void safe_server_name(const char *name, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = name != NULL ? name : ""; *p != '\0' && n + 1 < outlen; p++)
        out[n++] = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' ? *p : '-';
    out[n] = '\0';
    if (n == 0)
        snprintf(out, outlen, "server");
}

static int fetch_target(const struct client *client, struct ssh_target *target,
                        struct client_error *error)
{
    memset(target, 0, sizeof *target);
    if (url_host(client->base_url, target->host, sizeof target->host, error) < 0)
        return -1;
    cleanup_json_decref json_t *info = get_json(client, "/api/info", error);
    if (info == NULL)
        return -1;
    cleanup_json_decref json_t *key = get_json(client, "/api/ssh-host-key", error);
    if (key == NULL)
        return -1;
    target->port = (int)json_integer_value(json_object_get(info, "ssh_port"));
    if (target->port < 1 || target->port > 65535)
        return client_errorf(error, "PROTOCOL", "the server reports no SSH port");
    safe_server_name(json_string_value(json_object_get(info, "name")), target->server,
                     sizeof target->server);
    snprintf(target->alias, sizeof target->alias, "shed-%s", target->server);
    if (parse_host_key(json_string_value(json_object_get(key, "host_key")), target->host_key,
                       sizeof target->host_key, error) < 0)
        return -1;
    cleanup_free char *dir = client_dir();
    target->known_hosts = dir != NULL ? fs_path_join(dir, "known_hosts") : NULL;
    if (target->known_hosts == NULL)
        return client_errorf(error, "CONFIG", "HOME is not set: no place for known_hosts");
    return 0;
}

/* Writes "<alias> <key>" into shed's known_hosts, replacing an older line of the alias. */
static int pin_host_key(const struct ssh_target *target, struct client_error *error)
{
    struct shed_err err = {0};
    cleanup_free char *dir = client_dir();
    if (dir == NULL || fs_mkdir_p(dir, 0700, &err) < 0)
        return client_errorf(error, "IO", "cannot make %s: %s", dir ? dir : "~/.config/shed",
                             err.msg);
    cleanup_free char *old = NULL;
    size_t old_len = 0;
    if (fs_exists(target->known_hosts) &&
        fs_read_file(target->known_hosts, &old, &old_len, KNOWN_HOSTS_MAX, &err) < 0)
        return client_errorf(error, "IO", "%s", err.msg);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return client_errorf(error, "NO_MEMORY", "out of memory");
    size_t alias_len = strlen(target->alias);
    char *save = NULL;
    for (char *line = old != NULL ? strtok_r(old, "\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\n", &save))
        if (!(strncmp(line, target->alias, alias_len) == 0 && line[alias_len] == ' '))
            fprintf(out, "%s\n", line);
    fprintf(out, "%s %s\n", target->alias, target->host_key);
    fclose(out);
    int rc = fs_write_file_atomic(target->known_hosts, text, len, 0600, &err);
    free(text);
    return rc < 0 ? client_errorf(error, "IO", "%s", err.msg) : 0;
}

static void target_clear(struct ssh_target *target)
{
    free(target->known_hosts);
    target->known_hosts = NULL;
}

/* ---- running ssh ---------------------------------------------------------------------- */

/* ssh with the pinned key and the port, for user; the caller appends flags, then "--",
 * the destination and the command. */
static int ssh_base_argv(const struct ssh_target *target, const char *user, struct strv *argv)
{
    struct shed_err err = {0};
    if (strv_add(argv, "ssh", &err) < 0 ||
        strv_addf(argv, &err, "-oUserKnownHostsFile=%s", target->known_hosts) < 0 ||
        strv_add(argv, "-oStrictHostKeyChecking=yes", &err) < 0 ||
        strv_addf(argv, &err, "-oHostKeyAlias=%s", target->alias) < 0 ||
        strv_addf(argv, &err, "-p%d", target->port) < 0 || strv_add(argv, "-l", &err) < 0 ||
        strv_add(argv, user, &err) < 0)
        return -1;
    return 0;
}

/* CMD's words each in single quotes, so the remote shell gets exactly this argv. */
static char *shell_quote_words(char **words, int count)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        fputs(i > 0 ? " '" : "'", out);
        for (const char *p = words[i]; *p != '\0'; p++) {
            if (*p == '\'')
                fputs("'\\''", out);
            else
                fputc(*p, out);
        }
        fputc('\'', out);
    }
    fclose(out);
    return text;
}

/* Replaces this process with ssh; returns only when ssh cannot be run. */
static int run_ssh(struct strv *argv)
{
    fflush(stdout);
    fflush(stderr);
    execvp("ssh", argv->items);
    fprintf(stderr, "shed: cannot run ssh (the OpenSSH client): %s\n", strerror(errno));
    return errno == ENOENT ? 127 : EXIT_FAIL;
}

/* shed ssh NAME [-- CMD...]: ssh itself, CMD as ssh takes it. */
static int run_ssh_command(const struct ssh_target *target, const char *name, char **command,
                           int count, bool tty, bool no_tty)
{
    cleanup_strv struct strv argv = STRV_INIT;
    struct shed_err err = {0};
    int rc = ssh_base_argv(target, name, &argv);
    if (rc == 0 && tty)
        rc = strv_add(&argv, "-t", &err);
    if (rc == 0 && no_tty)
        rc = strv_add(&argv, "-T", &err);
    if (rc == 0)
        rc = strv_add(&argv, "--", &err);
    if (rc == 0)
        rc = strv_add(&argv, target->host, &err);
    for (int i = 0; rc == 0 && i < count; i++)
        rc = strv_add(&argv, command[i], &err);
    if (rc < 0) {
        fprintf(stderr, "shed: out of memory\n");
        return EXIT_FAIL;
    }
    return run_ssh(&argv);
}

/* ---- the commands --------------------------------------------------------------------- */

/* The target of the call's server, with the host key pinned. */
static int ready_target(const struct cli_call *call, struct ssh_target *target)
{
    struct client_error error;
    if (fetch_target(&shed_cli_of(call)->client, target, &error) < 0 ||
        pin_host_key(target, &error) < 0) {
        target_clear(target);
        return fail(&error);
    }
    return 0;
}

static int check_shed_name(const struct cli_call *call, const char *name)
{
    if (!shed_name_is_valid(name))
        return cli_usage_error(call, "invalid shed name '%s' (lowercase letters, digits, '-')",
                               name);
    return 0;
}

/* shed ssh NAME [CMD...]: ssh itself, CMD as ssh takes it. */
int cmd_ssh(const struct cli_call *call)
{
    const char *name = call->operands[0];
    struct ssh_target target;
    int rc = check_shed_name(call, name);
    if (rc == 0)
        rc = ready_target(call, &target);
    if (rc != 0)
        return rc;
    rc = run_ssh_command(&target, name, call->operands + 1, (int)call->operand_count - 1, false,
                         false);
    target_clear(&target);
    return rc;
}

/* shed exec [-t] NAME CMD...: CMD's words quoted, so the shed gets exactly this argv. */
int cmd_exec(const struct cli_call *call)
{
    const char *name = call->operands[0];
    bool tty = cli_flag(call, OPT_TTY);
    struct ssh_target target;
    int rc = check_shed_name(call, name);
    if (rc == 0)
        rc = ready_target(call, &target);
    if (rc != 0)
        return rc;
    cleanup_free char *quoted = shell_quote_words(call->operands + 1, (int)call->operand_count - 1);
    char *words[] = {quoted};
    rc = quoted != NULL ? run_ssh_command(&target, name, words, 1, tty, !tty) : EXIT_FAIL;
    target_clear(&target);
    return rc;
}

/* shed attach NAME [SESSION]: tmux new-session -A on a terminal. */
int cmd_attach(const struct cli_call *call)
{
    const char *name = call->operands[0];
    const char *session = call->operand_count > 1 ? call->operands[1] : "default";
    if (!session_name_is_valid(session))
        return cli_usage_error(call, "invalid session name '%s' (letters, digits, '_', '-')",
                               session);
    struct ssh_target target;
    int rc = check_shed_name(call, name);
    if (rc == 0)
        rc = ready_target(call, &target);
    if (rc != 0)
        return rc;
    char tmux[200];
    snprintf(tmux, sizeof tmux, "tmux new-session -A -s %s", session);
    char *words[] = {tmux};
    rc = run_ssh_command(&target, name, words, 1, true, false);
    target_clear(&target);
    return rc;
}

const struct cli_option shed_ssh_options[] = {SHED_SERVER_OPTIONS, SHED_OPTIONS_END};
const struct cli_option shed_exec_options[] = {
    {"tty", 't', NULL, "run CMD on a terminal", OPT_TTY},
    SHED_SERVER_OPTIONS,
    SHED_OPTIONS_END,
};
const struct cli_option shed_ssh_config_options[] = {
    {"install", 'i', NULL,
     "write ~/.config/shed/ssh_config and Include it from ~/.ssh/config (once, at the top)",
     OPT_INSTALL},
    {"all", 'a', NULL, "every server of client.yaml (default: the selected one)", OPT_ALL},
    SHED_SERVER_OPTIONS,
    SHED_OPTIONS_END,
};

/* ---- ssh-config ------------------------------------------------------------------------ */

/* One server's Host blocks. */
static int write_server_config(FILE *out, const struct client *client,
                               const struct ssh_target *target, struct client_error *error)
{
    cleanup_json_decref json_t *list = get_json(client, "/api/sheds", error);
    if (list == NULL)
        return -1;
    bool bracket = strchr(target->host, ':') != NULL;
    fprintf(out, "# The sheds of server \"%s\" (%s), written by `shed ssh-config`.\n",
            target->server, client->base_url);
    size_t i;
    json_t *shed;
    json_array_foreach(json_object_get(list, "sheds"), i, shed)
    {
        const char *name = json_string_value(json_object_get(shed, "name"));
        if (name == NULL || !shed_name_is_valid(name))
            continue;
        fprintf(out,
                "Host %s.%s\n"
                "    HostName %s%s%s\n"
                "    Port %d\n"
                "    User %s\n"
                "    HostKeyAlias %s\n"
                "    UserKnownHostsFile \"%s\"\n"
                "    StrictHostKeyChecking yes\n",
                name, target->server, bracket ? "[" : "", target->host, bracket ? "]" : "",
                target->port, name, target->alias, target->known_hosts);
    }
    return 0;
}

static int server_config(const struct client *client, FILE *out, struct client_error *error)
{
    struct ssh_target target;
    int rc = fetch_target(client, &target, error);
    if (rc == 0)
        rc = pin_host_key(&target, error);
    if (rc == 0)
        rc = write_server_config(out, client, &target, error);
    target_clear(&target);
    return rc;
}

/* Every server of client.yaml (--all), or the one of -s / the default. */
static int all_servers_config(const struct client *client, bool all, FILE *out,
                              struct client_error *error)
{
    if (!all)
        return server_config(client, out, error);
    char **names = NULL;
    size_t count = 0;
    int rc = client_server_names(&names, &count, error);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        cleanup_free char *url = NULL, *token = NULL, *origin = NULL;
        struct client server;
        rc = client_resolve_server(names[i], &url, &token, &origin, error);
        if (rc == 0)
            rc = client_init(&server, url, token, origin, error);
        if (rc == 0) {
            rc = server_config(&server, out, error);
            client_cleanup(&server);
        }
    }
    strv_free_items(names);
    return rc;
}

/* ~/.ssh/config starts with an Include of path (at the top: an Include after a Host line
 * would apply only inside that Host). */
static int add_include(const char *path, struct client_error *error)
{
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/')
        return client_errorf(error, "CONFIG", "HOME is not set");
    cleanup_free char *ssh_dir = fs_path_join(home, ".ssh");
    cleanup_free char *config = fs_path_join(home, ".ssh/config");
    cleanup_free char *include = str_printf("Include \"%s\"\n", path);
    struct shed_err err = {0};
    if (ssh_dir == NULL || config == NULL || include == NULL)
        return client_errorf(error, "NO_MEMORY", "out of memory");
    if (fs_mkdir_p(ssh_dir, 0700, &err) < 0)
        return client_errorf(error, "IO", "%s", err.msg);
    cleanup_free char *old = NULL;
    size_t old_len = 0;
    struct stat st;
    unsigned mode = stat(config, &st) == 0 ? (unsigned)(st.st_mode & 0777) : 0600;
    if (fs_exists(config) && fs_read_file(config, &old, &old_len, KNOWN_HOSTS_MAX, &err) < 0)
        return client_errorf(error, "IO", "%s", err.msg);
    if (old != NULL && strstr(old, include) != NULL)
        return 0; /* already there */
    cleanup_free char *text = str_printf("%s%s", include, old != NULL ? old : "");
    if (text == NULL)
        return client_errorf(error, "NO_MEMORY", "out of memory");
    if (fs_write_file_atomic(config, text, strlen(text), mode, &err) < 0)
        return client_errorf(error, "IO", "%s", err.msg);
    return 0;
}

int cmd_ssh_config(const struct cli_call *call)
{
    const struct client *client = &shed_cli_of(call)->client;
    bool install = cli_flag(call, OPT_INSTALL), all = cli_flag(call, OPT_ALL);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct client_error error;
    if (out == NULL)
        return fail(&(struct client_error){"NO_MEMORY", "out of memory"});
    int rc = all_servers_config(client, all, out, &error);
    fclose(out);
    if (rc == 0 && !install) {
        fputs(text, stdout);
    } else if (rc == 0) {
        cleanup_free char *dir = client_dir();
        cleanup_free char *path = dir != NULL ? fs_path_join(dir, "ssh_config") : NULL;
        struct shed_err err = {0};
        if (path == NULL)
            rc = client_errorf(&error, "CONFIG", "HOME is not set");
        else if (fs_write_file_atomic(path, text, len, 0600, &err) < 0)
            rc = client_errorf(&error, "IO", "%s", err.msg);
        else
            rc = add_include(path, &error);
        if (rc == 0)
            fprintf(stderr, "shed: wrote %s (included from ~/.ssh/config)\n", path);
    }
    free(text);
    return rc < 0 ? fail(&error) : EXIT_OK;
}
