/* server.yaml: the server's configuration, parsed with libyaml.
 *
 * Lookup order (shed_config_load): an explicit path (--config), ./server.yaml,
 * ~/.config/shed/server.yaml, /etc/shed/server.yaml, else built-in defaults. Every key is
 * optional; unknown keys, wrong types and bad values fail with SHED_E_CONFIG and a message
 * that names the file, line and key: "server.yaml:7: http_port: expected 1-65535, got 0".
 *
 * The config is the only process-wide state; modules take `const struct shed_config *`. */
#ifndef SHED_CONFIG_H
#define SHED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/shed_err.h"
#include "common/strv.h"

#define SHED_CONFIG_DEFAULT_HTTP_PORT 8080
#define SHED_CONFIG_DEFAULT_SSH_PORT 2222
#define SHED_CONFIG_DEFAULT_BIND "127.0.0.1"
#define SHED_CONFIG_DEFAULT_BACKEND "detect"
#define SHED_CONFIG_DEFAULT_ROOTFS_SIZE (20ULL << 30)
#define SHED_CONFIG_DEFAULT_CPUS 2
#define SHED_CONFIG_DEFAULT_MEMORY_MB 4096
/* Limits of the HTTP server and its tunnels (server/server.c, server/tunnel.c). */
#define SHED_CONFIG_DEFAULT_HTTP_MAX_CONNECTIONS 512
#define SHED_CONFIG_DEFAULT_HTTP_MAX_PER_CLIENT 64
#define SHED_CONFIG_DEFAULT_HTTP_REQUEST_TIMEOUT 30
#define SHED_CONFIG_DEFAULT_HTTP_IDLE_TIMEOUT 60
#define SHED_CONFIG_DEFAULT_TUNNEL_IDLE_TIMEOUT 600
#define SHED_CONFIG_DEFAULT_TUNNEL_MAX_PER_CLIENT 32
#define SHED_CONFIG_DEFAULT_UNIX_SOCKET_MODE 0600
/* `repo` clones (runtime/repo.c). */
#define SHED_CONFIG_DEFAULT_REPO_USER "nobody"
#define SHED_CONFIG_DEFAULT_REPO_TIMEOUT 600
#define SHED_CONFIG_DEFAULT_REPO_LOW_SPEED_LIMIT 1000
#define SHED_CONFIG_DEFAULT_REPO_LOW_SPEED_TIME 60
/* Pulls (oci/). */
#define SHED_CONFIG_DEFAULT_PULL_TIMEOUT 3600
#define SHED_CONFIG_DEFAULT_PULL_LOW_SPEED_LIMIT 1024
#define SHED_CONFIG_DEFAULT_PULL_LOW_SPEED_TIME 60
#define SHED_CONFIG_DEFAULT_PULL_MIN_PROGRESS (64ULL << 10)
#define SHED_CONFIG_DEFAULT_MAX_LAYER_BYTES (16ULL << 30)
#define SHED_CONFIG_DEFAULT_MAX_IMAGE_BYTES (64ULL << 30)
/* The variant name under which base_image is cached (not a valid user variant name). */
#define SHED_BASE_IMAGE_NAME "_base"
/* base_image when server.yaml does not set it (`base_image: null` disables it): Debian's
 * official image, small, maintained, glibc and apt; shed-init is PID 1, so it needs no init. */
#define SHED_CONFIG_DEFAULT_BASE_IMAGE "docker.io/library/debian:bookworm"

/* `container_network:` — egress for container sheds (bridge + veth + NAT), off by default. */
enum shed_network_mode { SHED_NETWORK_NONE, SHED_NETWORK_BRIDGE };
#define SHED_CONFIG_DEFAULT_BRIDGE "shed0"
#define SHED_CONFIG_DEFAULT_SUBNET 0x0a580000u /* 10.88.0.0 */
#define SHED_CONFIG_DEFAULT_PREFIX_LEN 24

struct shed_config_network {
    enum shed_network_mode mode; /* none (loopback only) | bridge */
    char *bridge;                /* bridge interface name; default "shed0" */
    uint32_t subnet;             /* network address, host byte order; default 10.88.0.0 */
    int prefix_len;              /* 16-30; default 24. The gateway is the first host. */
};

/* How many connections the API server holds, and how long a request may take to arrive. A
 * "client" is an IPv4 address, or a uid on the unix socket. */
struct shed_config_http {
    int max_connections;             /* http_max_connections: beyond it new ones get 503 */
    int max_connections_per_client;  /* http_max_connections_per_client: 503 beyond it */
    int request_timeout_seconds;     /* http_request_timeout_seconds: headers + body */
    int idle_timeout_seconds;        /* http_idle_timeout_seconds: keep-alive between requests */
    int tunnel_idle_timeout_seconds; /* tunnel_idle_timeout_seconds: no byte either way */
    int tunnels_per_client;          /* tunnel_max_per_client */
};

