#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
    free(config->api_token);
    free(config->container_network.bridge);
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
    const yaml_node_t *userns_node;        /* container.userns, for the checks across keys */
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

static int parse_insecure_registries(struct parse_ctx *ctx, const char *key,
                                     const yaml_node_t *node)
{
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_error(ctx, node, key, "expected a list of host[:port], got %s",
                            node_kind(node));
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    char **list = calloc(count + 1, sizeof *list);
    if (list == NULL)
        return shed_errf(ctx->err, SHED_E_NO_MEMORY, "out of memory");
    strv_free_items(ctx->config->insecure_registries);
    ctx->config->insecure_registries = list;
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
        if (get_string(ctx, key, item, &list[i]) < 0)
            return -1;
        if (strchr(list[i], '/') != NULL || strchr(list[i], ' ') != NULL)
            return config_error(ctx, item, key, "expected host[:port], got \"%s\"", list[i]);
    }
    return 0;
}

static int parse_api_token(struct parse_ctx *ctx, const char *key, const yaml_node_t *node)
{
    return get_optional_string(ctx, key, node, &ctx->config->api_token);
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
    {"api_token", parse_api_token},
    {"container_network", parse_container_network},
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

/* Fills every key the file left unset; derived directories follow data_dir. */
static int fill_defaults(struct shed_config *config, struct shed_err *err)
{
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
    return 0;
}

int shed_config_defaults(struct shed_config *config, struct shed_err *err)
{
    memset(config, 0, sizeof *config);
    if (fill_defaults(config, err) < 0) {
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
        ret = fill_defaults(config, err);
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
    if (config->path == NULL) {
        shed_config_free(config);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

int shed_config_load(const char *explicit_path, struct shed_config *config, struct shed_err *err)
{
    if (explicit_path != NULL)
        return shed_config_load_file(explicit_path, config, err);
    const char *home = getenv("HOME");
    cleanup_free char *user_config =
        home != NULL && home[0] == '/' ? fs_path_join(home, ".config/shed/server.yaml") : NULL;
    const char *candidates[] = {"server.yaml", user_config, "/etc/shed/server.yaml"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (candidates[i] != NULL && fs_exists(candidates[i]))
            return shed_config_load_file(candidates[i], config, err);
    return shed_config_defaults(config, err);
}

/* ---- printing ------------------------------------------------------------------------ */

/* Scalars are printed double-quoted with JSON-style escapes, which YAML reads back as is. */
static void print_quoted(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
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
    /* Never echo the secret itself. */
    fprintf(out, "api_token: %s\n", config->api_token != NULL ? "\"<set>\"" : "null");
    print_container_network(out, &config->container_network);
    print_container(out, &config->container);
    print_string_list(out, "local_dir_roots", config->local_dir_roots);
    fprintf(out, "console_log_max_bytes: %llu\n",
            (unsigned long long)config->console_log_max_bytes);
    fprintf(out, "instance_disk: %s\n", shed_instance_disk_name(config->instance_disk));
    return ferror(out) ? -1 : 0;
}
