/* /api/sheds: list, get, create, delete, start, stop; backend resolution; status
 * reconciliation.
 *
 * Every lifecycle operation takes the shed's lock (instance_store_lock), so operations on
 * one shed are serialised while different sheds proceed in parallel; reads take no lock. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/testhook.h"
#include "common/timeutil.h"
#include "handlers.h"
#include "imaged/layout.h"
#include "runtime/instance_disk.h"
#include "runtime/local_dir.h"
#include "runtime/shed_create.h"
#include "sse.h"

/* ---- backends ------------------------------------------------------------------------ */

/* The backend that manages an existing shed (by the name in its metadata). */
static int backend_of(const struct api_context *context, const struct instance *inst,
                      const struct shed_backend **out, struct shed_err *err)
{
    *out = backend_set_find(context->backends, inst->backend);
    if (*out == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "shed \"%s\" uses backend \"%s\", which is not available in this build "
                         "of shed-server",
                         inst->name, inst->backend[0] ? inst->backend : "(none)");
    return 0;
}

/* ---- shed JSON and reconciliation ---------------------------------------------------- */

static int set_if_nonempty(json_t *obj, const char *key, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return 0;
    return json_object_set_new(obj, key, json_string(value));
}

static int set_if_nonzero(json_t *obj, const char *key, long long value)
{
    if (value == 0)
        return 0;
    return json_object_set_new(obj, key, json_integer(value));
}