/* The repo a create clones (runtime/repo.c). */
struct shed_config_repo {
    char **schemes;        /* repo_schemes: NULL-terminated; default https, ssh */
    char **allow_hosts;    /* repo_allow_hosts: host or host:port allowed although private */
    char *user;            /* repo_user: the user git runs as */
    char *ssh_key;         /* repo_ssh_key: private key for ssh clones; NULL: none */
    char *ssh_known_hosts; /* repo_ssh_known_hosts: NULL: host keys accepted on first use */
    int timeout_seconds;   /* repo_timeout_seconds: the whole clone */
    int low_speed_limit;   /* repo_low_speed_limit: bytes/s ... */
    int low_speed_time;    /* repo_low_speed_time: ... for this many seconds fails it */
};

/* Pulls from registries (oci/). */
struct shed_config_pull {
    int timeout_seconds;         /* pull_timeout_seconds: the whole pull */
    int low_speed_limit;         /* pull_low_speed_limit: bytes/s ... */
    int low_speed_time;          /* pull_low_speed_time: ... for this long ends an attempt */
    uint64_t min_progress_bytes; /* pull_min_progress: an attempt moving less counts as failed */
    uint64_t max_layer_bytes;    /* max_layer_bytes: a larger layer (or config) is refused */
    uint64_t max_image_bytes;    /* max_image_bytes: the sum of an image's layers */
};

/* `ssh:` — the SSH front door (ssh/), on bind:ssh_port. */
enum shed_ssh_shell { SHED_SSH_SHELL_LOGIN, SHED_SSH_SHELL_TMUX };
enum shed_ssh_auth { SHED_SSH_AUTH_KEYS, SHED_SSH_AUTH_NONE };
#define SHED_CONFIG_DEFAULT_MAX_AUTH_TRIES 6
#define SHED_CONFIG_DEFAULT_LOGIN_GRACE_SECONDS 120
#define SHED_CONFIG_DEFAULT_MAX_CONNECTIONS 100
#define SHED_CONFIG_DEFAULT_SESSIONS_TIMEOUT_SECONDS 5

struct shed_config_ssh {
    /* OpenSSH authorized_keys file; default <config dir>/authorized_keys (the directory of
     * the server.yaml in use; /etc/shed as root and ~/.config/shed otherwise without one).
     * A missing file is no key. */
    char *authorized_keys;
    bool authorized_keys_default; /* not set in the file: the default location */
    char **keys;                  /* inline keys ("ssh-ed25519 AAAA... comment"), NULL-terminated */
    enum shed_ssh_shell shell;    /* what an interactive session runs: login shell or tmux */
    enum shed_ssh_auth auth;      /* keys (default), or none: anyone who can connect gets in */
    int max_auth_tries;           /* failed attempts before the connection is closed */
    int login_grace_seconds;      /* time from connect to authenticated */
    int max_connections;          /* connections served at once; more are refused */
};

/* `container:` — limits and isolation of every container shed. */
#define SHED_CONFIG_DEFAULT_PIDS_LIMIT 4096
#define SHED_CONFIG_DEFAULT_TMP_SIZE (1ULL << 30)
#define SHED_CONFIG_DEFAULT_NOFILE 65536
#define SHED_CONFIG_DEFAULT_USERNS_BASE 100000
#define SHED_CONFIG_USERNS_SIZE 65536
/* console.log's cap (and console.log.1's: one rotation). */
#define SHED_CONFIG_DEFAULT_CONSOLE_LOG_MAX_BYTES (16ULL << 20)

struct shed_config_container {
    int pids_limit;       /* pids.max of each shed's cgroup; default 4096 */
    uint64_t tmp_size;    /* size of the /tmp tmpfs in bytes; default 1 GiB */
    int nofile;           /* RLIMIT_NOFILE (soft and hard) of the shed's processes; default 65536 */
    int max_cpus;         /* the most cpus a create may ask for; default the host's CPU count */
    int max_memory_mb;    /* the most memory_mb a create may ask for; default the host's RAM */
    bool userns;          /* run sheds in a user namespace (root inside = an unprivileged uid) */
    uint32_t userns_base; /* first host uid/gid of the range mapped to 0..65535 inside */
};

/* `instance_disk:` — how a shed's root filesystem is made from its image. */
enum shed_instance_disk {
    SHED_INSTANCE_DISK_AUTO = 0, /* reflink where the data dir can, else overlay */
    SHED_INSTANCE_DISK_REFLINK,  /* a clone of the image (FICLONE; a full copy where it cannot) */
    SHED_INSTANCE_DISK_OVERLAY,  /* the image read-only under the shed's own upper.ext4 */
    SHED_INSTANCE_DISK_COPY,     /* a full copy that shares nothing with the image */
};

/* "auto", "reflink", "overlay", "copy". */
const char *shed_instance_disk_name(enum shed_instance_disk disk);

/* One entry of `images:`: a registry reference or an absolute path to a ready ext4. */
struct shed_config_image {
    char *name;
    char *ref;    /* as written in the file */
    bool is_path; /* ref is an absolute path to a local ext4, not a registry reference */
};

/* One entry of `registry_ca:`: the CA bundle that registry's certificate must chain to
 * (like /etc/docker/certs.d/<registry>/ca.crt). */
struct shed_config_registry_ca {
    char *registry; /* host[:port] as in image references */
    char *ca_file;  /* absolute path of a PEM file */
};

