/* shed-server.pid and shed-server.reload (run_files.h), and server_request_reload: what
 * `shed-server reload` does with them. */
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "server.h"

#define PID_FILE "shed-server.pid"
#define RELOAD_FILE "shed-server.reload"
#define RELOAD_FILE_MAX 8192
#define POLL_MS 20

static char *run_file(const char *data_dir, const char *name)
{
    return fs_path_join(data_dir, name);
}

int run_files_claim(const char *data_dir, int *lock_fd, struct shed_err *err)
{
    *lock_fd = -1;
    cleanup_free char *path = run_file(data_dir, PID_FILE);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = read_full(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        return shed_errf(err, SHED_E_CONFIG,
                         "another shed-server (pid %s) serves data dir %s; one server per data "
                         "dir",
                         pid[0] ? pid : "?", data_dir);
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite_all(fd, line, (size_t)len, 0) < 0 || fsync(fd) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot write %s", path);
    *lock_fd = steal_fd(&fd);
    return 0;
}

void run_files_release(const char *data_dir, int lock_fd)
{
    if (lock_fd < 0)
        return;
    cleanup_free char *path = run_file(data_dir, PID_FILE);
    if (path != NULL)
        (void)unlink(path); /* while still locked: nobody mistakes it for a live server */
    close(lock_fd);
}

int run_files_record_reload(const char *data_dir, unsigned generation, bool ok, const char *message,
                            struct shed_err *err)
{
    cleanup_free char *path = run_file(data_dir, RELOAD_FILE);
    json_t *root = json_pack("{s:I, s:I, s:b, s:s}", "pid", (json_int_t)getpid(), "generation",
                             (json_int_t)generation, "ok", ok, "message", message);
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (path == NULL || text == NULL) {
        free(text);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    int rc = fs_write_file_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

struct server_claim {
    char *data_dir;
    int lock_fd;
};

int server_claim_data_dir(const char *data_dir, struct server_claim **out, struct shed_err *err)
{
    *out = NULL;
    struct server_claim *claim = calloc(1, sizeof *claim);
    if (claim == NULL || (claim->data_dir = strdup(data_dir)) == NULL) {
        free(claim);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    claim->lock_fd = -1;
    if (fs_mkdir_private(data_dir, err) < 0 ||
        run_files_claim(data_dir, &claim->lock_fd, err) < 0) {
        server_claim_release(claim);
        return -1;
    }
    *out = claim;
    return 0;
}

void server_claim_release(struct server_claim *claim)
{
    if (claim == NULL)
        return;
    run_files_release(claim->data_dir, claim->lock_fd);
    free(claim->data_dir);
    free(claim);
}

/* ---- the other side: shed-server reload ------------------------------------------------ */

/* The pid of the live server of data_dir: its pid file is there and locked. */
static int live_server_pid(const char *data_dir, pid_t *pid, struct shed_err *err)
{
    cleanup_free char *path = run_file(data_dir, PID_FILE);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return shed_errf(err, SHED_E_CONFIG, "no shed-server is running for data dir %s (no %s)",
                         data_dir, path);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        return shed_errf(err, SHED_E_CONFIG,
                         "no shed-server is running for data dir %s (%s is stale)", data_dir, path);
    char text[32] = "";
    ssize_t n = read_full(fd, text, sizeof text - 1);
    char *end = NULL;
    long value = n > 0 ? strtol(text, &end, 10) : 0;
    if (value <= 0 || end == text)
        return shed_errf(err, SHED_E_IO, "%s holds no pid", path);
    *pid = (pid_t)value;
    return 0;
}

struct reload_record {
    long pid;
    long generation;
    bool ok;
    char message[1024];
};

/* The last recorded outcome; generation -1 when there is none (yet). */
static void read_record(const char *data_dir, struct reload_record *record)
{
    memset(record, 0, sizeof *record);
    record->generation = -1;
    cleanup_free char *path = run_file(data_dir, RELOAD_FILE);
    cleanup_free char *text = NULL;
    size_t len = 0;
    struct shed_err ignored;
    if (path == NULL || fs_read_file(path, &text, &len, RELOAD_FILE_MAX, &ignored) < 0)
        return;
    json_t *root = json_loadb(text, len, 0, NULL);
    if (json_is_object(root)) {
        record->pid = (long)json_integer_value(json_object_get(root, "pid"));
        record->generation = (long)json_integer_value(json_object_get(root, "generation"));
        record->ok = json_is_true(json_object_get(root, "ok"));
        const char *message = json_string_value(json_object_get(root, "message"));
        snprintf(record->message, sizeof record->message, "%s", message ? message : "");
    }
    json_decref(root);
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000L + (now.tv_nsec - start->tv_nsec) / 1000000L;
}

int server_request_reload(const char *data_dir, unsigned timeout_seconds,
                          struct server_reload_outcome *outcome, struct shed_err *err)
{
    memset(outcome, 0, sizeof *outcome);
    pid_t pid = 0;
    if (live_server_pid(data_dir, &pid, err) < 0)
        return -1;
    struct reload_record before;
    read_record(data_dir, &before);
    long seen = before.pid == pid ? before.generation : -1;
    if (kill(pid, SIGHUP) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot signal shed-server (pid %ld)",
                               (long)pid);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct reload_record now;
        read_record(data_dir, &now);
        /* Generation 0 is the start record: a reload is 1 or more. */
        if (now.pid == pid && now.generation > seen && now.generation > 0) {
            outcome->ok = now.ok;
            snprintf(outcome->message, sizeof outcome->message, "%s", now.message);
            return 0;
        }
        if (elapsed_ms(&start) > (long)timeout_seconds * 1000L)
            return shed_errf(err, SHED_E_IO,
                             "shed-server (pid %ld) was signalled but recorded no reload within "
                             "%u s",
                             (long)pid, timeout_seconds);
        struct timespec pause = {0, POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}
