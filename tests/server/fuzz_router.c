/* Fuzz target: the API's router and the handlers' request parsing (JSON bodies, query
 * parameters, path parameters), on a server context in a private data directory with no
 * backend (nothing is ever started). Input: "METHOD TARGET\n", header lines, an empty line,
 * then the body:
 *
 *   POST /api/sheds?dry_run=1
 *   Accept: application/json
 *
 *   {"name":"x","image":"base"}
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "runtime/backend.h"
#include "server/route.h"

#define MAX_HEADERS 32

static struct shed_config config;
static struct backend_set no_backends;
static struct server_router *router;
static char data_dir[] = "/tmp/shed-fuzz-router-XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_data_dir(void)
{
    server_router_close(router);
    shed_config_free(&config);
    nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    struct shed_err err = {0};
    const char *yaml = "images:\n  base: 127.0.0.1:1/never/pulled:v1\n";
    if (mkdtemp(data_dir) == NULL ||
        shed_config_parse(yaml, strlen(yaml), "fuzz.yaml", &config, &err) < 0 ||
        shed_config_use_data_dir(&config, data_dir, &err) < 0 ||
        server_router_open(&config, &no_backends, &router, &err) < 0) {
        fprintf(stderr, "fuzz_router: cannot set up: %s\n", err.msg);
        abort();
    }
    atexit(remove_data_dir);
    return 0;
}

/* Splits the input into its request line, headers and body (in copy, which it modifies). */
static int split(char *copy, size_t size, char **method, char **target, const char **headers,
                 const char **body, size_t *body_len)
{
    char *end = copy + size;
    char *line_end = memchr(copy, '\n', size);
    if (line_end == NULL)
        line_end = end;
    *line_end = '\0';
    *method = copy;
    char *space = strchr(copy, ' ');
    if (space == NULL)
        return -1;
    *space = '\0';
    *target = space + 1;
    size_t count = 0;
    char *p = line_end < end ? line_end + 1 : end;
    while (p < end) {
        char *next = memchr(p, '\n', (size_t)(end - p));
        char *stop = next != NULL ? next : end;
        if (stop == p) { /* the empty line: the body follows */
            p = stop + 1;
            break;
        }
        *stop = '\0';
        if (count < MAX_HEADERS)
            headers[count++] = p;
        p = stop + 1;
    }
    headers[count] = NULL;
    *body = p < end ? p : end;
    *body_len = p < end ? (size_t)(end - p) : 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *method, *target;
    const char *headers[MAX_HEADERS + 1];
    const char *body;
    size_t body_len;
    if (split(copy, size, &method, &target, headers, &body, &body_len) == 0 &&
        strlen(target) < 16384) {
        struct server_route_result result;
        struct shed_err err = {0};
        if (server_route(router, method, target, headers, body, body_len, &result, &err) == 0) {
            /* Every answer is an HTTP status with a JSON body (or none). */
            if (result.status < 100 || result.status > 599)
                abort();
            if (getenv("SHED_FUZZ_VERBOSE") != NULL)
                fprintf(stderr, "fuzz_router: %s %s -> %u %s\n", method, target, result.status,
                        result.body != NULL ? result.body : "");
            server_route_result_free(&result);
        }
    }
    free(copy);
    return 0;
}
