/* shed-server serve: runs the REST API and the SSH front door until SIGTERM/SIGINT; SIGHUP
 * reloads server.yaml. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "runtime/instance.h"
#include "runtime/reap.h"
#include "server/server.h"
#include "ssh/sshd.h"

struct serve_args {
    const char *config_path; /* --config, or NULL: the lookup */
    const char *data_dir;    /* --data-dir, or NULL */
    const char *bind;
    int port;           /* -1: from the config */
    int ssh_port;       /* -1: from the config */
    int bound_ssh_port; /* the port serving, once known (what --ssh-port 0 became) */
};

const struct cli_option serve_options[] = {
    SERVER_CONFIG_OPTIONS,
    {"port", 'p', "N", "HTTP port (overrides http_port; 0: a free port)", OPT_PORT},
    {"ssh-port", 0, "N", "SSH port (overrides ssh_port; 0: a free port)", OPT_SSH_PORT},
    {"bind", 'b', "ADDR", "IPv4 address to listen on (overrides bind)", OPT_BIND},
    SERVER_OPTIONS_END,
};

static int parse_port(const char *text, int *port)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 65535)
        return -1;
    *port = (int)value;
    return 0;
}

static int parse_args(const struct cli_call *call, struct serve_args *args)
{
    args->port = args->ssh_port = -1;
    args->config_path = cli_value(call, OPT_CONFIG);
    args->data_dir = cli_value(call, OPT_DATA_DIR);
    args->bind = cli_value(call, OPT_BIND);
    const char *port = cli_value(call, OPT_PORT);
    if (port != NULL && parse_port(port, &args->port) < 0)
        return cli_usage_error(call, "invalid port '%s' (0-65535)", port);
    const char *ssh_port = cli_value(call, OPT_SSH_PORT);
    if (ssh_port != NULL && parse_port(ssh_port, &args->ssh_port) < 0)
        return cli_usage_error(call, "invalid SSH port '%s' (0-65535)", ssh_port);
    return 0;
}

static int apply_overrides(const struct serve_args *args, struct shed_config *config,
                           struct shed_err *err)
{
    if (args->data_dir != NULL && shed_config_use_data_dir(config, args->data_dir, err) < 0)
        return -1;
    if (args->port >= 0)
        config->http_port = args->port;
    if (args->ssh_port >= 0)
        config->ssh_port = args->bound_ssh_port > 0 ? args->bound_ssh_port : args->ssh_port;
    if (args->bind == NULL)
        return 0;
    char *bind = strdup(args->bind);
    if (bind == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    free(config->bind);
    config->bind = bind;
    return 0;
}

/* What a restart would read: server.yaml by the lookup (or --config), then the command line.
 * The server calls this again for every reload. */
static int load_config(void *ctx, struct shed_config *config, struct shed_err *err)
{
    const struct serve_args *args = ctx;
    if (shed_config_load(args->config_path, config, err) < 0)
        return -1;
    if (apply_overrides(args, config, err) < 0) {
        shed_config_free(config);
        return -1;
    }
    return 0;
}

static char *config_file(void *ctx)
{
    const struct serve_args *args = ctx;
    return shed_config_lookup_path(args->config_path);
}

/* SIGTERM/SIGINT (stop) and SIGHUP (reload) are blocked in every thread (libmicrohttpd's
 * threads inherit the mask) and taken synchronously by sigwait in the main thread: no
 * handler, no global flag. */
static int block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void print_reap_line(const char *line, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "shed-server: %s\n", line);
}

/* What a killed server left (runtime/reap.h) is released before the API answers. */
static int reap_leftovers(const struct shed_config *config, const struct backend_set *backends,
                          struct shed_err *err)
{
    struct instance_store *store = NULL;
    if (instance_store_open(config->instance_dir, &store, err) < 0)
        return -1;
    struct reap_report report;
    int rc = instance_reap(store, backends, print_reap_line, NULL, &report, err);
    instance_store_close(store);
    if (rc == 0 && report.orphans_removed + report.interrupted + report.processes_killed > 0)
        fprintf(stderr,
                "shed-server: cleaned up after an interrupted server: %zu orphan director%s, "
                "%zu interrupted shed%s, %zu process%s\n",
                report.orphans_removed, report.orphans_removed == 1 ? "y" : "ies",
                report.interrupted, report.interrupted == 1 ? "" : "s", report.processes_killed,
                report.processes_killed == 1 ? "" : "es");
    return rc;
}

