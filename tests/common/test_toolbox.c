/* The small pieces of common/: RFC 3339 timestamps, string vectors, array growth and the
 * cleanup attributes for directories, JSON values and lock files. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "common/timeutil.h"
#include "harness/check.h"

/* ---- RFC 3339 ---------------------------------------------------------------------------- */

static void check_rfc3339(time_t when, const char *expected)
{
    char out[RFC3339_SIZE];
    int rc = format_rfc3339(when, out);
    if (rc != 0 || strcmp(out, expected) != 0)
        fprintf(stderr, "  format_rfc3339(%lld) = %d \"%s\", expected \"%s\"\n", (long long)when,
                rc, out, expected);
    CHECK(rc == 0);
    CHECK_STR_EQ(out, expected);
}

static void test_rfc3339_of_known_instants(void)
{
    check_rfc3339(0, "1970-01-01T00:00:00Z");
    check_rfc3339(1768905000, "2026-01-20T10:30:00Z");
    check_rfc3339(1709208000, "2024-02-29T12:00:00Z"); /* a leap day */
    check_rfc3339(-1, "1969-12-31T23:59:59Z");
    check_rfc3339(-2208988800LL, "1900-01-01T00:00:00Z");
    check_rfc3339(2147483647, "2038-01-19T03:14:07Z"); /* the last 32-bit second */
    check_rfc3339(2147483648LL, "2038-01-19T03:14:08Z");
    check_rfc3339(4102444800LL, "2100-01-01T00:00:00Z");
    check_rfc3339(-62167219200LL, "0000-01-01T00:00:00Z");
    check_rfc3339(253402300799LL, "9999-12-31T23:59:59Z");
}

static void test_rfc3339_refuses_years_it_cannot_write(void)
{
    char out[RFC3339_SIZE] = "garbage";
    CHECK(format_rfc3339(253402300800LL, out) == -1); /* year 10000 */
    CHECK_STR_EQ(out, "");
    strcpy(out, "garbage");
    CHECK(format_rfc3339(-62167219201LL, out) == -1); /* year -1 */
    CHECK_STR_EQ(out, "");
}

static void test_rfc3339_now_is_the_current_time(void)
{
    char before[RFC3339_SIZE], now[RFC3339_SIZE], after[RFC3339_SIZE];
    CHECK(format_rfc3339(time(NULL), before) == 0);
    CHECK(format_rfc3339_now(now) == 0);
    CHECK(format_rfc3339(time(NULL), after) == 0);
    /* Same-length RFC 3339 UTC stamps sort like the instants they name. */
    CHECK(strlen(now) == RFC3339_SIZE - 1);
    CHECK(strcmp(before, now) <= 0 && strcmp(now, after) <= 0);
}

/* ---- strv -------------------------------------------------------------------------------- */

static void test_strv_adds_copies_and_stays_null_terminated(void)
{
    cleanup_strv struct strv v = STRV_INIT;
    CHECK(v.items == NULL && v.count == 0);
    CHECK(!strv_contains(&v, "a"));
    char name[16] = "first";
    CHECK(strv_add(&v, name, NULL) == 0);
    strcpy(name, "changed"); /* the vector holds its own copy */
    CHECK_STR_EQ(v.items[0], "first");
    CHECK(v.items[1] == NULL);
    for (int i = 0; i < 100; i++)
        CHECK(strv_addf(&v, NULL, "item-%03d", i) == 0);
    CHECK(v.count == 101);
    CHECK(v.items[101] == NULL);
    CHECK_STR_EQ(v.items[100], "item-099");
    CHECK(strv_contains(&v, "item-042"));
    CHECK(!strv_contains(&v, "item-100"));
}

static void test_strv_add_unique_skips_duplicates(void)
{
    cleanup_strv struct strv v = STRV_INIT;
    CHECK(strv_add_unique(&v, "debian", NULL) == 0);
    CHECK(strv_add_unique(&v, "alpine", NULL) == 0);
    CHECK(strv_add_unique(&v, "debian", NULL) == 0);
    CHECK(v.count == 2);
    CHECK(v.items[2] == NULL);
}

static void test_strv_sort_orders_by_strcmp(void)
{
    cleanup_strv struct strv v = STRV_INIT;
    const char *input[] = {"pear", "Apple", "apple", "banana", "apple2"};
    for (size_t i = 0; i < 5; i++)
        CHECK(strv_add(&v, input[i], NULL) == 0);
    strv_sort(&v);
    const char *expected[] = {"Apple", "apple", "apple2", "banana", "pear"};
    for (size_t i = 0; i < 5; i++)
        CHECK_STR_EQ(v.items[i], expected[i]);
    CHECK(v.items[5] == NULL);
}

