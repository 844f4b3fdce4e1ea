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
    CHECK_STR_EQ(config.base_image, SHED_CONFIG_DEFAULT_BASE_IMAGE);
    CHECK(config.base_image_is_default);
    CHECK(config.image_count == 0);
    CHECK(config.insecure_registries != NULL && config.insecure_registries[0] == NULL);
    CHECK(config.registry_ca_count == 0);
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
    CHECK(!config.base_image_is_default);
    CHECK(config.image_count == 0);
    shed_config_free(&config);
    CHECK(parse("base_image: null\n", &config) == 0);
    CHECK(config.base_image == NULL);
    shed_config_free(&config);
}

static void test_default_base_image_applies_without_a_file(void)
{
    struct shed_config config;
    CHECK(shed_config_defaults(&config, &err) == 0);
    CHECK_STR_EQ(config.base_image, "docker.io/library/debian:bookworm");
    CHECK(config.base_image_is_default);
    shed_config_free(&config);
    CHECK(parse("base_image: reg/own:1\n", &config) == 0);
    CHECK_STR_EQ(config.base_image, "reg/own:1");
    CHECK(!config.base_image_is_default);
    shed_config_free(&config);
}

static void test_registry_ca_is_parsed_and_printed(void)
{
    char ca[] = "/tmp/shed-config-ca-XXXXXX";
    int fd = mkstemp(ca);
    CHECK(fd >= 0);
    close(fd);
    cleanup_free char *text =
        str_printf("registry_ca:\n  127.0.0.1:5443: %s\n  reg.lan: %s\n", ca, ca);
    struct shed_config config;
    CHECK(parse(text, &config) == 0);
    CHECK(config.registry_ca_count == 2);
    CHECK_STR_EQ(shed_config_registry_ca(&config, "127.0.0.1:5443"), ca);
    CHECK_STR_EQ(shed_config_registry_ca(&config, "reg.lan"), ca);
    CHECK(shed_config_registry_ca(&config, "reg.lan:443") == NULL);
    char *printed = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&printed, &len);
    CHECK(shed_config_print(&config, out) == 0);
    fclose(out);
    struct shed_config again;
    CHECK(parse(printed, &again) == 0);
    CHECK_STR_EQ(shed_config_registry_ca(&again, "127.0.0.1:5443"), ca);
    shed_config_free(&again);
    shed_config_free(&config);
    free(printed);
    check_refused("registry_ca:\n  reg.lan: /nonexistent/ca.pem\n",
                  "server.yaml:2: registry_ca.reg.lan: cannot read CA file /nonexistent/ca.pem");
    check_refused("registry_ca:\n  reg.lan: ca.pem\n",
                  "registry_ca.reg.lan: expected an absolute path");
    check_refused("registry_ca:\n  https://reg.lan: /tmp\n", "expected host[:port]");
    check_refused("registry_ca: [a]\n", "registry_ca: expected a mapping");
    check_refused("registry_ca:\n  reg.lan: /tmp\n", "is not a regular file");
    unlink(ca);
}

