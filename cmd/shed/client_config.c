/* client.yaml: reading, writing, and the resolution of -s (client_config.h). */
#include "client_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_SERVER_NAME 64
#define MAX_URL 2048

static char *client_config_path(void)
{
    const char *explicit_path = getenv("SHED_CLIENT_CONFIG");
    if (explicit_path != NULL && explicit_path[0] != '\0')
        return strdup(explicit_path);
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg != NULL && xdg[0] == '/')
        return str_printf("%s/shed/client.yaml", xdg);
    const char *home = getenv("HOME");
    return str_printf("%s/.config/shed/client.yaml", home != NULL ? home : ".");
}

static int out_of_memory(struct client_error *error)
{
    return client_errorf(error, "NO_MEMORY", "out of memory");
}

/* ---- names and URLs ---------------------------------------------------------------------- */

bool client_server_name_is_valid(const char *name)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t len = strlen(name);
    return len > 0 && len <= MAX_SERVER_NAME && strchr(allowed, name[0]) != NULL &&
           name[0] != '.' && name[0] != '_' && name[0] != '-' && strspn(name, allowed) == len;
}

static bool has_control_or_space(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++)
        if (*c <= ' ' || *c == 0x7f)
            return true;
    return false;
}

char *client_server_url(const char *text, struct client_error *error)
{
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '/')
        len--;
    if (len == 0 || len > MAX_URL || has_control_or_space(text)) {
        client_errorf(error, "USAGE", "invalid server URL '%.80s'", text);
        return NULL;
    }
    char *url = NULL;
    if (strncmp(text, "http://", 7) == 0 || strncmp(text, "https://", 8) == 0)
        url = strndup(text, len);
    else if (strstr(text, "://") != NULL)
        return client_errorf(error, "USAGE",
                             "'%.80s': only http:// and https:// servers are supported", text),
               NULL;
    else if (strchr(text, ':') != NULL && strchr(text, '/') == NULL)
        url = str_printf("http://%.*s", (int)len, text);
    else
        return client_errorf(error, "USAGE",
                             "'%.80s' is not a URL (http://HOST:PORT) nor HOST:PORT", text),
               NULL;
    if (url == NULL)
        out_of_memory(error);
    return url;
}

/* ---- reading ----------------------------------------------------------------------------- */

static const char *scalar(yaml_node_t *node)
{
    return node != NULL && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value
                                                          : NULL;
}

static yaml_node_t *mapping_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
         pair++) {
        const char *k = scalar(yaml_document_get_node(doc, pair->key));
        if (k != NULL && strcmp(k, key) == 0)
            return yaml_document_get_node(doc, pair->value);
    }
    return NULL;
}

static int add_server(struct client_config *config, const char *name, const char *url,
                      const char *token, struct client_error *error)
{
    struct shed_err err = {0};
    if (ARRAY_RESERVE(config->servers, config->capacity, config->count + 1, &err) < 0)
        return out_of_memory(error);
    struct client_server *server = &config->servers[config->count];
    *server = (struct client_server){
        .name = strdup(name),
        .url = url != NULL ? strdup(url) : NULL,
        .token = token != NULL ? strdup(token) : NULL,
    };
    if (server->name == NULL || (url != NULL && server->url == NULL) ||
        (token != NULL && server->token == NULL)) {
        free(server->name);
        free(server->url);
        free(server->token);
        return out_of_memory(error);
    }
    config->count++;
    return 0;
}

/* A server entry is "name: URL" or "name: {url: URL, token: T}". */
static int read_servers(struct client_config *config, yaml_document_t *doc, yaml_node_t *servers,
                        struct client_error *error)
{
    if (servers == NULL || servers->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *pair = servers->data.mapping.pairs.start;
         pair < servers->data.mapping.pairs.top; pair++) {
        const char *name = scalar(yaml_document_get_node(doc, pair->key));
        yaml_node_t *entry = yaml_document_get_node(doc, pair->value);
        if (name == NULL)
            continue;
        const char *url = scalar(entry), *token = NULL;
        if (url == NULL) {
            url = scalar(mapping_get(doc, entry, "url"));
            token = scalar(mapping_get(doc, entry, "token"));
        }
        if (url != NULL && url[0] == '\0')
            url = NULL;
        if (add_server(config, name, url, token, error) < 0)
            return -1;
    }
    return 0;
}