static void test_strv_steal_hands_out_the_array(void)
{
    struct strv v = STRV_INIT;
    CHECK(strv_add(&v, "one", NULL) == 0);
    CHECK(strv_add(&v, "two", NULL) == 0);
    char **items = strv_steal(&v);
    CHECK(v.items == NULL && v.count == 0 && v.capacity == 0);
    CHECK(items != NULL && items[2] == NULL);
    CHECK_STR_EQ(items[1], "two");
    strv_free_items(items);
    strv_free(&v); /* an empty vector frees nothing and stays usable */
    CHECK(strv_add(&v, "again", NULL) == 0 && v.count == 1);
    strv_free(&v);
    CHECK(v.items == NULL && v.count == 0);
}

/* ---- array growth ------------------------------------------------------------------------ */

static void test_array_reserve_grows_and_keeps_contents(void)
{
    cleanup_free uint32_t *items = NULL;
    size_t capacity = 0;
    struct shed_err err = {0};
    size_t reallocs = 0;
    for (uint32_t i = 0; i < 100000; i++) {
        uint32_t *before = items;
        size_t old_capacity = capacity;
        CHECK(ARRAY_RESERVE(items, capacity, (size_t)i + 1, &err) == 0);
        if (capacity != old_capacity)
            reallocs++;
        else
            CHECK(items == before); /* enough room: nothing moves */
        items[i] = i * 7;
    }
    CHECK(capacity >= 100000);
    CHECK(reallocs < 20); /* geometric: about log2(100000 / 16) */
    bool intact = true;
    for (uint32_t i = 0; i < 100000; i++)
        intact = intact && items[i] == i * 7;
    CHECK(intact);
}

static void test_array_reserve_refuses_impossible_sizes(void)
{
    cleanup_free uint64_t *items = NULL;
    size_t capacity = 0;
    struct shed_err err = {0};
    CHECK(ARRAY_RESERVE(items, capacity, 4, &err) == 0);
    items[3] = 42;
    uint64_t *before = items;
    CHECK(ARRAY_RESERVE(items, capacity, SIZE_MAX / 4, &err) == -1);
    CHECK(err.code == SHED_E_NO_MEMORY);
    CHECK(items == before && items[3] == 42); /* the old array is left alone */
    CHECK(capacity >= 4 && capacity < 1024);
}

/* ---- cleanup attributes ------------------------------------------------------------------ */

static int open_fd_count(void)
{
    int count = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    while (readdir(dir) != NULL)
        count++;
    closedir(dir);
    return count;
}

static void test_cleanup_closedir_closes_the_directory(void)
{
    int before = open_fd_count();
    {
        cleanup_closedir DIR *dir = opendir("/");
        CHECK(dir != NULL);
        CHECK(open_fd_count() == before + 1);
    }
    CHECK(open_fd_count() == before);
    {
        cleanup_closedir DIR *missing = opendir("/nonexistent/shed-test");
        CHECK(missing == NULL); /* and leaving the scope must not crash */
    }
}

static void test_cleanup_json_decref_drops_one_reference(void)
{
    json_t *kept = json_object();
    {
        cleanup_json_decref json_t *borrowed = json_incref(kept);
        CHECK(kept->refcount == 2);
        cleanup_json_decref json_t *none = NULL;
        (void)none;
    }
    CHECK(kept->refcount == 1);
    json_decref(kept);
}

static void test_cleanup_flock_releases_the_lock(void)
{
    char dir[] = "/tmp/test_toolbox.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cleanup_free char *path = fs_path_join(dir, "x.lock");
    struct shed_err err = {0};
    {
        cleanup_flock int held = -1;
        CHECK(fs_lock_file(path, false, &held, &err) == 0 && held >= 0);
        int other = -1;
        CHECK(fs_lock_file(path, false, &other, &err) == 0);
        CHECK(other == -1); /* held by the scope above */
    }
    int again = -1;
    CHECK(fs_lock_file(path, false, &again, &err) == 0);
    CHECK(again >= 0); /* released when the scope ended */
    if (again >= 0)
        close(again);
    unlink(path);
    rmdir(dir);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_rfc3339_of_known_instants),
    CHECK_TEST(test_rfc3339_refuses_years_it_cannot_write),
    CHECK_TEST(test_rfc3339_now_is_the_current_time),
    CHECK_TEST(test_strv_adds_copies_and_stays_null_terminated),
    CHECK_TEST(test_strv_add_unique_skips_duplicates),
    CHECK_TEST(test_strv_sort_orders_by_strcmp),
    CHECK_TEST(test_strv_steal_hands_out_the_array),
    CHECK_TEST(test_array_reserve_grows_and_keeps_contents),
    CHECK_TEST(test_array_reserve_refuses_impossible_sizes),
    CHECK_TEST(test_cleanup_closedir_closes_the_directory),
    CHECK_TEST(test_cleanup_json_decref_drops_one_reference),
    CHECK_TEST(test_cleanup_flock_releases_the_lock),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
