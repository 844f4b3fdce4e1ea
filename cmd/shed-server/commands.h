/* shed-server subcommands: each takes the argv after the command name (argv[0] = command). */
#ifndef SHED_COMMANDS_H
#define SHED_COMMANDS_H

int cmd_pull(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_pull_images(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_system(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_reload(int argc, char **argv);

/* cmd_exec.c, shared with attach: runs command in a running shed with our stdio; returns
 * the command's exit status (125 when shed-server itself failed). */
#include <stdbool.h>
struct shed_exec_options {
    const char *config_path; /* NULL: default lookup */
    const char *data_dir;    /* NULL: from the config */
    const char *name;
    bool tty;
};
int shed_exec_command(const struct shed_exec_options *options, const char *const *command);

#endif
