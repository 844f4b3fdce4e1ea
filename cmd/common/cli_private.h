/* What cli.c and cli_help.c share (not a door of the module). */
#ifndef SHED_CMD_CLI_PRIVATE_H
#define SHED_CMD_CLI_PRIVATE_H

#include <stdbool.h>
#include <stdio.h>

#include "cmd/common/cli.h"

static inline bool option_table_end(const struct cli_option *option)
{
    return option->name == NULL && option->short_name == 0;
}

/* The help of command at path (NULL: the program's) on out. */
void cli_print_help_of(const struct cli_program *program, const char *path,
                       const struct cli_command *command, FILE *out);

#endif