static int parse_document(struct client_config *config, const char *text, size_t len,
                          struct client_error *error)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return out_of_memory(error);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc =
            client_errorf(error, "CONFIG", "%s:%zu: %s", config->path, parser.problem_mark.line + 1,
                          parser.problem != NULL ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && root->type != YAML_MAPPING_NODE) {
        rc = client_errorf(error, "CONFIG", "%s: expected a mapping at the top", config->path);
    } else if (root != NULL) {
        const char *name = scalar(mapping_get(&doc, root, "default"));
        if (name != NULL && name[0] != '\0' && (config->default_name = strdup(name)) == NULL)
            rc = out_of_memory(error);
        if (rc == 0)
            rc = read_servers(config, &doc, mapping_get(&doc, root, "servers"), error);
    }
    yaml_document_delete(&doc);
    return rc;
}

int client_config_load(struct client_config *config, struct client_error *error)
{
    memset(config, 0, sizeof *config);
    config->path = client_config_path();
    if (config->path == NULL)
        return out_of_memory(error);
    cleanup_free char *text = NULL;
    size_t len = 0;
    struct shed_err err = {0};
    if (fs_read_file(config->path, &text, &len, MAX_CONFIG_BYTES, &err) < 0) {
        if (shed_err_is_errno(&err, ENOENT))
            return 0;
        return client_errorf(error, "CONFIG", "%s", err.msg);
    }
    config->exists = true;
    if (parse_document(config, text, len, error) < 0) {
        client_config_free(config);
        return -1;
    }
    return 0;
}

void client_config_free(struct client_config *config)
{
    for (size_t i = 0; i < config->count; i++) {
        free(config->servers[i].name);
        free(config->servers[i].url);
        free(config->servers[i].token);
    }
    free(config->servers);
    free(config->default_name);
    free(config->path);
    memset(config, 0, sizeof *config);
}

const struct client_server *client_config_find(const struct client_config *config, const char *name)
{
    for (size_t i = 0; i < config->count; i++)
        if (strcmp(config->servers[i].name, name) == 0)
            return &config->servers[i];
    return NULL;
}

int client_config_set(struct client_config *config, const char *name, const char *url,
                      const char *token, struct client_error *error)
{
    for (size_t i = 0; i < config->count; i++) {
        struct client_server *server = &config->servers[i];
        if (strcmp(server->name, name) != 0)
            continue;
        char *new_url = strdup(url);
        char *new_token = token != NULL ? strdup(token) : NULL;
        if (new_url == NULL || (token != NULL && new_token == NULL)) {
            free(new_url);
            free(new_token);
            return out_of_memory(error);
        }
        free(server->url);
        free(server->token);
        server->url = new_url;
        server->token = new_token;
        return 0;
    }
    return add_server(config, name, url, token, error);
}

bool client_config_remove(struct client_config *config, const char *name)
{
    for (size_t i = 0; i < config->count; i++) {
        if (strcmp(config->servers[i].name, name) != 0)
            continue;
        free(config->servers[i].name);
        free(config->servers[i].url);
        free(config->servers[i].token);
        memmove(&config->servers[i], &config->servers[i + 1],
                (config->count - i - 1) * sizeof config->servers[i]);
        config->count--;
        if (config->default_name != NULL && strcmp(config->default_name, name) == 0) {
            free(config->default_name);
            config->default_name = NULL;
        }
        return true;
    }
    return false;
}

/* ---- writing ----------------------------------------------------------------------------- */

