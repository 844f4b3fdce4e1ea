/* The repo policy (repo_check): which URLs a create may clone, and why the others are refused.
 * The clone itself runs against a real git in tests/server/test_create.py. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "harness/check.h"
#include "runtime/repo.h"

static struct shed_config config;

static void load(const char *yaml)
{
    shed_config_free(&config);
    struct shed_err err = {0};
    if (shed_config_parse(yaml, strlen(yaml), "test.yaml", &config, &err) < 0)
        CHECK_FATAL("config: %s", err.msg);
}

static void setup(void)
{
    load("");
}

static void teardown(void)
{
    shed_config_free(&config);
}

static void check_accepted(const char *repo, const char *expected_url)
{
    char *url = NULL;
    struct shed_err err = {0};
    if (repo_check(&config, repo, &url, &err) < 0) {
        CHECK_FAIL("\"%s\" refused: %s", repo, err.msg);
        return;
    }
    CHECK_STR_EQ(url, expected_url);
    free(url);
}

static void check_refused(const char *repo, const char *reason)
{
    char *url = NULL;
    struct shed_err err = {0};
    if (repo_check(&config, repo, &url, &err) == 0) {
        CHECK_FAIL("\"%s\" accepted as %s", repo, url);
        free(url);
        return;
    }
    CHECK_EQ(err.code, SHED_E_INVALID_REPO_URL);
    CHECK_STR_CONTAINS(err.msg, reason);
}

static void test_github_shorthand_becomes_https(void)
{
    check_accepted("owner/repo", "https://github.com/owner/repo.git");
    check_accepted("my-org/my.repo_2", "https://github.com/my-org/my.repo_2.git");
    check_refused("a/b/c", "use owner/repo");
    check_refused("../x", "use owner/repo");
    check_refused("not a repo", "whitespace");
}

static void test_https_and_ssh_are_the_default_schemes(void)
{
    check_accepted("https://example.com/o/r.git", "https://example.com/o/r.git");
    check_accepted("ssh://git@example.com:2222/o/r.git", "ssh://git@example.com:2222/o/r.git");
    check_accepted("git@github.com:o/r.git", "git@github.com:o/r.git");
    check_refused("http://example.com/o/r.git", "http is not in repo_schemes");
    check_refused("git://example.com/o/r.git", "git is not in repo_schemes");
    check_refused("file:///root-only/repo", "file is not in repo_schemes");
    check_refused("ftp://example.com/x", "ftp is not in repo_schemes");
}

static void test_configured_schemes_are_accepted(void)
{
    load("repo_schemes: [https, http, file]\n");
    check_accepted("http://example.com/o/r.git", "http://example.com/o/r.git");
    check_accepted("file:///srv/git/r.git", "file:///srv/git/r.git");
    check_refused("file://host/srv/git/r.git", "file:// URLs name no host");
    check_refused("git@github.com:o/r.git", "ssh is not in repo_schemes");
}

static void test_options_and_transport_helpers_are_refused(void)
{
    check_refused("--upload-pack=touch /tmp/x", "starts with '-'");
    check_refused("-u/x", "starts with '-'");
    check_refused("ext::sh -c touch% /tmp/x", "whitespace");
    check_refused("ext::sh", "transport helpers");
    check_refused("fd::7", "transport helpers");
    check_refused("https://example.com/o/r\x01", "control bytes");
}

static void test_private_and_loopback_literals_are_refused_in_every_spelling(void)
{
    static const char *const hosts[] = {
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.0.0.1.",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0",
        "224.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fd00::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[64:ff9b::a00:1]",
        "localhost",
        "LOCALHOST",
        "api.localhost",
        "localhost.",
    };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        char repo[128];
        snprintf(repo, sizeof repo, "https://%s/o/r.git", hosts[i]);
        check_refused(repo, "not allowed");
        snprintf(repo, sizeof repo, "git@%s:o/r.git", hosts[i]);
        check_refused(repo, "not allowed");
    }
    check_refused("https://user:pw@127.0.0.1:8443/o/r.git", "loopback");
}

static void test_names_that_end_in_a_number_are_refused(void)
{
    check_refused("https://1.2.3.4.5/o/r.git", "cannot end in a number");
    check_refused("https://example.0x10/o/r.git", "cannot end in a number");
    check_accepted("https://1e100.net/o/r.git", "https://1e100.net/o/r.git");
    check_accepted("https://8.8.8.8/o/r.git", "https://8.8.8.8/o/r.git");
    check_accepted("https://[2001:db8::1]/o/r.git", "https://[2001:db8::1]/o/r.git");
}

static void test_allowed_hosts_may_be_private(void)
{
    load("repo_allow_hosts: [git.lan, 127.0.0.1, \"10.0.0.5:8443\", \"[::1]\"]\n");
    check_accepted("https://127.0.0.1:9999/o/r.git", "https://127.0.0.1:9999/o/r.git");
    check_accepted("https://10.0.0.5:8443/o/r.git", "https://10.0.0.5:8443/o/r.git");
    check_refused("https://10.0.0.5:9443/o/r.git", "not allowed");
    check_accepted("ssh://[::1]/o/r.git", "ssh://[::1]/o/r.git");
    check_refused("https://127.1/o/r.git", "not allowed"); /* the exact spelling only */
}

static void test_malformed_hosts_are_refused(void)
{
    check_refused("https:///o/r.git", "malformed host");
    check_refused("https://exa_mple.com:x/o/r.git", "malformed host");
    check_refused("https://[::1/o/r.git", "malformed host");
    check_refused("https://[fe80::1%25eth0]/o/r.git", "malformed host");
    check_refused("https://example.com", "no repository path");
    check_refused("git@:o/r.git", "malformed host");
}

static const struct check_test tests[] = {
    CHECK_TEST(test_github_shorthand_becomes_https),
    CHECK_TEST(test_https_and_ssh_are_the_default_schemes),
    CHECK_TEST(test_configured_schemes_are_accepted),
    CHECK_TEST(test_options_and_transport_helpers_are_refused),
    CHECK_TEST(test_private_and_loopback_literals_are_refused_in_every_spelling),
    CHECK_TEST(test_names_that_end_in_a_number_are_refused),
    CHECK_TEST(test_allowed_hosts_may_be_private),
    CHECK_TEST(test_malformed_hosts_are_refused),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], setup, teardown);
}
