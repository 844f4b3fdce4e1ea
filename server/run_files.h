/* The files a running server keeps in its data dir for local commands (owned here):
 *   shed-server.pid     the serving process's pid, flocked (LOCK_EX) for its whole life: a
 *                       reader that can lock it knows nobody serves (a stale file)
 *   shed-server.reload  the outcome of the last reload: JSON {pid, generation, ok, message},
 *                       generation 0 at start, +1 per reload
 * Private to server/. */
#ifndef SHED_API_RUN_FILES_H
#define SHED_API_RUN_FILES_H

#include <stdbool.h>

#include "common/shed_err.h"

/* Takes the pid file's lock and writes our pid; SHED_E_CONFIG when another live server
 * holds it. *lock_fd stays open (the lock) until run_files_release. */
int run_files_claim(const char *data_dir, int *lock_fd, struct shed_err *err);
/* Removes the pid file and drops the lock. */
void run_files_release(const char *data_dir, int lock_fd);
/* Records a reload's outcome (atomically). */
int run_files_record_reload(const char *data_dir, unsigned generation, bool ok, const char *message,
                            struct shed_err *err);

#endif
