#include "sockutil.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

int sock_send_all(int fd, const void *data, size_t len)
{
    const char *next = data;
    while (len > 0) {
        ssize_t n = TEMP_FAILURE_RETRY(send(fd, next, len, MSG_NOSIGNAL));
        if (n <= 0)
            return -1;
        next += n;
        len -= (size_t)n;
    }
    return 0;
}
