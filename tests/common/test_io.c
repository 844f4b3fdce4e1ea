/* common/io.h: whole-buffer reads and writes against pipes whose transfers are cut short by
 * signals, and positioned I/O on a regular file. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "harness/check.h"

#define STREAM_BYTES (4u << 20)
#define SMALL_PIPE 4096

static atomic_uint signals_caught;

static void count_signal(int signo)
{
    (void)signo;
    atomic_fetch_add(&signals_caught, 1);
}

/* SIGUSR1 without SA_RESTART: a blocked read or write returns early (EINTR, or the bytes it
 * managed to move), which is exactly what the helpers must absorb. */
static void install_interrupting_handler(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

static uint8_t pattern_byte(size_t i)
{
    return (uint8_t)((i * 131u + (i >> 12)) & 0xff);
}

static uint8_t *pattern(size_t len)
{
    uint8_t *data = malloc(len);
    for (size_t i = 0; data != NULL && i < len; i++)
        data[i] = pattern_byte(i);
    return data;
}

struct writer {
    int fd;
    const uint8_t *data;
    size_t len;
    int rc;
    int saved_errno;
    atomic_bool done;
};

static void *write_all_thread(void *arg)
{
    struct writer *w = arg;
    w->rc = write_all(w->fd, w->data, w->len);
    w->saved_errno = errno;
    close(w->fd);
    atomic_store(&w->done, true);
    return NULL;
}

static void make_small_pipe(int fds[2])
{
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    /* A small pipe makes the writer block (and so be interruptible) many times over. */
    CHECK(fcntl(fds[1], F_SETPIPE_SZ, SMALL_PIPE) >= SMALL_PIPE);
}

static void test_write_all_survives_partial_writes(void)
{
    int fds[2];
    make_small_pipe(fds);
    cleanup_free uint8_t *data = pattern(STREAM_BYTES);
    CHECK(data != NULL);
    struct writer w = {.fd = fds[1], .data = data, .len = STREAM_BYTES};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, write_all_thread, &w) == 0);
    unsigned before = atomic_load(&signals_caught);
    cleanup_free uint8_t *got = malloc(STREAM_BYTES);
    size_t received = 0;
    char chunk[1000]; /* not a divisor of the pipe size: the writer is cut mid-buffer */
    for (;;) {
        /* Interrupt the writer while it is blocked on the full pipe. */
        if (!atomic_load(&w.done))
            pthread_kill(thread, SIGUSR1);
        ssize_t n = TEMP_FAILURE_RETRY(read(fds[0], chunk, sizeof chunk));
        if (n <= 0)
            break;
        if (received + (size_t)n <= STREAM_BYTES)
            memcpy(got + received, chunk, (size_t)n);
        received += (size_t)n;
    }
    pthread_join(thread, NULL);
    close(fds[0]);
    CHECK(w.rc == 0);
    CHECK(received == STREAM_BYTES);
    CHECK(received == STREAM_BYTES && memcmp(got, data, STREAM_BYTES) == 0);
    CHECK(atomic_load(&signals_caught) > before); /* the writer really was interrupted */
}

static void test_write_all_reports_a_closed_reader(void)
{
    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    close(fds[0]);
    errno = 0;
    CHECK(write_all(fds[1], "x", 1) == -1);
    CHECK(errno == EPIPE);
    close(fds[1]);
}

struct trickler {
    int fd;
    const uint8_t *data;
    size_t len;
    pthread_t reader;
};

/* Writes a few bytes at a time and interrupts the reader between them. */
static void *trickle_thread(void *arg)
{
    struct trickler *t = arg;
    for (size_t done = 0; done < t->len;) {
        size_t piece = t->len - done < 7 ? t->len - done : 7;
        if (write_all(t->fd, t->data + done, piece) < 0)
            break;
        done += piece;
        pthread_kill(t->reader, SIGUSR1);
    }
    close(t->fd);
    return NULL;
}

static void test_read_full_gathers_short_reads_until_end(void)
{
    enum { LEN = 100000, FIRST = 60000 };
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    cleanup_free uint8_t *data = pattern(LEN);
    struct trickler t = {.fd = fds[1], .data = data, .len = LEN, .reader = pthread_self()};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, trickle_thread, &t) == 0);
    cleanup_free uint8_t *got = calloc(1, LEN);
    /* The first call stops at exactly the size asked for, the second at the end of the data,
     * the third finds nothing left. */
    CHECK(read_full(fds[0], got, FIRST) == FIRST);
    CHECK(read_full(fds[0], got + FIRST, LEN) == LEN - FIRST);
    CHECK(read_full(fds[0], got, 1) == 0);
    pthread_join(thread, NULL);
    close(fds[0]);
    CHECK(memcmp(got, data, LEN) == 0);
}

static void test_read_full_reports_errors(void)
{
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    char c;
    errno = 0;
    CHECK(read_full(fds[1], &c, 1) == -1); /* the write end cannot be read */
    CHECK(errno == EBADF);
    close(fds[0]);
    close(fds[1]);
}

static void test_positioned_io_keeps_the_file_offset(void)
{
    char path[] = "/tmp/test_io.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK(write_all(fd, "0123456789", 10) == 0);
    CHECK(pwrite_all(fd, "abc", 3, 4) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    char buf[16] = {0};
    CHECK(pread_full(fd, buf, sizeof buf, 2) == 8); /* short only at the end of the file */
    CHECK_STR_EQ(buf, "23abc789");
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    CHECK(pwrite_all(fd, "END", 3, 20) == 0); /* past the end: a hole, then the bytes */
    CHECK(pread_full(fd, buf, 3, 20) == 3 && memcmp(buf, "END", 3) == 0);
    close(fd);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_write_all_survives_partial_writes),
    CHECK_TEST(test_write_all_reports_a_closed_reader),
    CHECK_TEST(test_read_full_gathers_short_reads_until_end),
    CHECK_TEST(test_read_full_reports_errors),
    CHECK_TEST(test_positioned_io_keeps_the_file_offset),
};

int main(int argc, char **argv)
{
    install_interrupting_handler();
    return CHECK_MAIN(argc, argv, tests);
}
