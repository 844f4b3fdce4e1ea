/* backend_driver: drives the container backend directly, without the HTTP server, so the
 * backend's own behaviour (mounts, runc, rollback, status, exec, dial) is tested apart from
 * the API layer.
 *
 *   backend_driver DATA_DIR NAME create ROOTFS [repo=R] [local_dir=D] [cpus=N] [memory_mb=M]
 *   backend_driver DATA_DIR NAME start|stop|delete|status|probe
 *   backend_driver DATA_DIR NAME exec CMD...      (stdio passed through, exit status too)
 *   backend_driver DATA_DIR NAME dial PORT        (stdin → shed port → stdout)
 *
 * create clones ROOTFS to the instance and saves metadata.json like the server does; on a
 * failed create it removes the instance directory. Prints "ERROR CODE: message" on failure
 * and exits 1. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/io.h"
#include "config/config.h"
#include "runtime/backend_container.h"
#include "runtime/clone.h"
#include "runtime/instance.h"

struct driver {
    struct shed_config config;
    struct instance_store *store;
    struct shed_backend *backend;
    const char *name;
};

static int fail(const struct shed_err *err)
{
    fprintf(stderr, "ERROR %s: %s\n", shed_code_name(err->code), err->msg);
    return 1;
}

static void progress_print(const char *phase, const char *message, bool warning, void *ctx)
{
    (void)ctx;
    printf("progress %s%s %s\n", phase, warning ? " WARNING" : "", message);
    fflush(stdout);
}

static int apply_option(struct instance *inst, const char *option, struct shed_err *err)
{
    const char *eq = strchr(option, '=');
    if (eq == NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "option %s: want key=value", option);
    size_t key_len = (size_t)(eq - option);
    const char *value = eq + 1;
    if (strncmp(option, "repo", key_len) == 0)
        return instance_set_string(&inst->repo, value, err);
    if (strncmp(option, "local_dir", key_len) == 0)
        return instance_set_string(&inst->local_dir, value, err);
    if (strncmp(option, "cpus", key_len) == 0)
        inst->cpus = atoi(value);
    else if (strncmp(option, "memory_mb", key_len) == 0)
        inst->memory_mb = atoi(value);
    else
        return shed_errf(err, SHED_E_INVALID_REQUEST, "unknown option %s", option);
    return 0;
}

static int do_create(struct driver *d, const char *rootfs, int argc, char **argv,
                     struct shed_err *err)
{
    struct instance inst;
    if (instance_init(&inst, d->name, err) < 0)
        return -1;
    int rc = instance_store_create_dir(d->store, d->name, err);
    char *dir = instance_store_path(d->store, d->name);
    char *target = dir != NULL ? fs_path_join(dir, "rootfs.ext4") : NULL;
    if (rc == 0 && target == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (int i = 0; rc == 0 && i < argc; i++)
        rc = apply_option(&inst, argv[i], err);
    if (rc == 0)
        rc = instance_set_string(&inst.backend, "container", err);
    if (rc == 0)
        rc = instance_set_string(&inst.rootfs_path, target, err);
    if (rc == 0)
        rc = clone_file(rootfs, target, NULL, err);
    struct backend_progress progress = {.report = progress_print};
    if (rc == 0)
        rc = d->backend->create(d->backend, &inst, &progress, err);
    if (rc == 0)
        rc = instance_store_save(d->store, &inst, err);
    if (rc < 0) {
        struct shed_err ignored = {0};
        instance_store_delete(d->store, d->name, &ignored);
    } else {
        printf("running pid %d\n", (int)inst.pid);
    }
    free(dir);
    free(target);
    instance_clear(&inst);
    return rc;
}

/* Copies stdin to fd and fd to stdout until both directions end. */
static int relay(int fd)
{
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    char buf[4096];
    for (;;) {
        if (TEMP_FAILURE_RETRY(poll(fds, 2, -1)) < 0)
            return -1;
        if (fds[0].revents) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0) {
                shutdown(fd, SHUT_WR);
                fds[0].fd = -1;
            } else if (write_all(fd, buf, (size_t)n) < 0) {
                return -1;
            }
        }
        if (fds[1].revents) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                return 0;
            if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
                return -1;
        }
    }
}

static int do_loaded(struct driver *d, const char *command, int argc, char **argv,
                     struct shed_err *err)
{
    struct instance inst;
    if (instance_store_load(d->store, d->name, &inst, err) < 0)
        return -1;
    const struct shed_backend *b = d->backend;
    int rc = 0;
    if (strcmp(command, "status") == 0) {
        enum instance_status status;
        rc = b->status(b, &inst, &status, err);
        if (rc == 0)
            printf("%s\n", instance_status_name(status));
    } else if (strcmp(command, "start") == 0 || strcmp(command, "stop") == 0) {
        rc = command[2] == 'a' ? b->start(b, &inst, NULL, err) : b->stop(b, &inst, err);
        if (rc == 0)
            rc = instance_store_save(d->store, &inst, err);
    } else if (strcmp(command, "delete") == 0) {
        rc = b->delete (b, &inst, err);
        if (rc == 0)
            rc = instance_store_delete(d->store, d->name, err);
    } else if (strcmp(command, "exec") == 0 && argc > 0) {
        struct backend_exec_request request = {
            .argv = (const char *const *)argv, .stdin_fd = 0, .stdout_fd = 1, .stderr_fd = 2};
        int status = 0;
        rc = b->exec(b, &inst, &request, &status, err);
        if (rc == 0)
            rc = status;
    } else if (strcmp(command, "dial") == 0 && argc == 1) {
        int fd = -1;
        rc = b->dial(b, &inst, (uint16_t)atoi(argv[0]), &fd, err);
        if (rc == 0) {
            rc = relay(fd) < 0 ? shed_errf(err, SHED_E_IO, "relay failed") : 0;
            close(fd);
        }
    } else {
        rc = shed_errf(err, SHED_E_INVALID_REQUEST, "unknown command %s", command);
    }
    instance_clear(&inst);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: backend_driver DATA_DIR NAME COMMAND [ARGS...]\n");
        return 2;
    }
    struct driver d = {.name = argv[2]};
    struct shed_err err = {0};
    if (shed_config_defaults(&d.config, &err) < 0)
        return fail(&err);
    free(d.config.data_dir);
    free(d.config.instance_dir);
    d.config.data_dir = strdup(argv[1]);
    d.config.instance_dir = fs_path_join(argv[1], "instances");
    if (d.config.data_dir == NULL || d.config.instance_dir == NULL)
        return 1;
    if (instance_store_open(d.config.instance_dir, &d.store, &err) < 0 ||
        container_backend_new(&d.config, &d.backend, &err) < 0)
        return fail(&err);
    const char *command = argv[3];
    int rc;
    if (strcmp(command, "probe") == 0)
        rc = d.backend->probe(d.backend, &err);
    else if (strcmp(command, "create") == 0 && argc >= 5)
        rc = do_create(&d, argv[4], argc - 5, argv + 5, &err);
    else
        rc = do_loaded(&d, command, argc - 4, argv + 4, &err);
    container_backend_free(d.backend);
    instance_store_close(d.store);
    shed_config_free(&d.config);
    if (rc < 0)
        return fail(&err);
    return rc;
}
