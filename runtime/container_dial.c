/* Dialing 127.0.0.1:port inside a shed: the shed's loopback exists only in its own network
 * namespace.
 *
 * A socket belongs to the network namespace of the thread that created it, forever. So a
 * short-lived thread joins the shed's namespace with setns(CLONE_NEWNET) — which changes the
 * namespace of the calling thread only, never of the other threads of the server —, creates
 * and connects the socket, and exits; the caller keeps the connected fd. No thread ever
 * switches back, and no thread outside this file is in a shed's namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "container_internal.h"

struct dial_job {
    int netns_fd;
    uint16_t port;
    int fd;              /* out: the connected socket */
    struct shed_err err; /* out */
};

static void *dial_in_namespace(void *arg)
{
    struct dial_job *job = arg;
    if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
        shed_errf_errno(&job->err, SHED_E_BACKEND_ERROR, errno,
                        "cannot enter the shed's network namespace");
        return NULL;
    }
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        shed_errf_errno(&job->err, SHED_E_BACKEND_ERROR, errno, "socket");
        return NULL;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(job->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (TEMP_FAILURE_RETRY(connect(fd, (struct sockaddr *)&addr, sizeof addr)) < 0) {
        shed_errf_errno(&job->err,
                        errno == ECONNREFUSED ? SHED_E_CONNECT_FAILED : SHED_E_BACKEND_ERROR, errno,
                        "cannot connect to 127.0.0.1:%u in the shed", (unsigned)job->port);
        return NULL;
    }
    job->fd = steal_fd(&fd);
    return NULL;
}

int container_dial(pid_t init_pid, uint64_t init_start_time, uint16_t port, int *fd,
                   struct shed_err *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)init_pid);
    struct dial_job job = {.netns_fd = open(path, O_RDONLY | O_CLOEXEC), .port = port, .fd = -1};
    if (job.netns_fd < 0)
        return shed_errf_errno(err, SHED_E_SHED_NOT_RUNNING, errno, "shed init %d is gone",
                               (int)init_pid);
    /* Verified after opening: the namespace fd is the shed's if the pid is still its init. */
    if (!container_proc_is(init_pid, init_start_time)) {
        close(job.netns_fd);
        return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed init %d is gone", (int)init_pid);
    }
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, dial_in_namespace, &job);
    if (rc != 0) {
        close(job.netns_fd);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, rc, "pthread_create");
    }
    pthread_join(thread, NULL);
    close(job.netns_fd);
    if (job.fd < 0) {
        if (err != NULL)
            *err = job.err;
        return -1;
    }
    *fd = job.fd;
    return 0;
}
