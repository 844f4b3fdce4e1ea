/* shed-init: PID 1 of a shed (container backend).
 *
 * A PID namespace ends when its PID 1 exits, so a shed needs a PID 1 that stays while no
 * session runs. PID 1 also inherits every orphan in the namespace and must reap it, or
 * zombies pile up (tmux servers daemonise, shells leave background jobs behind).
 *
 * All signals of interest are blocked and taken synchronously with sigtimedwait: no handler,
 * no async-signal-safety questions. Blocking matters for another reason too: the kernel
 * drops a signal sent to a namespace's PID 1 when its disposition is the default, but a
 * blocked signal is always queued.
 *
 * SIGTERM (or SIGINT, SIGHUP): forwarded to every other process in the namespace
 * (kill(-1)), then we keep reaping until they are gone or a grace period passes, and exit
 * 0; the kernel SIGKILLs whatever is left when PID 1 exits.
 *
 * Built static (glibc is fine) so it runs in any image, mounted read-only into the shed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_SECONDS 5

/* Reaps every child that has exited. Returns 1 when no child is left, 0 otherwise. */
static int reap_children(void)
{
    for (;;) {
        pid_t pid = TEMP_FAILURE_RETRY(waitpid(-1, NULL, WNOHANG));
        if (pid == 0)
            return 0;
        if (pid < 0)
            return errno == ECHILD;
    }
}

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigprocmask(SIG_SETMASK, set, NULL);
}

/* Forwards the stop request and reaps until everyone is gone or the grace period ends. */
static void shut_down(const sigset_t *set, int signo)
{
    kill(-1, signo == SIGINT || signo == SIGHUP ? SIGTERM : signo);
    kill(-1, SIGCONT); /* stopped processes cannot act on SIGTERM */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SHUTDOWN_GRACE_SECONDS;
    while (!reap_children()) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec ||
            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return;
        struct timespec tick = {0, 100 * 1000 * 1000};
        sigtimedwait(set, NULL, &tick); /* woken early by SIGCHLD */
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (getpid() != 1)
        fprintf(stderr, "shed-init: warning: not PID 1 (pid %d)\n", (int)getpid());
    sigset_t set;
    block_signals(&set);
    for (;;) {
        siginfo_t info;
        int signo = sigwaitinfo(&set, &info);
        if (signo < 0)
            continue; /* EINTR */
        if (signo == SIGCHLD) {
            reap_children();
            continue;
        }
        shut_down(&set, signo);
        return 0;
    }
}
