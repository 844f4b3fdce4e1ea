/* Sessions (tmux inside a shed) and connect (TCP tunnel by HTTP upgrade).
 *
 * Both need a running shed and a backend that can run commands in it (exec) or dial into its
 * network namespace (dial). Every check api.md defines is made first — names, port, 404,
 * 409/503 not running —, then:
 * - sessions run `tmux list-sessions -F …` / `tmux kill-session -t =NAME` in the shed
 *   through the backend's process API (backend->spawn), output captured in memory files,
 *   each within sessions_timeout_seconds (a tmux that hangs is killed: 500 for that shed,
 *   skipped by GET /api/sessions); a missing tmux (exit status 127) is 503
 *   TMUX_NOT_AVAILABLE;
 * - connect reserves a tunnel for its client (503 SERVER_BUSY over tunnel_max_per_client),
 *   dials (502 CONNECT_FAILED when nothing listens), then answers 101; the tunnel itself —
 *   its thread, idle timeout and stop — is tunnel.c's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/timeutil.h"
#include "handlers.h"

/* The exit status of a command that does not exist in the shed. */
#define EXIT_COMMAND_NOT_FOUND BACKEND_EXIT_NOT_FOUND
/* tmux output kept (a session line is short; this is thousands of sessions). */
#define TMUX_OUTPUT_MAX (1 << 20)

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
    } else if (need_dial ? (*backend)->dial == NULL : (*backend)->spawn == NULL) {
        rc = shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" does not support %s yet",
                       (*backend)->name, need_dial ? "connect" : "sessions");
    }
    if (rc < 0)
        instance_clear(inst);
    return rc;
}

/* ---- running tmux in a shed ---------------------------------------------------------- */

struct captured {
    int status;
    char *out; /* NUL-terminated */
    char *err;
};

static void captured_clear(struct captured *captured)
{
    free(captured->out);
    free(captured->err);
    captured->out = captured->err = NULL;
}

static char *read_memfd(int fd)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0)
        return NULL;
    size_t len = (size_t)size < TMUX_OUTPUT_MAX ? (size_t)size : TMUX_OUTPUT_MAX;
    char *text = malloc(len + 1);
    if (text == NULL)
        return NULL;
    ssize_t got = pread_full(fd, text, len, 0);
    text[got > 0 ? (size_t)got : 0] = '\0';
    return text;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A tmux command running in one shed, stdout and stderr into memory files (no pipe to drain
 * while waiting). Several run at once for GET /api/sessions, under one deadline. */
struct tmux_run {
    const struct instance *inst;
    struct backend_process *process;
    int out, err;
    bool started;
};

static void tmux_run_clear(struct tmux_run *run)
{
    backend_process_free(run->process); /* one still running is killed */
    run->process = NULL;
    if (run->out >= 0)
        close(run->out);
    if (run->err >= 0)
        close(run->err);
    run->out = run->err = -1;
}

static int remaining(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left > 0 ? (int)left : 1;
}

/* Starts argv in the shed. A command the shed does not have "runs" and exits 127 at once. */
static int tmux_start(const struct shed_backend *backend, const struct instance *inst,
                      const char *const *argv, int64_t deadline, struct tmux_run *run,
                      struct shed_err *err)
{
    *run = (struct tmux_run){.inst = inst, .out = -1, .err = -1};
    run->out = memfd_create("shed-tmux-out", MFD_CLOEXEC);
    run->err = memfd_create("shed-tmux-err", MFD_CLOEXEC);
    if (run->out < 0 || run->err < 0) {
        tmux_run_clear(run);
        return shed_errf_errno(err, SHED_E_IO, errno, "memfd_create");
    }
    struct backend_spawn_request request = {.argv = argv,
                                            .stdin_fd = -1,
                                            .stdout_fd = run->out,
                                            .stderr_fd = run->err,
                                            .timeout_ms = remaining(deadline)};
    if (backend->spawn(backend, inst, &request, &run->process, err) < 0 &&
        err->code != SHED_E_NOT_FOUND) {
        tmux_run_clear(run);
        return -1;
    }
    shed_err_clear(err); /* not found is an answer: exit status 127 */
    run->started = true;
    return 0;
}

