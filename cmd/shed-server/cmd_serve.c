/* shed-server serve: runs the REST API and the SSH front door until SIGTERM/SIGINT. */
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
#include "ssh/sshd.h"

struct serve_args {
    const char *config_path;
    const char *bind;
    const char *data_dir;
    int port;     /* -1: from the config */
    int ssh_port; /* -1: from the config */
};

static void print_help(void)
{
    printf("Usage: shed-server serve [OPTIONS]\n"
           "\n"
           "Serve the shed REST API (default 127.0.0.1:8080) and the SSH front door (default\n"
           "127.0.0.1:2222: ssh -p 2222 SHED@host) until SIGTERM or SIGINT, which stop\n"
           "accepting, let requests in flight finish, end SSH connections, and exit 0.\n"
           "Running sheds keep running. Existing sheds are re-discovered from\n"
           "<instance_dir>/*/metadata.json.\n"
           "\n"
           "Options:\n" CLI_CONFIG_OPTIONS_HELP
           "  -p, --port=N           HTTP port (overrides http_port; 0: any free port)\n"
           "      --ssh-port=N       SSH port (overrides ssh_port; 0: any free port)\n"
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
    enum { OPT_DATA_DIR = 256, OPT_SSH_PORT };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"ssh-port", required_argument, NULL, OPT_SSH_PORT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    args->port = args->ssh_port = -1;
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
        case OPT_SSH_PORT:
            if (parse_port(optarg, &args->ssh_port) < 0)
                return cli_usage_error("serve", "invalid SSH port '%s' (0-65535)", optarg);
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
    if (args->port >= 0)
        config->http_port = args->port;
    if (args->ssh_port >= 0)
        config->ssh_port = args->ssh_port;
    if (args->bind == NULL)
        return 0;
    char *bind = strdup(args->bind);
    if (bind == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    free(config->bind);
    config->bind = bind;
    return 0;
}

/* SIGTERM/SIGINT are blocked in every thread (libmicrohttpd's threads inherit the mask) and
 * taken synchronously by sigwait in the main thread: no handler, no global flag. */
static int block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* The SSH front door listens first, so /api/info reports the port it really has (with
 * --ssh-port 0, one the kernel picked). */
static int serve(struct shed_config *config, const sigset_t *stop_signals)
{
    struct server *server = NULL;
    struct sshd *sshd = NULL;
    struct shed_err err = {0};
    struct backend_set *backends = NULL;
    if (backend_set_new(config, &backends, &err) < 0)
        return cli_fail(&err);
    if (sshd_start(config, backends, config->ssh_port, &sshd, &err) < 0) {
        backend_set_free(backends);
        return cli_fail(&err);
    }
    config->ssh_port = sshd_port(sshd);
    if (server_start(config, backends, &server, &err) < 0) {
        sshd_stop(sshd);
        backend_set_free(backends);
        return cli_fail(&err);
    }
    fprintf(stderr,
            "shed-server: serving http://%s:%u (name %s, data %s, %zu sheds found, ssh port %u)\n",
            config->bind, (unsigned)server_port(server), config->name, config->data_dir,
            server_discovered_sheds(server), (unsigned)sshd_port(sshd));
    int signo = 0;
    while (sigwait(stop_signals, &signo) != 0) {
    }
    fprintf(stderr, "shed-server: %s received, finishing requests in flight\n",
            signo == SIGINT ? "SIGINT" : "SIGTERM");
    sshd_stop(sshd);
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
    if (cli_load_config(args.config_path, args.data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    if (apply_overrides(&args, &config, &err) < 0) {
        shed_config_free(&config);
        return cli_fail(&err);
    }
    rc = serve(&config, &stop_signals);
    shed_config_free(&config);
    return rc;
}
