#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <yaml.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"

#define CONFIG_MAX_FILE_SIZE (1u << 20)
#define IMAGE_NAME_MAX 128

/* ---- small helpers ------------------------------------------------------------------- */

char *shed_config_default_data_dir(void)
{
    if (geteuid() == 0)
        return strdup("/var/lib/shed");
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg != NULL && xdg[0] == '/')
        return str_printf("%s/shed", xdg);
    const char *home = getenv("HOME");
    return str_printf("%s/.local/share/shed", home != NULL ? home : ".");
}

char *shed_config_host_platform(void)
{
    struct utsname uts;
    const char *arch = "amd64";
    if (uname(&uts) == 0) {
        static const struct {
            const char *machine, *platform;
        } arches[] = {
            {"x86_64", "amd64"},    {"aarch64", "arm64"},   {"arm64", "arm64"},
            {"armv7l", "arm/v7"},   {"armv6l", "arm/v6"},   {"i686", "386"},
            {"i386", "386"},        {"ppc64le", "ppc64le"}, {"s390x", "s390x"},
            {"riscv64", "riscv64"},
        };
        arch = uts.machine;
        for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
            if (strcmp(uts.machine, arches[i].machine) == 0)
                arch = arches[i].platform;
    }
    return str_printf("linux/%s", arch);
}

bool shed_image_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > IMAGE_NAME_MAX || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return strstr(name, "..") == NULL;
}

void shed_config_free(struct shed_config *config)
{
    free(config->path);
    free(config->name);
    free(config->bind);
    free(config->default_backend);
    free(config->data_dir);
    free(config->images_dir);
    free(config->instance_dir);
    free(config->base_image);
    for (size_t i = 0; i < config->image_count; i++) {
        free(config->images[i].name);
        free(config->images[i].ref);
    }
    free(config->images);
    free(config->platform);
    strv_free_items(config->insecure_registries);
    for (size_t i = 0; i < config->registry_ca_count; i++) {
        free(config->registry_ca[i].registry);
        free(config->registry_ca[i].ca_file);
    }
    free(config->registry_ca);
    free(config->api_token);
    free(config->unix_socket);
    free(config->unix_socket_group);
    free(config->container_network.bridge);
    strv_free_items(config->repo.schemes);
    strv_free_items(config->repo.allow_hosts);
    free(config->repo.user);
    free(config->repo.ssh_key);
    free(config->repo.ssh_known_hosts);
    free(config->ssh.authorized_keys);
    strv_free_items(config->ssh.keys);
    strv_free_items(config->local_dir_roots);
    memset(config, 0, sizeof *config);
}

const struct shed_config_image *shed_config_find_image(const struct shed_config *config,
                                                       const char *name)
{
    for (size_t i = 0; i < config->image_count; i++)
        if (strcmp(config->images[i].name, name) == 0)
            return &config->images[i];
    return NULL;
}

const char *shed_config_image_ref(const struct shed_config *config, const char *name)
{
    if (strcmp(name, SHED_BASE_IMAGE_NAME) == 0)
        return config->base_image;
    const struct shed_config_image *image = shed_config_find_image(config, name);
    return image != NULL ? image->ref : NULL;
}

bool shed_config_bind_is_loopback(const char *bind)
{
    if (bind == NULL || bind[0] == '\0' || strcmp(bind, "localhost") == 0)
        return true; /* the server's default is 127.0.0.1 */
    struct in_addr addr;
    return inet_pton(AF_INET, bind, &addr) == 1 && (ntohl(addr.s_addr) >> 24) == 127;
}

static const char *const instance_disk_names[] = {
    [SHED_INSTANCE_DISK_AUTO] = "auto",
    [SHED_INSTANCE_DISK_REFLINK] = "reflink",
    [SHED_INSTANCE_DISK_OVERLAY] = "overlay",
    [SHED_INSTANCE_DISK_COPY] = "copy",
};

const char *shed_instance_disk_name(enum shed_instance_disk disk)
{
    if ((size_t)disk >= sizeof instance_disk_names / sizeof instance_disk_names[0])
        return "auto";
    return instance_disk_names[disk];
}

/* ---- parsing ------------------------------------------------------------------------- */

struct parse_ctx {
    yaml_document_t *doc;
    const char *origin;
    struct shed_config *config;
    struct shed_err *err;
    bool base_image_seen;           /* even as null: then the built-in default does not apply */
    const yaml_node_t *userns_node; /* container.userns, for the checks across keys */
    const yaml_node_t *instance_disk_node; /* instance_disk, for the check with userns */
};

/* "origin:line: key: message" with code SHED_E_CONFIG. */
static int __attribute__((format(printf, 4, 5)))
config_error(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, const char *fmt, ...)
{
    char message[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    unsigned long line = node != NULL ? (unsigned long)node->start_mark.line + 1 : 1;
    if (key != NULL)
        return shed_errf(ctx->err, SHED_E_CONFIG, "%s:%lu: %s: %s", ctx->origin, line, key,
                         message);
    return shed_errf(ctx->err, SHED_E_CONFIG, "%s:%lu: %s", ctx->origin, line, message);
}

static const char *node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain (unquoted) empty, "~" or "null" scalar. */
static bool node_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *text = scalar_text(node);
    return text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

/* A non-empty scalar string; *out is replaced (malloc'd). */
static int get_string(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, char **out)
{
    if (node->type != YAML_SCALAR_NODE)
        return config_error(ctx, node, key, "expected a string, got %s", node_kind(node));
    if (node_is_null(node) || scalar_text(node)[0] == '\0')
        return config_error(ctx, node, key, "expected a non-empty string");
    char *copy = strdup(scalar_text(node));
    if (copy == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    free(*out);
    *out = copy;
    return 0;
}

/* Like get_string, but null leaves *out NULL (the key is explicitly unset). */
static int get_optional_string(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                               char **out)
{
    if (node_is_null(node)) {
        free(*out);
        *out = NULL;
        return 0;
    }
    return get_string(ctx, key, node, out);
}

static int get_int(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, long min,
                   long max, int *out)
{
    if (node->type != YAML_SCALAR_NODE)
        return config_error(ctx, node, key, "expected an integer, got %s", node_kind(node));
    const char *text = scalar_text(node);
    errno = 0;
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || value < min || value > max)
        return config_error(ctx, node, key, "expected an integer %ld-%ld, got \"%s\"", min, max,
                            text);
    *out = (int)value;
    return 0;
}

static int get_port(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, int *out)
{
    return get_int(ctx, key, node, 1, 65535, out);
}

/* An absolute path, or one starting with "~/" (expanded with $HOME). */
static int get_path(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, char **out)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    char *path = NULL;
    if (strncmp(text, "~/", 2) == 0) {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] != '/')
            return config_error(ctx, node, key, "cannot expand \"~\": HOME is not set");
        path = fs_path_join(home, text + 2);
    } else if (text[0] == '/') {
        path = strdup(text);
    } else {
        return config_error(ctx, node, key, "expected an absolute path, got \"%s\"", text);
    }
    if (path == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    free(*out);
    *out = path;
    return 0;
}

static int parse_name(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_string(ctx, key, node, &ctx->config->name);
}

static int parse_http_port(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_port(ctx, key, node, &ctx->config->http_port);
}

static int parse_ssh_port(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_port(ctx, key, node, &ctx->config->ssh_port);
}

/* The server listens on IPv4 only: an address it cannot bind is refused here, where the
 * error names the line, rather than when serve starts. */
static int parse_bind(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (get_string(ctx, key, node, &ctx->config->bind) < 0)
        return -1;
    struct in_addr addr;
    if (strcmp(ctx->config->bind, "localhost") != 0 &&
        inet_pton(AF_INET, ctx->config->bind, &addr) != 1)
        return config_error(ctx, node, key, "expected an IPv4 address or localhost, got \"%s\"",
                            ctx->config->bind);
    return 0;
}

static int parse_default_backend(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    static const char *const backends[] = {"detect", "container", "qemu", "firecracker", "vz"};
    if (get_string(ctx, key, node, &ctx->config->default_backend) < 0)
        return -1;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(ctx->config->default_backend, backends[i]) == 0)
            return 0;
    return config_error(ctx, node, key,
                        "unknown backend \"%s\" (detect, container, qemu, firecracker or vz)",
                        ctx->config->default_backend);
}

static int parse_data_dir(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_path(ctx, key, node, &ctx->config->data_dir);
}

static int parse_images_dir(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_path(ctx, key, node, &ctx->config->images_dir);
}

static int parse_instance_dir(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_path(ctx, key, node, &ctx->config->instance_dir);
}

