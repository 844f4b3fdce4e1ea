/* The server's SSH host key: one ed25519 key pair in the data dir, served by
 * GET /api/ssh-host-key (server/) and presented by the SSH front door (ssh/), so that the
 * key a client pins from the API is the key the SSH server proves it holds.
 *
 *   <data_dir>/ssh_host_ed25519_key      the private key, PKCS#8 PEM, 0600 (the truth)
 *   <data_dir>/ssh_host_ed25519_key.pub  its public half, OpenSSH format, rewritten at
 *                                        every load
 *
 * This file is the only code that names or writes them. */
#ifndef SHED_HOST_KEY_H
#define SHED_HOST_KEY_H

#include "common/shed_err.h"

/* <data_dir>/ssh_host_ed25519_key, malloc'd (NULL on allocation failure). */
char *host_key_private_path(const char *data_dir);

/* Loads the key pair, generating it first when the private key is absent, and (re)writes the
 * .pub file. *public_key: "ssh-ed25519 AAAA... <comment>" (malloc'd). */
int host_key_load_or_create(const char *data_dir, const char *comment, char **public_key,
                            struct shed_err *err);

/* The private key in OpenSSH's own container ("-----BEGIN OPENSSH PRIVATE KEY-----",
 * unencrypted), built in memory from the PEM file: libssh 0.10 imports the PKCS#8 file but
 * then cannot put its public half on the wire. *text is secret: release it with
 * host_key_secret_free, which wipes it. The key must exist (host_key_load_or_create). */
int host_key_openssh_private(const char *data_dir, char **text, struct shed_err *err);
void host_key_secret_free(char *text);

#endif
