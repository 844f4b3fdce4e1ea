/* The host key (runtime/host_key.h): generated once and kept, the .pub line in OpenSSH
 * format, and the OpenSSH container made for libssh holding the same key (ssh-keygen -y,
 * OpenSSH's own reader, derives the public line the API serves from it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsutil.h"
#include "harness/check.h"
#include "runtime/host_key.h"

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/shed-test-host-key-XXXXXX");
    if (mkdtemp(dir) == NULL)
        CHECK_FATAL("mkdtemp: %s", strerror(errno));
}

static void remove_dir(void)
{
    char *command = str_printf("rm -rf '%s'", dir);
    if (command == NULL || system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(command);
}

/* The first line a shell command prints (trailing newline cut), malloc'd. */
static char *first_line_of(const char *command)
{
    FILE *pipe = popen(command, "r");
    if (pipe == NULL)
        return NULL;
    char line[1024] = "";
    if (fgets(line, sizeof line, pipe) == NULL)
        line[0] = '\0';
    pclose(pipe);
    line[strcspn(line, "\n")] = '\0';
    return strdup(line);
}

static void test_created_once_then_kept(void)
{
    struct shed_err err = {0};
    char *first = NULL, *second = NULL;
    CHECK_OK(host_key_load_or_create(dir, "shed@test", &first, &err), &err);
    CHECK_OK(host_key_load_or_create(dir, "shed@test", &second, &err), &err);
    CHECK_STR_EQ(first, second);
    CHECK(strncmp(first, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 32) == 0);
    CHECK(strstr(first, " shed@test") != NULL);
    char *path = host_key_private_path(dir);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(path);
    free(first);
    free(second);
}

static void test_openssh_container_holds_the_same_key(void)
{
    if (system("command -v ssh-keygen >/dev/null 2>&1") != 0)
        CHECK_SKIP("ssh-keygen (openssh-client) is not installed");
    struct shed_err err = {0};
    char *public_line = NULL, *secret = NULL;
    CHECK_OK(host_key_load_or_create(dir, "shed@test", &public_line, &err), &err);
    CHECK_OK(host_key_openssh_private(dir, &secret, &err), &err);
    CHECK(strncmp(secret, "-----BEGIN OPENSSH PRIVATE KEY-----\n", 36) == 0);
    char *copy = str_printf("%s/openssh", dir);
    CHECK_OK(fs_write_file_atomic(copy, secret, strlen(secret), 0600, &err), &err);
    char *command = str_printf("ssh-keygen -y -f '%s' 2>&1", copy);
    char *derived = first_line_of(command);
    /* ssh-keygen prints "type base64 comment"; the comment of the container is empty. */
    size_t key_len = (size_t)(strrchr(public_line, ' ') - public_line);
    CHECK(derived != NULL && strlen(derived) >= key_len &&
          strncmp(derived, public_line, key_len) == 0);
    if (derived != NULL && strncmp(derived, public_line, key_len) != 0)
        CHECK_FAIL("ssh-keygen -y: \"%s\", the API's key: \"%s\"", derived, public_line);
    host_key_secret_free(secret);
    free(public_line);
    free(copy);
    free(command);
    free(derived);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_created_once_then_kept),
    CHECK_TEST(test_openssh_container_holds_the_same_key),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]), make_dir, remove_dir);
}