struct shed_config {
    char *path; /* file the config came from; NULL for built-in defaults */
    char *name; /* server name; default: the host name */
    int http_port;
    int ssh_port;
    char *bind;
    char *default_backend; /* detect | container | qemu | firecracker | vz */
    char *data_dir;
    char *images_dir;   /* default: <data_dir>/images */
    char *instance_dir; /* default: <data_dir>/instances */
    char *base_image;   /* registry ref or absolute path; NULL when disabled (`base_image: null`) */
    bool base_image_is_default;       /* the file did not set it: SHED_CONFIG_DEFAULT_BASE_IMAGE */
    struct shed_config_image *images; /* in file order */
    size_t image_count;
    uint64_t rootfs_size;
    char *platform; /* "os/arch[/variant]"; default: the host's */
    int default_cpus;
    int default_memory_mb;
    char **insecure_registries;                  /* NULL-terminated, never NULL itself */
    struct shed_config_registry_ca *registry_ca; /* in file order */
    size_t registry_ca_count;
    char *api_token; /* NULL: no authentication */
    /* A non-loopback bind without api_token is refused unless this is set. */
    bool allow_unauthenticated;
    char *unix_socket;         /* an extra listener on this path; NULL: none */
    unsigned unix_socket_mode; /* its file mode (default 0600) */
    char *unix_socket_group;   /* its group; NULL: the server's own */
    struct shed_config_network container_network;
    struct shed_config_http http;
    struct shed_config_repo repo;
    struct shed_config_pull pull;
    struct shed_config_container container;
    /* Directories under which a create's local_dir may lie (absolute, NULL-terminated, never
     * NULL itself); empty: local_dir is refused. */
    char **local_dir_roots;
    uint64_t console_log_max_bytes;
    struct shed_config_ssh ssh;
    /* The deadline of each tmux command behind the sessions API: a shed whose tmux hangs is
     * skipped by GET /api/sessions and answers 500 for its own sessions. */
    int sessions_timeout_seconds;
    enum shed_instance_disk instance_disk; /* default auto */
};

/* Finds and parses the config (see the lookup order above). explicit_path may be NULL. */
int shed_config_load(const char *explicit_path, struct shed_config *config, struct shed_err *err);
/* The file shed_config_load would read (explicit_path itself when given), or NULL when no
 * file is found (built-in defaults) or memory runs out; malloc'd. */
char *shed_config_lookup_path(const char *explicit_path);
/* Parses one file; a missing file is an error. */
int shed_config_load_file(const char *path, struct shed_config *config, struct shed_err *err);
/* Parses YAML text; origin names it in error messages (e.g. the file name). */
int shed_config_parse(const char *text, size_t len, const char *origin, struct shed_config *config,
                      struct shed_err *err);
/* Built-in defaults only. */
int shed_config_defaults(struct shed_config *config, struct shed_err *err);
void shed_config_free(struct shed_config *config);
/* What --data-dir does: data_dir becomes dir, images_dir and instance_dir dir/images and
 * dir/instances (whatever the file said). */
int shed_config_use_data_dir(struct shed_config *config, const char *dir, struct shed_err *err);

/* What a running server does with a re-read config (SIGHUP): the keys it can only apply at
 * start (bind, http_port, ssh_port, data_dir, images_dir, instance_dir, container_network,
 * container, console_log_max_bytes, local_dir_roots) keep their running values in next, and
 * each one that differed is added to changed (by key name, in the order above). Everything
 * else of next takes effect. */
int shed_config_keep_restart_keys(struct shed_config *next, const struct shed_config *running,
                                  struct strv *changed, struct shed_err *err);

/* The CA file configured for registry (host[:port], matched exactly), or NULL. */
const char *shed_config_registry_ca(const struct shed_config *config, const char *registry);
/* The same as a callback (ctx: the config), the form oci's pull options take. */
const char *shed_config_registry_ca_of(const char *registry, const void *config);

/* Writes the resolved config as YAML (every key, defaults included). */
int shed_config_print(const struct shed_config *config, FILE *out);

/* The entry of `images:` with that name, or NULL. */
const struct shed_config_image *shed_config_find_image(const struct shed_config *config,
                                                       const char *name);
/* The ref configured for a cache name: an `images:` entry, or base_image for "_base".
 * NULL when the name is not in the config. */
const char *shed_config_image_ref(const struct shed_config *config, const char *name);

/* /var/lib/shed for root, else $XDG_DATA_HOME/shed or ~/.local/share/shed; malloc'd. */
char *shed_config_default_data_dir(void);
/* The host's OCI platform, e.g. "linux/amd64" or "linux/arm/v7"; malloc'd. */
char *shed_config_host_platform(void);
/* Image variant names: ^[A-Za-z0-9][A-Za-z0-9._-]*$, at most 128 bytes, no "..". */
bool shed_image_name_is_valid(const char *name);
/* True when bind (the config's or an override) is a loopback address: 127.0.0.0/8 or
 * "localhost". The API may only listen elsewhere with api_token or allow_unauthenticated. */
bool shed_config_bind_is_loopback(const char *bind);

#endif