/* A registry ref cannot be checked fully here (oci/ parses refs, and common/ sits below it);
 * reject what can never be one. */
static int check_image_ref(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                           const char *ref)
{
    for (const char *p = ref; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return config_error(ctx, node, key, "invalid image reference \"%s\"", ref);
    if (ref[0] == '.' || ref[0] == '~')
        return config_error(ctx, node, key, "\"%s\": local images need an absolute path", ref);
    return 0;
}

static int parse_base_image(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    ctx->base_image_seen = true;
    if (get_optional_string(ctx, key, node, &ctx->config->base_image) < 0)
        return -1;
    if (ctx->config->base_image == NULL)
        return 0;
    return check_image_ref(ctx, key, node, ctx->config->base_image);
}

static int add_image(struct parse_ctx *ctx, const yaml_node_t *key_node,
                     const yaml_node_t *value_node)
{
    struct shed_config *config = ctx->config;
    if (key_node->type != YAML_SCALAR_NODE)
        return config_error(ctx, key_node, "images", "expected image names as keys, got %s",
                            node_kind(key_node));
    const char *name = scalar_text(key_node);
    cleanup_free char *key = str_printf("images.%s", name);
    if (key == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    if (!shed_image_name_is_valid(name))
        return config_error(ctx, key_node, key,
                            "invalid image name (letters, digits, '.', '_', '-'; at most 128; "
                            "starting with a letter or digit; no \"..\")");
    if (shed_config_find_image(config, name) != NULL)
        return config_error(ctx, key_node, key, "duplicate image name");
    cleanup_free char *ref = NULL;
    if (get_string(ctx, key, value_node, &ref) < 0)
        return -1;
    if (check_image_ref(ctx, key, value_node, ref) < 0)
        return -1;
    struct shed_config_image *grown =
        realloc(config->images, (config->image_count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    config->images = grown;
    char *name_copy = strdup(name);
    if (name_copy == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    bool is_path = ref[0] == '/';
    config->images[config->image_count++] = (struct shed_config_image){
        .name = name_copy, .ref = steal_pointer(&ref), .is_path = is_path};
    return 0;
}

static int parse_images(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_error(ctx, node, key, "expected a mapping of name: reference, got %s",
                            node_kind(node));
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *name = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        if (add_image(ctx, name, value) < 0)
            return -1;
    }
    return 0;
}

static int parse_rootfs_size(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE)
        return config_error(ctx, node, key, "expected a size such as 20G, got %s", node_kind(node));
    struct shed_err size_err;
    uint64_t bytes = 0;
    if (parse_size(scalar_text(node), &bytes, &size_err) < 0)
        return config_error(ctx, node, key, "%s", size_err.msg);
    /* Below this ext4 has no room for a journal and a usable root. */
    if (bytes < (64ULL << 20))
        return config_error(ctx, node, key, "size \"%s\" is too small (at least 64M)",
                            scalar_text(node));
    ctx->config->rootfs_size = bytes;
    return 0;
}

static int parse_platform(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    if (strcmp(text, "host") == 0) {
        char *host = shed_config_host_platform();
        if (host == NULL)
            return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
        free(ctx->config->platform);
        ctx->config->platform = host;
        return 0;
    }
    int slashes = 0;
    bool ok = text[0] != '/' && text[strlen(text) - 1] != '/' && strstr(text, "//") == NULL;
    for (const char *p = text; *p && ok; p++) {
        if (*p == '/')
            slashes++;
        else if (!isalnum((unsigned char)*p))
            ok = false;
    }
    if (!ok || slashes < 1 || slashes > 2)
        return config_error(ctx, node, key,
                            "expected \"host\" or os/arch[/variant] such as linux/arm64, got "
                            "\"%s\"",
                            text);
    free(ctx->config->platform);
    ctx->config->platform = steal_pointer(&text);
    return 0;
}

static int parse_default_cpus(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 1024, &ctx->config->default_cpus);
}

static int parse_default_memory_mb(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 64, 16 * 1024 * 1024, &ctx->config->default_memory_mb);
}

/* A list of non-empty strings (null: empty), each checked by valid when given. */
static int get_string_list(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                           const char *what, bool (*valid)(const char *item), char ***out)
{
    if (node_is_null(node)) {
        strv_free_items(*out);
        *out = calloc(1, sizeof **out);
        return *out != NULL ? 0 : shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (node->type != YAML_SEQUENCE_NODE)
        return config_error(ctx, node, key, "expected a list of %s, got %s", what, node_kind(node));
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    char **list = calloc(count + 1, sizeof *list);
    if (list == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    strv_free_items(*out);
    *out = list;
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
        if (get_string(ctx, key, item, &list[i]) < 0)
            return -1;
        if (valid != NULL && !valid(list[i]))
            return config_error(ctx, item, key, "expected %s, got \"%s\"", what, list[i]);
    }
    return 0;
}

static bool is_host_port(const char *text)
{
    return strchr(text, '/') == NULL && strchr(text, ' ') == NULL;
}

static int parse_insecure_registries(struct parse_ctx *ctx, const char *key,
                                     const yaml_node_t *node)
{
    return get_string_list(ctx, key, node, "host[:port]", is_host_port,
                           &ctx->config->insecure_registries);
}

/* A CA file is checked here, where the error can name the line: a missing one would
 * otherwise surface as an obscure TLS failure at the first pull. */
static int check_ca_file(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                         const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return config_error(ctx, node, key, "cannot read CA file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return config_error(ctx, node, key, "CA file %s is not a regular file", path);
    if (access(path, R_OK) < 0)
        return config_error(ctx, node, key, "cannot read CA file %s: %s", path, strerror(errno));
    return 0;
}

static int add_registry_ca(struct parse_ctx *ctx, const yaml_node_t *key_node,
                           const yaml_node_t *value_node)
{
    struct shed_config *config = ctx->config;
    if (key_node->type != YAML_SCALAR_NODE)
        return config_error(ctx, key_node, "registry_ca", "expected host[:port] keys, got %s",
                            node_kind(key_node));
    const char *registry = scalar_text(key_node);
    cleanup_free char *key = str_printf("registry_ca.%.200s", registry);
    if (key == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    if (registry[0] == '\0' || !is_host_port(registry))
        return config_error(ctx, key_node, key, "expected host[:port], got \"%s\"", registry);
    if (shed_config_registry_ca(config, registry) != NULL)
        return config_error(ctx, key_node, key, "duplicate registry");
    cleanup_free char *ca_file = NULL;
    if (get_path(ctx, key, value_node, &ca_file) < 0 ||
        check_ca_file(ctx, key, value_node, ca_file) < 0)
        return -1;
    struct shed_config_registry_ca *grown =
        realloc(config->registry_ca, (config->registry_ca_count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    config->registry_ca = grown;
    char *registry_copy = strdup(registry);
    if (registry_copy == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    config->registry_ca[config->registry_ca_count++] = (struct shed_config_registry_ca){
        .registry = registry_copy, .ca_file = steal_pointer(&ca_file)};
    return 0;
}

static int parse_registry_ca(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_error(ctx, node, key, "expected a mapping of host[:port]: CA file, got %s",
                            node_kind(node));
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *name = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        if (add_registry_ca(ctx, name, value) < 0)
            return -1;
    }
    return 0;
}

const char *shed_config_registry_ca(const struct shed_config *config, const char *registry)
{
    for (size_t i = 0; i < config->registry_ca_count; i++)
        if (strcmp(config->registry_ca[i].registry, registry) == 0)
            return config->registry_ca[i].ca_file;
    return NULL;
}

const char *shed_config_registry_ca_of(const char *registry, const void *config)
{
    return shed_config_registry_ca(config, registry);
}

static int parse_api_token(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_optional_string(ctx, key, node, &ctx->config->api_token);
}

/* ---- exposure, limits, repo, pulls ---- */

static int get_bool(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, bool *out)
{
    if (node->type == YAML_SCALAR_NODE) {
        const char *text = scalar_text(node);
        if (strcmp(text, "true") == 0 || strcmp(text, "True") == 0 || strcmp(text, "TRUE") == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(text, "false") == 0 || strcmp(text, "False") == 0 ||
            strcmp(text, "FALSE") == 0) {
            *out = false;
            return 0;
        }
    }
    return config_error(ctx, node, key, "expected true or false");
}

/* A size (parse_size) of at least min bytes. */
static int get_size(struct parse_ctx *ctx, const char *key, const yaml_node_t *node, uint64_t min,
                    const char *min_text, uint64_t *out)
{
    if (node->type != YAML_SCALAR_NODE)
        return config_error(ctx, node, key, "expected a size such as 16M, got %s", node_kind(node));
    struct shed_err size_err;
    uint64_t bytes = 0;
    if (parse_size(scalar_text(node), &bytes, &size_err) < 0)
        return config_error(ctx, node, key, "%s", size_err.msg);
    if (bytes < min)
        return config_error(ctx, node, key, "size \"%s\" is too small (at least %s)",
                            scalar_text(node), min_text);
    *out = bytes;
    return 0;
}

static int parse_allow_unauthenticated(struct parse_ctx *ctx, const char *key,
                                       const yaml_node_t *node)
{
    return get_bool(ctx, key, node, &ctx->config->allow_unauthenticated);
}

static int parse_unix_socket(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node)) {
        free(ctx->config->unix_socket);
        ctx->config->unix_socket = NULL;
        return 0;
    }
    if (get_path(ctx, key, node, &ctx->config->unix_socket) < 0)
        return -1;
    /* sun_path holds 108 bytes with its NUL. */
    if (strlen(ctx->config->unix_socket) >= 108)
        return config_error(ctx, node, key, "path longer than 107 bytes");
    return 0;
}

/* Octal permission bits, as chmod takes them: "0660" or "660". */
static int parse_unix_socket_mode(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    const char *text = node->type == YAML_SCALAR_NODE ? scalar_text(node) : "";
    char *end = NULL;
    errno = 0;
    unsigned long mode = strtoul(text, &end, 8);
    if (node->type != YAML_SCALAR_NODE || text[0] == '\0' || *end != '\0' || errno != 0 ||
        mode > 0777 || text[strspn(text, "01234567")] != '\0')
        return config_error(ctx, node, key, "expected octal permission bits such as 0660, got %s",
                            node->type == YAML_SCALAR_NODE ? text : node_kind(node));
    ctx->config->unix_socket_mode = (unsigned)mode;
    return 0;
}

static int parse_unix_socket_group(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_optional_string(ctx, key, node, &ctx->config->unix_socket_group);
}

#define INT_KEY(function, field, min, max)                                                         \
    static int function(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)           \
    {                                                                                              \
        return get_int(ctx, key, node, min, max, &ctx->config->field);                             \
    }

INT_KEY(parse_http_max_connections, http.max_connections, 8, 65536)
INT_KEY(parse_http_max_per_client, http.max_connections_per_client, 1, 65536)
INT_KEY(parse_http_request_timeout, http.request_timeout_seconds, 1, 3600)
INT_KEY(parse_http_idle_timeout, http.idle_timeout_seconds, 1, 86400)
INT_KEY(parse_tunnel_idle_timeout, http.tunnel_idle_timeout_seconds, 1, 7 * 86400)
INT_KEY(parse_tunnel_max_per_client, http.tunnels_per_client, 1, 65536)
INT_KEY(parse_repo_timeout, repo.timeout_seconds, 1, 86400)
INT_KEY(parse_repo_low_speed_limit, repo.low_speed_limit, 1, INT_MAX)
INT_KEY(parse_repo_low_speed_time, repo.low_speed_time, 1, 86400)
INT_KEY(parse_pull_timeout, pull.timeout_seconds, 1, 7 * 86400)
INT_KEY(parse_pull_low_speed_limit, pull.low_speed_limit, 1, INT_MAX)
INT_KEY(parse_pull_low_speed_time, pull.low_speed_time, 1, 86400)

static bool is_repo_scheme(const char *text)
{
    static const char *const known[] = {"https", "ssh", "http", "git", "file"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(text, known[i]) == 0)
            return true;
    return false;
}

static int parse_repo_schemes(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_string_list(ctx, key, node, "https, ssh, http, git or file", is_repo_scheme,
                           &ctx->config->repo.schemes);
}

static int parse_repo_allow_hosts(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_string_list(ctx, key, node, "host[:port]", is_host_port,
                           &ctx->config->repo.allow_hosts);
}

static int parse_repo_user(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (get_string(ctx, key, node, &ctx->config->repo.user) < 0)
        return -1;
    if (strcmp(ctx->config->repo.user, "root") == 0 || strcmp(ctx->config->repo.user, "0") == 0)
        return config_error(ctx, node, key, "git must not run as root: name an unprivileged user");
    return 0;
}

static int parse_repo_ssh_key(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node))
        return get_optional_string(ctx, key, node, &ctx->config->repo.ssh_key);
    return get_path(ctx, key, node, &ctx->config->repo.ssh_key);
}

static int parse_repo_ssh_known_hosts(struct parse_ctx *ctx, const char *key,
                                      const yaml_node_t *node)
{
    if (node_is_null(node))
        return get_optional_string(ctx, key, node, &ctx->config->repo.ssh_known_hosts);
    return get_path(ctx, key, node, &ctx->config->repo.ssh_known_hosts);
}

static int parse_pull_min_progress(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_size(ctx, key, node, 1, "1 byte", &ctx->config->pull.min_progress_bytes);
}

static int parse_max_layer_bytes(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_size(ctx, key, node, 1 << 20, "1M", &ctx->config->pull.max_layer_bytes);
}

static int parse_max_image_bytes(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_size(ctx, key, node, 1 << 20, "1M", &ctx->config->pull.max_image_bytes);
}

/* ---- container_network: {mode, bridge, subnet} ---- */

static int parse_network_mode(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    if (strcmp(text, "none") == 0)
        ctx->config->container_network.mode = SHED_NETWORK_NONE;
    else if (strcmp(text, "bridge") == 0)
        ctx->config->container_network.mode = SHED_NETWORK_BRIDGE;
    else
        return config_error(ctx, node, key, "expected none or bridge, got \"%s\"", text);
    return 0;
}

/* A Linux interface name: 1-15 bytes (IFNAMSIZ - 1) of letters, digits, '_', '-', '.'. */
static bool interface_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 15 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return false;
    return true;
}

static int parse_network_bridge(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    char **bridge = &ctx->config->container_network.bridge;
    if (get_string(ctx, key, node, bridge) < 0)
        return -1;
    if (!interface_name_is_valid(*bridge))
        return config_error(ctx, node, key,
                            "expected an interface name (1-15 letters, digits, '_', '-', '.'), "
                            "got \"%s\"",
                            *bridge);
    return 0;
}

/* "a.b.c.d/len" in strict dotted decimal; *address in host byte order. */
static bool parse_ipv4_cidr(const char *text, uint32_t *address, int *prefix_len)
{
    /* sscanf alone would accept signs and spaces inside. */
    if (text[strspn(text, "0123456789./")] != '\0')
        return false;
    unsigned octets[4];
    int len = 0, consumed = 0;
    if (sscanf(text, "%3u.%3u.%3u.%3u/%2d%n", &octets[0], &octets[1], &octets[2], &octets[3], &len,
               &consumed) != 5 ||
        text[consumed] != '\0' || !isdigit((unsigned char)text[0]))
        return false;
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        if (octets[i] > 255)
            return false;
        value = value << 8 | octets[i];
    }
    *address = value;
    *prefix_len = len;
    return true;
}

