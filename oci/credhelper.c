/* Docker credential helpers: `docker-credential-<name> get` with the server address on stdin
 * and {"ServerURL","Username","Secret"} as JSON on stdout, the protocol of
 * github.com/docker/docker-credential-helpers that `credsStore` / `credHelpers` of
 * ~/.docker/config.json name.
 *
 * The helper is run directly (posix_spawnp, never a shell), found on PATH, with its output
 * bounded and a deadline: a helper that hangs (a keychain waiting for a GUI prompt) must not
 * hang a pull. Signals the server blocks are unblocked in the child. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "oci_private.h"

extern char **environ;

#define HELPER_NAME_MAX 64

/* What a helper says when it has nothing for the server (docker's errCredentialsNotFound). */
#define HELPER_NOT_FOUND "credentials not found"

struct helper_run {
    pid_t pid;
    int in_fd, out_fd, err_fd;
    char out[CREDHELPER_MAX_OUTPUT + 1];
    size_t out_len;
    char errtext[1024];
    size_t err_len;
    int status;
};

bool credhelper_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > HELPER_NAME_MAX || name[0] == '.' || name[0] == '-')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static void close_if_open(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void helper_run_close(struct helper_run *run)
{
    close_if_open(&run->in_fd);
    close_if_open(&run->out_fd);
    close_if_open(&run->err_fd);
}

/* The child's stdin, stdout and stderr are pipes; everything else it inherits is CLOEXEC. */
static int spawn_helper(const char *program, struct helper_run *run, struct shed_err *err)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        int saved = errno;
        for (int i = 0; i < 2; i++)
            close_if_open(&in[i]), close_if_open(&out[i]), close_if_open(&errp[i]);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot create pipes");
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, errp[1], STDERR_FILENO);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *const argv[] = {(char *)program, (char *)"get", NULL};
    int rc = posix_spawnp(&run->pid, program, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    run->in_fd = in[1];
    run->out_fd = out[0];
    run->err_fd = errp[0];
    if (rc != 0) {
        helper_run_close(run);
        if (rc == ENOENT)
            return shed_errf_errno(err, SHED_E_AUTH, rc,
                                   "credential helper %s (named in the docker config) is not on "
                                   "PATH",
                                   program);
        return shed_errf_errno(err, SHED_E_AUTH, rc, "cannot run credential helper %s", program);
    }
    return 0;
}

static long remaining_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
    return ms > 0 ? ms : 0;
}

/* Appends what fd has to buf (at most cap bytes in all). 0 at EOF, 1 more to come, -1 when the
 * output exceeds cap. */
