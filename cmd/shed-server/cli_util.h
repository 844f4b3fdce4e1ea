/* Helpers shared by the shed-server subcommands: errors, the one configuration resolver. */
#ifndef SHED_CLI_UTIL_H
#define SHED_CLI_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"

/* Exit codes of every command. */
enum { EXIT_OK = 0, EXIT_FAILURE_RUN = 1, EXIT_USAGE = 2 };

/* Prints "shed-server: <CODE>: <message>" as one line on stderr; returns EXIT_FAILURE_RUN. */
int cli_fail(const struct shed_err *err);
/* Prints "shed-server <cmd>: <message>\nTry 'shed-server <cmd> --help'." ; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The configuration every subcommand runs with, so that they all read and write where the
 * server does: server.yaml by serve's lookup (config_path when given, else ./server.yaml,
 * ~/.config/shed/server.yaml, /etc/shed/server.yaml, else built-in defaults), then
 * --data-dir (data_dir, when non-NULL) replacing data_dir, images_dir and instance_dir.
 * Prints the error and returns EXIT_FAILURE_RUN on failure, else 0 (free config with
 * shed_config_free). */
int cli_load_config(const char *config_path, const char *data_dir, struct shed_config *config);

/* The --config / --data-dir help lines every subcommand prints. */
#define CLI_CONFIG_OPTIONS_HELP                                                                    \
    "  -c, --config=FILE      server.yaml to use (default lookup: ./server.yaml,\n"                \
    "                         ~/.config/shed/server.yaml, /etc/shed/server.yaml)\n"                \
    "      --data-dir=DIR     data directory (overrides data_dir; images_dir and\n"                \
    "                         instance_dir become DIR/images and DIR/instances)\n"

#endif