static int parse_network_subnet(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    uint32_t address = 0;
    int prefix_len = 0;
    if (!parse_ipv4_cidr(text, &address, &prefix_len))
        return config_error(ctx, node, key,
                            "expected an IPv4 subnet such as 10.88.0.0/24, got "
                            "\"%s\"",
                            text);
    /* /16 bounds the lease directory; /30 still leaves a gateway and one shed. */
    if (prefix_len < 16 || prefix_len > 30)
        return config_error(ctx, node, key, "prefix length must be 16-30, got /%d", prefix_len);
    uint32_t host_mask = (1u << (32 - prefix_len)) - 1;
    if ((address & host_mask) != 0)
        return config_error(ctx, node, key, "\"%s\" has host bits set (not a network address)",
                            text);
    ctx->config->container_network.subnet = address;
    ctx->config->container_network.prefix_len = prefix_len;
    return 0;
}

/* A nested mapping whose keys are parsed by fields (each at most once); names lists them for
 * the unknown-key message. */
struct field_handler {
    const char *name;
    int (*parse)(struct parse_ctx *ctx, const char *key, const yaml_node_t *node);
};

static int parse_mapping_fields(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                                const struct field_handler *fields, size_t count, const char *names)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_error(ctx, node, key, "expected a mapping {%s}, got %s", names,
                            node_kind(node));
    bool seen[16] = {false};
    if (count > sizeof seen / sizeof seen[0])
        return shed_errf(ctx->err, SHED_E_CONFIG, "%s: too many keys to check", key);
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *name = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        if (name->type != YAML_SCALAR_NODE)
            return config_error(ctx, name, key, "expected a key name, got %s", node_kind(name));
        char full_key[64];
        snprintf(full_key, sizeof full_key, "%s.%.32s", key, scalar_text(name));
        size_t i = 0;
        while (i < count && strcmp(fields[i].name, scalar_text(name)) != 0)
            i++;
        if (i == count)
            return config_error(ctx, name, full_key, "unknown key (%s)", names);
        if (seen[i])
            return config_error(ctx, name, full_key, "duplicate key");
        seen[i] = true;
        if (fields[i].parse(ctx, full_key, value) < 0)
            return -1;
    }
    return 0;
}

