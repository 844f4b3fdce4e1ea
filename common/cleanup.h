/* Scope-bound cleanup (GCC/Clang cleanup attribute), in the style of systemd and crun:
 * early returns never leak a heap pointer, a file descriptor, a FILE, a DIR, a JSON value or
 * a held lock. */
#ifndef SHED_CLEANUP_H
#define SHED_CLEANUP_H

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

static inline void cleanup_free_fn(void *p)
{
    free(*(void **)p);
}

static inline void cleanup_close_fn(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static inline void cleanup_fclose_fn(FILE **f)
{
    if (*f != NULL)
        fclose(*f);
}

static inline void cleanup_closedir_fn(DIR **dir)
{
    if (*dir != NULL)
        closedir(*dir);
}

static inline void cleanup_json_decref_fn(json_t **json)
{
    json_decref(*json); /* NULL is fine */
}

/* An fd that holds a flock (fs_lock_file): unlocked explicitly, so the lock is released even
 * while a forked child still shares the open file description, then closed. */
static inline void cleanup_flock_fn(int *fd)
{
    if (*fd >= 0) {
        flock(*fd, LOCK_UN);
        close(*fd);
    }
}

#define cleanup_free __attribute__((cleanup(cleanup_free_fn)))
#define cleanup_close __attribute__((cleanup(cleanup_close_fn)))
#define cleanup_fclose __attribute__((cleanup(cleanup_fclose_fn)))
#define cleanup_closedir __attribute__((cleanup(cleanup_closedir_fn)))
#define cleanup_json_decref __attribute__((cleanup(cleanup_json_decref_fn)))
#define cleanup_flock __attribute__((cleanup(cleanup_flock_fn)))

/* Hands ownership out of a cleanup-managed variable. */
#define steal_pointer(pp)                                                                          \
    ({                                                                                             \
        __typeof__(*(pp)) stolen_ = *(pp);                                                         \
        *(pp) = NULL;                                                                              \
        stolen_;                                                                                   \
    })
#define steal_fd(fdp)                                                                              \
    ({                                                                                             \
        int stolen_fd_ = *(fdp);                                                                   \
        *(fdp) = -1;                                                                               \
        stolen_fd_;                                                                                \
    })

#endif
