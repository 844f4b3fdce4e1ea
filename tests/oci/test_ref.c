/* Unit test of oci_ref_parse / oci_ref_format: every reference form a user may type, and the
 * malformed ones that must be refused with SHED_E_INVALID_REF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/check.h"
#include "oci/oci.h"

#define DIGEST_A "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good_case {
    const char *text;
    const char *registry, *repository, *tag, *digest, *canonical;
};

static const struct good_case good[] = {
    {"debian", "registry-1.docker.io", "library/debian", "latest", NULL,
     "registry-1.docker.io/library/debian:latest"},
    {"library/debian:12", "registry-1.docker.io", "library/debian", "12", NULL,
     "registry-1.docker.io/library/debian:12"},
    {"debian:bookworm-slim", "registry-1.docker.io", "library/debian", "bookworm-slim", NULL,
     "registry-1.docker.io/library/debian:bookworm-slim"},
    {"docker.io/debian", "registry-1.docker.io", "library/debian", "latest", NULL,
     "registry-1.docker.io/library/debian:latest"},
    {"index.docker.io/someone/tool:1.0", "registry-1.docker.io", "someone/tool", "1.0", NULL,
     "registry-1.docker.io/someone/tool:1.0"},
    {"ghcr.io/owner/img:tag", "ghcr.io", "owner/img", "tag", NULL, "ghcr.io/owner/img:tag"},
    {"ghcr.io/owner/img", "ghcr.io", "owner/img", "latest", NULL, "ghcr.io/owner/img:latest"},
    {"ghcr.io/owner/img@" DIGEST_A, "ghcr.io", "owner/img", NULL, DIGEST_A,
     "ghcr.io/owner/img@" DIGEST_A},
    {"ghcr.io/owner/img:v2@" DIGEST_A, "ghcr.io", "owner/img", "v2", DIGEST_A,
     "ghcr.io/owner/img:v2@" DIGEST_A},
    {"127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000", "a/b/c", "tag", NULL,
     "127.0.0.1:5000/a/b/c:tag"},
    {"localhost:5000/img", "localhost:5000", "img", "latest", NULL, "localhost:5000/img:latest"},
    {"localhost/img:1", "localhost", "img", "1", NULL, "localhost/img:1"},
    {"[::1]:5000/img:1", "[::1]:5000", "img", "1", NULL, "[::1]:5000/img:1"},
    {"quay.io/a-b/c.d_e__f:T_1.x-y", "quay.io", "a-b/c.d_e__f", "T_1.x-y", NULL,
     "quay.io/a-b/c.d_e__f:T_1.x-y"},
    {"my-registry.example.com:443/x---y:1", "my-registry.example.com:443", "x---y", "1", NULL,
     "my-registry.example.com:443/x---y:1"},
    /* "localhost:5000" alone is repository "localhost" with tag "5000", as Docker reads it */
    {"localhost:5000", "registry-1.docker.io", "library/localhost", "5000", NULL,
     "registry-1.docker.io/library/localhost:5000"},
};

static const char *const bad[] = {
    "",
    "Debian",            /* uppercase repository */
    "ghcr.io/Owner/img", /* uppercase path component */
    "img:",              /* empty tag */
    "img@",              /* empty digest */
    "img@sha256:abc",    /* short digest */
    "img@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", /* upper hex */
    "img@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", /* algorithm */
    ":tag",           /* no repository */
    "/img",           /* empty component */
    "a//b",           /* empty component */
    "img/",           /* trailing slash */
    "ghcr.io/",       /* registry only */
    "img:tag:extra",  /* two tags */
    "img:.tag",       /* tag must start with a word character */
    "a..b",           /* double dot */
    "a___b",          /* triple underscore */
    "-img",           /* leading separator */
    "img-",           /* trailing separator */
    "im g",           /* whitespace */
    "img\n",          /* control character */
    "host:99999/img", /* port out of range */
    "host:/img",      /* empty port */
    "-host.com/img",  /* host starting with '-' */
    "ghcr.io/owner/img@sha256:"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
};

static void expect_str(const char *text, const char *field, const char *got, const char *want)
{
    if ((got == NULL) != (want == NULL) || (got != NULL && strcmp(got, want) != 0)) {
        CHECK_FAIL("%s: %s is \"%s\", expected \"%s\"", text, field, got ? got : "(null)",
                   want ? want : "(null)");
    }
}

static void test_good_references_parse(void)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const struct good_case *c = &good[i];
        struct oci_ref ref;
        struct shed_err err = {0};
        if (oci_ref_parse(c->text, &ref, &err) < 0) {
            CHECK_FAIL("%s: refused: %s", c->text, err.msg);
            continue;
        }
        expect_str(c->text, "registry", ref.registry, c->registry);
        expect_str(c->text, "repository", ref.repository, c->repository);
        expect_str(c->text, "tag", ref.tag, c->tag);
        expect_str(c->text, "digest", ref.digest, c->digest);
        char *canonical = oci_ref_format(&ref);
        expect_str(c->text, "canonical form", canonical, c->canonical);
        /* the canonical form parses back to itself */
        struct oci_ref again;
        if (canonical != NULL && oci_ref_parse(canonical, &again, &err) == 0) {
            char *twice = oci_ref_format(&again);
            expect_str(c->text, "re-parsed canonical form", twice, canonical);
            free(twice);
            oci_ref_free(&again);
        } else {
            CHECK_FAIL("%s: canonical form does not parse", c->text);
        }
        free(canonical);
        oci_ref_free(&ref);
    }
}

static void test_bad_references_are_refused(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct oci_ref ref;
        struct shed_err err = {0};
        if (oci_ref_parse(bad[i], &ref, &err) == 0) {
            char *canonical = oci_ref_format(&ref);
            CHECK_FAIL("\"%s\" accepted as %s", bad[i], canonical);
            free(canonical);
            oci_ref_free(&ref);
        } else if (err.code != SHED_E_INVALID_REF || err.msg[0] == '\0' ||
                   strchr(err.msg, '\n') != NULL) {
            CHECK_FAIL("\"%s\": code %s, message \"%s\"", bad[i], shed_code_name(err.code),
                       err.msg);
        } else if (ref.registry != NULL || ref.repository != NULL) {
            CHECK_FAIL("\"%s\": failed parse left fields set", bad[i]);
        }
    }
}

static void test_overlong_names_are_refused(void)
{
    char text[400];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    struct oci_ref ref;
    struct shed_err err = {0};
    if (oci_ref_parse(text, &ref, &err) == 0) {
        CHECK_FAIL("a 399-character repository name was accepted");
        oci_ref_free(&ref);
    }
    char tag[200] = "img:";
    memset(tag + 4, 't', 130);
    tag[134] = '\0';
    if (oci_ref_parse(tag, &ref, &err) == 0) {
        CHECK_FAIL("a 130-character tag was accepted");
        oci_ref_free(&ref);
    }
}

static const struct check_test tests[] = {
    CHECK_TEST(test_good_references_parse),
    CHECK_TEST(test_bad_references_are_refused),
    CHECK_TEST(test_overlong_names_are_refused),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