static int parse_container_network(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    static const struct field_handler fields[] = {{"mode", parse_network_mode},
                                                  {"bridge", parse_network_bridge},
                                                  {"subnet", parse_network_subnet}};
    return parse_mapping_fields(ctx, key, node, fields, sizeof fields / sizeof fields[0],
                                "mode, bridge or subnet");
}

/* ---- container: {pids_limit, tmp_size, nofile, max_cpus, max_memory_mb, userns, ...} ---- */

static int parse_pids_limit(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    /* Below a few dozen a shell, tmux and a package manager cannot run at all. */
    return get_int(ctx, key, node, 32, 4194304, &ctx->config->container.pids_limit);
}

static int parse_tmp_size(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_size(ctx, key, node, 1ULL << 20, "1M", &ctx->config->container.tmp_size);
}

static int parse_nofile(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    /* The hard limit cannot exceed the kernel's fs.nr_open (1048576 by default). */
    return get_int(ctx, key, node, 64, 1048576, &ctx->config->container.nofile);
}

static int parse_max_cpus(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 1024, &ctx->config->container.max_cpus);
}

static int parse_max_memory_mb(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 64, 16 * 1024 * 1024, &ctx->config->container.max_memory_mb);
}

static int parse_userns(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    ctx->userns_node = node;
    return get_bool(ctx, key, node, &ctx->config->container.userns);
}

/* runc mounts a fresh /sys in the shed, which the kernel allows only in a user namespace that
 * owns the shed's network namespace; with egress the server makes that namespace itself,
 * outside the shed's user namespace. */
static int check_userns_network(struct parse_ctx *ctx)
{
    if (!ctx->config->container.userns ||
        ctx->config->container_network.mode != SHED_NETWORK_BRIDGE)
        return 0;
    return config_error(ctx, ctx->userns_node, "container.userns",
                        "cannot be combined with container_network mode bridge (the shed's "
                        "/sys cannot be mounted in a user namespace that does not own its "
                        "network namespace)");
}

/* An overlay root cannot be idmapped (overlayfs refuses MOUNT_ATTR_IDMAP), and with idmapped
 * layers the kernel makes its copy-ups as the mounter, whom the mapping does not contain. */
static int check_userns_overlay(struct parse_ctx *ctx)
{
    if (!ctx->config->container.userns || ctx->config->instance_disk != SHED_INSTANCE_DISK_OVERLAY)
        return 0;
    return config_error(ctx, ctx->instance_disk_node, "instance_disk",
                        "overlay cannot be combined with container.userns (an overlay root "
                        "cannot be idmapped); use auto, reflink or copy");
}

static int parse_userns_base(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    int base = 0;
    /* Host uid 0 must never be in the range; the top keeps base + 65536 below 2^31. */
    if (get_int(ctx, key, node, 1, INT32_MAX - SHED_CONFIG_USERNS_SIZE, &base) < 0)
        return -1;
    ctx->config->container.userns_base = (uint32_t)base;
    return 0;
}

static int parse_container(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    static const struct field_handler fields[] = {
        {"pids_limit", parse_pids_limit},
        {"tmp_size", parse_tmp_size},
        {"nofile", parse_nofile},
        {"max_cpus", parse_max_cpus},
        {"max_memory_mb", parse_max_memory_mb},
        {"userns", parse_userns},
        {"userns_base", parse_userns_base},
    };
    return parse_mapping_fields(
        ctx, key, node, fields, sizeof fields / sizeof fields[0],
        "pids_limit, tmp_size, nofile, max_cpus, max_memory_mb, userns or userns_base");
}

/* ---- local_dir_roots, console_log_max_bytes ---- */

/* An absolute path made of plain components ("a/./b", "a/../b", "a//b" are refused, so a
 * root can be compared by prefix), without the trailing slash; never "/" (every host path). */
static int check_local_dir_root(struct parse_ctx *ctx, const char *key, const yaml_node_t *node,
                                char *root)
{
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        root[--len] = '\0';
    if (strcmp(root, "/") == 0)
        return config_error(ctx, node, key, "\"/\" would allow every host directory");
    for (const char *part = root + 1; *part != '\0';) {
        size_t part_len = strcspn(part, "/");
        if (part_len == 0 || (part_len == 1 && part[0] == '.') ||
            (part_len == 2 && part[0] == '.' && part[1] == '.'))
            return config_error(ctx, node, key,
                                "\"%s\": use a plain absolute path (no \".\", \"..\" or "
                                "\"//\")",
                                root);
        part += part_len + (part[part_len] == '/');
    }
    return 0;
}

static int parse_local_dir_roots(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_error(ctx, node, key, "expected a list of absolute paths, got %s",
                            node_kind(node));
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    char **list = calloc(count + 1, sizeof *list);
    if (list == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    strv_free_items(ctx->config->local_dir_roots);
    ctx->config->local_dir_roots = list;
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
        if (get_path(ctx, key, item, &list[i]) < 0 ||
            check_local_dir_root(ctx, key, item, list[i]) < 0)
            return -1;
    }
    return 0;
}

static int parse_instance_disk(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    ctx->instance_disk_node = node;
    for (size_t i = 0; i < sizeof instance_disk_names / sizeof instance_disk_names[0]; i++) {
        if (strcmp(text, instance_disk_names[i]) == 0) {
            ctx->config->instance_disk = (enum shed_instance_disk)i;
            return 0;
        }
    }
    return config_error(ctx, node, key, "expected auto, reflink, overlay or copy, got \"%s\"",
                        text);
}

static int parse_console_log_max_bytes(struct parse_ctx *ctx, const char *key,
                                       const yaml_node_t *node)
{
    return get_size(ctx, key, node, 64ULL << 10, "64K", &ctx->config->console_log_max_bytes);
}

/* ---- ssh: {authorized_keys, keys, shell, auth, max_auth_tries, login_grace_seconds,
 * max_connections} ---- */

static int parse_ssh_authorized_keys(struct parse_ctx *ctx, const char *key,
                                     const yaml_node_t *node)
{
    return get_path(ctx, key, node, &ctx->config->ssh.authorized_keys);
}

/* An OpenSSH public key line: "<type> <base64>[ comment]" with a type we know the shape of;
 * the key itself is checked when the SSH server loads it. */
static bool public_key_line_is_plausible(const char *line)
{
    static const char *const prefixes[] = {"ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-nistp",
                                           "sk-ssh-ed25519@openssh.com ",
                                           "sk-ecdsa-sha2-nistp256@openssh.com "};
    for (const char *p = line; *p; p++)
        if (iscntrl((unsigned char)*p))
            return false;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(line, prefixes[i], strlen(prefixes[i])) == 0)
            return strchr(line, ' ') != NULL && strchr(line, ' ')[1] != '\0';
    return false;
}

static int parse_ssh_keys(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_error(ctx, node, key, "expected a list of public keys, got %s",
                            node_kind(node));
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    char **list = calloc(count + 1, sizeof *list);
    if (list == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    strv_free_items(ctx->config->ssh.keys);
    ctx->config->ssh.keys = list;
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
        if (get_string(ctx, key, item, &list[i]) < 0)
            return -1;
        if (!public_key_line_is_plausible(list[i]))
            return config_error(ctx, item, key,
                                "expected an OpenSSH public key such as \"ssh-ed25519 AAAA... "
                                "me@laptop\", got \"%.60s\"",
                                list[i]);
    }
    return 0;
}

static int parse_ssh_shell(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    if (strcmp(text, "login") == 0)
        ctx->config->ssh.shell = SHED_SSH_SHELL_LOGIN;
    else if (strcmp(text, "tmux") == 0)
        ctx->config->ssh.shell = SHED_SSH_SHELL_TMUX;
    else
        return config_error(ctx, node, key, "expected login or tmux, got \"%s\"", text);
    return 0;
}

