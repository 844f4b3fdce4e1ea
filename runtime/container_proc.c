/* Processes: spawning runc and git from a multithreaded server, reading /proc, and stopping
 * a shed's init without racing pid reuse (pidfd). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_internal.h"

extern char **environ;

/* posix_spawn's two setup objects, destroyed together (cleanup_spawn_setup). */
struct spawn_setup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    bool actions_ready, attr_ready;
};

static void cleanup_spawn_setup(struct spawn_setup *setup)
{
    if (setup->actions_ready)
        posix_spawn_file_actions_destroy(&setup->actions);
    if (setup->attr_ready)
        posix_spawnattr_destroy(&setup->attr);
}

/* Default dispositions for every signal, nothing blocked: the server's SIGTERM block and
 * SIGPIPE ignore would otherwise be inherited by runc and, through it, by the shed. */
static int prepare_attr(posix_spawnattr_t *attr, bool new_session)
{
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (new_session)
        flags |= POSIX_SPAWN_SETSID;
    if (posix_spawnattr_setsigdefault(attr, &all) != 0 ||
        posix_spawnattr_setsigmask(attr, &none) != 0 || posix_spawnattr_setflags(attr, flags) != 0)
        return -1;
    return 0;
}

/* Empty file actions and the attributes every spawn of ours has (prepare_attr). */
static int spawn_setup_init(struct spawn_setup *setup, bool new_session, const char *program,
                            struct shed_err *err)
{
    if (posix_spawn_file_actions_init(&setup->actions) != 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "posix_spawn_file_actions_init failed");
    setup->actions_ready = true;
    if (posix_spawnattr_init(&setup->attr) != 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "posix_spawnattr_init failed");
    setup->attr_ready = true;
    if (prepare_attr(&setup->attr, new_session) < 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot prepare to spawn %s", program);
    return 0;
}

static int spawn_run(const struct spawn_setup *setup, const char *const *argv, pid_t *pid,
                     struct shed_err *err)
{
    int rc =
        posix_spawnp(pid, argv[0], &setup->actions, &setup->attr, (char *const *)argv, environ);
    if (rc != 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, rc, "cannot run %s", argv[0]);
    return 0;
}

/* fds[0..2] become stdin/stdout/stderr (-1: /dev/null), fds[3..count) keep their index
 * (-1 there: left closed); every other fd is closed. */
static int prepare_actions(posix_spawn_file_actions_t *actions, const int *fds, size_t count)
{
    for (size_t target = 0; target < count; target++) {
        int rc = 0;
        if (fds[target] >= 0)
            rc = posix_spawn_file_actions_adddup2(actions, fds[target], (int)target);
        else if (target < 3)
            rc = posix_spawn_file_actions_addopen(actions, (int)target, "/dev/null",
                                                  target == 0 ? O_RDONLY : O_WRONLY, 0);
        if (rc != 0)
            return -1;
    }
    return posix_spawn_file_actions_addclosefrom_np(actions, (int)count) != 0 ? -1 : 0;
}

int container_spawn(const char *const *argv, int stdin_fd, int stdout_fd, int stderr_fd,
                    bool new_session, pid_t *pid, struct shed_err *err)
{
    const int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
    return container_spawn_fds(argv, fds, 3, new_session, pid, err);
}

int container_spawn_fds(const char *const *argv, const int *fds, size_t count, bool new_session,
                        pid_t *pid, struct shed_err *err)
{
    __attribute__((cleanup(cleanup_spawn_setup))) struct spawn_setup setup = {0};
    if (spawn_setup_init(&setup, new_session, argv[0], err) < 0)
        return -1;
    if (prepare_actions(&setup.actions, fds, count) < 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot prepare to spawn %s", argv[0]);
    return spawn_run(&setup, argv, pid, err);
}

int container_wait(pid_t pid, int *exit_status, struct shed_err *err)
{
    int status = 0;
    if (TEMP_FAILURE_RETRY(waitpid(pid, &status, 0)) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "waitpid %d", (int)pid);
    if (WIFEXITED(status))
        *exit_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        *exit_status = 128 + WTERMSIG(status);
    else
        *exit_status = 255;
    return 0;
}

/* The last max bytes of fd (from its start), NUL-terminated. */
static int read_tail(int fd, size_t max, char **out, struct shed_err *err)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "lseek");
    size_t want = (size_t)size < max ? (size_t)size : max;
    char *text = malloc(want + 1);
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    ssize_t got = pread_full(fd, text, want, size - (off_t)want);
    if (got < 0) {
        free(text);
        return shed_errf_errno(err, SHED_E_IO, errno, "read captured output");
    }
    text[got] = '\0';
    *out = text;
    return 0;
}