/* What SIGHUP may not change while the server runs keeps its running value, named. */
static void test_reload_keeps_restart_keys(void)
{
    struct shed_config running, next;
    CHECK(parse("bind: 127.0.0.1\nhttp_port: 8080\ndata_dir: /srv/a\nimages:\n  x: r/x:1\n",
                &running) == 0);
    CHECK(parse("bind: 0.0.0.0\nhttp_port: 9090\ndata_dir: /srv/b\nimages:\n  y: r/y:1\n"
                "container_network: {mode: bridge}\n",
                &next) == 0);
    struct strv changed = STRV_INIT;
    CHECK(shed_config_keep_restart_keys(&next, &running, &changed, &err) == 0);
    CHECK(changed.count == 6);
    CHECK_STR_EQ(changed.items[0], "bind");
    CHECK_STR_EQ(changed.items[1], "http_port");
    CHECK_STR_EQ(changed.items[2], "data_dir");
    CHECK_STR_EQ(changed.items[3], "images_dir");
    CHECK_STR_EQ(changed.items[4], "instance_dir");
    CHECK_STR_EQ(changed.items[5], "container_network");
    CHECK_STR_EQ(next.bind, "127.0.0.1");
    CHECK(next.http_port == 8080);
    CHECK_STR_EQ(next.images_dir, "/srv/a/images");
    CHECK(next.container_network.mode == SHED_NETWORK_NONE);
    CHECK_STR_EQ(next.images[0].name, "y"); /* the rest takes effect */
    strv_free(&changed);
    CHECK(shed_config_keep_restart_keys(&next, &running, &changed, &err) == 0);
    CHECK(changed.count == 0);
    shed_config_free(&next);
    shed_config_free(&running);
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

static void test_limits_and_policies_are_parsed(void)
{
    const char *text = "allow_unauthenticated: true\n"
                       "unix_socket: /run/shed/api.sock\n"
                       "unix_socket_mode: \"0660\"\n"
                       "unix_socket_group: shed\n"
                       "http_max_connections: 100\n"
                       "http_max_connections_per_client: 10\n"
                       "http_request_timeout_seconds: 5\n"
                       "http_idle_timeout_seconds: 20\n"
                       "tunnel_idle_timeout_seconds: 90\n"
                       "tunnel_max_per_client: 4\n"
                       "repo_schemes: [https, file]\n"
                       "repo_allow_hosts: [git.lan, \"10.0.0.5:8443\"]\n"
                       "repo_user: gitclone\n"
                       "repo_ssh_key: /etc/shed/deploy_key\n"
                       "repo_ssh_known_hosts: /etc/shed/known_hosts\n"
                       "repo_timeout_seconds: 120\n"
                       "repo_low_speed_limit: 2000\n"
                       "repo_low_speed_time: 15\n"
                       "pull_timeout_seconds: 900\n"
                       "pull_low_speed_limit: 4096\n"
                       "pull_low_speed_time: 30\n"
                       "pull_min_progress: 256K\n"
                       "max_layer_bytes: 4G\n"
                       "max_image_bytes: 16G\n";
    struct shed_config config;
    CHECK(parse(text, &config) == 0);
    CHECK(config.allow_unauthenticated);
    CHECK_STR_EQ(config.unix_socket, "/run/shed/api.sock");
    CHECK_EQ(config.unix_socket_mode, 0660);
    CHECK_STR_EQ(config.unix_socket_group, "shed");
    CHECK_EQ(config.http.max_connections, 100);
    CHECK_EQ(config.http.max_connections_per_client, 10);
    CHECK_EQ(config.http.request_timeout_seconds, 5);
    CHECK_EQ(config.http.idle_timeout_seconds, 20);
    CHECK_EQ(config.http.tunnel_idle_timeout_seconds, 90);
    CHECK_EQ(config.http.tunnels_per_client, 4);
    CHECK_STR_EQ(config.repo.schemes[1], "file");
    CHECK(config.repo.schemes[2] == NULL);
    CHECK_STR_EQ(config.repo.allow_hosts[1], "10.0.0.5:8443");
    CHECK_STR_EQ(config.repo.user, "gitclone");
    CHECK_STR_EQ(config.repo.ssh_key, "/etc/shed/deploy_key");
    CHECK_STR_EQ(config.repo.ssh_known_hosts, "/etc/shed/known_hosts");
    CHECK_EQ(config.repo.timeout_seconds, 120);
    CHECK_EQ(config.repo.low_speed_limit, 2000);
    CHECK_EQ(config.repo.low_speed_time, 15);
    CHECK_EQ(config.pull.timeout_seconds, 900);
    CHECK_EQ(config.pull.low_speed_limit, 4096);
    CHECK_EQ(config.pull.low_speed_time, 30);
    CHECK_EQ(config.pull.min_progress_bytes, 256 << 10);
    CHECK_EQ(config.pull.max_layer_bytes, 4ULL << 30);
    CHECK_EQ(config.pull.max_image_bytes, 16ULL << 30);
    shed_config_free(&config);
}

static void test_limits_and_policies_have_defaults(void)
{
    struct shed_config config;
    CHECK(parse("", &config) == 0);
    CHECK(!config.allow_unauthenticated);
    CHECK(config.unix_socket == NULL);
    CHECK_EQ(config.unix_socket_mode, 0600);
    CHECK_EQ(config.http.max_connections, 512);
    CHECK_EQ(config.http.max_connections_per_client, 64);
    CHECK_EQ(config.http.request_timeout_seconds, 30);
    CHECK_EQ(config.http.tunnels_per_client, 32);
    CHECK_STR_EQ(config.repo.schemes[0], "https");
    CHECK_STR_EQ(config.repo.schemes[1], "ssh");
    CHECK(config.repo.schemes[2] == NULL);
    CHECK(config.repo.allow_hosts != NULL && config.repo.allow_hosts[0] == NULL);
    CHECK_STR_EQ(config.repo.user, "nobody");
    CHECK(config.repo.ssh_key == NULL);
    CHECK_EQ(config.repo.timeout_seconds, 600);
    CHECK_EQ(config.pull.timeout_seconds, 3600);
    CHECK_EQ(config.pull.min_progress_bytes, 64 << 10);
    CHECK_EQ(config.pull.max_layer_bytes, 16ULL << 30);
    shed_config_free(&config);
}

static void test_bad_limits_and_policies_are_named(void)
{
    check_refused("allow_unauthenticated: maybe\n",
                  "server.yaml:1: allow_unauthenticated: expected true or false");
    check_refused("unix_socket: relative.sock\n", "unix_socket: expected an absolute path");
    check_refused("unix_socket_mode: \"0999\"\n", "unix_socket_mode: expected octal permission");
    check_refused("unix_socket_mode: \"01777\"\n", "unix_socket_mode: expected octal permission");
    check_refused("http_max_connections: 2\n", "http_max_connections: expected an integer 8-");
    check_refused("http_request_timeout_seconds: 0\n", "http_request_timeout_seconds:");
    check_refused("http_max_connections: 16\nhttp_max_connections_per_client: 17\n",
                  "http_max_connections_per_client (17) is above http_max_connections (16)");
    check_refused("http_max_connections_per_client: 4\ntunnel_max_per_client: 5\n",
                  "tunnel_max_per_client (5) is above http_max_connections_per_client (4)");
    check_refused("repo_schemes: [https, ext]\n",
                  "server.yaml:1: repo_schemes: expected https, ssh, http, git or file");
    check_refused("repo_allow_hosts: [\"http://x\"]\n", "repo_allow_hosts: expected host[:port]");
    check_refused("repo_user: root\n", "repo_user: git must not run as root");
    check_refused("repo_ssh_key: key\n", "repo_ssh_key: expected an absolute path");
    check_refused("pull_min_progress: 0\n", "pull_min_progress: size \"0\" is too small");
    check_refused("max_layer_bytes: 1K\n", "max_layer_bytes: size \"1K\" is too small");
}

/* config check's output reads back as the same strings, whatever bytes they hold. */
static void test_printed_strings_are_escaped_so_they_read_back(void)
{
    static const char *const names[] = {
        "tab\there", "c1 \xc2\x86 control", "nel \xc2\x85 line",      "ls \xe2\x80\xa8 sep",
        "del \x7f",  "bom \xef\xbb\xbf",    "emoji \xf0\x9f\x99\x82", "quote \" back \\",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct shed_config config;
        CHECK(parse("", &config) == 0);
        free(config.name);
        config.name = strdup(names[i]);
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        CHECK(out != NULL && shed_config_print(&config, out) == 0);
        fclose(out);
        struct shed_config again;
        if (parse(text, &again) == 0) {
            CHECK_STR_EQ(again.name, names[i]);
            shed_config_free(&again);
        } else {
            CHECK_FAIL("printed name %zu does not parse back: %s", i, err.msg);
        }
        shed_config_free(&config);
        free(text);
    }
}

static void test_bind_loopback_rule(void)
{
    CHECK(shed_config_bind_is_loopback("127.0.0.1"));
    CHECK(shed_config_bind_is_loopback("127.1.2.3"));
    CHECK(shed_config_bind_is_loopback("localhost"));
    CHECK(shed_config_bind_is_loopback(NULL));
    CHECK(!shed_config_bind_is_loopback("0.0.0.0"));
    CHECK(!shed_config_bind_is_loopback("10.88.0.1"));
    CHECK(!shed_config_bind_is_loopback("128.0.0.1"));
}

static void test_ssh_section_is_parsed_and_printed(void)
{
    struct shed_config config;
    CHECK(parse("ssh:\n"
                "  authorized_keys: /etc/keys/shed\n"
                "  keys:\n"
                "    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7u me@laptop\n"
                "  shell: tmux\n"
                "  auth: none\n"
                "  max_auth_tries: 3\n"
                "  login_grace_seconds: 30\n"
                "  max_connections: 8\n"
                "sessions_timeout_seconds: 2\n",
                &config) == 0);
    CHECK_STR_EQ(config.ssh.authorized_keys, "/etc/keys/shed");
    CHECK_STR_EQ(config.ssh.keys[0], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7u me@laptop");
    CHECK(config.ssh.keys[1] == NULL);
    CHECK(config.ssh.shell == SHED_SSH_SHELL_TMUX);
    CHECK(config.ssh.auth == SHED_SSH_AUTH_NONE);
    CHECK(config.ssh.max_auth_tries == 3);
    CHECK(config.ssh.login_grace_seconds == 30);
    CHECK(config.ssh.max_connections == 8);
    CHECK(config.sessions_timeout_seconds == 2);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(out != NULL && shed_config_print(&config, out) == 0);
    fclose(out);
    CHECK_STR_CONTAINS(text, "ssh:\n  authorized_keys: \"/etc/keys/shed\"\n  keys:\n"
                             "    - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7u me@laptop\"\n"
                             "  shell: \"tmux\"\n  auth: \"none\"\n");
    struct shed_config again;
    CHECK(parse(text, &again) == 0);
    CHECK(again.ssh.auth == SHED_SSH_AUTH_NONE && again.ssh.max_connections == 8);
    shed_config_free(&again);
    shed_config_free(&config);
    free(text);
}

static void test_ssh_defaults_keys_only_beside_the_config(void)
{
    struct shed_config config;
    CHECK(parse("name: a\n", &config) == 0);
    CHECK(config.ssh.auth == SHED_SSH_AUTH_KEYS); /* never open by default */
    CHECK(config.ssh.shell == SHED_SSH_SHELL_LOGIN);
    CHECK(config.ssh.keys[0] == NULL);
    CHECK(config.ssh.max_auth_tries == 6);
    CHECK(config.ssh.login_grace_seconds == 120);
    CHECK(config.ssh.max_connections == 100);
    CHECK(config.sessions_timeout_seconds == 5);
    /* No file: where the lookup would look for one. */
    CHECK_STR_EQ(config.ssh.authorized_keys,
                 geteuid() == 0 ? "/etc/shed/authorized_keys" : config.ssh.authorized_keys);
    shed_config_free(&config);

    char dir[] = "/tmp/shed-test-config-ssh-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cleanup_free char *file = fs_path_join(dir, "server.yaml");
    CHECK(fs_write_file_atomic(file, "name: a\n", 8, 0600, &err) == 0);
    CHECK(shed_config_load(file, &config, &err) == 0);
    cleanup_free char *beside = fs_path_join(dir, "authorized_keys");
    CHECK_STR_EQ(config.ssh.authorized_keys, beside);
    shed_config_free(&config);
    unlink(file);
    rmdir(dir);
}

static void test_bad_ssh_settings_are_named(void)
{
    check_refused("ssh:\n  shell: zsh\n", "server.yaml:2: ssh.shell: expected login or tmux");
    check_refused("ssh:\n  auth: password\n", "server.yaml:2: ssh.auth: expected keys or none");
    check_refused("ssh:\n  keys: [not-a-key]\n", "ssh.keys: expected an OpenSSH public key");
    check_refused("ssh:\n  keys: ssh-ed25519 AAAA\n", "ssh.keys: expected a list");
    check_refused("ssh:\n  authorized_keys: keys.txt\n",
                  "ssh.authorized_keys: expected an absolute path");
    check_refused("ssh:\n  max_auth_tries: 0\n", "ssh.max_auth_tries: expected an integer 1-100");
    check_refused("ssh:\n  port: 22\n", "server.yaml:2: ssh.port: unknown key");
    check_refused("ssh:\n  auth: keys\n  auth: none\n", "server.yaml:3: ssh.auth: duplicate key");
    check_refused("ssh: [a]\n", "server.yaml:1: ssh: expected a mapping");
    check_refused("sessions_timeout_seconds: 0\n", "sessions_timeout_seconds: expected an integer");
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
    CHECK_TEST(test_default_base_image_applies_without_a_file),
    CHECK_TEST(test_registry_ca_is_parsed_and_printed),
    CHECK_TEST(test_reload_keeps_restart_keys),
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
    CHECK_TEST(test_limits_and_policies_are_parsed),
    CHECK_TEST(test_limits_and_policies_have_defaults),
    CHECK_TEST(test_bad_limits_and_policies_are_named),
    CHECK_TEST(test_printed_strings_are_escaped_so_they_read_back),
    CHECK_TEST(test_bind_loopback_rule),
    CHECK_TEST(test_ssh_section_is_parsed_and_printed),
    CHECK_TEST(test_ssh_defaults_keys_only_beside_the_config),
    CHECK_TEST(test_bad_ssh_settings_are_named),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