struct yaml_buffer {
    char *data;
    size_t len, capacity;
    bool failed;
};

static int write_to_buffer(void *opaque, unsigned char *bytes, size_t size)
{
    struct yaml_buffer *buffer = opaque;
    struct shed_err err = {0};
    if (buffer->len + size > MAX_CONFIG_BYTES ||
        ARRAY_RESERVE(buffer->data, buffer->capacity, buffer->len + size + 1, &err) < 0) {
        buffer->failed = true;
        return 0;
    }
    memcpy(buffer->data + buffer->len, bytes, size);
    buffer->len += size;
    buffer->data[buffer->len] = '\0';
    return 1;
}

static bool emit(yaml_emitter_t *emitter, yaml_event_t *event, int ok)
{
    return ok && yaml_emitter_emit(emitter, event);
}

static bool emit_scalar(yaml_emitter_t *emitter, const char *text)
{
    yaml_event_t event;
    return emit(emitter, &event,
                yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)text,
                                             (int)strlen(text), 1, 1, YAML_ANY_SCALAR_STYLE));
}

static bool emit_mapping_start(yaml_emitter_t *emitter)
{
    yaml_event_t event;
    return emit(
        emitter, &event,
        yaml_mapping_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static bool emit_mapping_end(yaml_emitter_t *emitter)
{
    yaml_event_t event;
    return emit(emitter, &event, yaml_mapping_end_event_initialize(&event));
}

static bool emit_server(yaml_emitter_t *emitter, const struct client_server *server)
{
    if (!emit_scalar(emitter, server->name))
        return false;
    if (server->token == NULL)
        return emit_scalar(emitter, server->url);
    return emit_mapping_start(emitter) && emit_scalar(emitter, "url") &&
           emit_scalar(emitter, server->url) && emit_scalar(emitter, "token") &&
           emit_scalar(emitter, server->token) && emit_mapping_end(emitter);
}

static bool emit_config(yaml_emitter_t *emitter, const struct client_config *config)
{
    yaml_event_t event;
    bool ok =
        emit(emitter, &event, yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING)) &&
        emit(emitter, &event, yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1)) &&
        emit_mapping_start(emitter);
    if (ok && config->default_name != NULL)
        ok = emit_scalar(emitter, "default") && emit_scalar(emitter, config->default_name);
    if (ok)
        ok = emit_scalar(emitter, "servers") && emit_mapping_start(emitter);
    for (size_t i = 0; ok && i < config->count; i++)
        ok = emit_server(emitter, &config->servers[i]);
    return ok && emit_mapping_end(emitter) && emit_mapping_end(emitter) &&
           emit(emitter, &event, yaml_document_end_event_initialize(&event, 1)) &&
           emit(emitter, &event, yaml_stream_end_event_initialize(&event));
}

int client_config_save(const struct client_config *config, struct client_error *error)
{
    for (size_t i = 0; i < config->count; i++)
        if (config->servers[i].url == NULL)
            return client_errorf(error, "CONFIG", "%s: server \"%s\" has no url; fix or remove it",
                                 config->path, config->servers[i].name);
    static const char header[] = "# shed client config (docs/configuration.md); written by "
                                 "'shed server add|rm'\n";
    struct yaml_buffer buffer = {0};
    write_to_buffer(&buffer, (unsigned char *)header, sizeof header - 1);
    yaml_emitter_t emitter;
    if (!yaml_emitter_initialize(&emitter)) {
        free(buffer.data);
        return out_of_memory(error);
    }
    yaml_emitter_set_output(&emitter, write_to_buffer, &buffer);
    yaml_emitter_set_unicode(&emitter, 1);
    bool ok = emit_config(&emitter, config);
    yaml_emitter_delete(&emitter);
    if (!ok || buffer.failed) {
        free(buffer.data);
        return client_errorf(error, "IO", "cannot format %s", config->path);
    }
    struct shed_err err = {0};
    cleanup_free char *dir = strdup(config->path);
    char *slash = dir != NULL ? strrchr(dir, '/') : NULL;
    if (slash != NULL && slash != dir)
        *slash = '\0';
    int rc = 0;
    if (dir == NULL)
        rc = out_of_memory(error);
    else if (slash != NULL && slash != dir && fs_mkdir_p(dir, 0700, &err) < 0)
        rc = client_errorf(error, "IO", "%s", err.msg);
    else if (fs_write_file_atomic(config->path, buffer.data, buffer.len, 0600, &err) < 0)
        rc = client_errorf(error, "IO", "%s", err.msg);
    free(buffer.data);
    return rc;
}

