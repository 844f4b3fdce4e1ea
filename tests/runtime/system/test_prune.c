/* prune_plan / prune_execute through the library: what happens between the plan and its
 * execution (a shed started, a lock taken), log truncation with a live appender, FIEMAP
 * fallback, durations. Sheds are made through the instance store; "running" is a real
 * long-lived child process recorded as the shed's pid. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "config/config.h"
#include "harness/check.h"
#include "runtime/df.h"
#include "runtime/instance.h"
#include "runtime/prune.h"

struct fixture {
    char root[256];
    struct shed_config config;
    struct instance_store *store;
    struct shed_probe probe;
};

static void fixture_open(struct fixture *f, const char *base)
{
    snprintf(f->root, sizeof f->root, "%s/shed-prune-XXXXXX", base);
    if (mkdtemp(f->root) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    char yaml[512];
    snprintf(yaml, sizeof yaml, "name: t\ndata_dir: %s\n", f->root);
    struct shed_err err = {0};
    if (shed_config_parse(yaml, strlen(yaml), "test", &f->config, &err) < 0 ||
        fs_mkdir_p(f->config.images_dir, 0755, &err) < 0 ||
        instance_store_open(f->config.instance_dir, &f->store, &err) < 0) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(1);
    }
    f->probe = shed_probe_for_backends(NULL); /* recorded pids */
}

static void fixture_close(struct fixture *f)
{
    instance_store_close(f->store);
    shed_config_free(&f->config);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->root);
}

static void set_age(const char *path, time_t seconds)
{
    struct timespec times[2] = {{time(NULL) - seconds, 0}, {time(NULL) - seconds, 0}};
    if (utimensat(AT_FDCWD, path, times, 0) < 0)
        perror(path);
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        perror(path);
        exit(1);
    }
    close(fd);
}

/* A stopped shed whose metadata.json is age_seconds old, with a 1 MiB rootfs. */
static void make_shed(struct fixture *f, const char *name, time_t age_seconds)
{
    struct instance inst;
    struct shed_err err = {0};
    if (instance_init(&inst, name, &err) < 0 ||
        instance_store_create_dir(f->store, name, &err) < 0 ||
        instance_set_string(&inst.image, "img", &err) < 0 ||
        instance_set_string(&inst.backend, "container", &err) < 0 ||
        instance_store_save(f->store, &inst, &err) < 0) {
        fprintf(stderr, "make_shed: %s\n", err.msg);
        exit(1);
    }
    instance_clear(&inst);
    char path[512];
    snprintf(path, sizeof path, "%s/%s/rootfs.ext4", f->config.instance_dir, name);
    static char block[1 << 20];
    memset(block, 'r', sizeof block);
    write_file(path, block, sizeof block);
    snprintf(path, sizeof path, "%s/%s/metadata.json", f->config.instance_dir, name);
    set_age(path, age_seconds);
}

static void mark_running(struct fixture *f, const char *name, pid_t pid)
{
    struct instance inst;
    struct shed_err err = {0};
    int lock = -1;
    if (instance_store_lock(f->store, name, &lock, &err) < 0 ||
        instance_store_load(f->store, name, &inst, &err) < 0) {
        fprintf(stderr, "mark_running: %s\n", err.msg);
        exit(1);
    }
    inst.status = INSTANCE_RUNNING;
    inst.pid = pid;
    if (instance_store_save(f->store, &inst, &err) < 0)
        fprintf(stderr, "mark_running: %s\n", err.msg);
    instance_clear(&inst);
    instance_store_unlock(lock);
}

static pid_t start_sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        pause();
        _exit(0);
    }
    return pid;
}

