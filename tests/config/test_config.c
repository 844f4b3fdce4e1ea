/* server.yaml parsing: every key, defaults, the lookup order, and errors that name the key
 * and the line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "harness/check.h"

static struct shed_err err;

static int parse(const char *text, struct shed_config *config)
{
    shed_err_clear(&err);
    return shed_config_parse(text, strlen(text), "server.yaml", config, &err);
}

/* Expects the text to be refused with SHED_E_CONFIG and a message containing `expected`. */
static void check_refused(const char *text, const char *expected)
{
    struct shed_config config;
    CHECK(parse(text, &config) == -1);
    CHECK(err.code == SHED_E_CONFIG);
    CHECK_STR_CONTAINS(err.msg, expected);
}

static void test_every_key_is_parsed(void)
{
    const char *text = "name: lab-1\n"
                       "http_port: 9090\n"
                       "ssh_port: 2200\n"
                       "bind: 0.0.0.0\n"
                       "default_backend: qemu\n"
                       "data_dir: /srv/shed\n"
                       "images_dir: /srv/images\n"
                       "instance_dir: /srv/instances\n"
                       "base_image: ghcr.io/o/shed-base:v3\n"
                       "images:\n"
                       "  base: ghcr.io/o/shed-base:v3\n"
                       "  big: 127.0.0.1:5000/big:latest\n"
                       "  local: /opt/images/local.ext4\n"
                       "rootfs_size: 8G\n"
                       "platform: linux/arm64\n"
                       "default_cpus: 4\n"
                       "default_memory_mb: 8192\n"
                       "insecure_registries: [registry.lan:5000, 10.0.0.2]\n"
                       "api_token: s3cret\n";
    struct shed_config config;
    CHECK(parse(text, &config) == 0);
    CHECK_STR_EQ(config.name, "lab-1");
    CHECK(config.http_port == 9090);
    CHECK(config.ssh_port == 2200);
    CHECK_STR_EQ(config.bind, "0.0.0.0");
    CHECK_STR_EQ(config.default_backend, "qemu");
    CHECK_STR_EQ(config.data_dir, "/srv/shed");
    CHECK_STR_EQ(config.images_dir, "/srv/images");
    CHECK_STR_EQ(config.instance_dir, "/srv/instances");
    CHECK_STR_EQ(config.base_image, "ghcr.io/o/shed-base:v3");
    CHECK(config.image_count == 3);
    if (config.image_count == 3) {
        CHECK_STR_EQ(config.images[0].name, "base");
        CHECK_STR_EQ(config.images[1].ref, "127.0.0.1:5000/big:latest");
        CHECK(!config.images[1].is_path);
        CHECK(config.images[2].is_path);
    }
    CHECK(config.rootfs_size == 8ULL << 30);
    CHECK_STR_EQ(config.platform, "linux/arm64");
    CHECK(config.default_cpus == 4);
    CHECK(config.default_memory_mb == 8192);
    CHECK_STR_EQ(config.insecure_registries[0], "registry.lan:5000");
    CHECK_STR_EQ(config.insecure_registries[1], "10.0.0.2");
    CHECK(config.insecure_registries[2] == NULL);
    CHECK_STR_EQ(config.api_token, "s3cret");
    CHECK_STR_EQ(shed_config_image_ref(&config, "_base"), "ghcr.io/o/shed-base:v3");
    CHECK_STR_EQ(shed_config_image_ref(&config, "big"), "127.0.0.1:5000/big:latest");
    CHECK(shed_config_image_ref(&config, "nope") == NULL);
    shed_config_free(&config);
}

static void test_empty_file_gives_defaults(void)
{
    struct shed_config config;
    CHECK(parse("# nothing set\n", &config) == 0);
    CHECK(config.http_port == 8080);
    CHECK(config.ssh_port == 2222);
    CHECK_STR_EQ(config.bind, "127.0.0.1");
    CHECK_STR_EQ(config.default_backend, "detect");
    CHECK(config.rootfs_size == 20ULL << 30);
    CHECK(config.default_cpus == 2);
    CHECK(config.default_memory_mb == 4096);
    CHECK(config.base_image == NULL);
    CHECK(config.image_count == 0);
    CHECK(config.insecure_registries != NULL && config.insecure_registries[0] == NULL);
    cleanup_free char *data_dir = shed_config_default_data_dir();
    CHECK_STR_EQ(config.data_dir, data_dir);
    cleanup_free char *platform = shed_config_host_platform();
    CHECK_STR_EQ(config.platform, platform);
    CHECK(config.name != NULL && config.name[0] != '\0');
    shed_config_free(&config);
}