int container_run_capture(const char *const *argv, int *exit_status, char **output,
                          size_t max_output, struct shed_err *err)
{
    /* A memory file, not a pipe: the child can write any amount without us reading
     * concurrently, and there is nothing to clean up on disk. */
    cleanup_close int capture = memfd_create("shed-capture", MFD_CLOEXEC);
    if (capture < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "memfd_create");
    pid_t pid;
    if (container_spawn(argv, -1, capture, capture, true, &pid, err) < 0)
        return -1;
    if (container_wait(pid, exit_status, err) < 0)
        return -1;
    if (output != NULL && read_tail(capture, max_output, output, err) < 0)
        return -1;
    return 0;
}

int container_proc_start_time(pid_t pid, uint64_t *start_time, bool *alive)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[1024];
    ssize_t len = read(fd, buf, sizeof buf - 1);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    /* comm (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
    char *rest = strrchr(buf, ')');
    if (rest == NULL || rest[1] != ' ')
        return -1;
    char state = rest[2];
    /* Fields 3 (state) .. 22 (starttime): skip 19 separators from the state field. */
    char *field = rest + 2;
    for (int i = 0; i < 19 && field != NULL; i++) {
        field = strchr(field, ' ');
        if (field != NULL)
            field++;
    }
    if (field == NULL)
        return -1;
    *start_time = strtoull(field, NULL, 10);
    *alive = state != 'Z' && state != 'X' && state != 'x';
    return 0;
}

bool container_proc_is(pid_t pid, uint64_t start_time)
{
    uint64_t actual = 0;
    bool alive = false;
    if (pid <= 0 || container_proc_start_time(pid, &actual, &alive) < 0)
        return false;
    return alive && actual == start_time;
}

bool container_proc_in_cgroup(pid_t pid, const char *cgroup)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    char buf[8192];
    ssize_t len = fd < 0 ? -1 : read_full(fd, buf, sizeof buf - 1);
    if (len <= 0)
        return false;
    buf[len] = '\0';
    size_t want = strlen(cgroup);
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        size_t line_len = strlen(line);
        /* "<id>:<controllers>:<path>": the path ends with "/<cgroup>". */
        if (line_len > want && line[line_len - want - 1] == '/' &&
            strcmp(line + line_len - want, cgroup) == 0)
            return true;
    }
    return false;
}

/* 1 when the process behind pidfd exited within timeout_ms, 0 on timeout. */
static int wait_pidfd(int pidfd, int timeout_ms)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int rc = TEMP_FAILURE_RETRY(poll(&pfd, 1, timeout_ms));
    return rc < 0 ? -1 : rc > 0;
}

int container_proc_terminate(pid_t pid, uint64_t start_time, int grace_ms, int kill_grace_ms,
                             struct shed_err *err)
{
    cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        if (errno == ESRCH)
            return 0;
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "pidfd_open %d", (int)pid);
    }
    /* Checked after pidfd_open: if the pid still names the shed's init now, the pidfd does
     * too, and nothing else can be signalled through it. */
    if (!container_proc_is(pid, start_time))
        return 0;
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0) < 0 && errno != ESRCH)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "SIGTERM to %d", (int)pid);
    int exited = wait_pidfd(pidfd, grace_ms);
    if (exited == 1)
        return 0;
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "SIGKILL to %d", (int)pid);
    exited = wait_pidfd(pidfd, kill_grace_ms);
    if (exited != 1)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "shed init %d did not exit within %d ms of SIGKILL", (int)pid,
                         kill_grace_ms);
    return 0;
}

int container_spawn_on_terminal(const char *const *argv, const char *tty_path, pid_t *pid,
                                struct shed_err *err)
{
    __attribute__((cleanup(cleanup_spawn_setup))) struct spawn_setup setup = {0};
    if (spawn_setup_init(&setup, true, argv[0], err) < 0)
        return -1;
    /* glibc runs setsid before the file actions: the open (without O_NOCTTY) by the new
     * session's leader makes the terminal its controlling one. */
    posix_spawn_file_actions_t *actions = &setup.actions;
    if (posix_spawn_file_actions_addopen(actions, 0, tty_path, O_RDWR, 0) != 0 ||
        posix_spawn_file_actions_adddup2(actions, 0, 1) != 0 ||
        posix_spawn_file_actions_adddup2(actions, 0, 2) != 0 ||
        posix_spawn_file_actions_addclosefrom_np(actions, 3) != 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot prepare to spawn %s", argv[0]);
    return spawn_run(&setup, argv, pid, err);
}
