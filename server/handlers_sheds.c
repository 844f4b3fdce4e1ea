/* /api/sheds: list, get, create, delete, start, stop. Loading with status reconciliation
 * and the lifecycle operations themselves (under the shed's lock) are
 * runtime/shed_lifecycle.h, shared with the SSH front door. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/testhook.h"
#include "common/timeutil.h"
#include "config_snapshot.h"
#include "handlers.h"
#include "imaged/layout.h"
#include "runtime/instance_disk.h"
#include "runtime/local_dir.h"
#include "runtime/repo.h"
#include "runtime/shed_create.h"
#include "runtime/shed_lifecycle.h"
#include "sse.h"

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

int api_load_shed(const struct api_context *context, const char *name, struct instance *inst,
                  struct shed_err *err)
{
    return shed_lifecycle_load(&context->lifecycle, name, inst, err);
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
            all_alive = shed_lifecycle_is_alive(&context->lifecycle, &cache->running.items[i]) != 0;
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
        shed_lifecycle_reconcile(&context->lifecycle, &list->items[i]);
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

/* An image is known when the config names it or a cached <name>-rootfs.ext4 exists. */
static int check_image(const struct api_context *context, const char *image, struct shed_err *err)
{
    const struct shed_config *config = context->config;
    if (image == NULL) {
        if (config->base_image == NULL)
            return shed_errf(
                err, SHED_E_UNKNOWN_IMAGE,
                "no image given and base_image is disabled (base_image: null in server.yaml)");
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
    cleanup_free char *repo_url = NULL;
    if (create->repo != NULL && repo_check(context->config, create->repo, &repo_url, err) < 0)
        return -1;
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

/* What the stream's producer thread needs; outlives the request handler, so it holds its
 * own copy of the context and its own reference to the config snapshot. */
struct create_job {
    struct api_context context;
    json_t *body; /* owns the strings request points into */
    struct shed_create_request request;
    struct create_ticket *ticket; /* request.cancel is its flag */
    struct sse_stream *stream;
};

static void create_job_free(void *arg)
{
    struct create_job *job = arg;
    create_end(job->context.creates, job->ticket);
    json_decref(job->body);
    config_snapshot_release(job->context.snapshot);
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
    int rc = run_create(&job->context, &job->request, &observer, &inst, &err);
    create_end(job->context.creates, job->ticket);
    job->ticket = NULL;
    job->request.cancel = NULL;
    if (rc < 0) {
        enum shed_code code = err.code == SHED_OK ? SHED_E_BACKEND_ERROR : err.code;
        sse_stream_send(stream, "error",
                        json_pack("{s:s, s:s}", "code", shed_code_api_name(code), "message",
                                  err.msg[0] ? err.msg : "internal error"));
        return;
    }
    sse_stream_send(stream, "complete", api_shed_json(&inst));
    instance_clear(&inst);
}

/* Takes body and ticket. */
static void respond_create_stream(const struct api_context *context, json_t *body,
                                  struct create_ticket *ticket,
                                  const struct shed_create_request *request,
                                  struct api_response *response)
{
    struct shed_err err = {0};
    struct create_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        create_end(context->creates, ticket);
        json_decref(body);
        api_respond_errorf(response, SHED_E_NO_MEMORY, "out of memory");
        return;
    }
    *job = (struct create_job){
        .context = *context, .body = body, .request = *request, .ticket = ticket};
    config_snapshot_retain(job->context.snapshot);
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
    /* Registered, so that DELETE of the shed (or SIGTERM) can cancel it. */
    struct create_ticket *ticket = NULL;
    if (create_begin(context->creates, create.name, &ticket, &err) < 0) {
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
        .cancel = create_cancel_flag(ticket),
    };
    if (api_wants_event_stream(request)) {
        respond_create_stream(context, body, ticket, &pipeline, response); /* takes both */
        return;
    }
    struct instance inst;
    if (run_create(context, &pipeline, NULL, &inst, &err) < 0)
        api_respond_error(response, &err);
    else {
        api_respond_json(response, 201, api_shed_json(&inst));
        instance_clear(&inst);
    }
    create_end(context->creates, ticket);
    json_decref(body);
}

/* ---- delete / start / stop ----------------------------------------------------------- */

/* A lifecycle operation of runtime/shed_lifecycle.h on the shed named by params[0]. */
typedef int (*lifecycle_op)(const struct shed_lifecycle *lifecycle, const char *name,
                            struct instance *inst, struct shed_err *err);

static void respond_locked(const struct api_request *request, const struct api_context *context,
                           struct api_response *response, lifecycle_op op, unsigned ok_status)
{
    struct instance inst;
    struct shed_err err = {0};
    if (op(&context->lifecycle, request->params[0], &inst, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    if (ok_status == 204)
        api_respond_empty(response, 204);
    else
        api_respond_json(response, ok_status, api_shed_json(&inst));
    instance_clear(&inst);
}

/* A shed still "starting" is a create in flight: it is cancelled first, then the shed's lock
 * (which the create holds) is waited for — the create has rolled the shed back by then, and
 * the shed being gone is what the DELETE asked for. */
void handle_shed_delete(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    const char *name = request->params[0];
    struct shed_err err = {0};
    if (instance_check_name(name, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    bool cancelled = create_cancel(context->creates, name);
    struct instance inst;
    if (shed_lifecycle_delete(&context->lifecycle, name, &inst, &err) < 0) {
        if (cancelled && err.code == SHED_E_SHED_NOT_FOUND)
            api_respond_empty(response, 204);
        else
            api_respond_error(response, &err);
        return;
    }
    api_respond_empty(response, 204);
    instance_clear(&inst);
}

void handle_shed_start(const struct api_request *request, const struct api_context *context,
                       struct api_response *response)
{
    respond_locked(request, context, response, shed_lifecycle_start, 200);
}

void handle_shed_stop(const struct api_request *request, const struct api_context *context,
                      struct api_response *response)
{
    respond_locked(request, context, response, shed_lifecycle_stop, 200);
}
