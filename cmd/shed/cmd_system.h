/* `shed system df|prune` (cli_system.c), hooked into the shed CLI's command table. */
#ifndef SHED_API_CLI_SYSTEM_H
#define SHED_API_CLI_SYSTEM_H

#include <stdbool.h>

#include "client.h"

/* argv[0] is "system". json: the global --json. Returns the exit status. */
int cli_system_run(const struct client *client, bool json, int argc, char **argv);

#endif
