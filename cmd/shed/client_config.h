/* client.yaml, the shed client's list of servers (docs/configuration.md): the one place
 * that reads and writes it, and the resolution of -s SERVER.
 *
 *   default: box                     # the server used without -s
 *   servers:
 *     box: http://127.0.0.1:8080     # name: URL
 *     lab: {url: http://lab.vpn:8080, token: s3cret}
 *
 * The file is $SHED_CLIENT_CONFIG, else $XDG_CONFIG_HOME/shed/client.yaml (absolute
 * XDG_CONFIG_HOME), else ~/.config/shed/client.yaml. `shed server add|rm` rewrite it
 * atomically with mode 0600 (it may hold tokens); comments and unknown keys are not kept. */
#ifndef SHED_CLIENT_CONFIG_H
#define SHED_CLIENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"

#define CLIENT_DEFAULT_SERVER_URL "http://127.0.0.1:8080"

struct client_server {
    char *name;
    char *url;   /* NULL: the entry has no url (an error when it is used) */
    char *token; /* NULL: none */
};

struct client_config {
    char *path;  /* the file, read or not */
    bool exists; /* it was there */
    char *default_name;
    struct client_server *servers; /* in file order */
    size_t count;
    size_t capacity;
};

/* Reads the file (a missing file is an empty config). */
int client_config_load(struct client_config *config, struct client_error *error);
/* Writes it atomically (temp + fsync + rename, mode 0600; the directory is made 0700). */
int client_config_save(const struct client_config *config, struct client_error *error);
void client_config_free(struct client_config *config);

const struct client_server *client_config_find(const struct client_config *config,
                                               const char *name);
/* Adds the server, or replaces the entry of that name. */
int client_config_set(struct client_config *config, const char *name, const char *url,
                      const char *token, struct client_error *error);
/* Removes the entry; false when there was none. A default naming it is unset. */
bool client_config_remove(struct client_config *config, const char *name);

/* Server names: ^[A-Za-z0-9][A-Za-z0-9._-]*$, at most 64 bytes (no ':', so a name is
 * never mistaken for host:port). */
bool client_server_name_is_valid(const char *name);
/* A server URL from what a user typed: "http(s)://host[:port]" as is (trailing slashes
 * dropped), "host:port" becomes "http://host:port". NULL (error set) for anything else. */
char *client_server_url(const char *text, struct client_error *error);

/* Resolves -s SELECTOR: a URL or host:port is used as is (the file is not read); otherwise a
 * name in servers:; NULL means the file's default, else http://127.0.0.1:8080. *token is the
 * entry's token (or NULL); *origin says where the URL came from, for error hints. All
 * malloc'd. */
int client_resolve_server(const char *selector, char **url, char **token, char **origin,
                          struct client_error *error);

/* The names of servers:, in file order, for --all: a NULL-terminated malloc'd array of
 * *count malloc'd strings. A missing file or one without servers is an error. */
int client_server_names(char ***names, size_t *count, struct client_error *error);

#endif
