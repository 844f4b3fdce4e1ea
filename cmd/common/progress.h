/* The one progress renderer of both programs (shed-server pull, convert, pull-images; shed
 * create), so progress looks and behaves the same everywhere.
 *
 * A task is a sequence of phases ("four: download", "four: convert", "image: Pulling ...").
 * On a terminal each phase is one line, redrawn in place (at most 10 times a second) with
 * bytes, rate and ETA when it has a byte count, cut to the terminal's width (so it never
 * wraps), and completed with a summary and a newline when the phase ends: one line per
 * phase, never two phases on one line. Lines printed meanwhile (progress_printf) go above
 * the running phase. Not on a terminal (or TERM=dumb): no redraws, one plain line when a
 * phase ends, plus the progress_printf lines.
 *
 * Nothing is left half drawn: progress_end completes the line, progress_clear erases it
 * (before an error message), progress_signal_clear erases it from a signal handler (Ctrl-C).
 *
 * Not thread safe: one thread drives a renderer. */
#ifndef SHED_CMD_PROGRESS_H
#define SHED_CMD_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress {
    FILE *out;
    bool tty;
    bool open;  /* a phase is running */
    bool drawn; /* part of its line is on the terminal */
    char title[256];
    bool has_bytes;
    uint64_t done, total; /* total 0: unknown */
    uint64_t first_done;  /* done at the first update: the rate counts only this phase's */
    double started;       /* seconds, CLOCK_MONOTONIC */
    double first_update;
    double last_draw;
};

/* out: where the progress goes (stderr). Decides once whether it is a terminal. */
void progress_init(struct progress *p, FILE *out);

/* Starts a phase, ending the running one first (as progress_end(p, NULL) does). */
void progress_begin(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Changes the running phase's title (on a terminal; elsewhere the last title is printed). */
void progress_retitle(struct progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Bytes done of total (0: unknown) in the running phase. */
void progress_update(struct progress *p, uint64_t done, uint64_t total);
/* Byte progress of the phase titled title: begins it unless it is the one running. */
void progress_update_phase(struct progress *p, const char *title, uint64_t done, uint64_t total);
/* Ends the running phase: its line becomes "TITLE: RESULT (bytes in s, rate)" and is
 * completed (a plain line when not a terminal). fmt NULL: no result text. No phase: nothing. */
void progress_end(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The running phase's end shows no byte summary (e.g. nothing had to be downloaded). */
void progress_drop_bytes(struct progress *p);
/* Forgets the running phase and erases its partial line: an error message follows. */
void progress_clear(struct progress *p);
/* A line of its own on stream (stdout or stderr), printed above the running phase. */
void progress_printf(struct progress *p, FILE *stream, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Async-signal-safe: erases the partial line a renderer left on the terminal, if any. For
 * a SIGINT handler that then dies of the signal. */
void progress_signal_clear(void);

#endif
