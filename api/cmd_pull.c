/* Placeholder until the command lands; replaced by its implementation. */
#include <stdio.h>

#include "commands.h"

int cmd_pull(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shed-server pull: not implemented yet\n");
    return 1;
}