static void test_default_data_dir_is_var_lib_for_root(void)
{
    cleanup_free char *dir = shed_config_default_data_dir();
    if (geteuid() == 0)
        CHECK_STR_EQ(dir, "/var/lib/shed");
    else
        CHECK_STR_CONTAINS(dir, "/shed");
}

static void test_images_and_instance_dir_follow_data_dir(void)
{
    struct shed_config config;
    CHECK(parse("data_dir: /data/shed\n", &config) == 0);
    CHECK_STR_EQ(config.images_dir, "/data/shed/images");
    CHECK_STR_EQ(config.instance_dir, "/data/shed/instances");
    shed_config_free(&config);
}

static void test_tilde_paths_expand_to_home(void)
{
    struct shed_config config;
    setenv("HOME", "/home/tester", 1);
    CHECK(parse("data_dir: ~/shed-data\n", &config) == 0);
    CHECK_STR_EQ(config.data_dir, "/home/tester/shed-data");
    shed_config_free(&config);
}

static void test_platform_host_means_this_machine(void)
{
    struct shed_config config;
    CHECK(parse("platform: host\n", &config) == 0);
    cleanup_free char *platform = shed_config_host_platform();
    CHECK_STR_EQ(config.platform, platform);
    shed_config_free(&config);
}

static void test_null_base_image_is_unset(void)
{
    struct shed_config config;
    CHECK(parse("base_image:\nimages:\n", &config) == 0);
    CHECK(config.base_image == NULL);
    CHECK(config.image_count == 0);
    shed_config_free(&config);
}

static void test_unknown_key_is_named_with_its_line(void)
{
    check_refused("http_port: 8080\n\nhttp_prot: 9090\n", "server.yaml:3: http_prot: unknown key");
}

static void test_bad_port_is_named_with_its_line(void)
{
    check_refused("name: x\nhttp_port: 70000\n",
                  "server.yaml:2: http_port: expected an integer 1-65535");
    check_refused("ssh_port: ssh\n", "server.yaml:1: ssh_port:");
    check_refused("http_port: 0\n", "http_port: expected an integer 1-65535, got \"0\"");
}

static void test_wrong_types_are_named(void)
{
    check_refused("images: [a, b]\n", "server.yaml:1: images: expected a mapping");
    check_refused("bind:\n  - 1\n", "server.yaml:2: bind: expected a string, got a list");
    check_refused("insecure_registries: reg:5000\n", "insecure_registries: expected a list");
    check_refused("default_cpus: {a: 1}\n", "default_cpus: expected an integer, got a mapping");
    check_refused("- a\n- b\n", "server.yaml:1: expected a mapping of settings");
}

static void test_bad_size_is_named(void)
{
    check_refused("rootfs_size: 20Q\n", "server.yaml:1: rootfs_size: invalid size");
    check_refused("rootfs_size: 1M\n", "rootfs_size: size \"1M\" is too small");
    check_refused("rootfs_size: lots\n", "rootfs_size:");
    check_refused("rootfs_size: nan\n", "server.yaml:1: rootfs_size: invalid size");
    check_refused("rootfs_size: inf\n", "server.yaml:1: rootfs_size: invalid size");
    check_refused("rootfs_size: 1e12\n", "server.yaml:1: rootfs_size: invalid size");
    check_refused("rootfs_size: 0x10G\n", "server.yaml:1: rootfs_size: invalid size");
    check_refused("rootfs_size: 1.G\n", "server.yaml:1: rootfs_size: invalid size");
}