/* Waits for a started run until the deadline; a run still going then is killed and fails. */
static int tmux_finish(struct tmux_run *run, int64_t deadline, const struct api_context *context,
                       struct captured *captured, struct shed_err *err)
{
    struct backend_exit exit = {.code = EXIT_COMMAND_NOT_FOUND};
    int rc = run->process != NULL
                 ? backend_process_wait(run->process, remaining(deadline), &exit, err)
                 : 0;
    if (rc == 1)
        rc = shed_errf(err, SHED_E_BACKEND_ERROR, "tmux in shed \"%s\" did not answer within %d s",
                       run->inst->name, context->config->sessions_timeout_seconds);
    if (rc == 0) {
        captured->status = backend_exit_status(&exit);
        captured->out = read_memfd(run->out);
        captured->err = read_memfd(run->err);
        if (captured->out == NULL || captured->err == NULL) {
            captured_clear(captured);
            rc = shed_errf(err, SHED_E_NO_MEMORY, "cannot read tmux output");
        }
    }
    tmux_run_clear(run);
    return rc;
}

static int64_t tmux_deadline(const struct api_context *context)
{
    return now_ms() + (int64_t)context->config->sessions_timeout_seconds * 1000;
}

/* Runs argv in the shed with stdout and stderr captured, within the sessions deadline. */
static int run_in_shed(const struct api_context *context, const struct shed_backend *backend,
                       const struct instance *inst, const char *const *argv,
                       struct captured *captured, struct shed_err *err)
{
    int64_t deadline = tmux_deadline(context);
    struct tmux_run run;
    if (tmux_start(backend, inst, argv, deadline, &run, err) < 0)
        return -1;
    return tmux_finish(&run, deadline, context, captured, err);
}

/* tmux's answers when no tmux server runs in the shed (no session was ever started, or the
 * last one ended): not an error, just no sessions. */
static bool tmux_has_no_server(const char *stderr_text)
{
    return strstr(stderr_text, "no server running") != NULL ||
           strstr(stderr_text, "error connecting to") != NULL;
}

static int tmux_failure(const struct instance *inst, const struct captured *captured,
                        const char *what, struct shed_err *err)
{
    if (captured->status == EXIT_COMMAND_NOT_FOUND)
        return shed_errf(err, SHED_E_TMUX_NOT_AVAILABLE, "tmux is not installed in shed \"%s\"",
                         inst->name);
    char first_line[200];
    snprintf(first_line, sizeof first_line, "%s", captured->err);
    first_line[strcspn(first_line, "\n")] = '\0';
    return shed_errf(err, SHED_E_BACKEND_ERROR, "tmux %s in shed \"%s\" failed (exit %d): %s", what,
                     inst->name, captured->status, first_line);
}

#define TMUX_LIST_FORMAT                                                                           \
    "#{session_name}\t#{session_created}\t#{session_attached}\t#{session_windows}"

/* One line of TMUX_LIST_FORMAT as a session object; NULL for a malformed line. */
static json_t *session_json(const char *shed_name, char *line)
{
    char *fields[4];
    char *save = NULL;
    char *field = strtok_r(line, "\t", &save);
    for (int i = 0; i < 4; i++) {
        if (field == NULL)
            return NULL;
        fields[i] = field;
        field = strtok_r(NULL, "\t", &save);
    }
    char created[RFC3339_SIZE];
    if (format_rfc3339((time_t)strtoll(fields[1], NULL, 10), created) < 0)
        snprintf(created, sizeof created, "1970-01-01T00:00:00Z");
    return json_pack("{s:s, s:s, s:s, s:b, s:i}", "name", fields[0], "shed_name", shed_name,
                     "created_at", created, "attached", atoi(fields[2]) > 0, "window_count",
                     atoi(fields[3]));
}

#define TMUX_LIST_ARGV                                                                             \
    {                                                                                              \
        "tmux", "list-sessions", "-F", TMUX_LIST_FORMAT, NULL                                      \
    }

