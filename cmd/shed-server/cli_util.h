/* Helpers shared by the shed-server subcommands: errors, the one configuration resolver. */
#ifndef SHED_CLI_UTIL_H
#define SHED_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/common/cli.h"
#include "common/shed_err.h"
#include "config/config.h"

/* Exit codes of every command (cli.h's, under the names these files use). */
enum { EXIT_OK = CLI_EXIT_OK, EXIT_FAILURE_RUN = CLI_EXIT_FAILURE, EXIT_USAGE = CLI_EXIT_USAGE };

/* Prints "shed-server: <CODE>: <message>" as one line on stderr; returns EXIT_FAILURE_RUN. */
int cli_fail(const struct shed_err *err);

/* The configuration every subcommand runs with, so that they all read and write where the
 * server does: server.yaml by serve's lookup (config_path when given, else ./server.yaml,
 * ~/.config/shed/server.yaml, /etc/shed/server.yaml, else built-in defaults), then
 * --data-dir (data_dir, when non-NULL) replacing data_dir, images_dir and instance_dir.
 * Prints the error and returns EXIT_FAILURE_RUN on failure, else 0 (free config with
 * shed_config_free). */
int cli_load_config(const char *config_path, const char *data_dir, struct shed_config *config);
/* The same with the command's --config and --data-dir. */
int cli_load_config_of(const struct cli_call *call, struct shed_config *config);

/* Where a local command looked, for a "not found": "config /etc/shed/server.yaml, data dir
 * /var/lib/shed" or "built-in defaults (no ./server.yaml, ...), data dir ..." (data_dir_given:
 * it came from --data-dir). */
void cli_describe_config(const struct shed_config *config, bool data_dir_given, char *out,
                         size_t len);
/* cli_fail, but a SHED_NOT_FOUND, IMAGE_NOT_FOUND or UNKNOWN_IMAGE also says where the
 * command looked (cli_describe_config): the shed or image may be another server's. */
int cli_fail_where(const struct shed_err *err, const struct shed_config *config,
                   bool data_dir_given);

/* SIGINT/SIGTERM set *flag, which long operations poll as their cancel flag (they stop with
 * SHED_E_INTERRUPTED and clean up after themselves); a second one kills at once, the progress
 * line erased first. A signal handler can reach nothing but a static: *flag is that one.
 * -1 with errno when the handlers cannot be installed. */
int cli_catch_interrupts(volatile int **flag);

/* The JSON on stdout, indented, with a trailing newline; NULL (out of memory) fails. */
int cli_print_json(const void *json);

#endif
