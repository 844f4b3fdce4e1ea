/* Crash points for tests (see testhook.h). */
#include "testhook.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

void shed_test_pause(const char *point)
{
    const char *wanted = getenv("SHED_TEST_PAUSE_AT");
    if (wanted == NULL || strcmp(wanted, point) != 0)
        return;
    const char *marker = getenv("SHED_TEST_PAUSE_MARKER");
    if (marker != NULL && marker[0] != '\0') {
        int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (write_all(fd, point, strlen(point)) < 0) {
                /* the test then times out waiting: nothing better to do here */
            }
            close(fd);
        }
    }
    for (;;)
        pause();
}
