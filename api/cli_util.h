/* Helpers shared by the shed-server subcommands: errors, data dir, progress output. */
#ifndef SHED_CLI_UTIL_H
#define SHED_CLI_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"

/* Exit codes of every command. */
enum { EXIT_OK = 0, EXIT_FAILURE_RUN = 1, EXIT_USAGE = 2 };

/* Prints "shed-server: <CODE>: <message>" as one line on stderr; returns EXIT_FAILURE_RUN. */
int cli_fail(const struct shed_err *err);
/* Prints "shed-server <cmd>: <message>\nTry 'shed-server <cmd> --help'." ; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The data dir when --data-dir is not given: /var/lib/shed for root, else
 * $XDG_DATA_HOME/shed or ~/.local/share/shed. malloc'd. */
char *cli_default_data_dir(void);
/* <data_dir>/images, malloc'd. */
char *cli_images_dir(const char *data_dir);

#endif