static void test_bad_image_names_are_named(void)
{
    check_refused("images:\n  ok: a/b\n  bad/name: a/c\n",
                  "server.yaml:3: images.bad/name: invalid image name");
    check_refused("images:\n  _base: a/b\n", "images._base: invalid image name");
    check_refused("images:\n  a..b: a/b\n", "images.a..b: invalid image name");
    check_refused("images:\n  a: a/b\n  a: a/c\n", "server.yaml:3: images.a: duplicate image name");
    check_refused("images:\n  a: relative/dir/../x y\n", "images.a: invalid image reference");
    check_refused("images:\n  a: ./local.ext4\n",
                  "images.a: \"./local.ext4\": local images need an absolute path");
    check_refused("images:\n  a:\n", "server.yaml:2: images.a: expected a non-empty string");
}

static void test_bad_values_are_named(void)
{
    check_refused("default_backend: docker\n", "default_backend: unknown backend \"docker\"");
    check_refused("data_dir: relative/dir\n", "data_dir: expected an absolute path");
    check_refused("platform: amd64\n", "platform: expected \"host\" or os/arch");
    check_refused("default_memory_mb: 1\n", "default_memory_mb: expected an integer 64-");
    check_refused("insecure_registries: [http://x]\n", "insecure_registries: expected host[:port]");
    check_refused("bind: \"\"\n", "bind: expected a non-empty string");
    check_refused("bind: \"::1\"\n", "server.yaml:1: bind: expected an IPv4 address or localhost");
    check_refused("bind: my-host\n",
                  "bind: expected an IPv4 address or localhost, got \"my-host\"");
}

static void test_container_network_defaults_to_none(void)
{
    struct shed_config config;
    CHECK(parse("name: a\n", &config) == 0);
    CHECK(config.container_network.mode == SHED_NETWORK_NONE);
    CHECK_STR_EQ(config.container_network.bridge, "shed0");
    CHECK(config.container_network.subnet == 0x0a580000u);
    CHECK(config.container_network.prefix_len == 24);
    shed_config_free(&config);
}

static void test_container_network_bridge_is_parsed_and_printed(void)
{
    struct shed_config config;
    CHECK(parse("container_network:\n  mode: bridge\n  bridge: br-lab\n"
                "  subnet: 172.30.0.0/16\n",
                &config) == 0);
    CHECK(config.container_network.mode == SHED_NETWORK_BRIDGE);
    CHECK_STR_EQ(config.container_network.bridge, "br-lab");
    CHECK(config.container_network.subnet == 0xac1e0000u);
    CHECK(config.container_network.prefix_len == 16);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(out != NULL);
    CHECK(shed_config_print(&config, out) == 0);
    fclose(out);
    CHECK_STR_CONTAINS(text, "container_network:\n  mode: \"bridge\"\n  bridge: \"br-lab\"\n"
                             "  subnet: \"172.30.0.0/16\"\n");
    struct shed_config again;
    CHECK(parse(text, &again) == 0);
    CHECK(again.container_network.mode == SHED_NETWORK_BRIDGE);
    CHECK(again.container_network.subnet == 0xac1e0000u);
    shed_config_free(&again);
    shed_config_free(&config);
    free(text);
}

static void test_bad_container_network_is_named(void)
{
    check_refused("name: a\ncontainer_network:\n  mode: nat\n",
                  "server.yaml:3: container_network.mode: expected none or bridge");
    check_refused("container_network:\n  bridge: a-very-long-bridge-name\n",
                  "server.yaml:2: container_network.bridge: expected an interface name");
    check_refused("container_network:\n  subnet: 10.88.0.1/24\n",
                  "container_network.subnet: \"10.88.0.1/24\" has host bits set");
    check_refused("container_network:\n  subnet: 10.88.0.0/31\n",
                  "container_network.subnet: prefix length must be 16-30");
    check_refused("container_network:\n  subnet: 10.888.0.0/24\n",
                  "container_network.subnet: expected an IPv4 subnet");
    check_refused("container_network:\n  gateway: 10.88.0.1\n",
                  "server.yaml:2: container_network.gateway: unknown key");
    check_refused("container_network: bridge\n", "container_network: expected a mapping");
}

