/* shed-server clone SRC DST: the instance-rootfs clone (reflink, else a sparse copy), for
 * scripts and benchmarks. */
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "cli_util.h"
#include "commands.h"
#include "runtime/clone.h"

const struct cli_option clone_options[] = {
    {"json", 'j', NULL, "print {\"src\",\"dst\",\"strategy\",\"elapsed_ms\"} (also: --format json)",
     OPT_JSON},
    SERVER_OPTIONS_END,
};

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

int cmd_clone(const struct cli_call *call)
{
    bool json = cli_flag(call, OPT_JSON);
    const char *src = call->operands[0], *dst = call->operands[1];

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
