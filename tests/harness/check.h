/* The harness of shed's C tests. A test binary is a table of test functions:
 *
 *     static void test_empty_name_is_refused(void) { CHECK(parse("") < 0); }
 *     static const struct check_test tests[] = {CHECK_TEST(test_empty_name_is_refused)};
 *     int main(int argc, char **argv) { return CHECK_MAIN(argc, argv, tests); }
 *
 *     prog --list   prints the test names, one a line (ctest's entries are generated from it:
 *                   shed_c_test in tests/CMakeLists.txt)
 *     prog NAME     runs that test alone: exit 0 passed, 1 failed, 77 skipped (ctest's
 *                   SKIP_RETURN_CODE)
 *     prog          runs every test in order: 1 if one failed, 77 if all skipped, else 0
 *
 * CHECK* record a failure and go on, so one run reports every broken expectation;
 * CHECK_FATAL ends the program (for a step the rest of the test cannot do without);
 * CHECK_SKIP ends the current test as skipped, with the reason printed. A machine where a
 * skip means something broke (CI runs as root with runc, loop devices and XFS) sets
 * SHED_TEST_STRICT=1, and every skip is a failure there.
 *
 * check_main(argc, argv, tests, count, setup, teardown): setup and teardown (either may be
 * NULL) run around each test; teardown also runs when the test exits the program. */
#ifndef SHED_TEST_CHECK_H
#define SHED_TEST_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_EXIT_SKIP 77

struct check_test {
    const char *name;
    void (*run)(void);
};

#define CHECK_TEST(fn)                                                                             \
    {                                                                                              \
#fn, fn                                                                                    \
    }
#define CHECK_MAIN(argc, argv, tests)                                                              \
    check_main((argc), (argv), (tests), sizeof(tests) / sizeof((tests)[0]), NULL, NULL)

/* Failures of the running test; skip reason of the running test ("" when not skipped). */
static int check_failures;
static char check_skip_reason[512];

#define CHECK_API static __attribute__((unused))

CHECK_API bool check_strict(void)
{
    const char *strict = getenv("SHED_TEST_STRICT");
    return strict != NULL && strict[0] != '\0' && strcmp(strict, "0") != 0;
}

/* Records a failure of the running test, with file:line and a message. */
CHECK_API void __attribute__((format(printf, 3, 4)))
check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "  %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    check_failures++;
}

/* Ends the program with a failure; teardown still runs (through atexit). */
CHECK_API void __attribute__((noreturn, format(printf, 3, 4)))
check_fatal(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "  %s:%d: fatal: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

CHECK_API void __attribute__((format(printf, 1, 2))) check_skip(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(check_skip_reason, sizeof(check_skip_reason), fmt, ap);
    va_end(ap);
    if (check_skip_reason[0] == '\0')
        snprintf(check_skip_reason, sizeof(check_skip_reason), "(no reason given)");
}

#define CHECK_FAIL(...) check_fail(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK_FATAL(...) check_fatal(__FILE__, __LINE__, __VA_ARGS__)

/* Ends the current test (a void function) as skipped; only in the test function itself. */
#define CHECK_SKIP(...)                                                                            \
    do {                                                                                           \
        check_skip(__VA_ARGS__);                                                                   \
        return;                                                                                    \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            CHECK_FAIL("CHECK failed: %s", #cond);                                                 \
    } while (0)

/* Integers of any type up to 64 bits, compared as long long. */
#define CHECK_EQ(actual, expected)                                                                 \
    do {                                                                                           \
        long long actual_ = (long long)(actual), expected_ = (long long)(expected);                \
        if (actual_ != expected_)                                                                  \
            CHECK_FAIL("%s is %lld, expected %lld", #actual, actual_, expected_);                  \
    } while (0)

/* expr returns < 0 on failure after filling err (a struct shed_err *). */
#define CHECK_OK(expr, err)                                                                        \
    do {                                                                                           \
        if ((expr) < 0)                                                                            \
            CHECK_FAIL("%s failed: %s", #expr, (err)->msg);                                        \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            CHECK_FAIL("%s is \"%s\", expected \"%s\"", #a, a_ != NULL ? a_ : "(null)",            \
                       b_ != NULL ? b_ : "(null)");                                                \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                       \
    do {                                                                                           \
        const char *h_ = (haystack), *n_ = (needle);                                               \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            CHECK_FAIL("\"%s\" not found in:\n%s", n_, h_ != NULL ? h_ : "(null)");                \
    } while (0)

/* ---- the runner ---- */

static void (*check_teardown_pending)(void);

CHECK_API void check_teardown_at_exit(void)
{
    void (*teardown)(void) = check_teardown_pending;

    check_teardown_pending = NULL;
    if (teardown != NULL)
        teardown();
}

enum check_outcome { CHECK_PASSED, CHECK_FAILED, CHECK_SKIPPED };

/* Runs one test; prints "ok", "FAIL" or "SKIP" with its name. */
CHECK_API enum check_outcome check_run_one(const struct check_test *test, void (*setup)(void),
                                           void (*teardown)(void))
{
    check_failures = 0;
    check_skip_reason[0] = '\0';
    check_teardown_pending = teardown;
    if (setup != NULL)
        setup();
    test->run();
    check_teardown_at_exit();
    if (check_skip_reason[0] != '\0' && check_failures == 0) {
        if (!check_strict()) {
            printf("SKIP %s: %s\n", test->name, check_skip_reason);
            return CHECK_SKIPPED;
        }
        fprintf(stderr, "  %s: skipped, but SHED_TEST_STRICT forbids skips: %s\n", test->name,
                check_skip_reason);
        check_failures++;
    }
    printf("%s %s\n", check_failures == 0 ? "ok  " : "FAIL", test->name);
    fflush(stdout);
    return check_failures == 0 ? CHECK_PASSED : CHECK_FAILED;
}

CHECK_API int check_main(int argc, char **argv, const struct check_test *tests, size_t count,
                         void (*setup)(void), void (*teardown)(void))
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: %s [--list | TEST]\n", argv[0]);
        return 2;
    }
    /* stdout and stderr interleave in order in ctest's log. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(check_teardown_at_exit);
    if (argc == 2) {
        for (size_t i = 0; i < count; i++) {
            if (strcmp(argv[1], tests[i].name) != 0)
                continue;
            enum check_outcome outcome = check_run_one(&tests[i], setup, teardown);
            return outcome == CHECK_PASSED ? 0 : outcome == CHECK_SKIPPED ? CHECK_EXIT_SKIP : 1;
        }
        fprintf(stderr, "%s: no test named %s (see --list)\n", argv[0], argv[1]);
        return 2;
    }
    size_t failed = 0, skipped = 0;
    for (size_t i = 0; i < count; i++) {
        enum check_outcome outcome = check_run_one(&tests[i], setup, teardown);
        failed += outcome == CHECK_FAILED;
        skipped += outcome == CHECK_SKIPPED;
    }
    printf("%zu passed, %zu failed, %zu skipped\n", count - failed - skipped, failed, skipped);
    if (failed > 0)
        return 1;
    return count > 0 && skipped == count ? CHECK_EXIT_SKIP : 0;
}

#endif
