/* Timestamps as the API and the on-disk files write them: RFC 3339 in UTC with second
 * precision, "2026-01-20T10:30:00Z". */
#ifndef SHED_TIMEUTIL_H
#define SHED_TIMEUTIL_H

#include <time.h>

#define RFC3339_SIZE 21 /* "YYYY-MM-DDTHH:MM:SSZ" and its NUL */

/* Formats when (seconds since the epoch, negative before 1970) into out: 0, or -1 with out
 * set to "" when its year is outside 0000-9999, which RFC 3339 cannot write. */
int format_rfc3339(time_t when, char out[RFC3339_SIZE]);
/* format_rfc3339 of the current time. */
int format_rfc3339_now(char out[RFC3339_SIZE]);

#endif
