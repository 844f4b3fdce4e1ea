/* Deterministic crash points for tests: the server stops dead at a named point so a test can
 * kill -9 it exactly there (never by timing).
 *
 *   SHED_TEST_PAUSE_AT=<point>          the point to stop at ("create-metadata", ...)
 *   SHED_TEST_PAUSE_MARKER=<file>       written (the point's name) once the point is reached
 *
 * When SHED_TEST_PAUSE_AT names the point, shed_test_pause writes the marker and then sleeps
 * until the process is killed; otherwise it returns at once. Without the variables (every
 * real deployment) it is a getenv and nothing more. The points are listed in
 * docs/testing.md. */
#ifndef SHED_TESTHOOK_H
#define SHED_TESTHOOK_H

void shed_test_pause(const char *point);

#endif
