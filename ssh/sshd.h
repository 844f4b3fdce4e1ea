/* The SSH front door: `ssh mybox@host -p 2222` reaches the shed named by the user name.
 *
 * libssh 0.10 in server mode, on bind:ssh_port next to the HTTP API (cmd_serve.c starts
 * both). The host key is the server's ed25519 key (runtime/host_key.h), the one
 * GET /api/ssh-host-key serves. Public-key authentication against the `ssh:` keys of the
 * config (checked already when the client only asks whether a key would do), or none at all
 * with `ssh.auth: none`; never passwords. After authentication the user name picks the shed:
 * an unknown one gets a one-line message and exit status 1, a stopped one is started (with a
 * line saying so).
 *
 * Session channels: pty-req, window-change, env (TERM, LANG, LC_*), shell (a login shell, or
 * tmux session "default" with `ssh.shell: tmux`), exec (through the login shell, as OpenSSH
 * does), signals, exit-status/exit-signal, and the sftp subsystem (the image's own
 * sftp-server). direct-tcpip to the shed's loopback only (dialed before the channel is
 * accepted), and agent forwarding through a socket in the shed. Processes run through the
 * backend's process API (runtime/backend.h).
 *
 * One thread per connection; max_connections at once, login_grace_seconds to authenticate,
 * max_auth_tries failures. One log line per connection on stderr. */
#ifndef SHED_SSHD_H
#define SHED_SSHD_H

#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

struct sshd;

/* Where connections take their configuration: each one acquires the configuration in
 * effect when it is accepted and releases it when it ends (a reload changes ssh.keys,
 * ssh.auth and ssh.shell for the connections that follow). */
struct sshd_config_source {
    const struct shed_config *(*acquire)(void *ctx);
    void (*release)(const struct shed_config *config, void *ctx);
    void *ctx; /* must outlive the server */
};

/* Listens on config->bind:port (port 0: a free port; pass config->ssh_port normally) and
 * loads the host key from the data dir (made when missing). Reads config only here: bind,
 * data_dir, instance_dir, name and ssh.max_connections are the server's for its life. Nothing
 * is accepted before sshd_serve. The backends must outlive the server. */
int sshd_start(const struct shed_config *config, const struct backend_set *backends, int port,
               struct sshd **server, struct shed_err *err);
/* Starts accepting connections, each with a configuration of source. */
int sshd_serve(struct sshd *server, const struct sshd_config_source *source, struct shed_err *err);
/* The port actually bound. */
uint16_t sshd_port(const struct sshd *server);
/* Stops accepting, ends every connection (their processes are hung up) and joins every
 * thread; frees the server. */
void sshd_stop(struct sshd *server);

#endif
