/* shed-logger: the drainer of one shed's console, in the style of podman's conmon.
 *
 *   shed-logger MAX_BYTES PATH      (stdin: the read end of the shed's console pipe)
 *
 * A shed's PID 1 writes its stdout/stderr into a pipe, never into a host file: a host fd in
 * the shed could be written without limit (`head -c 200M /dev/zero > /proc/1/fd/1`). This
 * program reads the pipe until every writer is gone and appends what it reads to PATH
 * (console.log) with the cap and the one rotation of common/rotating_log.h.
 *
 * Sheds outlive the server, so the logger must too: it opens PATH, then forks; the parent
 * prints the child's pid on stdout and exits 0 (1 with a message when PATH cannot be opened),
 * so the server reaps it at once and the child is re-parented away from the server. The
 * child never stops reading while the pipe is open: when the log cannot be written (a full
 * disk), the bytes are dropped rather than the shed blocked. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rotating_log.h"

#define READ_CHUNK (64u * 1024u)

static void drain(int in, struct rotating_log *log)
{
    static char buf[READ_CHUNK];
    for (;;) {
        ssize_t got = read(in, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return; /* every writer is gone (or the pipe broke): the shed stopped */
        struct shed_err ignored = {0};
        rotating_log_write(log, buf, (size_t)got, &ignored);
    }
}

static int parse_max_bytes(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value == 0 || text[0] == '-')
        return -1;
    *out = value;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t max_bytes = 0;
    if (argc != 3 || parse_max_bytes(argv[1], &max_bytes) < 0) {
        fprintf(stderr, "usage: shed-logger MAX_BYTES PATH  (the console pipe on stdin)\n");
        return 2;
    }
    struct rotating_log log;
    struct shed_err err = {0};
    if (rotating_log_open(&log, argv[2], max_bytes, &err) < 0) {
        fprintf(stderr, "shed-logger: %s\n", err.msg);
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "shed-logger: fork: %s\n", strerror(errno));
        rotating_log_close(&log);
        return 1;
    }
    if (child > 0) {
        rotating_log_close(&log); /* the child's copy is the one that writes */
        printf("%d\n", (int)child);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    /* The server's terminal or session going away is none of the logger's business. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    fclose(stdout);
    drain(STDIN_FILENO, &log);
    rotating_log_close(&log);
    return 0;
}