static void test_hardening_keys_default(void)
{
    struct shed_config config;
    CHECK(parse("name: a\n", &config) == 0);
    CHECK(config.container.pids_limit == 4096);
    CHECK(config.container.tmp_size == 1ULL << 30);
    CHECK(config.container.nofile == 65536);
    CHECK(config.container.max_cpus >= 1);
    CHECK(config.container.max_cpus == (int)sysconf(_SC_NPROCESSORS_ONLN));
    CHECK(config.container.max_memory_mb >= 64);
    CHECK(!config.container.userns);
    CHECK(config.container.userns_base == 100000);
    CHECK(config.local_dir_roots != NULL && config.local_dir_roots[0] == NULL);
    CHECK(config.console_log_max_bytes == 16ULL << 20);
    shed_config_free(&config);
}

static void test_hardening_keys_are_parsed_and_printed(void)
{
    struct shed_config config;
    CHECK(parse("container:\n  pids_limit: 100\n  tmp_size: 64M\n  nofile: 4096\n"
                "  max_cpus: 3\n  max_memory_mb: 2048\n  userns: true\n  userns_base: 200000\n"
                "local_dir_roots: [/home/, /srv/work]\nconsole_log_max_bytes: 1M\n",
                &config) == 0);
    CHECK(config.container.pids_limit == 100);
    CHECK(config.container.tmp_size == 64ULL << 20);
    CHECK(config.container.nofile == 4096);
    CHECK(config.container.max_cpus == 3);
    CHECK(config.container.max_memory_mb == 2048);
    CHECK(config.container.userns);
    CHECK(config.container.userns_base == 200000);
    CHECK_STR_EQ(config.local_dir_roots[0], "/home");
    CHECK_STR_EQ(config.local_dir_roots[1], "/srv/work");
    CHECK(config.local_dir_roots[2] == NULL);
    CHECK(config.console_log_max_bytes == 1ULL << 20);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(out != NULL);
    CHECK(shed_config_print(&config, out) == 0);
    fclose(out);
    CHECK_STR_CONTAINS(text, "container:\n  pids_limit: 100\n  tmp_size: 67108864\n");
    CHECK_STR_CONTAINS(text, "local_dir_roots:\n  - \"/home\"\n  - \"/srv/work\"\n");
    CHECK_STR_CONTAINS(text, "console_log_max_bytes: 1048576\n");
    struct shed_config again;
    CHECK(parse(text, &again) == 0);
    CHECK(again.container.pids_limit == 100);
    CHECK(again.container.userns);
    CHECK(again.container.max_memory_mb == 2048);
    CHECK_STR_EQ(again.local_dir_roots[1], "/srv/work");
    CHECK(again.console_log_max_bytes == 1ULL << 20);
    shed_config_free(&again);
    shed_config_free(&config);
    free(text);
}

static void test_bad_hardening_keys_are_named(void)
{
    check_refused("local_dir_roots: [/]\n", "server.yaml:1: local_dir_roots: \"/\" would allow");
    check_refused("local_dir_roots:\n  - /srv\n  - relative\n",
                  "server.yaml:3: local_dir_roots: expected an absolute path");
    check_refused("local_dir_roots: [/srv/../etc]\n", "use a plain absolute path");
    check_refused("local_dir_roots: [/srv//x]\n", "use a plain absolute path");
    check_refused("local_dir_roots: /srv\n", "local_dir_roots: expected a list");
    check_refused("console_log_max_bytes: 1K\n", "console_log_max_bytes: size \"1K\" is too small");
    check_refused("container:\n  pids_limit: 0\n",
                  "server.yaml:2: container.pids_limit: expected an integer 32-4194304");
    check_refused("container:\n  userns: maybe\n", "container.userns: expected true or false");
    check_refused("container:\n  max_cpus: 2000\n", "container.max_cpus: expected an integer");
    check_refused("container:\n  tmp_size: lots\n", "container.tmp_size: invalid size");
    check_refused("container:\n  seccomp: off\n", "server.yaml:2: container.seccomp: unknown key");
    check_refused("container:\n  nofile: 100\n  nofile: 200\n", "container.nofile: duplicate key");
    check_refused("container: []\n", "container: expected a mapping");
    check_refused("container_network:\n  mode: bridge\ncontainer:\n  userns: true\n",
                  "server.yaml:4: container.userns: cannot be combined with container_network "
                  "mode bridge");
}

