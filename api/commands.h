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

#endif