static void print_serving(struct server *server)
{
    const struct shed_config *config = server_config_acquire(server);
    fprintf(stderr,
            "shed-server: serving http://%s:%u (name %s, data %s, %zu sheds found, ssh port %d)\n",
            config->bind, (unsigned)server_port(server), config->name, config->data_dir,
            server_discovered_sheds(server), config->ssh_port);
    server_config_release(config);
}

/* SIGHUP reloads (the server logs the outcome); SIGTERM/SIGINT end the loop. */
static int wait_for_stop(struct server *server, const sigset_t *signals)
{
    for (;;) {
        int signo = 0;
        if (sigwait(signals, &signo) != 0)
            continue;
        if (signo != SIGHUP)
            return signo;
        struct shed_err err = {0};
        (void)server_reload(server, &err);
    }
}

static const struct shed_config *acquire_config(void *ctx)
{
    return server_config_acquire(ctx);
}

static void release_config(const struct shed_config *config, void *ctx)
{
    (void)ctx;
    server_config_release(config);
}

/* The SSH front door listens before the API, so /api/info reports the port it really has
 * (with --ssh-port 0, one the kernel picked; reloads keep it). config is moved into the
 * server, whose configuration every SSH connection then takes. */
static int serve(struct shed_config *config, struct serve_args *args, const sigset_t *stop_signals)
{
    struct server *server = NULL;
    struct sshd *sshd = NULL;
    struct shed_err err = {0};
    struct backend_set *backends = NULL;
    if (backend_set_new(config, &backends, &err) < 0)
        return cli_fail(&err);
    /* Before the cleanup: it assumes no other server works on this data dir. */
    struct server_claim *claim = NULL;
    if (server_claim_data_dir(config->data_dir, &claim, &err) < 0) {
        backend_set_free(backends);
        return cli_fail(&err);
    }
    if (reap_leftovers(config, backends, &err) < 0) {
        server_claim_release(claim);
        backend_set_free(backends);
        return cli_fail(&err);
    }
    if (sshd_start(config, backends, config->ssh_port, &sshd, &err) < 0) {
        server_claim_release(claim);
        backend_set_free(backends);
        return cli_fail(&err);
    }
    args->bound_ssh_port = config->ssh_port = sshd_port(sshd);
    struct server_config_source source = {.load = load_config, .file = config_file, .ctx = args};
    if (server_start(config, claim, &source, backends, &server, &err) < 0) {
        sshd_stop(sshd);
        backend_set_free(backends);
        return cli_fail(&err);
    }
    struct sshd_config_source ssh_source = {
        .acquire = acquire_config, .release = release_config, .ctx = server};
    if (sshd_serve(sshd, &ssh_source, &err) < 0) {
        sshd_stop(sshd);
        server_stop(server);
        backend_set_free(backends);
        return cli_fail(&err);
    }
    print_serving(server);
    int signo = wait_for_stop(server, stop_signals);
    fprintf(stderr, "shed-server: %s received, finishing requests in flight\n",
            signo == SIGINT ? "SIGINT" : "SIGTERM");
    sshd_stop(sshd);
    server_stop(server);
    backend_set_free(backends);
    fprintf(stderr, "shed-server: stopped\n");
    return EXIT_OK;
}

int cmd_serve(const struct cli_call *call)
{
    struct serve_args args = {0};
    int rc = parse_args(call, &args);
    if (rc != 0)
        return rc;
    sigset_t stop_signals;
    if (block_stop_signals(&stop_signals) != 0) {
        fprintf(stderr, "shed-server serve: cannot block signals\n");
        return EXIT_FAILURE_RUN;
    }
    struct shed_config config;
    struct shed_err err = {0};
    if (load_config(&args, &config, &err) < 0)
        return cli_fail(&err);
    rc = serve(&config, &args, &stop_signals);
    shed_config_free(&config); /* empty when the server took it */
    return rc;
}
