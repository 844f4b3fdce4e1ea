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

#define SHED_CONFIG_DEFAULT_HTTP_PORT 8080
#define SHED_CONFIG_DEFAULT_SSH_PORT 2222
#define SHED_CONFIG_DEFAULT_BIND "127.0.0.1"
#define SHED_CONFIG_DEFAULT_BACKEND "detect"
#define SHED_CONFIG_DEFAULT_ROOTFS_SIZE (20ULL << 30)
#define SHED_CONFIG_DEFAULT_CPUS 2
#define SHED_CONFIG_DEFAULT_MEMORY_MB 4096
/* The variant name under which base_image is cached (not a valid user variant name). */
#define SHED_BASE_IMAGE_NAME "_base"

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

struct shed_config {
    char *path; /* file the config came from; NULL for built-in defaults */
    char *name; /* server name; default: the host name */
    int http_port;
    int ssh_port;
    char *bind;
    char *default_backend; /* detect | container | qemu | firecracker | vz */
    char *data_dir;
    char *images_dir;                 /* default: <data_dir>/images */
    char *instance_dir;               /* default: <data_dir>/instances */
    char *base_image;                 /* registry ref or absolute path; NULL when not configured */
    struct shed_config_image *images; /* in file order */
    size_t image_count;
    uint64_t rootfs_size;
    char *platform; /* "os/arch[/variant]"; default: the host's */
    int default_cpus;
    int default_memory_mb;
    char **insecure_registries; /* NULL-terminated, never NULL itself */
    char *api_token;            /* NULL: no authentication */
    struct shed_config_network container_network;
    struct shed_config_container container;
    /* Directories under which a create's local_dir may lie (absolute, NULL-terminated, never
     * NULL itself); empty: local_dir is refused. */
    char **local_dir_roots;
    uint64_t console_log_max_bytes;
    enum shed_instance_disk instance_disk; /* default auto */
};

/* Finds and parses the config (see the lookup order above). explicit_path may be NULL. */
int shed_config_load(const char *explicit_path, struct shed_config *config, struct shed_err *err);
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

#endif
