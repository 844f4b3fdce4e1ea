/* shed-server: the host-side program. Dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "oci/oci.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "serve the REST API until SIGTERM/SIGINT (SIGHUP: reload)"},
    {"reload", cmd_reload, "make the running server re-read server.yaml"},
    {"pull", cmd_pull, "pull an image from a registry into the blob store"},
    {"convert", cmd_convert, "pull an image and write it as an ext4 root filesystem"},
    {"config", cmd_config, "validate server.yaml and print the resolved configuration"},
    {"pull-images", cmd_pull_images, "make every configured image variant ready (cached ext4)"},
    {"images", cmd_images, "list, remove or prune cached image variants"},
    {"import", cmd_import, "make an image archive, OCI layout or rootfs tar an image variant"},
    {"clone", cmd_clone, "clone a file the way instance rootfs clones are made"},
    {"system", cmd_system, "disk usage (df) and cleanup (prune) of the data dir"},
    {"exec", cmd_exec, "run a command in a running shed (like docker exec)"},
    {"attach", cmd_attach, "attach the terminal to a tmux session in a running shed"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: shed-server [--help] [--version] COMMAND [ARGS...]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'shed-server COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("shed-server %s\n", SHED_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name) != 0)
            continue;
        /* libcurl's global state must be set up once, before any thread exists. */
        struct shed_err err = {0};
        if (oci_global_init(&err) < 0)
            return cli_fail(&err);
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "shed-server: unknown command '%s'\nTry 'shed-server --help'.\n", name);
    return 2;
}