static int parse_ssh_auth(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    cleanup_free char *text = NULL;
    if (get_string(ctx, key, node, &text) < 0)
        return -1;
    if (strcmp(text, "keys") == 0)
        ctx->config->ssh.auth = SHED_SSH_AUTH_KEYS;
    else if (strcmp(text, "none") == 0)
        ctx->config->ssh.auth = SHED_SSH_AUTH_NONE;
    else
        return config_error(ctx, node, key, "expected keys or none, got \"%s\"", text);
    return 0;
}

static int parse_ssh_max_auth_tries(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 100, &ctx->config->ssh.max_auth_tries);
}

static int parse_ssh_login_grace(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 3600, &ctx->config->ssh.login_grace_seconds);
}

static int parse_ssh_max_connections(struct parse_ctx *ctx, const char *key,
                                     const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 10000, &ctx->config->ssh.max_connections);
}

static int parse_ssh(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    static const struct field_handler fields[] = {
        {"authorized_keys", parse_ssh_authorized_keys},
        {"keys", parse_ssh_keys},
        {"shell", parse_ssh_shell},
        {"auth", parse_ssh_auth},
        {"max_auth_tries", parse_ssh_max_auth_tries},
        {"login_grace_seconds", parse_ssh_login_grace},
        {"max_connections", parse_ssh_max_connections},
    };
    return parse_mapping_fields(ctx, key, node, fields, sizeof fields / sizeof fields[0],
                                "authorized_keys, keys, shell, auth, max_auth_tries, "
                                "login_grace_seconds or max_connections");
}

static int parse_sessions_timeout(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_int(ctx, key, node, 1, 300, &ctx->config->sessions_timeout_seconds);
}

struct key_handler {
    const char *key;
    int (*parse)(struct parse_ctx *ctx, const char *key, const yaml_node_t *node);
};

static const struct key_handler key_handlers[] = {
    {"name", parse_name},
    {"http_port", parse_http_port},
    {"ssh_port", parse_ssh_port},
    {"bind", parse_bind},
    {"default_backend", parse_default_backend},
    {"data_dir", parse_data_dir},
    {"images_dir", parse_images_dir},
    {"instance_dir", parse_instance_dir},
    {"base_image", parse_base_image},
    {"images", parse_images},
    {"rootfs_size", parse_rootfs_size},
    {"platform", parse_platform},
    {"default_cpus", parse_default_cpus},
    {"default_memory_mb", parse_default_memory_mb},
    {"insecure_registries", parse_insecure_registries},
    {"registry_ca", parse_registry_ca},
    {"api_token", parse_api_token},
    {"allow_unauthenticated", parse_allow_unauthenticated},
    {"unix_socket", parse_unix_socket},
    {"unix_socket_mode", parse_unix_socket_mode},
    {"unix_socket_group", parse_unix_socket_group},
    {"container_network", parse_container_network},
    {"http_max_connections", parse_http_max_connections},
    {"http_max_connections_per_client", parse_http_max_per_client},
    {"http_request_timeout_seconds", parse_http_request_timeout},
    {"http_idle_timeout_seconds", parse_http_idle_timeout},
    {"tunnel_idle_timeout_seconds", parse_tunnel_idle_timeout},
    {"tunnel_max_per_client", parse_tunnel_max_per_client},
    {"repo_schemes", parse_repo_schemes},
    {"repo_allow_hosts", parse_repo_allow_hosts},
    {"repo_user", parse_repo_user},
    {"repo_ssh_key", parse_repo_ssh_key},
    {"repo_ssh_known_hosts", parse_repo_ssh_known_hosts},
    {"repo_timeout_seconds", parse_repo_timeout},
    {"repo_low_speed_limit", parse_repo_low_speed_limit},
    {"repo_low_speed_time", parse_repo_low_speed_time},
    {"pull_timeout_seconds", parse_pull_timeout},
    {"pull_low_speed_limit", parse_pull_low_speed_limit},
    {"pull_low_speed_time", parse_pull_low_speed_time},
    {"pull_min_progress", parse_pull_min_progress},
    {"max_layer_bytes", parse_max_layer_bytes},
    {"max_image_bytes", parse_max_image_bytes},
    {"ssh", parse_ssh},
    {"sessions_timeout_seconds", parse_sessions_timeout},
    {"container", parse_container},
    {"local_dir_roots", parse_local_dir_roots},
    {"console_log_max_bytes", parse_console_log_max_bytes},
    {"instance_disk", parse_instance_disk},
};
#define KEY_HANDLER_COUNT (sizeof key_handlers / sizeof key_handlers[0])

static int parse_top_level(struct parse_ctx *ctx, const yaml_node_t *root)
{
    if (root->type != YAML_MAPPING_NODE)
        return config_error(ctx, root, NULL,
                            "expected a mapping of settings at the top level, got %s",
                            node_kind(root));
    bool seen[KEY_HANDLER_COUNT] = {false};
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        if (key->type != YAML_SCALAR_NODE)
            return config_error(ctx, key, NULL, "expected a key name, got %s", node_kind(key));
        const char *name = scalar_text(key);
        size_t i = 0;
        while (i < KEY_HANDLER_COUNT && strcmp(key_handlers[i].key, name) != 0)
            i++;
        if (i == KEY_HANDLER_COUNT)
            return config_error(ctx, key, name, "unknown key");
        if (seen[i])
            return config_error(ctx, key, name, "duplicate key");
        seen[i] = true;
        if (key_handlers[i].parse(ctx, name, value) < 0)
            return -1;
    }
    return 0;
}

static int set_string_default(char **field, char *value, struct shed_err *err)
{
    if (*field != NULL) {
        free(value);
        return 0;
    }
    if (value == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    *field = value;
    return 0;
}

static char *host_name(void)
{
    char buf[256];
    if (gethostname(buf, sizeof buf) < 0)
        return strdup("shed");
    buf[sizeof buf - 1] = '\0';
    return strdup(buf);
}

static void default_int(int *field, int value)
{
    if (*field == 0)
        *field = value;
}

static void fill_http_defaults(struct shed_config_http *http)
{
    default_int(&http->max_connections, SHED_CONFIG_DEFAULT_HTTP_MAX_CONNECTIONS);
    default_int(&http->max_connections_per_client, SHED_CONFIG_DEFAULT_HTTP_MAX_PER_CLIENT);
    default_int(&http->request_timeout_seconds, SHED_CONFIG_DEFAULT_HTTP_REQUEST_TIMEOUT);
    default_int(&http->idle_timeout_seconds, SHED_CONFIG_DEFAULT_HTTP_IDLE_TIMEOUT);
    default_int(&http->tunnel_idle_timeout_seconds, SHED_CONFIG_DEFAULT_TUNNEL_IDLE_TIMEOUT);
    default_int(&http->tunnels_per_client, SHED_CONFIG_DEFAULT_TUNNEL_MAX_PER_CLIENT);
}

static void fill_pull_defaults(struct shed_config_pull *pull)
{
    default_int(&pull->timeout_seconds, SHED_CONFIG_DEFAULT_PULL_TIMEOUT);
    default_int(&pull->low_speed_limit, SHED_CONFIG_DEFAULT_PULL_LOW_SPEED_LIMIT);
    default_int(&pull->low_speed_time, SHED_CONFIG_DEFAULT_PULL_LOW_SPEED_TIME);
    if (pull->min_progress_bytes == 0)
        pull->min_progress_bytes = SHED_CONFIG_DEFAULT_PULL_MIN_PROGRESS;
    if (pull->max_layer_bytes == 0)
        pull->max_layer_bytes = SHED_CONFIG_DEFAULT_MAX_LAYER_BYTES;
    if (pull->max_image_bytes == 0)
        pull->max_image_bytes = SHED_CONFIG_DEFAULT_MAX_IMAGE_BYTES;
}

static int fill_repo_defaults(struct shed_config_repo *repo, struct shed_err *err)
{
    default_int(&repo->timeout_seconds, SHED_CONFIG_DEFAULT_REPO_TIMEOUT);
    default_int(&repo->low_speed_limit, SHED_CONFIG_DEFAULT_REPO_LOW_SPEED_LIMIT);
    default_int(&repo->low_speed_time, SHED_CONFIG_DEFAULT_REPO_LOW_SPEED_TIME);
    if (set_string_default(&repo->user, strdup(SHED_CONFIG_DEFAULT_REPO_USER), err) < 0)
        return -1;
    if (repo->schemes == NULL) {
        cleanup_strv struct strv schemes = STRV_INIT;
        if (strv_add(&schemes, "https", err) < 0 || strv_add(&schemes, "ssh", err) < 0)
            return -1;
        repo->schemes = strv_steal(&schemes);
    }
    if (repo->allow_hosts == NULL && (repo->allow_hosts = calloc(1, sizeof(char *))) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

/* The host's online CPUs and RAM, within the ranges the keys accept. */
static int host_cpu_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus;
}

static int host_memory_mb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0)
        return 16 * 1024 * 1024;
    uint64_t mb = (uint64_t)pages * (uint64_t)page_size >> 20;
    return mb < 64 ? 64 : mb > 16 * 1024 * 1024 ? 16 * 1024 * 1024 : (int)mb;
}

