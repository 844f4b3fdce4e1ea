/* A minimal test harness for shed's C unit tests: CHECK records a failure and goes on,
 * RUN_TEST runs one test function, TEST_SKIP exits with ctest's skip code 77. */
#ifndef SHED_TEST_CHECK_H
#define SHED_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                       \
    do {                                                                                           \
        const char *h_ = (haystack), *n_ = (needle);                                               \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                                \
            fprintf(stderr, "  %s:%d: expected \"%s\" to contain \"%s\"\n", __FILE__, __LINE__,    \
                    h_ != NULL ? h_ : "(null)", n_);                                               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,                     \
                    a_ != NULL ? a_ : "(null)", b_ != NULL ? b_ : "(null)");                       \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        int before_ = check_failures;                                                              \
        fn();                                                                                      \
        printf("%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn);                       \
    } while (0)

#define TEST_SKIP(reason)                                                                          \
    do {                                                                                           \
        printf("SKIP: %s\n", reason);                                                              \
        exit(77);                                                                                  \
    } while (0)

#define TEST_EXIT() (check_failures == 0 ? 0 : 1)

#endif