/* Appends the sessions a finished `tmux list-sessions` printed to sessions. */
static int parse_sessions(const struct instance *inst, struct captured *captured, json_t *sessions,
                          struct shed_err *err)
{
    if (captured->status != 0) {
        if (captured->status == EXIT_COMMAND_NOT_FOUND || !tmux_has_no_server(captured->err))
            return tmux_failure(inst, captured, "list-sessions", err);
        return 0;
    }
    char *save = NULL;
    for (char *line = strtok_r(captured->out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *session = session_json(inst->name, line);
        if (session != NULL && json_array_append_new(sessions, session) < 0)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

/* Appends the sessions of a running shed to sessions. */
static int list_sessions(const struct api_context *context, const struct shed_backend *backend,
                         const struct instance *inst, json_t *sessions, struct shed_err *err)
{
    const char *const argv[] = TMUX_LIST_ARGV;
    struct captured captured = {0};
    if (run_in_shed(context, backend, inst, argv, &captured, err) < 0)
        return -1;
    int rc = parse_sessions(inst, &captured, sessions, err);
    captured_clear(&captured);
    return rc;
}

static int kill_session(const struct api_context *context, const struct shed_backend *backend,
                        const struct instance *inst, const char *session, struct shed_err *err)
{
    char target[160];
    snprintf(target, sizeof target, "=%s", session); /* "=": exact name, never a prefix */
    const char *const argv[] = {"tmux", "kill-session", "-t", target, NULL};
    struct captured captured = {0};
    if (run_in_shed(context, backend, inst, argv, &captured, err) < 0)
        return -1;
    int rc = 0;
    if (captured.status != 0) {
        if (captured.status != EXIT_COMMAND_NOT_FOUND &&
            (tmux_has_no_server(captured.err) || strstr(captured.err, "can't find") != NULL))
            rc = shed_errf(err, SHED_E_SESSION_NOT_FOUND, "session \"%s\" not found in shed \"%s\"",
                           session, inst->name);
        else
            rc = tmux_failure(inst, &captured, "kill-session", err);
    }
    captured_clear(&captured);
    return rc;
}

/* ---- handlers ------------------------------------------------------------------------ */

/* The running shed of a sessions request (params[0]) and its backend; false when the error
 * has been answered. */
static bool sessions_shed(const struct api_request *request, const struct api_context *context,
                          struct instance *inst, const struct shed_backend **backend,
                          struct api_response *response)
{
    struct shed_err err = {0};
    if (running_shed_backend(context, request->params[0], SHED_E_SHED_NOT_RUNNING, false, inst,
                             backend, &err) == 0)
        return true;
    api_respond_error(response, &err);
    return false;
}

void handle_shed_sessions(const struct api_request *request, const struct api_context *context,
                          struct api_response *response)
{
    struct instance inst;
    const struct shed_backend *backend = NULL;
    if (!sessions_shed(request, context, &inst, &backend, response))
        return;
    struct shed_err err = {0};
    json_t *sessions = json_array();
    if (sessions == NULL)
        shed_errf(&err, SHED_E_NO_MEMORY, "out of memory");
    if (sessions == NULL || list_sessions(context, backend, &inst, sessions, &err) < 0) {
        json_decref(sessions);
        api_respond_error(response, &err);
    } else {
        api_respond_json(response, 200, json_pack("{s:o}", "sessions", sessions));
    }
    instance_clear(&inst);
}

void handle_shed_session_delete(const struct api_request *request,
                                const struct api_context *context, struct api_response *response)
{
    if (!session_name_is_valid(request->params[1])) {
        api_respond_errorf(response, SHED_E_INVALID_SESSION_NAME, "invalid session name \"%.80s\"",
                           request->params[1]);
        return;
    }
    struct instance inst;
    const struct shed_backend *backend = NULL;
    if (!sessions_shed(request, context, &inst, &backend, response))
        return;
    struct shed_err err = {0};
    if (kill_session(context, backend, &inst, request->params[1], &err) < 0)
        api_respond_error(response, &err);
    else
        api_respond_empty(response, 204);
    instance_clear(&inst);
}

/* The sheds of GET /api/sessions, each with its tmux run. */
struct shed_listing {
    struct instance inst;
    bool loaded;
    struct tmux_run run;
};

/* Starts `tmux list-sessions` in every running shed; a shed that cannot (stopped
 * meanwhile, backend without spawn, agent not answering) is left out. */
static void start_listings(const struct api_context *context, const struct instance_list *list,
                           int64_t deadline, struct shed_listing *listings)
{
    const char *const argv[] = TMUX_LIST_ARGV;
    for (size_t i = 0; i < list->count; i++) {
        const struct shed_backend *backend = NULL;
        struct shed_err skipped = {0};
        listings[i].run.started = false;
        if (list->items[i].status != INSTANCE_RUNNING ||
            running_shed_backend(context, list->items[i].name, SHED_E_SHED_NOT_RUNNING, false,
                                 &listings[i].inst, &backend, &skipped) < 0)
            continue;
        listings[i].loaded = true;
        if (tmux_start(backend, &listings[i].inst, argv, deadline, &listings[i].run, &skipped) < 0)
            fprintf(stderr, "sessions: shed %s skipped: %s\n", list->items[i].name, skipped.msg);
    }
}

/* Sessions of every running shed. The listings run at once under one deadline
 * (sessions_timeout_seconds): a shed whose tmux hangs, fails or is missing is skipped, and
 * never holds up the others (api.md). */
void handle_sessions_all(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)request;
    struct instance_list list;
    struct shed_err err = {0};
    if (instance_store_list(context->instances, &list, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    struct shed_listing *listings = calloc(list.count ? list.count : 1, sizeof *listings);
    json_t *sessions = listings != NULL ? json_array() : NULL;
    int64_t deadline = tmux_deadline(context);
    if (sessions != NULL)
        start_listings(context, &list, deadline, listings);
    for (size_t i = 0; sessions != NULL && i < list.count; i++) {
        struct shed_listing *listing = &listings[i];
        struct captured captured = {0};
        struct shed_err skipped = {0};
        json_t *shed_sessions = json_array();
        if (listing->run.started && shed_sessions != NULL &&
            tmux_finish(&listing->run, deadline, context, &captured, &skipped) == 0 &&
            parse_sessions(&listing->inst, &captured, shed_sessions, &skipped) == 0)
            json_array_extend(sessions, shed_sessions);
        else if (listing->run.started)
            fprintf(stderr, "sessions: shed %s skipped: %s\n", listing->inst.name, skipped.msg);
        captured_clear(&captured);
        json_decref(shed_sessions);
    }
    for (size_t i = 0; listings != NULL && i < list.count; i++)
        if (listings[i].loaded)
            instance_clear(&listings[i].inst);
    free(listings);
    instance_list_clear(&list);
    api_respond_json(response, 200,
                     sessions != NULL ? json_pack("{s:o}", "sessions", sessions) : NULL);
}

/* ---- connect ------------------------------------------------------------------------- */

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

/* `Upgrade: shed-tcp` and a Connection header listing "upgrade" (libmicrohttpd checks
 * neither). */
static bool wants_tunnel_upgrade(const struct api_request *request)
{
    const char *upgrade = api_header(request, MHD_HTTP_HEADER_UPGRADE);
    const char *connection = api_header(request, MHD_HTTP_HEADER_CONNECTION);
    return upgrade != NULL && strcasecmp(upgrade, "shed-tcp") == 0 && connection != NULL &&
           strcasestr(connection, "upgrade") != NULL;
}

/* A tunnel place for the request's client (tunnel.h); a request without a connection (the
 * router driven directly, route.h) has no client to tunnel for. */
static int reserve_tunnel(const struct api_request *request, const struct api_context *context,
                          struct tunnel **tunnel, struct shed_err *err)
{
    struct conn_client client;
    if (request->connection == NULL || conn_client_of(request->connection, &client) < 0)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "connect needs an HTTP connection");
    return tunnel_reserve(context->tunnels, &client, tunnel, err);
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
    int shed_fd = -1;
    struct tunnel *tunnel = NULL;
    if (!wants_tunnel_upgrade(request)) {
        api_respond_errorf(response, SHED_E_INVALID_REQUEST,
                           "connect needs the headers \"Connection: Upgrade\" and "
                           "\"Upgrade: shed-tcp\"");
    } else if (reserve_tunnel(request, context, &tunnel, &err) < 0) {
        api_respond_error(response, &err); /* 503 SERVER_BUSY: this client has too many */
    } else if (backend->dial(backend, &inst, port, &shed_fd, &err) < 0) {
        tunnel_release(tunnel);
        if (err.code == SHED_E_SHED_NOT_RUNNING) /* stopped between the check and the dial */
            api_respond_json(response, 503, api_error_json(err.code, err.msg));
        else
            api_respond_error(response, &err);
    } else {
        tunnel_respond_upgrade(tunnel, shed_fd, response);
    }
    instance_clear(&inst);
}