json_t *api_shed_json(const struct instance *inst)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", inst->name, "status",
                            instance_status_name(inst->status), "created_at", inst->created_at,
                            "repo", inst->repo, "backend", inst->backend, "image", inst->image);
    if (obj == NULL)
        return NULL;
    if (set_if_nonempty(obj, "ip_address", inst->ip_address) < 0 ||
        set_if_nonzero(obj, "cpus", inst->cpus) < 0 ||
        set_if_nonzero(obj, "memory_mb", inst->memory_mb) < 0 ||
        set_if_nonzero(obj, "pid", inst->pid) < 0 ||
        set_if_nonempty(obj, "rootfs_path", inst->rootfs_path) < 0 ||
        set_if_nonempty(obj, "local_dir", inst->local_dir) < 0 ||
        /* with the rootfs_path: an unreadable metadata.json tells neither */
        (inst->rootfs_path[0] != '\0' &&
         set_if_nonempty(obj, "disk", instance_disk_name(inst->disk)) < 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Whether a shed recorded as running still runs: the backend's answer when it is built in,
 * else whether the recorded pid is alive. -1: cannot tell (keep the recorded status). */
static int shed_is_alive(const struct api_context *context, const struct instance *inst)
{
    const struct shed_backend *backend = backend_set_find(context->backends, inst->backend);
    if (backend != NULL && backend->status != NULL) {
        enum instance_status status;
        struct shed_err ignored = {0};
        if (backend->status(backend, inst, &status, &ignored) < 0)
            return -1;
        return status == INSTANCE_RUNNING;
    }
    if (inst->pid <= 0)
        return -1;
    return !(kill(inst->pid, 0) < 0 && errno == ESRCH);
}

/* Saves a dead "running" shed as stopped — unless a lifecycle operation holds its lock
 * (it is changing the state right now; it will save the truth), or it changed meanwhile. */
static void save_as_stopped(const struct api_context *context, struct instance *inst)
{
    int lock = -1;
    struct shed_err ignored = {0};
    if (instance_store_trylock(context->instances, inst->name, &lock, &ignored) < 0 || lock < 0)
        return;
    struct instance fresh;
    if (instance_store_load(context->instances, inst->name, &fresh, &ignored) == 0) {
        if (fresh.status == INSTANCE_RUNNING && fresh.pid == inst->pid) {
            fresh.status = INSTANCE_STOPPED;
            fresh.pid = 0;
            instance_store_save(context->instances, &fresh, &ignored);
        }
        instance_clear(&fresh);
    }
    instance_store_unlock(lock);
}

/* A shed recorded "starting" whose lock nobody holds was left by a create that never
 * finished (the server was killed mid-create): report and save it as "error", so that it is
 * visibly broken and DELETE (which releases whatever the backend set up) cleans it away. */
static void mark_interrupted_create(const struct api_context *context, struct instance *inst)
{
    int lock = -1;
    struct shed_err ignored = {0};
    if (instance_store_trylock(context->instances, inst->name, &lock, &ignored) < 0 || lock < 0)
        return; /* a create is running right now: "starting" is the truth */
    struct instance fresh;
    if (instance_store_load(context->instances, inst->name, &fresh, &ignored) == 0) {
        if (fresh.status == INSTANCE_STARTING) {
            fresh.status = INSTANCE_ERROR;
            if (instance_store_save(context->instances, &fresh, &ignored) == 0)
                inst->status = INSTANCE_ERROR;
        }
        instance_clear(&fresh);
    }
    instance_store_unlock(lock);
}

static void reconcile(const struct api_context *context, struct instance *inst)
{
    if (inst->status == INSTANCE_STARTING) {
        mark_interrupted_create(context, inst);
        return;
    }
    if (inst->status != INSTANCE_RUNNING || shed_is_alive(context, inst) != 0)
        return;
    save_as_stopped(context, inst);
    inst->status = INSTANCE_STOPPED;
    inst->pid = 0;
}

int api_load_shed(const struct api_context *context, const char *name, struct instance *inst,
                  struct shed_err *err)
{
    if (instance_store_load(context->instances, name, inst, err) < 0)
        return -1;
    reconcile(context, inst);
    return 0;
}

/* ---- list / get ---------------------------------------------------------------------- */

struct shed_list_cache {
    pthread_mutex_t lock;
    bool valid;
    uint64_t generation;
    char *body;
    struct instance_list running; /* the sheds the body shows running */
};

struct shed_list_cache *shed_list_cache_new(void)
{
    struct shed_list_cache *cache = calloc(1, sizeof *cache);
    if (cache != NULL && pthread_mutex_init(&cache->lock, NULL) != 0) {
        free(cache);
        return NULL;
    }
    return cache;
}

void shed_list_cache_free(struct shed_list_cache *cache)
{
    if (cache == NULL)
        return;
    free(cache->body);
    instance_list_clear(&cache->running);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

/* A copy of the cached body when it still holds: same generation, running sheds alive. */
static char *cached_list_body(const struct api_context *context, uint64_t generation)
{
    struct shed_list_cache *cache = context->list_cache;
    char *body = NULL;
    pthread_mutex_lock(&cache->lock);
    if (cache->valid && cache->generation == generation) {
        bool all_alive = true;
        for (size_t i = 0; all_alive && i < cache->running.count; i++)
            all_alive = shed_is_alive(context, &cache->running.items[i]) != 0;
        if (all_alive)
            body = strdup(cache->body);
    }
    pthread_mutex_unlock(&cache->lock);
    return body;
}

static void remember_list_body(const struct api_context *context, uint64_t generation,
                               const char *body, const struct instance_list *list)
{
    struct shed_list_cache *cache = context->list_cache;
    struct instance_list running = {0};
    struct shed_err ignored = {0};
    running.items = calloc(list->count ? list->count : 1, sizeof running.items[0]);
    char *copy = strdup(body);
    for (size_t i = 0; running.items != NULL && i < list->count; i++)
        if (list->items[i].status == INSTANCE_RUNNING &&
            instance_copy(&running.items[running.count], &list->items[i], &ignored) == 0)
            running.count++;
    pthread_mutex_lock(&cache->lock);
    free(cache->body);
    instance_list_clear(&cache->running);
    cache->valid = copy != NULL && running.items != NULL;
    cache->body = copy;
    cache->running = running;
    cache->generation = generation;
    pthread_mutex_unlock(&cache->lock);
}

static char *render_list(const struct api_context *context, struct instance_list *list)
{
    json_t *sheds = json_array();
    for (size_t i = 0; sheds != NULL && i < list->count; i++) {
        reconcile(context, &list->items[i]);
        if (json_array_append_new(sheds, api_shed_json(&list->items[i])) < 0) {
            json_decref(sheds);
            sheds = NULL;
        }
    }
    json_t *body = sheds != NULL ? json_pack("{s:o}", "sheds", sheds) : NULL;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

/* Listing renders a hundred shed objects; on repeated reads nothing changed, so the body
 * is kept and reused until the store reports a change or a running shed died. */
void handle_sheds_list(const struct api_request *request, const struct api_context *context,
                       struct api_response *response)
{
    (void)request;
    uint64_t generation = 0;
    struct shed_err err = {0};
    if (instance_store_generation(context->instances, &generation, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    char *body = cached_list_body(context, generation);
    if (body != NULL) {
        api_respond_json_text(response, 200, body);
        return;
    }
    struct instance_list list;
    if (instance_store_list(context->instances, &list, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    body = render_list(context, &list);
    if (body != NULL)
        remember_list_body(context, generation, body, &list);
    instance_list_clear(&list);
    api_respond_json_text(response, 200, body);
}

void handle_shed_get(const struct api_request *request, const struct api_context *context,
                     struct api_response *response)
{
    struct instance inst;
    struct shed_err err = {0};
    if (api_load_shed(context, request->params[0], &inst, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    api_respond_json(response, 200, api_shed_json(&inst));
    instance_clear(&inst);
}

/* ---- create -------------------------------------------------------------------------- */

struct create_request {
    const char *name;
    const char *repo;
    const char *local_dir;
    const char *image;
    const char *backend;
    int cpus;
    int memory_mb;
};

/* owner/repo, or a git URL (scheme://host/path or scp-like user@host:path). Never anything
 * starting with '-' (git would take it for an option) or holding spaces/control bytes. */
static bool repo_is_valid(const char *repo)
{
    size_t len = strlen(repo);
    if (len == 0 || len > 2048 || repo[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)repo[i] <= ' ' || repo[i] == 0x7f)
            return false;
    static const char *const schemes[] = {"https://", "http://", "ssh://", "git://", "file://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t scheme_len = strlen(schemes[i]);
        if (strncmp(repo, schemes[i], scheme_len) == 0)
            return len > scheme_len + 1 && strchr(repo + scheme_len, '/') != NULL;
    }
    const char *at = strchr(repo, '@'), *colon = strchr(repo, ':');
    if (at != NULL && colon != NULL && at < colon)
        return colon[1] != '\0' && at > repo;
    /* owner/repo: exactly one slash between two non-empty GitHub-style names */
    const char *slash = strchr(repo, '/');
    if (slash == NULL || slash == repo || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
        return false;
    return strspn(repo, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./") ==
           len;
}

/* An image is known when the config names it or a cached <name>-rootfs.ext4 exists. */
static int check_image(const struct api_context *context, const char *image, struct shed_err *err)
{
    const struct shed_config *config = context->config;
    if (image == NULL) {
        if (config->base_image == NULL)
            return shed_errf(err, SHED_E_UNKNOWN_IMAGE,
                             "no image given and the server has no base_image configured");
        return 0;
    }
    if (!shed_image_name_is_valid(image))
        return shed_errf(err, SHED_E_UNKNOWN_IMAGE, "invalid image name \"%.80s\"", image);
    if (shed_config_find_image(config, image) != NULL)
        return 0;
    cleanup_free char *cached = image_layout_variant_rootfs(config->images_dir, image);
    if (cached == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_exists(cached))
        return 0;
    return shed_errf(err, SHED_E_UNKNOWN_IMAGE, "unknown image \"%s\"", image);
}

static const char *const create_fields[] = {"name",      "repo", "image",     "backend",
                                            "local_dir", "cpus", "memory_mb", NULL};

static int parse_create_fields(const json_t *body, struct create_request *create,
                               struct shed_err *err)
{
    long long cpus = 0, memory_mb = 0;
    bool has_cpus = false, has_memory = false;
    if (api_field_string(body, "name", &create->name, err) < 0 ||
        api_field_string(body, "repo", &create->repo, err) < 0 ||
        api_field_string(body, "image", &create->image, err) < 0 ||
        api_field_string(body, "backend", &create->backend, err) < 0 ||
        api_field_string(body, "local_dir", &create->local_dir, err) < 0 ||
        api_field_int(body, "cpus", 1, 1024, &cpus, &has_cpus, err) < 0 ||
        api_field_int(body, "memory_mb", 64, 16 * 1024 * 1024, &memory_mb, &has_memory, err) < 0)
        return -1;
    create->cpus = has_cpus ? (int)cpus : 0;
    create->memory_mb = has_memory ? (int)memory_mb : 0;
    return 0;
}

/* Everything that can be checked without changing anything, in the order of api.md. */
static int validate_create(const struct api_context *context, const struct create_request *create,
                           struct shed_err *err)
{
    if (create->name == NULL)
        return shed_errf(err, SHED_E_INVALID_SHED_NAME, "field \"name\" is required");
    if (instance_check_name(create->name, err) < 0)
        return -1;
    if (create->repo != NULL && create->local_dir != NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "repo and local_dir are mutually exclusive");
    if (create->repo != NULL && !repo_is_valid(create->repo))
        return shed_errf(err, SHED_E_INVALID_REPO_URL,
                         "invalid repo \"%.200s\": use owner/repo or a git URL", create->repo);
    if (create->local_dir != NULL && local_dir_check(context->config, create->local_dir, err) < 0)
        return -1;
    if (shed_create_check_resources(context->config, create->cpus, create->memory_mb, err) < 0)
        return -1;
    if (check_image(context, create->image, err) < 0)
        return -1;
    if (create->backend != NULL && !backend_name_is_known(create->backend))
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "unknown backend \"%.40s\" (firecracker, vz, qemu, container or detect)",
                         create->backend);
    return 0;
}

static int check_not_exists(const struct api_context *context, const char *name,
                            struct shed_err *err)
{
    cleanup_free char *path = instance_store_path(context->instances, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_exists(path))
        return shed_errf(err, SHED_E_SHED_ALREADY_EXISTS, "shed \"%s\" already exists", name);
    return 0;
}

static const char *image_outcome_name(enum image_ensure_outcome outcome)
{
    switch (outcome) {
    case IMAGE_ENSURE_FRESH: return "fresh";
    case IMAGE_ENSURE_CONVERTED: return "converted";
    case IMAGE_ENSURE_LINKED: return "linked";
    case IMAGE_ENSURE_OFFLINE: return "offline";
    case IMAGE_ENSURE_LOCAL: return "local";
    }
    return "unknown";
}

/* One line per create in the server log: how the image was obtained (a conversion shows as
 * image_outcome=converted) and which clone strategy made the rootfs. */
static void log_create(const struct shed_create_request *request,
                       const struct shed_create_report *report, const struct shed_err *err,
                       const struct timespec *start)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    fprintf(stderr,
            "%s create shed=%s image=%s backend=%s image_outcome=%s bytes_fetched=%llu "
            "clone=%s disk=%s result=%s ms=%.2f%s%s\n",
            stamp, request->name, request->image != NULL ? request->image : SHED_BASE_IMAGE_NAME,
            request->backend->name, image_outcome_name(report->image_outcome),
            (unsigned long long)report->image_bytes_fetched,
            clone_strategy_name(report->clone_strategy), instance_disk_name(report->disk),
            err != NULL ? shed_code_api_name(err->code) : "ok", api_elapsed_ms(start),
            err != NULL ? " error=" : "", err != NULL ? err->msg : "");
}

static int run_create(const struct api_context *context, const struct shed_create_request *request,
                      const struct shed_create_observer *observer, struct instance *created,
                      struct shed_err *err)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct shed_create_report report;
    int rc =
        shed_create(context->config, context->instances, request, observer, created, &report, err);
    log_create(request, &report, rc < 0 ? err : NULL, &start);
    return rc;
}

/* ---- create streamed as server-sent events ---------------------------------------------- */

/* What the stream's producer thread needs; outlives the request handler. */
struct create_job {
    const struct api_context *context;
    json_t *body; /* owns the strings request points into */
    struct shed_create_request request;
    struct sse_stream *stream;
};

static void create_job_free(void *arg)
{
    struct create_job *job = arg;
    json_decref(job->body);
    free(job);
}

static json_t *progress_json(const struct shed_create_progress *progress)
{
    if (progress->bytes_total == 0)
        return json_pack("{s:s, s:s, s:b}", "phase", progress->phase, "message", progress->message,
                         "warning", progress->warning);
    return json_pack("{s:s, s:s, s:b, s:I, s:I}", "phase", progress->phase, "message",
                     progress->message, "warning", progress->warning, "bytes_done",
                     (json_int_t)progress->bytes_done, "bytes_total",
                     (json_int_t)progress->bytes_total);
}

static void stream_progress(const struct shed_create_progress *progress, void *ctx)
{
    struct create_job *job = ctx;
    /* A frame that cannot be queued breaks the stream (the client sees it cut off); the
     * create itself goes on and completes or rolls back either way. */
    sse_stream_send(job->stream, "progress", progress_json(progress));
}

static void produce_create_events(struct sse_stream *stream, void *arg)
{
    struct create_job *job = arg;
    job->stream = stream;
    struct shed_create_observer observer = {.progress = stream_progress, .ctx = job};
    struct instance inst;
    struct shed_err err = {0};
    if (run_create(job->context, &job->request, &observer, &inst, &err) < 0) {
        enum shed_code code = err.code == SHED_OK ? SHED_E_BACKEND_ERROR : err.code;
        sse_stream_send(stream, "error",
                        json_pack("{s:s, s:s}", "code", shed_code_api_name(code), "message",
                                  err.msg[0] ? err.msg : "internal error"));
        return;
    }
    sse_stream_send(stream, "complete", api_shed_json(&inst));
    instance_clear(&inst);
}

static void respond_create_stream(const struct api_context *context, json_t *body,
                                  const struct shed_create_request *request,
                                  struct api_response *response)
{
    struct shed_err err = {0};
    struct create_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        json_decref(body);
        api_respond_errorf(response, SHED_E_NO_MEMORY, "out of memory");
        return;
    }
    *job = (struct create_job){.context = context, .body = body, .request = *request};
    struct MHD_Response *mhd = NULL;
    if (sse_stream_start(produce_create_events, job, create_job_free, &mhd, &err) < 0) {
        create_job_free(job);
        api_respond_error(response, &err);
        return;
    }
    api_response_clear(response);
    response->status = 200;
    response->mhd = mhd;
}

/* ---- POST /api/sheds ------------------------------------------------------------------- */

/* Validation (every 4xx of api.md that needs no change on disk) happens here, before a
 * stream starts; the pipeline itself is shed_create (runtime/shed_create.c). */
void handle_shed_create(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    json_t *body = NULL;
    struct shed_err err = {0};
    struct create_request create = {0};
    const struct shed_backend *backend = NULL;
    if (api_parse_body_object(request, create_fields, false, &body, &err) < 0 ||
        parse_create_fields(body, &create, &err) < 0 ||
        validate_create(context, &create, &err) < 0 ||
        check_not_exists(context, create.name, &err) < 0 ||
        backend_set_resolve(context->backends, context->config->default_backend, create.backend,
                            &backend, &err) < 0) {
        api_respond_error(response, &err);
        json_decref(body);
        return;
    }
    struct shed_create_request pipeline = {
        .name = create.name,
        .image = create.image,
        .repo = create.repo,
        .local_dir = create.local_dir,
        .cpus = create.cpus,
        .memory_mb = create.memory_mb,
        .backend = backend,
    };
    if (api_wants_event_stream(request)) {
        respond_create_stream(context, body, &pipeline, response); /* takes body */
        return;
    }
    struct instance inst;
    if (run_create(context, &pipeline, NULL, &inst, &err) < 0)
        api_respond_error(response, &err);
    else {
        api_respond_json(response, 201, api_shed_json(&inst));
        instance_clear(&inst);
    }
    json_decref(body);
}

/* ---- delete / start / stop ----------------------------------------------------------- */

/* Runs op on the shed with its lock held; the shed is (re)loaded under the lock. */
typedef int (*locked_op)(const struct api_context *context, struct instance *inst,
                         struct shed_err *err);

static int with_shed_locked(const struct api_context *context, const char *name, locked_op op,
                            struct instance *inst, struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    int lock = -1;
    if (instance_store_lock(context->instances, name, &lock, err) < 0)
        return -1;
    int rc = api_load_shed(context, name, inst, err);
    if (rc == 0) {
        rc = op(context, inst, err);
        if (rc < 0)
            instance_clear(inst);
    }
    instance_store_unlock(lock);
    return rc;
}

static int stop_locked(const struct api_context *context, struct instance *inst,
                       struct shed_err *err)
{
    if (inst->status != INSTANCE_RUNNING)
        return shed_errf(err, SHED_E_SHED_ALREADY_STOPPED, "shed \"%s\" is not running",
                         inst->name);
    const struct shed_backend *backend;
    if (backend_of(context, inst, &backend, err) < 0)
        return -1;
    if (backend->stop == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" cannot stop sheds",
                         backend->name);
    if (backend->stop(backend, inst, err) < 0)
        return -1;
    inst->status = INSTANCE_STOPPED;
    inst->pid = 0;
    return instance_store_save(context->instances, inst, err);
}

static int start_locked(const struct api_context *context, struct instance *inst,
                        struct shed_err *err)
{
    if (inst->status == INSTANCE_RUNNING)
        return shed_errf(err, SHED_E_SHED_ALREADY_RUNNING, "shed \"%s\" is already running",
                         inst->name);
    const struct shed_backend *backend;
    if (backend_of(context, inst, &backend, err) < 0)
        return -1;
    if (backend->start == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" cannot start sheds",
                         backend->name);
    if (backend->start(backend, inst, NULL, err) < 0)
        return -1;
    inst->status = INSTANCE_RUNNING;
    return instance_store_save(context->instances, inst, err);
}

/* A running shed is stopped first. A stopped shed whose backend is not built in can still be
 * deleted: nothing of it runs, and the directory removal never crosses a mount point. */
static int delete_locked(const struct api_context *context, struct instance *inst,
                         struct shed_err *err)
{
    if (inst->status == INSTANCE_RUNNING && stop_locked(context, inst, err) < 0)
        return shed_err_prefix(err, "cannot stop shed \"%s\" before deleting it", inst->name);
    const struct shed_backend *backend = backend_set_find(context->backends, inst->backend);
    if (backend != NULL && backend->delete != NULL && backend->delete (backend, inst, err) < 0)
        return -1;
    shed_test_pause("delete-released");
    if (instance_store_delete(context->instances, inst->name, err) < 0)
        return -1;
    /* An older lower this shed was the last to stand on; if that fails, prune collects it. */
    struct shed_err ignored = {0};
    instance_disk_release_lower(context->config, context->instances, inst, &ignored);
    return 0;
}

static void respond_locked(const struct api_request *request, const struct api_context *context,
                           struct api_response *response, locked_op op, unsigned ok_status)
{
    struct instance inst;
    struct shed_err err = {0};
    if (with_shed_locked(context, request->params[0], op, &inst, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    if (ok_status == 204)
        api_respond_empty(response, 204);
    else
        api_respond_json(response, ok_status, api_shed_json(&inst));
    instance_clear(&inst);
}

void handle_shed_delete(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    respond_locked(request, context, response, delete_locked, 204);
}

void handle_shed_start(const struct api_request *request, const struct api_context *context,
                       struct api_response *response)
{
    respond_locked(request, context, response, start_locked, 200);
}

void handle_shed_stop(const struct api_request *request, const struct api_context *context,
                      struct api_response *response)
{
    respond_locked(request, context, response, stop_locked, 200);
}