static void stop_sleeper(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static struct prune_plan *plan_for(struct fixture *f, unsigned scopes, bool dry_run)
{
    struct prune_opts opts = {.config = &f->config,
                              .instances = f->store,
                              .probe = &f->probe,
                              .scopes = scopes,
                              .until_seconds = 72 * 3600,
                              .dry_run = dry_run};
    struct prune_plan *plan = NULL;
    struct shed_err err = {0};
    if (prune_plan(&opts, &plan, &err) < 0) {
        fprintf(stderr, "prune_plan: %s\n", err.msg);
        exit(1);
    }
    return plan;
}

static const struct prune_item *find(const struct prune_list *list, const char *name_or_path)
{
    for (size_t i = 0; i < list->count; i++) {
        const struct prune_item *item = &list->items[i];
        if ((item->name != NULL && strcmp(item->name, name_or_path) == 0) ||
            (item->path != NULL && strcmp(item->path, name_or_path) == 0))
            return item;
    }
    return NULL;
}

static bool shed_dir_exists(struct fixture *f, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->config.instance_dir, name);
    return fs_exists(path);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_prune_shed_started_between_plan_and_execute_survives(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    make_shed(&f, "late-start", 5 * 24 * 3600);
    make_shed(&f, "old", 5 * 24 * 3600);
    struct prune_plan *plan = plan_for(&f, PRUNE_SCOPE_INSTANCES, false);
    CHECK(find(&plan->items, "late-start") != NULL);
    pid_t sleeper = start_sleeper();
    mark_running(&f, "late-start", sleeper);
    struct shed_err err = {0};
    CHECK(prune_execute(plan, &err) == 0);
    const struct prune_item *skipped = find(&plan->skipped, "late-start");
    CHECK(skipped != NULL);
    if (skipped != NULL)
        CHECK_STR_EQ(skipped->reason, PRUNE_REASON_RUNNING);
    CHECK(find(&plan->items, "late-start") == NULL);
    CHECK(shed_dir_exists(&f, "late-start"));
    CHECK(find(&plan->items, "old") != NULL);
    CHECK(!shed_dir_exists(&f, "old"));
    prune_plan_free(plan);
    stop_sleeper(sleeper);
    fixture_close(&f);
}

static void test_prune_skips_running_shed_and_dead_running_one_counts_as_stopped(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    make_shed(&f, "alive", 5 * 24 * 3600);
    make_shed(&f, "crashed", 5 * 24 * 3600);
    pid_t sleeper = start_sleeper();
    pid_t dead = start_sleeper();
    stop_sleeper(dead);
    mark_running(&f, "alive", sleeper);
    mark_running(&f, "crashed", dead);
    /* mark_running rewrote metadata.json: make both old again */
    char path[512];
    snprintf(path, sizeof path, "%s/alive/metadata.json", f.config.instance_dir);
    set_age(path, 5 * 24 * 3600);
    snprintf(path, sizeof path, "%s/crashed/metadata.json", f.config.instance_dir);
    set_age(path, 5 * 24 * 3600);
    struct prune_plan *plan = plan_for(&f, PRUNE_SCOPE_INSTANCES, false);
    const struct prune_item *alive = find(&plan->skipped, "alive");
    CHECK(alive != NULL && strcmp(alive->reason, PRUNE_REASON_RUNNING) == 0);
    CHECK(find(&plan->items, "crashed") != NULL);
    struct shed_err err = {0};
    CHECK(prune_execute(plan, &err) == 0);
    CHECK(shed_dir_exists(&f, "alive"));
    CHECK(!shed_dir_exists(&f, "crashed"));
    prune_plan_free(plan);
    stop_sleeper(sleeper);
    fixture_close(&f);
}

static void test_prune_skips_shed_whose_lock_is_taken_after_the_plan(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    make_shed(&f, "busy", 5 * 24 * 3600);
    struct prune_plan *plan = plan_for(&f, PRUNE_SCOPE_INSTANCES, false);
    CHECK(find(&plan->items, "busy") != NULL);
    int lock = -1;
    struct shed_err err = {0};
    CHECK(instance_store_lock(f.store, "busy", &lock, &err) == 0);
    CHECK(prune_execute(plan, &err) == 0);
    const struct prune_item *skipped = find(&plan->skipped, "busy");
    CHECK(skipped != NULL);
    if (skipped != NULL)
        CHECK_STR_CONTAINS(skipped->reason, "lock held");
    CHECK(shed_dir_exists(&f, "busy"));
    instance_store_unlock(lock);
    prune_plan_free(plan);
    fixture_close(&f);
}

static void test_prune_skips_tmp_whose_lock_is_taken_after_the_plan(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    char tmp[512], lock_path[512];
    snprintf(tmp, sizeof tmp, "%s/gone-rootfs.ext4.tmp", f.config.images_dir);
    snprintf(lock_path, sizeof lock_path, "%s/gone-rootfs.ext4.lock", f.config.images_dir);
    write_file(tmp, "partial", 7);
    set_age(tmp, 2 * 3600);
    struct prune_plan *plan = plan_for(&f, PRUNE_SCOPE_ORPHANS, false);
    CHECK(find(&plan->items, tmp) != NULL);
    int lock = -1;
    struct shed_err err = {0};
    CHECK(fs_lock_file(lock_path, false, &lock, &err) == 0 && lock >= 0);
    CHECK(prune_execute(plan, &err) == 0);
    const struct prune_item *skipped = find(&plan->skipped, tmp);
    CHECK(skipped != NULL && strcmp(skipped->reason, PRUNE_REASON_LOCK_HELD) == 0);
    CHECK(fs_exists(tmp));
    CHECK(fs_exists(lock_path));
    close(lock);
    prune_plan_free(plan);
    fixture_close(&f);
}

static void test_log_truncation_keeps_the_tail_and_the_inode_for_an_open_appender(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    char path[512];
    snprintf(path, sizeof path, "%s/console.log", f.root);
    size_t size = 3 * 1024 * 1024 + 123;
    char *data = malloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    write_file(path, data, size);
    int appender = open(path, O_WRONLY | O_APPEND);
    struct stat before, after;
    CHECK(stat(path, &before) == 0);
    struct df_size freed;
    struct shed_err err = {0};
    CHECK(prune_truncate_log(path, 1000, &freed, &err) == 0);
    CHECK(stat(path, &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(after.st_size == 1000);
    CHECK(freed.logical == size - 1000);
    char *kept = NULL;
    size_t kept_len = 0;
    CHECK(fs_read_file(path, &kept, &kept_len, 1 << 20, &err) == 0);
    CHECK(kept_len == 1000 && memcmp(kept, data + size - 1000, 1000) == 0);
    CHECK(write(appender, "NEXT", 4) == 4);
    free(kept);
    CHECK(fs_read_file(path, &kept, &kept_len, 1 << 20, &err) == 0);
    CHECK(kept_len == 1004 && memcmp(kept + 1000, "NEXT", 4) == 0);
    free(kept);
    close(appender);
    free(data);
    fixture_close(&f);
}

static void test_hardlinked_file_is_counted_once_and_freed_only_with_every_link(void)
{
    struct fixture f;
    fixture_open(&f, "/tmp");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/lonely-rootfs.ext4", f.config.images_dir);
    snprintf(b, sizeof b, "%s/twin-rootfs.ext4", f.config.images_dir);
    static char block[256 << 10];
    memset(block, 'x', sizeof block);
    write_file(a, block, sizeof block);
    CHECK(link(a, b) == 0);
    struct df_opts opts = {.config = &f.config, .instances = f.store, .probe = &f.probe};
    struct df_report report;
    struct shed_err err = {0};
    CHECK(df_scan(&opts, &report, &err) == 0);
    CHECK(report.image_count == 2);
    CHECK(report.totals.images.logical == sizeof block);
    CHECK(report.totals.images.files == 1);
    df_report_free(&report);
    fixture_close(&f);
}

static void test_exclusive_equals_physical_with_a_note_where_fiemap_is_unsupported(void)
{
    if (!fs_exists("/dev/shm"))
        return;
    struct fixture f;
    fixture_open(&f, "/dev/shm"); /* tmpfs: no FIEMAP */
    char path[512];
    snprintf(path, sizeof path, "%s/solo-rootfs.ext4", f.config.images_dir);
    static char block[64 << 10];
    memset(block, 'y', sizeof block);
    write_file(path, block, sizeof block);
    struct df_opts opts = {.config = &f.config, .instances = f.store, .probe = &f.probe};
    struct df_report report;
    struct shed_err err = {0};
    CHECK(df_scan(&opts, &report, &err) == 0);
    CHECK(report.image_count == 1);
    if (report.image_count == 1) {
        CHECK(report.images[0].rootfs.size.physical > 0);
        CHECK(report.images[0].rootfs.size.exclusive == report.images[0].rootfs.size.physical);
    }
    bool noted = false;
    for (size_t i = 0; i < report.note_count; i++)
        noted = noted || strstr(report.notes[i], "FIEMAP is not supported") != NULL;
    CHECK(noted);
    df_report_free(&report);
    fixture_close(&f);
}

static void test_durations_parse_and_echo_like_go(void)
{
    struct shed_err err = {0};
    uint64_t s = 1;
    char out[64];
    CHECK(prune_parse_duration("72h", &s, &err) == 0 && s == 72 * 3600);
    prune_format_duration(s, out, sizeof out);
    CHECK_STR_EQ(out, "72h0m0s");
    CHECK(prune_parse_duration("90m", &s, &err) == 0 && s == 5400);
    prune_format_duration(s, out, sizeof out);
    CHECK_STR_EQ(out, "1h30m0s");
    CHECK(prune_parse_duration("0s", &s, &err) == 0 && s == 0);
    prune_format_duration(s, out, sizeof out);
    CHECK_STR_EQ(out, "0s");
    CHECK(prune_parse_duration("1h30m15s", &s, &err) == 0 && s == 5415);
    const char *bad[] = {"-1h", "", "h", "72", "3d", "1.5h", "72h ", "abc", "99999999999999h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(prune_parse_duration(bad[i], &s, &err) < 0);
        CHECK(err.code == SHED_E_INVALID_REQUEST);
    }
}

static const struct check_test tests[] = {
    CHECK_TEST(test_prune_shed_started_between_plan_and_execute_survives),
    CHECK_TEST(test_prune_skips_running_shed_and_dead_running_one_counts_as_stopped),
    CHECK_TEST(test_prune_skips_shed_whose_lock_is_taken_after_the_plan),
    CHECK_TEST(test_prune_skips_tmp_whose_lock_is_taken_after_the_plan),
    CHECK_TEST(test_log_truncation_keeps_the_tail_and_the_inode_for_an_open_appender),
    CHECK_TEST(test_hardlinked_file_is_counted_once_and_freed_only_with_every_link),
    CHECK_TEST(test_exclusive_equals_physical_with_a_note_where_fiemap_is_unsupported),
    CHECK_TEST(test_durations_parse_and_echo_like_go),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
