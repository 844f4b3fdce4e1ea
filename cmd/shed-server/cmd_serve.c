/* shed-server serve: runs the REST API until SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "server/server.h"

struct serve_args {
    const char *config_path;
    const char *bind;
    const char *data_dir;
    int port; /* -1: from the config */
};

static void print_help(void)
{
    printf("Usage: shed-server serve [OPTIONS]\n"
           "\n"
           "Serve the shed REST API (default 127.0.0.1:8080) until SIGTERM or SIGINT, which\n"
           "stop accepting, let requests in flight finish, and exit 0. Running sheds keep\n"
           "running. Existing sheds are re-discovered from <instance_dir>/*/metadata.json.\n"
           "\n"
           "Options:\n" CLI_CONFIG_OPTIONS_HELP
           "  -p, --port=N           HTTP port (overrides http_port)\n"
           "  -b, --bind=ADDR        IPv4 address to listen on (overrides bind)\n"
           "  -h, --help             show this help and exit\n");
}

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

/* Returns 0 to run, 1 after --help, or EXIT_USAGE. */
static int parse_args(int argc, char **argv, struct serve_args *args)
{
    enum { OPT_DATA_DIR = 256 };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    args->port = -1;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:p:b:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': args->config_path = optarg; break;
        case 'b': args->bind = optarg; break;
        case OPT_DATA_DIR: args->data_dir = optarg; break;
        case 'p':
            if (parse_port(optarg, &args->port) < 0)
                return cli_usage_error("serve", "invalid port '%s' (0-65535)", optarg);
            break;
        case 'h': print_help(); return 1;
        default: return cli_usage_error("serve", "invalid option");
        }
    }
    if (optind < argc)
        return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    return 0;
}

static int apply_overrides(const struct serve_args *args, struct shed_config *config,
                           struct shed_err *err)
{
    if (args->data_dir != NULL && shed_config_use_data_dir(config, args->data_dir, err) < 0)
        return -1;
    if (args->port >= 0)
        config->http_port = args->port;
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

static void print_serving(struct server *server)
{
    const struct shed_config *config = server_config_acquire(server);
    fprintf(stderr, "shed-server: serving http://%s:%u (name %s, data %s, %zu sheds found)\n",
            config->bind, (unsigned)server_port(server), config->name, config->data_dir,
            server_discovered_sheds(server));
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

/* config is moved into the server. */
static int serve(struct shed_config *config, const struct server_config_source *source,
                 const sigset_t *stop_signals)
{
    struct server *server = NULL;
    struct shed_err err = {0};
    struct backend_set *backends = NULL;
    if (backend_set_new(config, &backends, &err) < 0)
        return cli_fail(&err);
    if (server_start(config, source, backends, &server, &err) < 0) {
        backend_set_free(backends);
        return cli_fail(&err);
    }
    print_serving(server);
    int signo = wait_for_stop(server, stop_signals);
    fprintf(stderr, "shed-server: %s received, finishing requests in flight\n",
            signo == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(server);
    backend_set_free(backends);
    fprintf(stderr, "shed-server: stopped\n");
    return EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args args = {0};
    int rc = parse_args(argc, argv, &args);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    sigset_t stop_signals;
    if (block_stop_signals(&stop_signals) != 0) {
        fprintf(stderr, "shed-server serve: cannot block signals\n");
        return EXIT_FAILURE_RUN;
    }
    struct shed_config config;
    struct shed_err err = {0};
    if (load_config(&args, &config, &err) < 0)
        return cli_fail(&err);
    struct server_config_source source = {.load = load_config, .file = config_file, .ctx = &args};
    rc = serve(&config, &source, &stop_signals);
    shed_config_free(&config); /* empty when the server took it */
    return rc;
}