static void test_instance_disk_defaults_to_auto_and_is_printed(void)
{
    struct shed_config config;
    CHECK(parse("name: a\n", &config) == 0);
    CHECK(config.instance_disk == SHED_INSTANCE_DISK_AUTO);
    shed_config_free(&config);
    const char *names[] = {"auto", "reflink", "overlay", "copy"};
    const enum shed_instance_disk kinds[] = {SHED_INSTANCE_DISK_AUTO, SHED_INSTANCE_DISK_REFLINK,
                                             SHED_INSTANCE_DISK_OVERLAY, SHED_INSTANCE_DISK_COPY};
    for (size_t i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "instance_disk: %s\n", names[i]);
        CHECK(parse(text, &config) == 0);
        CHECK(config.instance_disk == kinds[i]);
        char *printed = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&printed, &len);
        CHECK(out != NULL);
        CHECK(shed_config_print(&config, out) == 0);
        fclose(out);
        CHECK_STR_CONTAINS(printed, text);
        struct shed_config again;
        CHECK(parse(printed, &again) == 0);
        CHECK(again.instance_disk == kinds[i]);
        shed_config_free(&again);
        free(printed);
        shed_config_free(&config);
    }
}

static void test_bad_instance_disk_is_named(void)
{
    check_refused("name: a\ninstance_disk: thin\n",
                  "server.yaml:2: instance_disk: expected auto, reflink, overlay or copy, got "
                  "\"thin\"");
    check_refused("instance_disk: [overlay]\n", "instance_disk: expected");
    check_refused("instance_disk: overlay\ncontainer:\n  userns: true\n",
                  "server.yaml:1: instance_disk: overlay cannot be combined with container.userns");
    /* auto picks a reflink or a copy there, so it combines. */
    struct shed_config config;
    CHECK(parse("instance_disk: auto\ncontainer:\n  userns: true\n", &config) == 0);
    shed_config_free(&config);
}

static void test_duplicate_key_is_refused(void)
{
    check_refused("http_port: 1\nname: a\nhttp_port: 2\n",
                  "server.yaml:3: http_port: duplicate key");
}

static void test_yaml_syntax_error_names_the_line(void)
{
    check_refused("name: a\nimages:\n  x: [unclosed\n", "server.yaml:");
    check_refused("name: a\nimages:\n  x: [unclosed\n", "invalid YAML");
    check_refused("a: 1\n---\nb: 2\n", "server.yaml:1: a: unknown key");
    check_refused("name: a\n---\nname: b\n", "only one YAML document");
}

