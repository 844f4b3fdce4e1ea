/* Test helper: prints what oci_resolve answers for REF [PLATFORM], or the error as one line. */
#include <stdio.h>

#include "oci/oci.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s REF [OS/ARCH[/VARIANT]]\n", argv[0]);
        return 2;
    }
    struct shed_err err = {0};
    struct oci_pull_opts opts = {.platform = argc == 3 ? argv[2] : NULL};
    char digest[DIGEST_STRING_LEN + 1];
    if (oci_global_init(&err) < 0 || oci_resolve(argv[1], &opts, digest, &err) < 0) {
        fprintf(stderr, "resolve: %s: %s\n", shed_code_name(err.code), err.msg);
        return 1;
    }
    printf("%s\n", digest);
    return 0;
}
