/* The shed's seccomp filter, as data: config.json's linux.seccomp, which runc compiles (no
 * libseccomp in our code).
 *
 * The policy is that of Docker's default profile for a container without CAP_SYS_ADMIN (the
 * sheds get Docker's default capability set): everything not listed fails with EPERM. So, among
 * others, these are refused:
 *   keyctl, add_key, request_key     the kernel keyring is not namespaced (host root's keys)
 *   unshare, setns; clone with any CLONE_NEW* flag; clone3 (ENOSYS: libc falls back to clone)
 *                                    no nested namespaces, in particular no user namespace
 *                                    with a full capability set
 *   mount, umount2, fsopen, fsmount, open_tree, move_mount, mount_setattr, pivot_root
 *   bpf, perf_event_open, userfaultfd, kexec_load, kexec_file_load, init_module,
 *   finit_module, delete_module, acct, swapon/swapoff, reboot, syslog, quotactl,
 *   settimeofday/clock_settime, iopl/ioperm, lookup_dcookie, fanotify_init, name handles
 *   (open_by_handle_at), personality other than the few harmless values,
 *   socket(AF_VSOCK)
 * and, unlike Docker's profile until recently, io_uring_setup/enter/register: io_uring
 * reaches most of the kernel without passing through the syscall filter at all.
 *
 * The allow list below is grouped by purpose; a syscall the running kernel or architecture
 * does not know is skipped by runc. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>

#include "container_internal.h"

/* The syscalls a shed may make without conditions. */
static const char *const allowed_syscalls[] = {
    /* files and directories */
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "_llseek",
    "lseek",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "name_to_handle_at",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    /* extended attributes */
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "setxattr",
    /* asynchronous I/O (the old AIO interface; io_uring is not allowed) */
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioprio_get",
    "ioprio_set",
    /* memory */
    "brk",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    /* processes, threads, credentials */
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "vfork",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "get_thread_area",
    "gettid",
    "getuid",
    "getuid32",
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "rseq",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "ugetrlimit",
    "uname",
    "sysinfo",
    "wait4",
    "waitid",
    "waitpid",
    "chroot",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    /* signals */
    "alarm",
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    /* time */
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    /* waiting on fds */
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "futex",
    "futex_time64",
    "futex_waitv",
    "_newselect",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "ioctl",
    /* sockets (socket itself: below, with its family checked) */
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
    /* System V IPC and POSIX message queues (their own namespaces) */
    "ipc",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    /* random */
    "getrandom",
};

#if defined(__x86_64__)
static const char *const architectures[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
static const char *const arch_syscalls[] = {"arch_prctl", "modify_ldt"};
#elif defined(__aarch64__)
static const char *const architectures[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
static const char *const arch_syscalls[] = {"arm_fadvise64_64", "arm_sync_file_range",
                                            "sync_file_range2", "breakpoint",
                                            "cacheflush",       "set_tls"};
#else
#error "the seccomp profile lists no architecture for this target"
#endif

/* clone is allowed only without namespace flags: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC |
 * NEWUSER | NEWPID | NEWNET (masked with them, the flags must be 0). */
#define CLONE_NAMESPACE_FLAGS 0x7E020000ULL

/* personality(2) values programs use harmlessly: PER_LINUX, PER_LINUX32, UNAME26,
 * UNAME26 | PER_LINUX32, and 0xffffffff (the query). */
static const json_int_t personalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

/* AF_VSOCK: the host's vsock, if it has one, is not the shed's. */
#define AF_VSOCK_FAMILY 40

static json_t *names_json(const char *const *names, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < count; i++)
        if (json_array_append_new(array, json_string(names[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

#define NAMES(list) names_json(list, sizeof list / sizeof list[0])

static json_t *rule_allow(json_t *names)
{
    return json_pack("{s:o, s:s}", "names", names, "action", "SCMP_ACT_ALLOW");
}

/* Allowed when argument index compares as op says: (OCI) value and valueTwo are libseccomp's
 * two operands; for SCMP_CMP_MASKED_EQ the mask and the value the masked argument must have. */
static json_t *rule_allow_if(const char *name, unsigned index, json_int_t value,
                             json_int_t value_two, const char *op)
{
    return json_pack("{s:[s], s:s, s:[{s:i, s:I, s:I, s:s}]}", "names", name, "action",
                     "SCMP_ACT_ALLOW", "args", "index", (int)index, "value", value, "valueTwo",
                     value_two, "op", op);
}

static int append(json_t *rules, json_t *rule)
{
    return rule != NULL ? json_array_append_new(rules, rule) : -1;
}

static json_t *syscall_rules(void)
{
    json_t *rules = json_array();
    if (rules == NULL)
        return NULL;
    int rc = append(rules, rule_allow(NAMES(allowed_syscalls)));
    rc |= append(rules, rule_allow(NAMES(arch_syscalls)));
    rc |= append(rules, rule_allow_if("clone", 0, (json_int_t)CLONE_NAMESPACE_FLAGS, 0,
                                      "SCMP_CMP_MASKED_EQ"));
    rc |= append(rules, rule_allow_if("socket", 0, AF_VSOCK_FAMILY, 0, "SCMP_CMP_NE"));
    for (size_t i = 0; i < sizeof personalities / sizeof personalities[0]; i++)
        rc |= append(rules, rule_allow_if("personality", 0, personalities[i], 0, "SCMP_CMP_EQ"));
    /* ENOSYS rather than EPERM: glibc then falls back to clone, which is checked above. */
    rc |= append(rules, json_pack("{s:[s], s:s, s:i}", "names", "clone3", "action",
                                  "SCMP_ACT_ERRNO", "errnoRet", ENOSYS));
    if (rc != 0) {
        json_decref(rules);
        return NULL;
    }
    return rules;
}

json_t *container_seccomp_json(void)
{
    return json_pack("{s:s, s:i, s:o, s:o}", "defaultAction", "SCMP_ACT_ERRNO", "defaultErrnoRet",
                     EPERM, "architectures", NAMES(architectures), "syscalls", syscall_rules());
}
