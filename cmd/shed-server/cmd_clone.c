/* shed-server clone SRC DST: the instance-rootfs clone (reflink, else a sparse copy), for
 * scripts and benchmarks. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "cli_util.h"
#include "commands.h"
#include "runtime/clone.h"

static void print_help(FILE *out)
{
    fputs("Usage: shed-server clone [--json] SRC DST\n"
          "\n"
          "Copies SRC to DST (which must not exist) the way a new shed gets its rootfs: a\n"
          "reflink (FICLONE) where the file system shares extents, else copy_file_range or a\n"
          "read/write copy of SRC's data segments that keeps holes. Prints the strategy used\n"
          "and the time the copy took.\n"
          "\n"
          "Options:\n"
          "      --json   print {\"src\",\"dst\",\"strategy\",\"elapsed_ms\"}\n"
          "  -h, --help   show this help\n",
          out);
}

static double elapsed_ms(const struct timespec *start, const struct timespec *end)
{
    return (double)(end->tv_sec - start->tv_sec) * 1e3 +
           (double)(end->tv_nsec - start->tv_nsec) / 1e6;
}

static void print_json_string(const char *text)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

int cmd_clone(int argc, char **argv)
{
    enum { OPT_JSON = 256 };
    static const struct option options[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_JSON: json = true; break;
        case 'h': print_help(stdout); return EXIT_OK;
        default: return cli_usage_error("clone", "invalid option");
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("clone", "expected SRC and DST");
    const char *src = argv[optind], *dst = argv[optind + 1];

    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    enum clone_strategy strategy;
    struct shed_err err;
    if (clone_file(src, dst, &strategy, &err) < 0)
        return cli_fail(&err);
    clock_gettime(CLOCK_MONOTONIC, &end);

    if (json) {
        fputs("{\"src\":", stdout);
        print_json_string(src);
        fputs(",\"dst\":", stdout);
        print_json_string(dst);
        printf(",\"strategy\":\"%s\",\"elapsed_ms\":%.3f}\n", clone_strategy_name(strategy),
               elapsed_ms(&start, &end));
    } else {
        printf("%s -> %s: %s in %.3f ms\n", src, dst, clone_strategy_name(strategy),
               elapsed_ms(&start, &end));
    }
    return EXIT_OK;
}
