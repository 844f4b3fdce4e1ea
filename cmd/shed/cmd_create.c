/* shed create NAME: POST /api/sheds as an SSE stream, its progress drawn by the common
 * renderer (one line per phase on a terminal, plain lines otherwise), then the shed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/common/progress.h"
#include "shed.h"

const struct cli_option shed_create_options[] = {
    {"image", 'i', "IMAGE", "image variant (default: the server's base_image)", OPT_IMAGE},
    {"repo", 'r', "REPO", "owner/repo or git URL cloned into /workspace", OPT_REPO},
    {"local-dir", 'l', "DIR", "host directory mounted at /workspace (not with --repo)",
     OPT_LOCAL_DIR},
    {"cpus", 'c', "N", "CPUs (default: the server's default_cpus)", OPT_CPUS},
    {"memory", 'm', "MB", "memory in MiB (default: the server's default_memory_mb)", OPT_MEMORY},
    {"backend", 'b', "NAME", "one of the server's backends ('shed info'), or detect", OPT_BACKEND},
    SHED_SERVER_OPTIONS,
    SHED_OPTION_JSON,
    SHED_OPTIONS_END,
};

struct create_progress {
    struct progress renderer;
    char phase[64];
    char message[200];
    json_t *result;            /* the "complete" shed object */
    struct client_error error; /* from an "error" event */
    bool failed;
};

static void on_progress_event(struct create_progress *state, const json_t *data)
{
    struct progress *p = &state->renderer;
    const char *phase = json_get_str(data, "phase"), *message = json_get_str(data, "message");
    if (json_is_true(json_object_get(data, "warning"))) {
        progress_printf(p, stderr, "warning: %s: %s", phase, message);
        return;
    }
    if (!p->open || strcmp(phase, state->phase) != 0)
        progress_begin(p, "%s: %s", phase, message);
    else if (strcmp(message, state->message) != 0)
        progress_retitle(p, "%s: %s", phase, message);
    snprintf(state->phase, sizeof state->phase, "%s", phase);
    snprintf(state->message, sizeof state->message, "%s", message);
    json_t *done = json_object_get(data, "bytes_done"),
           *total = json_object_get(data, "bytes_total");
    if (json_is_integer(done) && json_integer_value(done) >= 0)
        progress_update(p, (uint64_t)json_integer_value(done),
                        json_is_integer(total) && json_integer_value(total) > 0
                            ? (uint64_t)json_integer_value(total)
                            : 0);
}

static void on_create_event(const char *type, const json_t *data, void *ctx)
{
    struct create_progress *state = ctx;
    if (strcmp(type, "progress") == 0 && data != NULL) {
        on_progress_event(state, data);
    } else if (strcmp(type, "complete") == 0 && data != NULL) {
        progress_end(&state->renderer, NULL);
        state->result = json_deep_copy(data);
    } else if (strcmp(type, "error") == 0) {
        progress_end(&state->renderer, "failed");
        state->failed = true;
        client_errorf(&state->error, data ? json_get_str(data, "code") : "PROTOCOL", "%s",
                      data ? json_get_str(data, "message") : "malformed error event");
    }
}

static int parse_count(const struct cli_call *call, int id, const char *what, json_t *body,
                       const char *key)
{
    const char *text = cli_value(call, id);
    if (text == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    long number = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || number <= 0)
        return cli_usage_error(call, "invalid %s '%s' (a positive number)", what, text);
    json_object_set_new(body, key, json_integer(number));
    return 0;
}

static int build_body(const struct cli_call *call, json_t *body)
{
    json_object_set_new(body, "name", json_string(call->operands[0]));
    static const struct {
        int id;
        const char *key;
    } strings[] = {{OPT_IMAGE, "image"}, {OPT_REPO, "repo"}, {OPT_BACKEND, "backend"}};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        const char *value = cli_value(call, strings[i].id);
        if (value != NULL)
            json_object_set_new(body, strings[i].key, json_string(value));
    }
    const char *dir = cli_value(call, OPT_LOCAL_DIR);
    if (dir != NULL) {
        /* The server needs an absolute path; it means something when both share the host. */
        char *absolute = realpath(dir, NULL);
        json_object_set_new(body, "local_dir", json_string(absolute ? absolute : dir));
        free(absolute);
    }
    int rc = parse_count(call, OPT_CPUS, "--cpus", body, "cpus");
    return rc != 0 ? rc : parse_count(call, OPT_MEMORY, "--memory", body, "memory_mb");
}

/* Ctrl-C: the progress line is erased, then the default action ends us. */
static void on_interrupt(int signo)
{
    progress_signal_clear();
    signal(signo, SIG_DFL);
    raise(signo);
}

static void print_shed_result(const struct shed_cli *cli, const json_t *shed)
{
    if (cli->json) {
        shed_print_json(shed);
        return;
    }
    printf("created %s (%s, %s%s%s)\n", json_get_str(shed, "name"), json_get_str(shed, "status"),
           json_get_str(shed, "backend"), json_get_str(shed, "ip_address")[0] ? ", " : "",
           json_get_str(shed, "ip_address"));
}

int cmd_create(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    json_t *body = json_object();
    if (body == NULL)
        return shed_fail(&(struct client_error){"NO_MEMORY", "out of memory"});
    int rc = build_body(call, body);
    if (rc != 0) {
        json_decref(body);
        return rc;
    }
    struct create_progress state = {.failed = false};
    progress_init(&state.renderer, stderr);
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
    struct client_response response;
    struct client_error error;
    rc = client_stream(&cli->client, "POST", "/api/sheds", body, on_create_event, &state, &response,
                       &error);
    json_decref(body);
    progress_end(&state.renderer, "the stream ended early");
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (rc < 0)
        return shed_fail(&error);
    json_t *shed = state.result != NULL ? state.result : response.json;
    if (state.failed)
        rc = shed_fail(&state.error);
    else if (shed == NULL)
        rc = shed_fail(&(struct client_error){"PROTOCOL", "the stream ended without a result"});
    else
        print_shed_result(cli, shed);
    json_decref(state.result);
    client_response_clear(&response);
    return rc;
}