/* Printing then parsing again yields the same settings. */
static void test_printed_config_parses_back(void)
{
    struct shed_config config;
    CHECK(parse("name: \"odd \\\"name\\\"\"\nimages:\n  a: reg/x:1\ninsecure_registries: [h:1]\n"
                "base_image: reg/base\n",
                &config) == 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(out != NULL);
    CHECK(shed_config_print(&config, out) == 0);
    fclose(out);
    struct shed_config again;
    CHECK(parse(text, &again) == 0);
    CHECK_STR_EQ(again.name, "odd \"name\"");
    CHECK_STR_EQ(again.images[0].ref, "reg/x:1");
    CHECK_STR_EQ(again.insecure_registries[0], "h:1");
    CHECK_STR_EQ(again.base_image, "reg/base");
    CHECK_STR_EQ(again.data_dir, config.data_dir);
    CHECK(again.rootfs_size == config.rootfs_size);
    shed_config_free(&again);
    shed_config_free(&config);
    free(text);
}

static void write_text(const char *path, const char *text)
{
    struct shed_err werr;
    CHECK(fs_write_file_atomic(path, text, strlen(text), 0644, &werr) == 0);
}

/* --config, then ./server.yaml, then ~/.config/shed/server.yaml (then /etc, then defaults). */
static void test_lookup_order(void)
{
    char dir[] = "/tmp/shed-config-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cleanup_free char *home = fs_path_join(dir, "home");
    cleanup_free char *user_dir = fs_path_join(dir, "home/.config/shed");
    cleanup_free char *user_file = fs_path_join(user_dir, "server.yaml");
    cleanup_free char *cwd_file = fs_path_join(dir, "server.yaml");
    cleanup_free char *explicit_file = fs_path_join(dir, "explicit.yaml");
    CHECK(fs_mkdir_p(user_dir, 0755, &err) == 0);
    write_text(user_file, "name: from-home\n");
    write_text(explicit_file, "name: from-flag\n");
    char old_cwd[4096];
    CHECK(getcwd(old_cwd, sizeof old_cwd) != NULL);
    CHECK(chdir(dir) == 0);
    setenv("HOME", home, 1);

    struct shed_config config;
    CHECK(shed_config_load(NULL, &config, &err) == 0);
    CHECK_STR_EQ(config.name, "from-home");
    CHECK_STR_EQ(config.path, user_file);
    shed_config_free(&config);

    write_text(cwd_file, "name: from-cwd\n");
    CHECK(shed_config_load(NULL, &config, &err) == 0);
    CHECK_STR_EQ(config.name, "from-cwd");
    shed_config_free(&config);

    CHECK(shed_config_load(explicit_file, &config, &err) == 0);
    CHECK_STR_EQ(config.name, "from-flag");
    shed_config_free(&config);

    CHECK(shed_config_load("/nonexistent/server.yaml", &config, &err) == -1);
    CHECK(err.code == SHED_E_CONFIG);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/server.yaml");

    write_text(explicit_file, "name: a\nbogus: 1\n");
    CHECK(shed_config_load(explicit_file, &config, &err) == -1);
    cleanup_free char *expected = str_printf("%s:2: bogus: unknown key", explicit_file);
    CHECK_STR_CONTAINS(err.msg, expected);

    CHECK(chdir(old_cwd) == 0);
    unlink(cwd_file);
    unlink(user_file);
    unlink(explicit_file);
    rmdir(user_dir);
    cleanup_free char *dot_config = fs_path_join(dir, "home/.config");
    rmdir(dot_config);
    rmdir(home);
    rmdir(dir);
}

static void test_image_name_rules(void)
{
    CHECK(shed_image_name_is_valid("base"));
    CHECK(shed_image_name_is_valid("Big_1.2-x"));
    CHECK(!shed_image_name_is_valid(""));
    CHECK(!shed_image_name_is_valid("-x"));
    CHECK(!shed_image_name_is_valid("_base"));
    CHECK(!shed_image_name_is_valid("a..b"));
    CHECK(!shed_image_name_is_valid("a/b"));
    char long_name[130];
    memset(long_name, 'a', 129);
    long_name[129] = '\0';
    CHECK(!shed_image_name_is_valid(long_name));
    long_name[128] = '\0';
    CHECK(shed_image_name_is_valid(long_name));
}

static const struct check_test tests[] = {
    CHECK_TEST(test_every_key_is_parsed),
    CHECK_TEST(test_empty_file_gives_defaults),
    CHECK_TEST(test_default_data_dir_is_var_lib_for_root),
    CHECK_TEST(test_images_and_instance_dir_follow_data_dir),
    CHECK_TEST(test_tilde_paths_expand_to_home),
    CHECK_TEST(test_platform_host_means_this_machine),
    CHECK_TEST(test_null_base_image_is_unset),
    CHECK_TEST(test_unknown_key_is_named_with_its_line),
    CHECK_TEST(test_bad_port_is_named_with_its_line),
    CHECK_TEST(test_wrong_types_are_named),
    CHECK_TEST(test_bad_size_is_named),
    CHECK_TEST(test_bad_image_names_are_named),
    CHECK_TEST(test_bad_values_are_named),
    CHECK_TEST(test_container_network_defaults_to_none),
    CHECK_TEST(test_container_network_bridge_is_parsed_and_printed),
    CHECK_TEST(test_bad_container_network_is_named),
    CHECK_TEST(test_hardening_keys_default),
    CHECK_TEST(test_hardening_keys_are_parsed_and_printed),
    CHECK_TEST(test_bad_hardening_keys_are_named),
    CHECK_TEST(test_instance_disk_defaults_to_auto_and_is_printed),
    CHECK_TEST(test_bad_instance_disk_is_named),
    CHECK_TEST(test_duplicate_key_is_refused),
    CHECK_TEST(test_yaml_syntax_error_names_the_line),
    CHECK_TEST(test_printed_config_parses_back),
    CHECK_TEST(test_lookup_order),
    CHECK_TEST(test_image_name_rules),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