static void fill_container_defaults(struct shed_config_container *container)
{
    if (container->pids_limit == 0)
        container->pids_limit = SHED_CONFIG_DEFAULT_PIDS_LIMIT;
    if (container->tmp_size == 0)
        container->tmp_size = SHED_CONFIG_DEFAULT_TMP_SIZE;
    if (container->nofile == 0)
        container->nofile = SHED_CONFIG_DEFAULT_NOFILE;
    if (container->max_cpus == 0)
        container->max_cpus = host_cpu_count();
    if (container->max_memory_mb == 0)
        container->max_memory_mb = host_memory_mb();
    if (container->userns_base == 0)
        container->userns_base = SHED_CONFIG_DEFAULT_USERNS_BASE;
}

/* The directory a default file of the server goes to: the config file's own, else /etc/shed
 * for root and ~/.config/shed for a user (where the lookup would find a server.yaml). */
static char *config_dir(const char *config_path)
{
    if (config_path != NULL) {
        const char *slash = strrchr(config_path, '/');
        if (slash == NULL)
            return strdup(".");
        return strndup(config_path, slash == config_path ? 1 : (size_t)(slash - config_path));
    }
    if (geteuid() == 0)
        return strdup("/etc/shed");
    const char *home = getenv("HOME");
    return str_printf("%s/.config/shed", home != NULL && home[0] == '/' ? home : ".");
}

