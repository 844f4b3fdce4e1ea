#include "cli_util.h"

#include <stdarg.h>
#include <stdio.h>

int cli_fail(const struct shed_err *err)
{
    fprintf(stderr, "shed-server: %s: %s\n", shed_code_name(err->code), err->msg);
    return EXIT_FAILURE_RUN;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "shed-server %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shed-server %s --help'.\n", cmd);
    return EXIT_USAGE;
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
