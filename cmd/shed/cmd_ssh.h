/* `shed ssh|exec|attach|ssh-config` (cmd_ssh.c): the SSH front door from any machine, through
 * the system's OpenSSH client, hooked into the shed CLI's command table. */
#ifndef SHED_CMD_SSH_H
#define SHED_CMD_SSH_H

#include "client.h"

/* argv[0] is the command ("ssh", "exec", "attach", "ssh-config"). Returns the exit status
 * (for ssh, exec and attach: the remote command's, as ssh reports it). */
int cli_ssh_run(const struct client *client, int argc, char **argv);

#endif