static int fill_ssh_defaults(struct shed_config *config, struct shed_err *err)
{
    struct shed_config_ssh *ssh = &config->ssh;
    if (ssh->max_auth_tries == 0)
        ssh->max_auth_tries = SHED_CONFIG_DEFAULT_MAX_AUTH_TRIES;
    if (ssh->login_grace_seconds == 0)
        ssh->login_grace_seconds = SHED_CONFIG_DEFAULT_LOGIN_GRACE_SECONDS;
    if (ssh->max_connections == 0)
        ssh->max_connections = SHED_CONFIG_DEFAULT_MAX_CONNECTIONS;
    if (ssh->keys == NULL && (ssh->keys = calloc(1, sizeof(char *))) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (ssh->authorized_keys != NULL && !ssh->authorized_keys_default)
        return 0;
    cleanup_free char *dir = config_dir(config->path);
    cleanup_free char *absolute = dir != NULL ? realpath(dir, NULL) : NULL;
    free(ssh->authorized_keys);
    ssh->authorized_keys =
        dir != NULL ? fs_path_join(absolute ? absolute : dir, "authorized_keys") : NULL;
    ssh->authorized_keys_default = true;
    return ssh->authorized_keys == NULL ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory") : 0;
}

/* Fills every key the file left unset; derived directories follow data_dir. base_image_seen:
 * the file named base_image (a null there disables the built-in default). */
static int fill_defaults(struct shed_config *config, bool base_image_seen, struct shed_err *err)
{
    if (!base_image_seen && config->base_image == NULL) {
        config->base_image = strdup(SHED_CONFIG_DEFAULT_BASE_IMAGE);
        if (config->base_image == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        config->base_image_is_default = true;
    }
    if (config->http_port == 0)
        config->http_port = SHED_CONFIG_DEFAULT_HTTP_PORT;
    if (config->ssh_port == 0)
        config->ssh_port = SHED_CONFIG_DEFAULT_SSH_PORT;
    if (config->rootfs_size == 0)
        config->rootfs_size = SHED_CONFIG_DEFAULT_ROOTFS_SIZE;
    if (config->default_cpus == 0)
        config->default_cpus = SHED_CONFIG_DEFAULT_CPUS;
    if (config->default_memory_mb == 0)
        config->default_memory_mb = SHED_CONFIG_DEFAULT_MEMORY_MB;
    if (set_string_default(&config->name, host_name(), err) < 0 ||
        set_string_default(&config->bind, strdup(SHED_CONFIG_DEFAULT_BIND), err) < 0 ||
        set_string_default(&config->default_backend, strdup(SHED_CONFIG_DEFAULT_BACKEND), err) <
            0 ||
        set_string_default(&config->data_dir, shed_config_default_data_dir(), err) < 0 ||
        set_string_default(&config->images_dir, fs_path_join(config->data_dir, "images"), err) <
            0 ||
        set_string_default(&config->instance_dir, fs_path_join(config->data_dir, "instances"),
                           err) < 0 ||
        set_string_default(&config->platform, shed_config_host_platform(), err) < 0)
        return -1;
    if (config->container_network.prefix_len == 0) {
        config->container_network.subnet = SHED_CONFIG_DEFAULT_SUBNET;
        config->container_network.prefix_len = SHED_CONFIG_DEFAULT_PREFIX_LEN;
    }
    if (set_string_default(&config->container_network.bridge, strdup(SHED_CONFIG_DEFAULT_BRIDGE),
                           err) < 0)
        return -1;
    if (config->insecure_registries == NULL) {
        config->insecure_registries = calloc(1, sizeof(char *));
        if (config->insecure_registries == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (config->local_dir_roots == NULL) {
        config->local_dir_roots = calloc(1, sizeof(char *));
        if (config->local_dir_roots == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (config->console_log_max_bytes == 0)
        config->console_log_max_bytes = SHED_CONFIG_DEFAULT_CONSOLE_LOG_MAX_BYTES;
    fill_container_defaults(&config->container);
    if (config->unix_socket_mode == 0)
        config->unix_socket_mode = SHED_CONFIG_DEFAULT_UNIX_SOCKET_MODE;
    fill_http_defaults(&config->http);
    fill_pull_defaults(&config->pull);
    if (fill_ssh_defaults(config, err) < 0)
        return -1;
    if (config->sessions_timeout_seconds == 0)
        config->sessions_timeout_seconds = SHED_CONFIG_DEFAULT_SESSIONS_TIMEOUT_SECONDS;
    return fill_repo_defaults(&config->repo, err);
}

int shed_config_defaults(struct shed_config *config, struct shed_err *err)
{
    memset(config, 0, sizeof *config);
    if (fill_defaults(config, false, err) < 0) {
        shed_config_free(config);
        return -1;
    }
    return 0;
}

static int parse_document(struct parse_ctx *ctx, yaml_parser_t *parser)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        unsigned long line = (unsigned long)parser->problem_mark.line + 1;
        return shed_errf(ctx->err, SHED_E_CONFIG, "%s:%lu: invalid YAML: %s", ctx->origin, line,
                         parser->problem != NULL ? parser->problem : "syntax error");
    }
    ctx->doc = &doc;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    int ret = 0;
    if (root != NULL && !node_is_null(root))
        ret = parse_top_level(ctx, root);
    if (ret == 0)
        ret = check_userns_network(ctx);
    if (ret == 0)
        ret = check_userns_overlay(ctx);
    if (ret == 0 && root != NULL) {
        /* A second document would be silently ignored: refuse it instead. */
        yaml_document_t next;
        if (!yaml_parser_load(parser, &next))
            ret = shed_errf(ctx->err, SHED_E_CONFIG, "%s:%lu: invalid YAML: %s", ctx->origin,
                            (unsigned long)parser->problem_mark.line + 1,
                            parser->problem != NULL ? parser->problem : "syntax error");
        else {
            const yaml_node_t *extra = yaml_document_get_root_node(&next);
            if (extra != NULL)
                ret = config_error(ctx, extra, NULL, "only one YAML document is allowed");
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
    ctx->doc = NULL;
    return ret;
}

/* Limits that depend on each other (named without a line: two keys are involved). */
static int check_limits(const struct shed_config *config, const char *origin, struct shed_err *err)
{
    const struct shed_config_http *http = &config->http;
    if (http->max_connections_per_client > http->max_connections)
        return shed_errf(err, SHED_E_CONFIG,
                         "%s: http_max_connections_per_client (%d) is above "
                         "http_max_connections (%d)",
                         origin, http->max_connections_per_client, http->max_connections);
    if (http->tunnels_per_client > http->max_connections_per_client)
        return shed_errf(err, SHED_E_CONFIG,
                         "%s: tunnel_max_per_client (%d) is above "
                         "http_max_connections_per_client (%d): a tunnel is a connection",
                         origin, http->tunnels_per_client, http->max_connections_per_client);
    return 0;
}

int shed_config_parse(const char *text, size_t len, const char *origin, struct shed_config *config,
                      struct shed_err *err)
{
    memset(config, 0, sizeof *config);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    struct parse_ctx ctx = {.origin = origin, .config = config, .err = err};
    int ret = parse_document(&ctx, &parser);
    yaml_parser_delete(&parser);
    if (ret == 0)
        ret = fill_defaults(config, ctx.base_image_seen, err);
    if (ret == 0)
        ret = check_limits(config, origin, err);
    if (ret < 0)
        shed_config_free(config);
    return ret;
}

int shed_config_load_file(const char *path, struct shed_config *config, struct shed_err *err)
{
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, &text, &len, CONFIG_MAX_FILE_SIZE, err) < 0) {
        err->code = SHED_E_CONFIG;
        return shed_err_prefix(err, "config");
    }
    if (shed_config_parse(text, len, path, config, err) < 0)
        return -1;
    config->path = strdup(path);
    /* The default authorized_keys sits beside the file, now that it is known. */
    if (config->path == NULL || fill_ssh_defaults(config, err) < 0) {
        shed_config_free(config);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

char *shed_config_lookup_path(const char *explicit_path)
{
    if (explicit_path != NULL)
        return strdup(explicit_path);
    const char *home = getenv("HOME");
    cleanup_free char *user_config =
        home != NULL && home[0] == '/' ? fs_path_join(home, ".config/shed/server.yaml") : NULL;
    const char *candidates[] = {"server.yaml", user_config, "/etc/shed/server.yaml"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (candidates[i] != NULL && fs_exists(candidates[i]))
            return strdup(candidates[i]);
    return NULL;
}

int shed_config_load(const char *explicit_path, struct shed_config *config, struct shed_err *err)
{
    cleanup_free char *path = shed_config_lookup_path(explicit_path);
    if (path != NULL)
        return shed_config_load_file(path, config, err);
    return shed_config_defaults(config, err);
}

/* ---- printing ------------------------------------------------------------------------ */

/* The code point of the UTF-8 sequence at p and its length; 0 for a byte that starts no
 * valid sequence (a value may come from the command line, not only from YAML). */
static size_t utf8_decode(const unsigned char *p, uint32_t *code)
{
    size_t len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 0;
    if (len == 0 || *p > 0xf4)
        return 0;
    uint32_t value = *p & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        value = value << 6 | (p[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (value < min[len] || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff))
        return 0;
    *code = value;
    return len;
}

/* What YAML would not read back as written inside double quotes: characters its reader
 * refuses (C0 and C1 controls, DEL, U+FFFE/FFFF) and the ones its scanner takes for line
 * breaks and folds (NEL, U+2028, U+2029), plus the BOM. */
static bool needs_escape(uint32_t code)
{
    return code < 0x20 || (code >= 0x7f && code <= 0x9f) || code == 0x2028 || code == 0x2029 ||
           code == 0xfeff || code == 0xfffe || code == 0xffff;
}

/* Scalars are printed double-quoted with YAML escapes, which YAML reads back as the same
 * string (a byte that is not UTF-8 is printed as \xNN, the nearest YAML can say). */
static void print_quoted(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t code = *p;
        size_t len = *p < 0x80 ? 1 : utf8_decode(p, &code);
        if (len == 0) {
            fprintf(out, "\\x%02x", *p++);
            continue;
        }
        if (code == '"' || code == '\\')
            fprintf(out, "\\%c", (char)code);
        else if (needs_escape(code))
            fprintf(out, code <= 0xff ? "\\x%02x" : "\\u%04x", (unsigned)code);
        else
            fwrite(p, 1, len, out);
        p += len;
    }
    fputc('"', out);
}

static void print_string_key(FILE *out, const char *key, const char *value)
{
    fprintf(out, "%s: ", key);
    if (value == NULL)
        fputs("null", out);
    else
        print_quoted(out, value);
    fputc('\n', out);
}

static void print_container_network(FILE *out, const struct shed_config_network *network)
{
    uint32_t subnet = network->subnet;
    fputs("container_network:\n", out);
    fprintf(out, "  mode: \"%s\"\n", network->mode == SHED_NETWORK_BRIDGE ? "bridge" : "none");
    fputs("  bridge: ", out);
    print_quoted(out, network->bridge);
    fprintf(out, "\n  subnet: \"%u.%u.%u.%u/%d\"\n", subnet >> 24, (subnet >> 16) & 255,
            (subnet >> 8) & 255, subnet & 255, network->prefix_len);
}

static void print_container(FILE *out, const struct shed_config_container *container)
{
    fprintf(out,
            "container:\n  pids_limit: %d\n  tmp_size: %llu\n  nofile: %d\n  max_cpus: %d\n"
            "  max_memory_mb: %d\n  userns: %s\n  userns_base: %u\n",
            container->pids_limit, (unsigned long long)container->tmp_size, container->nofile,
            container->max_cpus, container->max_memory_mb, container->userns ? "true" : "false",
            (unsigned)container->userns_base);
}

static void print_string_list(FILE *out, const char *key, char *const *items)
{
    fprintf(out, items[0] == NULL ? "%s: []\n" : "%s:\n", key);
    for (char *const *p = items; *p != NULL; p++) {
        fputs("  - ", out);
        print_quoted(out, *p);
        fputc('\n', out);
    }
}

static void print_http(FILE *out, const struct shed_config_http *http)
{
    fprintf(out,
            "http_max_connections: %d\nhttp_max_connections_per_client: %d\n"
            "http_request_timeout_seconds: %d\nhttp_idle_timeout_seconds: %d\n"
            "tunnel_idle_timeout_seconds: %d\ntunnel_max_per_client: %d\n",
            http->max_connections, http->max_connections_per_client, http->request_timeout_seconds,
            http->idle_timeout_seconds, http->tunnel_idle_timeout_seconds,
            http->tunnels_per_client);
}

static void print_repo(FILE *out, const struct shed_config_repo *repo)
{
    print_string_list(out, "repo_schemes", repo->schemes);
    print_string_list(out, "repo_allow_hosts", repo->allow_hosts);
    print_string_key(out, "repo_user", repo->user);
    print_string_key(out, "repo_ssh_key", repo->ssh_key);
    print_string_key(out, "repo_ssh_known_hosts", repo->ssh_known_hosts);
    fprintf(out, "repo_timeout_seconds: %d\nrepo_low_speed_limit: %d\nrepo_low_speed_time: %d\n",
            repo->timeout_seconds, repo->low_speed_limit, repo->low_speed_time);
}

static void print_pull(FILE *out, const struct shed_config_pull *pull)
{
    fprintf(out,
            "pull_timeout_seconds: %d\npull_low_speed_limit: %d\npull_low_speed_time: %d\n"
            "pull_min_progress: %llu\nmax_layer_bytes: %llu\nmax_image_bytes: %llu\n",
            pull->timeout_seconds, pull->low_speed_limit, pull->low_speed_time,
            (unsigned long long)pull->min_progress_bytes, (unsigned long long)pull->max_layer_bytes,
            (unsigned long long)pull->max_image_bytes);
}

static void print_ssh(FILE *out, const struct shed_config_ssh *ssh)
{
    fputs("ssh:\n  authorized_keys: ", out);
    print_quoted(out, ssh->authorized_keys);
    fputs(ssh->keys[0] == NULL ? "\n  keys: []\n" : "\n  keys:\n", out);
    for (char **key = ssh->keys; *key != NULL; key++) {
        fputs("    - ", out);
        print_quoted(out, *key);
        fputc('\n', out);
    }
    fprintf(out, "  shell: \"%s\"\n  auth: \"%s\"\n",
            ssh->shell == SHED_SSH_SHELL_TMUX ? "tmux" : "login",
            ssh->auth == SHED_SSH_AUTH_NONE ? "none" : "keys");
    fprintf(out, "  max_auth_tries: %d\n  login_grace_seconds: %d\n  max_connections: %d\n",
            ssh->max_auth_tries, ssh->login_grace_seconds, ssh->max_connections);
}

int shed_config_use_data_dir(struct shed_config *config, const char *dir, struct shed_err *err)
{
    char *data_dir = strdup(dir);
    char *images_dir = fs_path_join(dir, "images");
    char *instance_dir = fs_path_join(dir, "instances");
    if (data_dir == NULL || images_dir == NULL || instance_dir == NULL) {
        free(data_dir);
        free(images_dir);
        free(instance_dir);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    free(config->data_dir);
    free(config->images_dir);
    free(config->instance_dir);
    config->data_dir = data_dir;
    config->images_dir = images_dir;
    config->instance_dir = instance_dir;
    return 0;
}

int shed_config_print(const struct shed_config *config, FILE *out)
{
    if (config->path != NULL)
        fprintf(out, "# from %s\n", config->path);
    else
        fputs("# built-in defaults (no server.yaml found)\n", out);
    print_string_key(out, "name", config->name);
    fprintf(out, "http_port: %d\nssh_port: %d\n", config->http_port, config->ssh_port);
    print_string_key(out, "bind", config->bind);
    print_string_key(out, "default_backend", config->default_backend);
    print_string_key(out, "data_dir", config->data_dir);
    print_string_key(out, "images_dir", config->images_dir);
    print_string_key(out, "instance_dir", config->instance_dir);
    print_string_key(out, "base_image", config->base_image);
    if (config->base_image_is_default)
        fputs("# base_image is the built-in default; `base_image: null` disables it\n", out);
    fputs(config->image_count == 0 ? "images: {}\n" : "images:\n", out);
    for (size_t i = 0; i < config->image_count; i++) {
        fputs("  ", out);
        print_quoted(out, config->images[i].name);
        fputs(": ", out);
        print_quoted(out, config->images[i].ref);
        fputc('\n', out);
    }
    fprintf(out, "rootfs_size: %llu\n", (unsigned long long)config->rootfs_size);
    print_string_key(out, "platform", config->platform);
    fprintf(out, "default_cpus: %d\ndefault_memory_mb: %d\n", config->default_cpus,
            config->default_memory_mb);
    print_string_list(out, "insecure_registries", config->insecure_registries);
    fputs(config->registry_ca_count == 0 ? "registry_ca: {}\n" : "registry_ca:\n", out);
    for (size_t i = 0; i < config->registry_ca_count; i++) {
        fputs("  ", out);
        print_quoted(out, config->registry_ca[i].registry);
        fputs(": ", out);
        print_quoted(out, config->registry_ca[i].ca_file);
        fputc('\n', out);
    }
    /* Never echo the secret itself. */
    fprintf(out, "api_token: %s\n", config->api_token != NULL ? "\"<set>\"" : "null");
    fprintf(out, "allow_unauthenticated: %s\n", config->allow_unauthenticated ? "true" : "false");
    print_string_key(out, "unix_socket", config->unix_socket);
    fprintf(out, "unix_socket_mode: \"%04o\"\n", config->unix_socket_mode);
    print_string_key(out, "unix_socket_group", config->unix_socket_group);
    print_container_network(out, &config->container_network);
    print_container(out, &config->container);
    print_string_list(out, "local_dir_roots", config->local_dir_roots);
    fprintf(out, "console_log_max_bytes: %llu\n",
            (unsigned long long)config->console_log_max_bytes);
    print_http(out, &config->http);
    print_repo(out, &config->repo);
    print_pull(out, &config->pull);
    print_ssh(out, &config->ssh);
    fprintf(out, "sessions_timeout_seconds: %d\n", config->sessions_timeout_seconds);
    fprintf(out, "instance_disk: %s\n", shed_instance_disk_name(config->instance_disk));
    return ferror(out) ? -1 : 0;
}

/* ---- reload -------------------------------------------------------------------------- */

static bool strings_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* next's *field becomes a copy of running's when they differ; the key is noted. */
static int keep_string(char **field, const char *running, const char *key, struct strv *changed,
                       struct shed_err *err)
{
    if (!strings_differ(*field, running))
        return 0;
    char *copy = NULL;
    if (running != NULL && (copy = strdup(running)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    free(*field);
    *field = copy;
    return strv_add(changed, key, err);
}

static int keep_int(int *field, int running, const char *key, struct strv *changed,
                    struct shed_err *err)
{
    if (*field == running)
        return 0;
    *field = running;
    return strv_add(changed, key, err);
}

static int keep_network(struct shed_config_network *next, const struct shed_config_network *running,
                        struct strv *changed, struct shed_err *err)
{
    bool differ = next->mode != running->mode || next->subnet != running->subnet ||
                  next->prefix_len != running->prefix_len ||
                  strings_differ(next->bridge, running->bridge);
    if (!differ)
        return 0;
    char *bridge = strdup(running->bridge);
    if (bridge == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    free(next->bridge);
    *next = *running;
    next->bridge = bridge;
    return strv_add(changed, "container_network", err);
}

static bool string_lists_differ(char *const *a, char *const *b)
{
    for (; a != NULL && b != NULL && *a != NULL && *b != NULL; a++, b++)
        if (strcmp(*a, *b) != 0)
            return true;
    return (a != NULL && *a != NULL) != (b != NULL && *b != NULL);
}

static int keep_string_list(char ***field, char *const *running, const char *key,
                            struct strv *changed, struct shed_err *err)
{
    if (!string_lists_differ(*field, running))
        return 0;
    struct strv copy = STRV_INIT;
    for (char *const *item = running; item != NULL && *item != NULL; item++)
        if (strv_add(&copy, *item, err) < 0) {
            strv_free(&copy);
            return -1;
        }
    char **items = strv_steal(&copy);
    if (items == NULL && (items = calloc(1, sizeof *items)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    strv_free_items(*field);
    *field = items;
    return strv_add(changed, key, err);
}

/* What the container backend was built with (limits, console size, local_dir policy). */
static int keep_container(struct shed_config *next, const struct shed_config *running,
                          struct strv *changed, struct shed_err *err)
{
    const struct shed_config_container *a = &next->container, *b = &running->container;
    if (a->pids_limit != b->pids_limit || a->tmp_size != b->tmp_size || a->nofile != b->nofile ||
        a->max_cpus != b->max_cpus || a->max_memory_mb != b->max_memory_mb ||
        a->userns != b->userns || a->userns_base != b->userns_base) {
        next->container = running->container;
        if (strv_add(changed, "container", err) < 0)
            return -1;
    }
    if (next->console_log_max_bytes != running->console_log_max_bytes) {
        next->console_log_max_bytes = running->console_log_max_bytes;
        if (strv_add(changed, "console_log_max_bytes", err) < 0)
            return -1;
    }
    return keep_string_list(&next->local_dir_roots, running->local_dir_roots, "local_dir_roots",
                            changed, err);
}

/* The HTTP server's connection table, tunnel registry and extra unix listener. */
static int keep_listeners(struct shed_config *next, const struct shed_config *running,
                          struct strv *changed, struct shed_err *err)
{
    if (memcmp(&next->http, &running->http, sizeof next->http) != 0) {
        next->http = running->http;
        if (strv_add(changed, "http limits", err) < 0)
            return -1;
    }
    if (next->unix_socket_mode != running->unix_socket_mode) {
        next->unix_socket_mode = running->unix_socket_mode;
        if (strv_add(changed, "unix_socket_mode", err) < 0)
            return -1;
    }
    if (keep_string(&next->unix_socket, running->unix_socket, "unix_socket", changed, err) < 0 ||
        keep_int(&next->ssh.max_connections, running->ssh.max_connections, "ssh.max_connections",
                 changed, err) < 0)
        return -1;
    return keep_string(&next->unix_socket_group, running->unix_socket_group, "unix_socket_group",
                       changed, err);
}

/* The listening socket, the directories every open handle points into and the backends'
 * state (network, limits, local_dir policy) are set up once at start. */
int shed_config_keep_restart_keys(struct shed_config *next, const struct shed_config *running,
                                  struct strv *changed, struct shed_err *err)
{
    if (keep_string(&next->bind, running->bind, "bind", changed, err) < 0 ||
        keep_int(&next->http_port, running->http_port, "http_port", changed, err) < 0 ||
        keep_int(&next->ssh_port, running->ssh_port, "ssh_port", changed, err) < 0 ||
        keep_string(&next->data_dir, running->data_dir, "data_dir", changed, err) < 0 ||
        keep_string(&next->images_dir, running->images_dir, "images_dir", changed, err) < 0 ||
        keep_string(&next->instance_dir, running->instance_dir, "instance_dir", changed, err) < 0)
        return -1;
    if (keep_network(&next->container_network, &running->container_network, changed, err) < 0 ||
        keep_listeners(next, running, changed, err) < 0)
        return -1;
    return keep_container(next, running, changed, err);
}