/* ---- -s SERVER --------------------------------------------------------------------------- */

static int resolve_from_file(const char *selector, char **url, char **token, char **origin,
                             struct client_error *error)
{
    struct client_config config;
    if (client_config_load(&config, error) < 0)
        return -1;
    int rc = 0;
    const char *name = selector != NULL ? selector : config.default_name;
    const struct client_server *server = name != NULL ? client_config_find(&config, name) : NULL;
    if (selector != NULL && !config.exists) {
        rc = client_errorf(error, "CONFIG",
                           "server \"%s\": cannot read %s: %s (give HOST:PORT or a URL, or "
                           "'shed server add %s URL')",
                           selector, config.path, strerror(ENOENT), selector);
    } else if (name != NULL && server == NULL) {
        rc = client_errorf(error, "CONFIG", "no server \"%s\" in %s (see 'shed server ls')", name,
                           config.path);
    } else if (server != NULL && server->url == NULL) {
        rc = client_errorf(error, "CONFIG", "%s: server \"%s\" has no url", config.path, name);
    } else if (server != NULL) {
        *url = strdup(server->url);
        *token = server->token != NULL ? strdup(server->token) : NULL;
        *origin = str_printf("server \"%s\" of %s", name, config.path);
        if (*url == NULL || *origin == NULL || (server->token != NULL && *token == NULL))
            rc = out_of_memory(error);
    } else {
        *url = strdup(CLIENT_DEFAULT_SERVER_URL);
        *origin = config.exists
                      ? str_printf("the built-in default: %s names no default server", config.path)
                      : str_printf("the built-in default: no %s", config.path);
        if (*url == NULL || *origin == NULL)
            rc = out_of_memory(error);
    }
    client_config_free(&config);
    return rc;
}

int client_resolve_server(const char *selector, char **url, char **token, char **origin,
                          struct client_error *error)
{
    *url = *token = *origin = NULL;
    int rc;
    if (selector != NULL && strchr(selector, ':') != NULL) {
        *url = client_server_url(selector, error);
        *origin = strdup("-s");
        rc = *url == NULL ? -1 : *origin == NULL ? out_of_memory(error) : 0;
    } else {
        rc = resolve_from_file(selector, url, token, origin, error);
    }
    if (rc < 0) {
        free(*url);
        free(*token);
        free(*origin);
        *url = *token = *origin = NULL;
    }
    return rc;
}

int client_server_names(char ***names, size_t *count, struct client_error *error)
{
    *names = NULL;
    *count = 0;
    struct client_config config;
    if (client_config_load(&config, error) < 0)
        return -1;
    int rc = 0;
    struct strv found = STRV_INIT;
    struct shed_err err = {0};
    if (!config.exists)
        rc = client_errorf(error, "CONFIG", "--all: cannot read %s: %s", config.path,
                           strerror(ENOENT));
    for (size_t i = 0; rc == 0 && i < config.count; i++)
        if (strv_add(&found, config.servers[i].name, &err) < 0)
            rc = out_of_memory(error);
    if (rc == 0 && found.count == 0)
        rc = client_errorf(error, "CONFIG", "--all: no servers in %s", config.path);
    client_config_free(&config);
    *count = found.count;
    *names = strv_steal(&found);
    return rc;
}
