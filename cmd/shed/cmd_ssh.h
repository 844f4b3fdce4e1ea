/* `shed ssh|exec|attach|ssh-config` (cmd_ssh.c): the SSH front door from any machine, through
 * the system's OpenSSH client; main.c's command table points here. */
#ifndef SHED_CMD_SSH_H
#define SHED_CMD_SSH_H

#include "shed.h"

/* Each returns the exit status: for ssh, exec and attach the remote command's, as ssh
 * reports it (they exec ssh). */
int cmd_ssh(const struct cli_call *call);
int cmd_exec(const struct cli_call *call);
int cmd_attach(const struct cli_call *call);
int cmd_ssh_config(const struct cli_call *call);
extern const struct cli_option shed_ssh_options[], shed_exec_options[], shed_ssh_config_options[];

#endif
