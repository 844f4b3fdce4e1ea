/* Sessions (tmux inside a shed) and connect (TCP tunnel by HTTP upgrade).
 *
 * Both need a running shed and a backend that can run commands in it (exec) or dial into its
 * network namespace (dial). Every check api.md defines is made here first — names, port,
 * 404, 409/503 not running — and then, while no built-in backend provides exec/dial, the
 * answer is 501 NOT_SUPPORTED naming what is missing; nothing pretends to work. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

static bool session_name_is_valid(const char *name)
{
    if (name[0] == '\0' || strlen(name) > 128)
        return false;
    bool first_ok = (name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
                    (name[0] >= '0' && name[0] <= '9');
    size_t valid = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    return first_ok && valid == strlen(name);
}

/* Loads the shed, requires it running (not_running_code differs: 409 sessions, 503 connect)
 * and requires the backend capability. */
static int running_shed_backend(const struct api_context *context, const char *name,
                                enum shed_code not_running_code, bool need_dial,
                                struct instance *inst, const struct shed_backend **backend,
                                struct shed_err *err)
{
    if (api_load_shed(context, name, inst, err) < 0)
        return -1;
    int rc = 0;
    if (inst->status != INSTANCE_RUNNING) {
        rc = shed_errf(err, not_running_code, "shed \"%s\" is not running", name);
    } else if ((*backend = backend_set_find(context->backends, inst->backend)) == NULL) {
        rc = shed_errf(err, SHED_E_NOT_SUPPORTED,
                       "shed \"%s\" uses backend \"%s\", which is not available in this build",
                       name, inst->backend);
    } else if (need_dial ? (*backend)->dial == NULL : (*backend)->exec == NULL) {
        rc = shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" does not support %s yet",
                       (*backend)->name, need_dial ? "connect" : "sessions");
    }
    if (rc < 0)
        instance_clear(inst);
    return rc;
}

static void sessions_not_supported(struct api_response *response, const struct instance *inst,
                                   const struct shed_backend *backend)
{
    /* exec exists but the tmux session listing on top of it is not written yet. */
    api_respond_errorf(response, SHED_E_NOT_SUPPORTED,
                       "sessions are not implemented for backend \"%s\" (shed \"%s\")",
                       backend->name, inst->name);
}

void handle_shed_sessions(const struct api_request *request, const struct api_context *context,
                          struct api_response *response)
{
    struct instance inst;
    const struct shed_backend *backend = NULL;
    struct shed_err err = {0};
    if (running_shed_backend(context, request->params[0], SHED_E_SHED_NOT_RUNNING, false, &inst,
                             &backend, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    sessions_not_supported(response, &inst, backend);
    instance_clear(&inst);
}

void handle_shed_session_delete(const struct api_request *request,
                                const struct api_context *context, struct api_response *response)
{
    if (!session_name_is_valid(request->params[1])) {
        api_respond_errorf(response, SHED_E_INVALID_SESSION_NAME,
                           "invalid session name \"%.80s\"", request->params[1]);
        return;
    }
    struct instance inst;
    const struct shed_backend *backend = NULL;
    struct shed_err err = {0};
    if (running_shed_backend(context, request->params[0], SHED_E_SHED_NOT_RUNNING, false, &inst,
                             &backend, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    sessions_not_supported(response, &inst, backend);
    instance_clear(&inst);
}

/* Sessions of every running shed; a shed that fails is skipped (api.md). With no backend
 * that can list sessions, every running shed is skipped and the list is honestly empty. */
void handle_sessions_all(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)request;
    (void)context;
    api_respond_json(response, 200, json_pack("{s:[]}", "sessions"));
}

static int parse_port(const char *text, uint16_t *port, struct shed_err *err)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '+' || text[0] == '-' ||
        value < 1 || value > 65535)
        return shed_errf(err, SHED_E_INVALID_PORT, "invalid port \"%.20s\": use 1-65535", text);
    *port = (uint16_t)value;
    return 0;
}

void handle_shed_connect(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    uint16_t port = 0;
    struct shed_err err = {0};
    if (parse_port(request->params[1], &port, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    struct instance inst;
    const struct shed_backend *backend = NULL;
    /* connect answers 503 (not 409) for a stopped shed: api.md. */
    if (running_shed_backend(context, request->params[0], SHED_E_SHED_NOT_RUNNING, true, &inst,
                             &backend, &err) < 0) {
        if (err.code == SHED_E_SHED_NOT_RUNNING) {
            api_respond_json(response, 503, api_error_json(err.code, err.msg));
            return;
        }
        api_respond_error(response, &err);
        return;
    }
    api_respond_errorf(response, SHED_E_NOT_SUPPORTED,
                       "connect is not implemented for backend \"%s\" (shed \"%s\", port %u)",
                       backend->name, inst.name, (unsigned)port);
    instance_clear(&inst);
}
