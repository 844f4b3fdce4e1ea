#include "cli_util.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/common/progress.h"
#include "commands.h"
#include "common/cleanup.h"

int cli_fail(const struct shed_err *err)
{
    fprintf(stderr, "shed-server: %s: %s\n", shed_code_name(err->code), err->msg);
    return EXIT_FAILURE_RUN;
}

int cli_load_config(const char *config_path, const char *data_dir, struct shed_config *config)
{
    struct shed_err err = {0};
    if (shed_config_load(config_path, config, &err) < 0)
        return cli_fail(&err);
    if (data_dir != NULL && shed_config_use_data_dir(config, data_dir, &err) < 0) {
        shed_config_free(config);
        return cli_fail(&err);
    }
    return 0;
}

int cli_load_config_of(const struct cli_call *call, struct shed_config *config)
{
    return cli_load_config(cli_value(call, OPT_CONFIG), cli_value(call, OPT_DATA_DIR), config);
}

void cli_describe_config(const struct shed_config *config, bool data_dir_given, char *out,
                         size_t len)
{
    /* Absolute paths: the point is to compare them with the running server's. */
    cleanup_free char *path = config->path != NULL ? realpath(config->path, NULL) : NULL;
    cleanup_free char *data_dir = realpath(config->data_dir, NULL);
    const char *shown_data_dir = data_dir != NULL ? data_dir : config->data_dir;
    if (config->path != NULL)
        snprintf(out, len, "config %s, data dir %s%s", path != NULL ? path : config->path,
                 shown_data_dir, data_dir_given ? " (--data-dir)" : "");
    else
        snprintf(out, len,
                 "built-in defaults (no ./server.yaml, ~/.config/shed/server.yaml or "
                 "/etc/shed/server.yaml), data dir %s%s",
                 shown_data_dir, data_dir_given ? " (--data-dir)" : "");
}

int cli_fail_where(const struct shed_err *err, const struct shed_config *config,
                   bool data_dir_given)
{
    if (err->code != SHED_E_SHED_NOT_FOUND && err->code != SHED_E_IMAGE_NOT_FOUND &&
        err->code != SHED_E_UNKNOWN_IMAGE)
        return cli_fail(err);
    char where[1024];
    cli_describe_config(config, data_dir_given, where, sizeof where);
    char looked[600] = "";
    const char *dir =
        err->code == SHED_E_SHED_NOT_FOUND ? config->instance_dir : config->images_dir;
    cleanup_free char *absolute = realpath(dir, NULL);
    if (err->code != SHED_E_UNKNOWN_IMAGE)
        snprintf(looked, sizeof looked, "looked in %s; ", absolute != NULL ? absolute : dir);
    fprintf(stderr,
            "shed-server: %s: %s (%s%s; the running server may use another: pass its "
            "--config or --data-dir)\n",
            shed_code_name(err->code), err->msg, looked, where);
    return EXIT_FAILURE_RUN;
}

int cli_print_json(const void *json)
{
    char *text = json != NULL ? json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL) {
        struct shed_err err;
        shed_errf(&err, SHED_E_NO_MEMORY, "out of memory");
        return cli_fail(&err);
    }
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}

static volatile int interrupted;

static void on_interrupt(int sig)
{
    if (interrupted) {
        progress_signal_clear();
        signal(sig, SIG_DFL);
        raise(sig);
    }
    interrupted = 1;
}

int cli_catch_interrupts(volatile int **flag)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0)
        return -1;
    *flag = &interrupted;
    return 0;
}