static int drain(int *fd, char *buf, size_t *len, size_t cap)
{
    char chunk[4096];
    ssize_t n = TEMP_FAILURE_RETRY(read(*fd, chunk, sizeof chunk));
    if (n <= 0) {
        close_if_open(fd);
        return 0;
    }
    if (*len + (size_t)n > cap)
        return -1;
    memcpy(buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    buf[*len] = '\0';
    return 1;
}

/* Reads stdout and stderr until both close or the deadline passes. */
static int collect_output(const char *program, struct helper_run *run, struct shed_err *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += CREDHELPER_TIMEOUT_SECONDS;
    while (run->out_fd >= 0 || run->err_fd >= 0) {
        struct pollfd fds[2] = {{.fd = run->out_fd, .events = POLLIN},
                                {.fd = run->err_fd, .events = POLLIN}};
        long wait = remaining_ms(&deadline);
        if (wait == 0)
            return shed_errf(err, SHED_E_AUTH, "credential helper %s did not answer within %d s",
                             program, CREDHELPER_TIMEOUT_SECONDS);
        int ready = poll(fds, 2, (int)(wait > 1000 ? 1000 : wait));
        if (ready < 0 && errno != EINTR)
            return shed_errf_errno(err, SHED_E_IO, errno, "poll");
        if (ready <= 0)
            continue;
        if (fds[0].revents != 0 &&
            drain(&run->out_fd, run->out, &run->out_len, CREDHELPER_MAX_OUTPUT) < 0)
            return shed_errf(err, SHED_E_AUTH, "credential helper %s wrote more than %d bytes",
                             program, CREDHELPER_MAX_OUTPUT);
        /* stderr only feeds the error message: what does not fit is dropped. */
        if (fds[1].revents != 0 &&
            drain(&run->err_fd, run->errtext, &run->err_len, sizeof run->errtext - 1) < 0)
            close_if_open(&run->err_fd);
    }
    return 0;
}

static void reap(struct helper_run *run, bool kill_first)
{
    if (run->pid <= 0)
        return;
    if (kill_first)
        kill(run->pid, SIGKILL);
    while (waitpid(run->pid, &run->status, 0) < 0 && errno == EINTR) {
    }
    run->pid = 0;
}

/* The first line of text, for a one-line error message. */
static const char *first_line(char *text)
{
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static int parse_answer(const char *program, const struct helper_run *run, char **user,
                        char **secret, struct shed_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(run->out, run->out_len, 0, &jerr);
    const char *username = json_string_value(json_object_get(root, "Username"));
    const char *password = json_string_value(json_object_get(root, "Secret"));
    int rc = 0;
    if (root == NULL || username == NULL || password == NULL)
        rc = shed_errf(err, SHED_E_AUTH,
                       "credential helper %s answered something other than "
                       "{\"Username\", \"Secret\"} JSON",
                       program);
    else if (strcmp(username, "<token>") == 0)
        rc = shed_errf(err, SHED_E_AUTH,
                       "credential helper %s holds an identity token (OAuth), which shed cannot "
                       "use; store a user name and password or access token instead",
                       program);
    else if ((*user = strdup(username)) == NULL || (*secret = strdup(password)) == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    json_decref(root);
    return rc;
}

static int interpret(const char *program, struct helper_run *run, char **user, char **secret,
                     struct shed_err *err)
{
    if (WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0)
        return parse_answer(program, run, user, secret, err);
    if (strstr(run->out, HELPER_NOT_FOUND) != NULL || strstr(run->errtext, HELPER_NOT_FOUND))
        return 0; /* no credentials for this server: anonymous, as docker does */
    const char *said = run->out_len > 0 ? first_line(run->out) : first_line(run->errtext);
    if (WIFSIGNALED(run->status))
        return shed_errf(err, SHED_E_AUTH, "credential helper %s was killed by signal %d%s%s",
                         program, WTERMSIG(run->status), said[0] ? ": " : "", said);
    return shed_errf(err, SHED_E_AUTH, "credential helper %s failed (exit %d)%s%.200s", program,
                     WEXITSTATUS(run->status), said[0] ? ": " : "", said);
}

int credhelper_get(const char *helper, const char *server, char **user, char **secret,
                   struct shed_err *err)
{
    *user = *secret = NULL;
    if (!credhelper_name_is_valid(helper))
        return shed_errf(err, SHED_E_AUTH, "invalid credential helper name \"%.80s\"", helper);
    cleanup_free char *program = str_printf("docker-credential-%s", helper);
    struct helper_run *run = calloc(1, sizeof *run);
    if (program == NULL || run == NULL) {
        free(run);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    run->in_fd = run->out_fd = run->err_fd = -1;
    int rc = spawn_helper(program, run, err);
    if (rc == 0) {
        /* As docker: the server address, no newline; then EOF. A helper that exits without
         * reading gives EPIPE (SIGPIPE is ignored by the server, and the write checked). */
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        (void)write_all(run->in_fd, server, strlen(server));
        close_if_open(&run->in_fd);
        struct timespec no_wait = {0, 0};
        sigtimedwait(&pipe_set, NULL, &no_wait); /* a SIGPIPE we caused, not anyone's else */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        rc = collect_output(program, run, err);
        reap(run, rc < 0);
        if (rc == 0)
            rc = interpret(program, run, user, secret, err);
    }
    helper_run_close(run);
    free(run);
    return rc;
}
