/* image_cache_ensure: the freshness check, pull, conversion and content-addressed sharing
 * of one variant, under its lock. */
#include "cache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_internal.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "imaged.h"
#include "kernel.h"
#include "oci/oci.h"

/* A ref resolved earlier in this session: a second variant with the same ref (e.g. _base)
 * costs no request. */
struct resolved_ref {
    char *ref;
    char digest[DIGEST_STRING_LEN + 1];
};

struct image_cache {
    const struct shed_config *config;
    struct oci_store *store; /* opened on the first pull */
    struct resolved_ref *resolved;
    size_t resolved_count;
};

int image_cache_open(const struct shed_config *config, struct image_cache **cache_out,
                     struct shed_err *err)
{
    struct image_cache *cache = calloc(1, sizeof *cache);
    if (cache == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cache->config = config;
    *cache_out = cache;
    return 0;
}

void image_cache_close(struct image_cache *cache)
{
    if (cache == NULL)
        return;
    if (cache->store != NULL)
        oci_store_close(cache->store);
    for (size_t i = 0; i < cache->resolved_count; i++)
        free(cache->resolved[i].ref);
    free(cache->resolved);
    free(cache);
}

void image_ensure_result_free(struct image_ensure_result *result)
{
    free(result->rootfs_path);
    result->rootfs_path = NULL;
}

static const char *remembered_digest(const struct image_cache *cache, const char *ref)
{
    for (size_t i = 0; i < cache->resolved_count; i++)
        if (strcmp(cache->resolved[i].ref, ref) == 0)
            return cache->resolved[i].digest;
    return NULL;
}

static int remember_digest(struct image_cache *cache, const char *ref, const char *digest,
                           struct shed_err *err)
{
    for (size_t i = 0; i < cache->resolved_count; i++) {
        if (strcmp(cache->resolved[i].ref, ref) == 0) {
            snprintf(cache->resolved[i].digest, sizeof cache->resolved[i].digest, "%s", digest);
            return 0;
        }
    }
    struct resolved_ref *grown =
        realloc(cache->resolved, (cache->resolved_count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cache->resolved = grown;
    struct resolved_ref *entry = &cache->resolved[cache->resolved_count];
    entry->ref = strdup(ref);
    if (entry->ref == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    snprintf(entry->digest, sizeof entry->digest, "%s", digest);
    cache->resolved_count++;
    return 0;
}

/* ---- one ensure ---------------------------------------------------------------------- */

struct ensure_ctx {
    struct image_cache *cache;
    const struct shed_config *config;
    const char *name;
    const char *ref;
    const struct image_ensure_opts *opts;
    struct image_variant_paths paths;
    struct image_ensure_result *result;
};

void image_opts_log(const struct image_ensure_opts *opts, enum image_log_level level,
                    const char *name, const char *fmt, ...)
{
    if (opts == NULL || opts->log == NULL)
        return;
    char message[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    opts->log(level, name, message, opts->ctx);
}

/* The progress line about this run's variant (image_opts_log). */
#define say(ctx, level, ...) image_opts_log((ctx)->opts, level, (ctx)->name, __VA_ARGS__)

static bool cancelled(const struct ensure_ctx *ctx)
{
    return ctx->opts != NULL && ctx->opts->cancel != NULL && *ctx->opts->cancel != 0;
}

static int check_cancel(const struct ensure_ctx *ctx, struct shed_err *err)
{
    if (cancelled(ctx))
        return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
    return 0;
}

void image_pull_opts_from_config(const struct shed_config *config, struct oci_pull_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->platform = config->platform;
    opts->insecure_registries = (const char *const *)config->insecure_registries;
    opts->registry_ca = shed_config_registry_ca_of;
    opts->registry_ca_ctx = config;
    opts->timeout_seconds = (unsigned)config->pull.timeout_seconds;
    opts->low_speed_limit = config->pull.low_speed_limit;
    opts->low_speed_time = config->pull.low_speed_time;
    opts->min_progress_bytes = config->pull.min_progress_bytes;
    opts->max_layer_bytes = config->pull.max_layer_bytes;
    opts->max_image_bytes = config->pull.max_image_bytes;
}

static void pull_options(const struct ensure_ctx *ctx, struct oci_pull_opts *pull)
{
    image_pull_opts_from_config(ctx->config, pull);
    pull->cancel = ctx->opts != NULL ? ctx->opts->cancel : NULL;
}

static int resolve_digest(struct ensure_ctx *ctx, char digest[DIGEST_STRING_LEN + 1],
                          struct shed_err *err)
{
    const char *known = remembered_digest(ctx->cache, ctx->ref);
    if (known != NULL) {
        snprintf(digest, DIGEST_STRING_LEN + 1, "%s", known);
        say(ctx, IMAGE_LOG_DETAIL, "%s is %s (resolved earlier in this run)", ctx->ref, digest);
        return 0;
    }
    struct oci_pull_opts pull;
    pull_options(ctx, &pull);
    if (oci_resolve(ctx->ref, &pull, digest, err) < 0)
        return -1;
    say(ctx, IMAGE_LOG_DETAIL, "%s resolves to %s", ctx->ref, digest);
    return remember_digest(ctx->cache, ctx->ref, digest, err);
}

static void download_progress(const struct oci_progress *progress, void *opaque)
{
    const struct ensure_ctx *ctx = opaque;
    if (progress->event == OCI_PROGRESS_LAYER_BYTES || progress->event == OCI_PROGRESS_LAYER_DONE)
        ctx->opts->progress(ctx->name, "download", progress->bytes_done, progress->bytes_total,
                            ctx->opts->ctx);
}

static void convert_progress(uint64_t done, uint64_t total, void *opaque)
{
    const struct ensure_ctx *ctx = opaque;
    ctx->opts->progress(ctx->name, "convert", done, total, ctx->opts->ctx);
}

static void convert_warning(const char *message, void *opaque)
{
    const struct ensure_ctx *ctx = opaque;
    say(ctx, IMAGE_LOG_WARNING, "%s", message);
}

static int open_store(struct ensure_ctx *ctx, struct shed_err *err)
{
    if (ctx->cache->store != NULL)
        return 0;
    return oci_store_open(ctx->config->images_dir, &ctx->cache->store, err);
}

/* Fetches the image; *digest becomes the manifest actually pulled (the tag may have moved
 * since it was resolved). */
static int pull_image(struct ensure_ctx *ctx, char digest[DIGEST_STRING_LEN + 1],
                      struct shed_err *err)
{
    if (open_store(ctx, err) < 0)
        return -1;
    struct oci_pull_opts pull;
    pull_options(ctx, &pull);
    if (ctx->opts != NULL && ctx->opts->progress != NULL) {
        pull.progress = download_progress;
        pull.progress_ctx = ctx;
    }
    say(ctx, IMAGE_LOG_INFO, "pulling %s", ctx->ref);
    struct oci_pull_result pulled;
    if (oci_pull(ctx->cache->store, ctx->ref, &pull, &pulled, err) < 0)
        return -1;
    char size[32];
    say(ctx, IMAGE_LOG_DETAIL, "%zu layer(s), %s downloaded", pulled.image.layer_count,
        format_size(pulled.bytes_fetched, size, sizeof size));
    ctx->result->bytes_fetched = pulled.bytes_fetched;
    if (strcmp(pulled.image.manifest_digest, digest) != 0)
        say(ctx, IMAGE_LOG_DETAIL, "%s moved to %s while pulling", ctx->ref,
            pulled.image.manifest_digest);
    snprintf(digest, DIGEST_STRING_LEN + 1, "%s", pulled.image.manifest_digest);
    oci_pull_result_free(&pulled);
    return remember_digest(ctx->cache, ctx->ref, digest, err);
}

static int convert_image(struct ensure_ctx *ctx, const char *digest, const char *content_path,
                         struct shed_err *err)
{
    struct imaged_convert_opts convert = {
        .size_bytes = ctx->config->rootfs_size,
        .warning = convert_warning,
        .ctx = ctx,
        .cancel = ctx->opts != NULL ? ctx->opts->cancel : NULL,
    };
    if (ctx->opts != NULL && ctx->opts->progress != NULL)
        convert.progress = convert_progress;
    char size[32];
    say(ctx, IMAGE_LOG_INFO, "converting %s to a %s ext4 filesystem", digest,
        format_size(ctx->config->rootfs_size, size, sizeof size));
    if (imaged_convert(ctx->cache->store, digest, ctx->paths.rootfs, &convert, err) < 0)
        return -1;
    ctx->result->outcome = IMAGE_ENSURE_CONVERTED;
    /* Into the content store, for other variants with this digest to share. */
    return fs_link_atomic(ctx->paths.rootfs, content_path, err);
}

/* Under the digest's lock: link the shared rootfs if another variant made it, else convert. */
static int build_from_digest(struct ensure_ctx *ctx, const char *digest, struct shed_err *err)
{
    cleanup_free char *content_dir = image_layout_content_dir(ctx->config->images_dir);
    cleanup_free char *content_path =
        image_layout_content_rootfs(ctx->config->images_dir, digest, ctx->config->rootfs_size);
    cleanup_free char *content_lock =
        content_path != NULL ? image_layout_content_lock(content_path) : NULL;
    if (content_dir == NULL || content_path == NULL || content_lock == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_mkdir_p(content_dir, 0700, err) < 0)
        return -1;
    cleanup_close int lock_fd = -1;
    if (fs_lock_file(content_lock, true, &lock_fd, err) < 0)
        return -1;
    if (fs_exists(content_path)) {
        say(ctx, IMAGE_LOG_INFO, "sharing the rootfs already converted for %s", digest);
        ctx->result->outcome = IMAGE_ENSURE_LINKED;
        return fs_link_atomic(content_path, ctx->paths.rootfs, err);
    }
    return convert_image(ctx, digest, content_path, err);
}

/* The base image's kernel also goes by the plain names the VM backends look for. */
static int publish_base_kernel(const struct ensure_ctx *ctx, struct shed_err *err)
{
    const struct {
        const char *variant_file, *base_file;
        bool present;
    } files[] = {
        {ctx->paths.kernel, ctx->paths.base_kernel, ctx->result->has_kernel},
        {ctx->paths.initrd, ctx->paths.base_initrd, ctx->result->has_initrd},
    };
    for (size_t i = 0; i < 2; i++) {
        int ret = files[i].present ? fs_link_atomic(files[i].variant_file, files[i].base_file, err)
                                   : unlink_if_present(files[i].base_file, err);
        if (ret < 0)
            return -1;
    }
    return 0;
}

static int extract_kernel(struct ensure_ctx *ctx, struct shed_err *err)
{
    if (kernel_extract(ctx->paths.rootfs, ctx->paths.kernel, ctx->paths.initrd,
                       &ctx->result->has_kernel, &ctx->result->has_initrd, err) < 0)
        return -1;
    if (ctx->result->has_kernel)
        say(ctx, IMAGE_LOG_DETAIL, "kernel extracted to %s", ctx->paths.kernel);
    if (ctx->result->has_initrd)
        say(ctx, IMAGE_LOG_DETAIL, "initrd extracted to %s", ctx->paths.initrd);
    if (ctx->paths.base_kernel != NULL)
        return publish_base_kernel(ctx, err);
    return 0;
}

/* The cache is stale: make <name>-rootfs.ext4 match digest, then record it in .source. */
static int rebuild(struct ensure_ctx *ctx, char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_free char *content_path =
        image_layout_content_rootfs(ctx->config->images_dir, digest, ctx->config->rootfs_size);
    if (content_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    /* Another variant already has this digest: no pull at all. */
    if (!fs_exists(content_path) && pull_image(ctx, digest, err) < 0)
        return -1;
    if (check_cancel(ctx, err) < 0 || build_from_digest(ctx, digest, err) < 0)
        return -1;
    if (check_cancel(ctx, err) < 0 || extract_kernel(ctx, err) < 0)
        return -1;
    snprintf(ctx->result->digest, sizeof ctx->result->digest, "%s", digest);
    /* Last: until .source names the new digest, a crash leaves the variant stale (rebuilt
     * next time), never wrongly fresh. */
    return image_source_write(ctx->config->images_dir, ctx->name, ctx->ref, digest,
                              ctx->config->rootfs_size, err);
}

static void use_cached(struct ensure_ctx *ctx, enum image_ensure_outcome outcome,
                       const char *digest)
{
    ctx->result->outcome = outcome;
    snprintf(ctx->result->digest, sizeof ctx->result->digest, "%s", digest);
    ctx->result->has_kernel = fs_exists(ctx->paths.kernel);
    ctx->result->has_initrd = fs_exists(ctx->paths.initrd);
}

static int ensure_locked(struct ensure_ctx *ctx, struct shed_err *err)
{
    if (check_cancel(ctx, err) < 0) /* interrupted while waiting for the lock */
        return -1;
    unsigned removed = 0;
    if (remove_stale_tmp_files(ctx->config->images_dir, ctx->name, &removed, err) < 0)
        return -1;
    if (removed > 0)
        say(ctx, IMAGE_LOG_INFO, "removed %u stale temporary file(s) of an interrupted run",
            removed);
    struct image_source record;
    if (image_source_read(ctx->config->images_dir, ctx->name, &record, err) < 0)
        return -1;
    bool have_cache = fs_exists(ctx->paths.rootfs) &&
                      image_source_matches(&record, ctx->ref, ctx->config->rootfs_size);
    char digest[DIGEST_STRING_LEN + 1];
    int ret = resolve_digest(ctx, digest, err);
    if (ret < 0 && err->code == SHED_E_REGISTRY && have_cache) {
        say(ctx, IMAGE_LOG_WARNING, "registry unreachable (%s); using the cached copy of %s",
            err->msg, record.digest);
        use_cached(ctx, IMAGE_ENSURE_OFFLINE, record.digest);
        ret = 0;
    } else if (ret < 0 && err->code == SHED_E_REGISTRY) {
        shed_err_prefix(err, "not cached");
    } else if (ret == 0 && have_cache && strcmp(record.digest, digest) == 0) {
        say(ctx, IMAGE_LOG_INFO, "up to date (%s)", digest);
        use_cached(ctx, IMAGE_ENSURE_FRESH, digest);
    } else if (ret == 0) {
        ret = rebuild(ctx, digest, err);
    }
    image_source_clear(&record);
    return ret;
}

static int lock_variant(const struct ensure_ctx *ctx, int *fd, struct shed_err *err)
{
    if (fs_lock_file(ctx->paths.lock, false, fd, err) < 0)
        return -1;
    if (*fd >= 0)
        return 0;
    say(ctx, IMAGE_LOG_INFO, "waiting for another process working on this image");
    return fs_lock_file(ctx->paths.lock, true, fd, err);
}

/* A variant configured as an absolute path to a ready ext4 is used in place. */
static int ensure_local(struct ensure_ctx *ctx, struct shed_err *err)
{
    struct stat st;
    if (stat(ctx->ref, &st) < 0)
        return shed_errf_errno(err, errno == ENOENT ? SHED_E_IMAGE_NOT_FOUND : SHED_E_IO, errno,
                               "local image %s", ctx->ref);
    if (!S_ISREG(st.st_mode))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "local image %s is not a regular file",
                         ctx->ref);
    ctx->result->outcome = IMAGE_ENSURE_LOCAL;
    ctx->result->rootfs_path = strdup(ctx->ref);
    if (ctx->result->rootfs_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    say(ctx, IMAGE_LOG_INFO, "local file %s", ctx->ref);
    return 0;
}

int image_cache_ensure(struct image_cache *cache, const char *name,
                       const struct image_ensure_opts *opts, struct image_ensure_result *result,
                       struct shed_err *err)
{
    memset(result, 0, sizeof *result);
    struct ensure_ctx ctx = {
        .cache = cache, .config = cache->config, .name = name, .opts = opts, .result = result};
    ctx.ref = shed_config_image_ref(cache->config, name);
    if (ctx.ref == NULL)
        return shed_errf(err, SHED_E_UNKNOWN_IMAGE, "image \"%s\" is not in the config", name);
    if (ctx.ref[0] == '/')
        return ensure_local(&ctx, err);
    if (fs_mkdir_private(cache->config->images_dir, err) < 0 ||
        image_layout_variant_paths(cache->config->images_dir, name, &ctx.paths, err) < 0)
        return -1;
    int lock_fd = -1;
    int ret = lock_variant(&ctx, &lock_fd, err);
    if (ret == 0)
        ret = ensure_locked(&ctx, err);
    if (lock_fd >= 0)
        close(lock_fd);
    if (ret == 0) {
        result->rootfs_path = steal_pointer(&ctx.paths.rootfs);
    }
    image_variant_paths_free(&ctx.paths);
    return ret;
}

/* ---- installing an imported image ------------------------------------------------------ */

static int install_locked(struct ensure_ctx *ctx, const char *manifest_digest, struct shed_err *err)
{
    unsigned removed = 0;
    if (check_cancel(ctx, err) < 0 || open_store(ctx, err) < 0 ||
        remove_stale_tmp_files(ctx->config->images_dir, ctx->name, &removed, err) < 0)
        return -1;
    if (build_from_digest(ctx, manifest_digest, err) < 0)
        return -1;
    if (check_cancel(ctx, err) < 0 || extract_kernel(ctx, err) < 0)
        return -1;
    snprintf(ctx->result->digest, sizeof ctx->result->digest, "%s", manifest_digest);
    /* Last, as for a pull: until then a crash leaves no record claiming the rootfs. */
    return image_source_write_imported(ctx->config->images_dir, ctx->name, ctx->ref,
                                       manifest_digest, ctx->config->rootfs_size, err);
}

int image_cache_install(struct image_cache *cache, const char *name, const char *source,
                        const char *manifest_digest, const struct image_ensure_opts *opts,
                        struct image_ensure_result *result, struct shed_err *err)
{
    memset(result, 0, sizeof *result);
    struct ensure_ctx ctx = {.cache = cache,
                             .config = cache->config,
                             .name = name,
                             .ref = source,
                             .opts = opts,
                             .result = result};
    if (fs_mkdir_private(cache->config->images_dir, err) < 0 ||
        image_layout_variant_paths(cache->config->images_dir, name, &ctx.paths, err) < 0)
        return -1;
    int lock_fd = -1;
    int ret = lock_variant(&ctx, &lock_fd, err);
    if (ret == 0)
        ret = install_locked(&ctx, manifest_digest, err);
    if (lock_fd >= 0)
        close(lock_fd);
    if (ret == 0)
        result->rootfs_path = steal_pointer(&ctx.paths.rootfs);
    image_variant_paths_free(&ctx.paths);
    return ret;
}

/* ---- names ---------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int image_cache_variant_names(const struct shed_config *config, char ***names_out,
                              struct shed_err *err)
{
    size_t count = config->image_count + (config->base_image != NULL ? 1 : 0);
    char **names = calloc(count + 1, sizeof *names);
    if (names == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < config->image_count; i++)
        names[i] = strdup(config->images[i].name);
    if (config->base_image != NULL)
        names[count - 1] = strdup(SHED_BASE_IMAGE_NAME);
    for (size_t i = 0; i < count; i++) {
        if (names[i] == NULL) {
            for (size_t j = 0; j < count; j++)
                free(names[j]);
            free(names);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
    }
    qsort(names, count, sizeof *names, compare_names);
    *names_out = names;
    return 0;
}
