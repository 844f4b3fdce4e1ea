/* The router without HTTP (server/route.h): request targets whose decoded path would differ
 * from what the client wrote are refused before any handler sees them. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "harness/check.h"
#include "runtime/backend.h"
#include "server/route.h"

static struct shed_config config;
static struct backend_set no_backends;
static struct server_router *router;
static char data_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/shed-test-route-XXXXXX");
    struct shed_err err = {0};
    if (mkdtemp(data_dir) == NULL || shed_config_parse("", 0, "test.yaml", &config, &err) < 0 ||
        shed_config_use_data_dir(&config, data_dir, &err) < 0 ||
        server_router_open(&config, &no_backends, &router, &err) < 0)
        CHECK_FATAL("setup: %s", err.msg);
}

static void teardown(void)
{
    server_router_close(router);
    router = NULL;
    shed_config_free(&config);
    nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The status and error code (or "" for a success) of one request. */
static unsigned route(const char *method, const char *target, char *code, size_t code_len)
{
    struct server_route_result result;
    struct shed_err err = {0};
    if (server_route(router, method, target, NULL, "", 0, &result, &err) < 0)
        CHECK_FATAL("server_route %s %s: %s", method, target, err.msg);
    const char *found = result.body != NULL ? strstr(result.body, "\"code\":\"") : NULL;
    snprintf(code, code_len, "%.*s", found != NULL ? (int)strcspn(found + 8, "\"") : 0,
             found != NULL ? found + 8 : "");
    unsigned status = result.status;
    server_route_result_free(&result);
    return status;
}

static void check_refused(const char *method, const char *target)
{
    char code[64];
    unsigned status = route(method, target, code, sizeof code);
    if (status != 400 || strcmp(code, "INVALID_REQUEST") != 0)
        CHECK_FAIL("%s %s answered %u %s, expected 400 INVALID_REQUEST", method, target, status,
                   code);
}

static void test_nul_and_slash_escapes_never_reach_a_handler(void)
{
    /* libmicrohttpd's decoding would hand "a" to the handler for the first one. */
    check_refused("DELETE", "/api/sheds/a%00x");
    check_refused("GET", "/api/sheds/a%00");
    check_refused("GET", "/api/sheds/a%2Fb");
    check_refused("GET", "/api/sheds/a%2fb/start");
    check_refused("GET", "/api/sheds/a%5Cb");
    check_refused("GET", "/api/sheds/%0a");
    check_refused("GET", "/api/sheds/%7F");
    check_refused("GET", "/api/sheds/a\x01");
}

static void test_bad_escapes_and_dot_segments_are_refused(void)
{
    check_refused("GET", "/api/sheds/a%");
    check_refused("GET", "/api/sheds/a%4");
    check_refused("GET", "/api/sheds/a%zz");
    check_refused("GET", "/api/sheds/%2e%2e");
    check_refused("GET", "/api/sheds/../info");
    check_refused("GET", "/api/./info");
    check_refused("GET", "api/info");
    check_refused("GET", "");
}

static void test_ordinary_escapes_still_name_the_shed(void)
{
    char code[64];
    CHECK_EQ(route("GET", "/api/sheds/b%6Fx", code, sizeof code), 404);
    CHECK_STR_EQ(code, "SHED_NOT_FOUND");
    CHECK_EQ(route("GET", "/api/info?x=%00", code, sizeof code),
             200); /* the query is not the path */
    CHECK_EQ(route("GET", "/api/sheds/a%2Eb", code, sizeof code), 400);
    CHECK_STR_EQ(code, "INVALID_SHED_NAME"); /* the handler saw "a.b" */
}

static void test_connect_needs_a_connection(void)
{
    char code[64];
    CHECK_EQ(route("GET", "/api/sheds/x/connect/80", code, sizeof code), 404);
    CHECK_STR_EQ(code, "SHED_NOT_FOUND");
}

static const struct check_test tests[] = {
    CHECK_TEST(test_nul_and_slash_escapes_never_reach_a_handler),
    CHECK_TEST(test_bad_escapes_and_dot_segments_are_refused),
    CHECK_TEST(test_ordinary_escapes_still_name_the_shed),
    CHECK_TEST(test_connect_needs_a_connection),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], setup, teardown);
}
