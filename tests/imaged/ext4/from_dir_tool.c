/* from_dir_tool DIR OUT.ext4 SIZE_BYTES: ext4_write_from_dir of DIR, for
 * tests/imaged/test_from_dir.py. Warnings on stderr; exit 1 with "CODE: message" on failure. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "imaged/ext4_writer.h"

static void on_warning(const char *message, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "warning: %s\n", message);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: from_dir_tool DIR OUT.ext4 SIZE_BYTES\n");
        return 2;
    }
    int dir_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        perror(argv[1]);
        return 1;
    }
    struct ext4_from_dir_opts opts = {.size_bytes = strtoull(argv[3], NULL, 10),
                                      .warning = on_warning};
    struct shed_err err = {0};
    int rc = ext4_write_from_dir(dir_fd, argv[2], &opts, &err);
    close(dir_fd);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", shed_code_api_name(err.code), err.msg);
        return 1;
    }
    return 0;
}
