/* The progress renderer (progress.h). */
#include "cmd/common/progress.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"

#define REDRAW_INTERVAL 0.1 /* seconds */
#define BAR_CELLS 20
#define DEFAULT_COLUMNS 80

/* The fd of a terminal holding a partial progress line, for progress_signal_clear. */
static volatile sig_atomic_t partial_line_fd = -1;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int terminal_columns(FILE *out)
{
    struct winsize size;
    if (ioctl(fileno(out), TIOCGWINSZ, &size) == 0 && size.ws_col >= 20)
        return size.ws_col;
    return DEFAULT_COLUMNS;
}

void progress_init(struct progress *p, FILE *out)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    const char *term = getenv("TERM");
    p->tty = isatty(fileno(out)) == 1 && (term == NULL || strcmp(term, "dumb") != 0);
}

/* "1m05s", "5s", "2h03m". */
static void format_duration(double seconds, char *out, size_t len)
{
    unsigned long s = seconds < 0 ? 0 : (unsigned long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(out, len, "%luh%02lum", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, len, "%lum%02lus", s / 60, s % 60);
    else
        snprintf(out, len, "%lus", s);
}

/* Bytes per second since the first update, 0 while too early to tell. */
static double current_rate(const struct progress *p, double now)
{
    double elapsed = now - p->first_update;
    if (elapsed < 0.5 || p->done <= p->first_done)
        return 0;
    return (double)(p->done - p->first_done) / elapsed;
}

/* The right part of a live line: [bar] percent, bytes, rate, ETA. */
static void format_stats(const struct progress *p, double now, bool with_bar, char *out, size_t len)
{
    char done[32], total[32], rate_text[32], eta[32];
    double rate = current_rate(p, now);
    size_t used = 0;
    out[0] = '\0';
    if (p->total > 0) {
        uint64_t shown = p->done < p->total ? p->done : p->total;
        int percent = (int)(shown * 100 / p->total);
        if (with_bar) {
            char bar[BAR_CELLS + 1];
            int filled = (int)(shown * BAR_CELLS / p->total);
            for (int i = 0; i < BAR_CELLS; i++)
                bar[i] = i < filled ? '#' : '.';
            bar[BAR_CELLS] = '\0';
            used += (size_t)snprintf(out + used, len - used, " [%s]", bar);
        }
        used += (size_t)snprintf(out + used, len - used, " %3d%% %s / %s", percent,
                                 format_size(shown, done, sizeof done),
                                 format_size(p->total, total, sizeof total));
    } else {
        used += (size_t)snprintf(out + used, len - used, " %s",
                                 format_size(p->done, done, sizeof done));
    }
    if (used < len && rate > 0) {
        used += (size_t)snprintf(out + used, len - used, "  %s/s",
                                 format_size((uint64_t)rate, rate_text, sizeof rate_text));
        if (used < len && p->total > p->done) {
            format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
            snprintf(out + used, len - used, "  ETA %s", eta);
        }
    }
}

/* At most max bytes of text, not cutting a UTF-8 sequence. */
static int fitting_length(const char *text, int max)
{
    int len = (int)strlen(text);
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
        max--;
    return max;
}

static void draw(struct progress *p, double now)
{
    int columns = terminal_columns(p->out) - 1; /* never the last column: no wrap */
    char stats[160] = "";
    if (p->has_bytes) {
        format_stats(p, now, true, stats, sizeof stats);
        if ((int)strlen(stats) + 12 > columns)
            format_stats(p, now, false, stats, sizeof stats);
        if ((int)strlen(stats) + 12 > columns)
            stats[0] = '\0';
    }
    int room = columns - (int)strlen(stats);
    int title_len = fitting_length(p->title, room > 0 ? room : 0);
    fprintf(p->out, "\r%.*s%s\033[K", title_len, p->title, stats);
    fflush(p->out);
    p->drawn = true;
    partial_line_fd = fileno(p->out);
    p->last_draw = now;
}

static void erase(struct progress *p)
{
    if (!p->drawn)
        return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = false;
    partial_line_fd = -1;
}

void progress_begin(struct progress *p, const char *fmt, ...)
{
    progress_end(p, NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->title, sizeof p->title, fmt, ap);
    va_end(ap);
    p->open = true;
    p->has_bytes = false;
    p->done = p->total = p->first_done = 0;
    p->started = p->first_update = now_seconds();
    if (p->tty)
        draw(p, p->started);
}

void progress_update_phase(struct progress *p, const char *title, uint64_t done, uint64_t total)
{
    if (!p->open || strcmp(title, p->title) != 0)
        progress_begin(p, "%s", title);
    progress_update(p, done, total);
}

void progress_retitle(struct progress *p, const char *fmt, ...)
{
    if (!p->open)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->title, sizeof p->title, fmt, ap);
    va_end(ap);
    if (p->tty)
        draw(p, now_seconds());
}

void progress_update(struct progress *p, uint64_t done, uint64_t total)
{
    if (!p->open)
        return;
    double now = now_seconds();
    if (!p->has_bytes) {
        p->has_bytes = true;
        p->first_done = done;
        p->first_update = now;
    }
    p->done = done;
    p->total = total;
    if (p->tty && (now - p->last_draw >= REDRAW_INTERVAL || (total > 0 && done >= total)))
        draw(p, now);
}

/* "27.0 MiB in 6.5 s (4.1 MiB/s)" */
static void format_summary(const struct progress *p, double now, char *out, size_t len)
{
    char size[32], rate_text[32];
    uint64_t bytes = p->total > 0 && p->done >= p->total ? p->total : p->done;
    double elapsed = now - p->started;
    double rate = now - p->first_update > 0.05 && p->done > p->first_done
                      ? (double)(p->done - p->first_done) / (now - p->first_update)
                      : 0;
    int used = snprintf(out, len, elapsed < 0.1 ? "%s in %.2f s" : "%s in %.1f s",
                        format_size(bytes, size, sizeof size), elapsed);
    if (rate > 0 && used > 0 && (size_t)used < len)
        snprintf(out + used, len - used, " (%s/s)",
                 format_size((uint64_t)rate, rate_text, sizeof rate_text));
}

void progress_end(struct progress *p, const char *fmt, ...)
{
    if (!p->open)
        return;
    char result[256] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(result, sizeof result, fmt, ap);
        va_end(ap);
    }
    char summary[128] = "";
    if (p->has_bytes)
        format_summary(p, now_seconds(), summary, sizeof summary);
    erase(p);
    const char *separator = result[0] != '\0' || summary[0] != '\0' ? ": " : "";
    const char *between = result[0] != '\0' && summary[0] != '\0' ? ", " : "";
    fprintf(p->out, "%s%s%s%s%s\n", p->title, separator, result, between, summary);
    fflush(p->out);
    p->open = false;
}

void progress_drop_bytes(struct progress *p)
{
    p->has_bytes = false;
}

void progress_clear(struct progress *p)
{
    erase(p);
    p->open = false;
}

void progress_printf(struct progress *p, FILE *stream, const char *fmt, ...)
{
    bool redraw = p->drawn;
    erase(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stream, fmt, ap);
    va_end(ap);
    fputc('\n', stream);
    fflush(stream);
    if (redraw && p->open)
        draw(p, now_seconds());
}

void progress_signal_clear(void)
{
    int fd = partial_line_fd;
    if (fd >= 0) {
        static const char erase_line[] = "\r\033[K";
        ssize_t ignored = write(fd, erase_line, sizeof erase_line - 1);
        (void)ignored;
        partial_line_fd = -1;
    }
}
