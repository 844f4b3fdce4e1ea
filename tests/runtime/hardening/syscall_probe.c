/* syscall_probe: makes, inside a shed, the raw syscalls the seccomp filter must refuse (and a
 * few it must allow), and prints one line per syscall: "<name> ok" or "<name> <errno name>".
 * Built static so it runs in any image (the test copies it into the shed's /tmp). Each call is
 * made so that, were it allowed, it would succeed or fail with an argument error, never with
 * EPERM/ENOSYS: those can only come from the filter. */
#include <errno.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "other";
    }
}

static void report(const char *name, long rc)
{
    printf("%s %s\n", name, errno_name(rc < 0 ? errno : 0));
}

/* A child made with raw clone(flags) exits at once; the parent reaps it. */
static long try_clone(unsigned long flags)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

int main(void)
{
    errno = 0;
    /* refused */
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    report("add_key", syscall(SYS_add_key, "user", "shed-probe", "x", 1, KEY_SPEC_SESSION_KEYRING));
    report("request_key", syscall(SYS_request_key, "user", "shed-probe", NULL, 0));
    report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    report("unshare_net", syscall(SYS_unshare, CLONE_NEWNET));
    report("clone_newuser", try_clone(CLONE_NEWUSER));
    report("clone3", syscall(SYS_clone3, NULL, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("socket_vsock", syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0));
    /* allowed: a plain fork, a socket, getpid */
    report("clone_plain", try_clone(0));
    long fd = syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    report("socket_unix", fd);
    if (fd >= 0)
        close((int)fd);
    report("getpid", syscall(SYS_getpid));
    return 0;
}
