#include "timeutil.h"

#include <stdio.h>
#include <string.h>

int format_rfc3339(time_t when, char out[RFC3339_SIZE])
{
    struct tm tm;
    out[0] = '\0';
    /* tm_year counts from 1900; checked before the addition so it cannot overflow. */
    if (gmtime_r(&when, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -1;
    /* Room for any int in every field, so the compiler can see nothing is cut; the fields of a
     * gmtime_r result always fit RFC3339_SIZE. */
    char text[80];
    int len = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (len != RFC3339_SIZE - 1)
        return -1;
    memcpy(out, text, RFC3339_SIZE);
    return 0;
}

int format_rfc3339_now(char out[RFC3339_SIZE])
{
    return format_rfc3339(time(NULL), out);
}
