#include "cli_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/config.h"
#include "common/fsutil.h"

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

char *cli_default_data_dir(void)
{
    return shed_config_default_data_dir();
}

char *cli_images_dir(const char *data_dir)
{
    return fs_path_join(data_dir, "images");
}
