/* shed: the command-line client of shed-server's REST API.
 *
 * Output: human tables by default, the server's JSON with --json. Errors: one line on
 * stderr, "shed: CODE: message" (the server's code and message), exit 1; usage errors exit 2. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "cmd_ssh.h"
#include "cmd_system.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/sockutil.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct cli {
    struct client client;
    bool json;
};

struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *usage;
    const char *summary;
};

static int fail(const struct client_error *error)
{
    fprintf(stderr, "shed: %s: %s\n", error->code, error->message);
    return EXIT_FAIL;
}

static int usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "shed%s%s: ", command ? " " : "", command ? command : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shed %s%s--help'.\n", command ? command : "", command ? " " : "");
    return EXIT_USAGE;
}

static void print_json(const json_t *json)
{
    char *text = json != NULL ? json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

static const char *str_field(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    return value != NULL ? value : "";
}

static long long int_field(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* Parses only --help for commands without options. 0: go on; 1: help printed; else usage. */
static int parse_no_options(const struct command *command, int argc, char **argv)
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h') {
            printf("Usage: shed %s\n\n%s\n", command->usage, command->summary);
            return 1;
        }
        return usage_error(command->name, "invalid option");
    }
    return 0;
}

/* ---- tables -------------------------------------------------------------------------- */

#define MAX_COLUMNS 8

struct table {
    size_t columns;
    size_t width[MAX_COLUMNS];
    char **cells; /* rows * columns, malloc'd strings */
    size_t rows;
};

static void table_add(struct table *table, const char *const *values)
{
    char **grown = realloc(table->cells, (table->rows + 1) * table->columns * sizeof *grown);
    if (grown == NULL)
        return;
    table->cells = grown;
    for (size_t c = 0; c < table->columns; c++) {
        char *copy = strdup(values[c] != NULL ? values[c] : "");
        table->cells[table->rows * table->columns + c] = copy;
        size_t len = copy != NULL ? strlen(copy) : 0;
        if (len > table->width[c])
            table->width[c] = len;
    }
    table->rows++;
}

static void table_print_free(struct table *table)
{
    for (size_t r = 0; r < table->rows; r++) {
        for (size_t c = 0; c < table->columns; c++) {
            const char *cell = table->cells[r * table->columns + c];
            if (cell == NULL)
                cell = "";
            if (c + 1 == table->columns)
                printf("%s\n", cell);
            else
                printf("%-*s  ", (int)table->width[c], cell);
        }
    }
    for (size_t i = 0; i < table->rows * table->columns; i++)
        free(table->cells[i]);
    free(table->cells);
}

/* ---- info, list, get ----------------------------------------------------------------- */

static int get_and_print(struct cli *cli, const char *path, void (*human)(const json_t *))
{
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, "GET", path, NULL, &response, &error) < 0)
        return fail(&error);
    if (cli->json)
        print_json(response.json);
    else
        human(response.json);
    client_response_clear(&response);
    return EXIT_OK;
}

/* DELETE path, the answer unused: EXIT_OK, or EXIT_FAIL with the error printed. */
static int delete_request(struct cli *cli, const char *path)
{
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, "DELETE", path, NULL, &response, &error) < 0)
        return fail(&error);
    client_response_clear(&response);
    return EXIT_OK;
}

static void print_info(const json_t *info)
{
    printf("name:       %s\nversion:    %s\nbackend:    %s\nhttp_port:  %lld\nssh_port:   %lld\n",
           str_field(info, "name"), str_field(info, "version"), str_field(info, "backend"),
           int_field(info, "http_port"), int_field(info, "ssh_port"));
}

static int cmd_info(struct cli *cli, int argc, char **argv);
static int cmd_list(struct cli *cli, int argc, char **argv);

static void print_shed_table(const json_t *body)
{
    struct table table = {.columns = 6};
    table_add(&table, (const char *[]){"NAME", "STATUS", "BACKEND", "IMAGE", "IP", "CREATED"});
    size_t i;
    json_t *shed;
    json_array_foreach(json_object_get(body, "sheds"), i, shed)
    {
        table_add(&table,
                  (const char *[]){str_field(shed, "name"), str_field(shed, "status"),
                                   str_field(shed, "backend"), str_field(shed, "image"),
                                   str_field(shed, "ip_address"), str_field(shed, "created_at")});
    }
    table_print_free(&table);
}

static void print_shed(const json_t *shed)
{
    static const char *const keys[] = {"name",  "status",    "created_at", "backend",
                                       "image", "repo",      "local_dir",  "ip_address",
                                       "cpus",  "memory_mb", "pid",        "rootfs_path"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *value = json_object_get(shed, keys[i]);
        if (json_is_string(value) && json_string_value(value)[0] != '\0')
            printf("%-12s %s\n", keys[i], json_string_value(value));
        else if (json_is_integer(value))
            printf("%-12s %lld\n", keys[i], (long long)json_integer_value(value));
    }
}

static int shed_path(char *out, size_t outlen, const char *name, const char *suffix)
{
    /* Names are validated by the server; only refuse what would change the path itself. */
    if (strpbrk(name, "/?#% ") != NULL || name[0] == '\0')
        return -1;
    snprintf(out, outlen, "/api/sheds/%s%s", name, suffix);
    return 0;
}

static int one_name_arg(const struct command *command, int argc, char **argv, const char **name)
{
    int rc = parse_no_options(command, argc, argv);
    if (rc != 0)
        return rc == 1 ? -1 : rc;
    if (argc - optind != 1)
        return usage_error(command->name, "expected exactly one shed NAME");
    *name = argv[optind];
    return 0;
}

/* ---- create with SSE progress -------------------------------------------------------- */

struct create_progress {
    bool tty;
    bool drew_bar;
    json_t *result;            /* the "complete" shed object */
    struct client_error error; /* from an "error" event */
    bool failed;
};

static void draw_progress(struct create_progress *progress, const json_t *data)
{
    const char *phase = str_field(data, "phase");
    const char *message = str_field(data, "message");
    json_t *done = json_object_get(data, "bytes_done"),
           *total = json_object_get(data, "bytes_total");
    bool warning = json_is_true(json_object_get(data, "warning"));
    if (warning || !progress->tty) {
        if (progress->drew_bar)
            fputc('\n', stderr);
        progress->drew_bar = false;
        fprintf(stderr, "%s%s: %s\n", warning ? "warning: " : "", phase, message);
        return;
    }
    if (json_is_integer(done) && json_is_integer(total) && json_integer_value(total) > 0) {
        double fraction = (double)json_integer_value(done) / (double)json_integer_value(total);
        if (fraction > 1)
            fraction = 1;
        char bar[31];
        int filled = (int)(fraction * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        char done_text[32], total_text[32];
        fprintf(stderr, "\r\033[K%-7s [%s] %3d%% %s / %s", phase, bar, (int)(fraction * 100),
                format_size((uint64_t)json_integer_value(done), done_text, sizeof done_text),
                format_size((uint64_t)json_integer_value(total), total_text, sizeof total_text));
    } else {
        fprintf(stderr, "\r\033[K%-7s %s", phase, message);
    }
    progress->drew_bar = true;
}

static void on_create_event(const char *type, const json_t *data, void *ctx)
{
    struct create_progress *progress = ctx;
    if (strcmp(type, "progress") == 0 && data != NULL) {
        draw_progress(progress, data);
        return;
    }
    if (progress->drew_bar)
        fputc('\n', stderr);
    progress->drew_bar = false;
    if (strcmp(type, "complete") == 0 && data != NULL) {
        progress->result = json_deep_copy(data);
    } else if (strcmp(type, "error") == 0) {
        progress->failed = true;
        client_errorf(&progress->error, data ? str_field(data, "code") : "PROTOCOL", "%s",
                      data ? str_field(data, "message") : "malformed error event");
    }
}

struct create_args {
    json_t *body;
};

static int parse_create(const struct command *command, int argc, char **argv, json_t *body)
{
    static const struct option options[] = {
        {"image", required_argument, NULL, 'i'},
        {"repo", required_argument, NULL, 'r'},
        {"local-dir", required_argument, NULL, 'l'},
        {"cpus", required_argument, NULL, 'c'},
        {"memory", required_argument, NULL, 'm'},
        {"backend", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "i:r:l:c:m:b:h", options, NULL)) != -1) {
        char *end = NULL;
        long number = 0;
        switch (opt) {
        case 'i': json_object_set_new(body, "image", json_string(optarg)); break;
        case 'r': json_object_set_new(body, "repo", json_string(optarg)); break;
        case 'b': json_object_set_new(body, "backend", json_string(optarg)); break;
        case 'l': {
            char *absolute = realpath(optarg, NULL);
            json_object_set_new(body, "local_dir", json_string(absolute ? absolute : optarg));
            free(absolute);
            break;
        }
        case 'c':
        case 'm':
            errno = 0;
            number = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || number <= 0)
                return usage_error(command->name, "invalid number '%s'", optarg);
            json_object_set_new(body, opt == 'c' ? "cpus" : "memory_mb", json_integer(number));
            break;
        case 'h':
            printf(
                "Usage: shed %s\n\n%s\n\nOptions:\n"
                "  -i, --image=NAME       image variant (default: the server's base image)\n"
                "  -r, --repo=REPO        owner/repo or git URL cloned into /workspace\n"
                "  -l, --local-dir=DIR    host directory mounted at /workspace (not with --repo)\n"
                "  -c, --cpus=N           CPUs\n"
                "  -m, --memory=MB        memory in MiB\n"
                "  -b, --backend=NAME     container, qemu, firecracker, vz or detect\n"
                "  -h, --help             show this help\n",
                command->usage, command->summary);
            return 1;
        default: return usage_error(command->name, "invalid option");
        }
    }
    if (argc - optind != 1)
        return usage_error(command->name, "expected exactly one shed NAME");
    json_object_set_new(body, "name", json_string(argv[optind]));
    return 0;
}

static int cmd_create(struct cli *cli, int argc, char **argv);

/* ---- commands ------------------------------------------------------------------------ */

static int cmd_get(struct cli *cli, int argc, char **argv);
static int cmd_start(struct cli *cli, int argc, char **argv);
static int cmd_stop(struct cli *cli, int argc, char **argv);
static int cmd_delete(struct cli *cli, int argc, char **argv);
static int cmd_sessions(struct cli *cli, int argc, char **argv);
static int cmd_kill_session(struct cli *cli, int argc, char **argv);
static int cmd_images(struct cli *cli, int argc, char **argv);
static int cmd_tunnel(struct cli *cli, int argc, char **argv);
static int cmd_system(struct cli *cli, int argc, char **argv)
{
    return cli_system_run(&cli->client, cli->json, argc, argv);
}
/* ssh, exec, attach, ssh-config: cmd_ssh.c. */
static int cmd_ssh_family(struct cli *cli, int argc, char **argv)
{
    return cli_ssh_run(&cli->client, argc, argv);
}

static const struct command commands[] = {
    {"info", cmd_info, "info", "Show the server's name, version, ports and backend."},
    {"list", cmd_list, "list", "List the sheds."},
    {"create", cmd_create,
     "create NAME [--image I] [--repo R | --local-dir D] [--cpus N] [--memory MB]",
     "Create and start a shed, showing progress."},
    {"get", cmd_get, "get NAME", "Show one shed."},
    {"start", cmd_start, "start NAME", "Start a stopped shed."},
    {"stop", cmd_stop, "stop NAME", "Stop a running shed."},
    {"delete", cmd_delete, "delete NAME", "Delete a shed and its data (stops it first)."},
    {"sessions", cmd_sessions, "sessions [NAME]",
     "List the tmux sessions of one shed, or of every running shed."},
    {"kill-session", cmd_kill_session, "kill-session NAME SESSION", "Kill one tmux session."},
    {"images", cmd_images, "images [rm NAME | prune [--dry-run]]",
     "List image variants, remove a cached one, or prune unreferenced ones."},
    {"tunnel", cmd_tunnel, "tunnel NAME LOCAL:REMOTE",
     "Forward 127.0.0.1:LOCAL to port REMOTE inside the shed until interrupted."},
    {"system", cmd_system, "system df [-v] [--all] | system prune [--force] [--all] [...]",
     "Disk usage of images, sheds and orphans, or prune them (see 'shed system --help')."},
    {"ssh", cmd_ssh_family, "ssh NAME [-- CMD...]", "Log in to a shed over SSH (or run CMD)."},
    {"exec", cmd_ssh_family, "exec [-t] NAME -- CMD...",
     "Run a command in a shed over SSH; its exit status is CMD's."},
    {"attach", cmd_ssh_family, "attach NAME [SESSION]",
     "Attach to a tmux session in a shed over SSH (created if missing)."},
    {"ssh-config", cmd_ssh_family, "ssh-config [--install] [--all]",
     "Print (or install) an ssh config with a Host entry per shed."},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* A command without options or arguments that GETs path and prints it. */
static int get_command(struct cli *cli, const char *command_name, int argc, char **argv,
                       const char *path, void (*human)(const json_t *))
{
    int rc = parse_no_options(find_command(command_name), argc, argv);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    if (optind != argc)
        return usage_error(command_name, "unexpected argument '%s'", argv[optind]);
    return get_and_print(cli, path, human);
}

static int cmd_info(struct cli *cli, int argc, char **argv)
{
    return get_command(cli, "info", argc, argv, "/api/info", print_info);
}

static int cmd_list(struct cli *cli, int argc, char **argv)
{
    return get_command(cli, "list", argc, argv, "/api/sheds", print_shed_table);
}

static int cmd_get(struct cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    char path[512];
    int rc = one_name_arg(find_command("get"), argc, argv, &name);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (shed_path(path, sizeof path, name, "") < 0)
        return usage_error("get", "invalid shed name '%s'", name);
    return get_and_print(cli, path, print_shed);
}

static int lifecycle(struct cli *cli, const char *command_name, int argc, char **argv,
                     const char *method, const char *suffix, const char *done)
{
    const char *name = NULL;
    char path[512];
    int rc = one_name_arg(find_command(command_name), argc, argv, &name);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (shed_path(path, sizeof path, name, suffix) < 0)
        return usage_error(command_name, "invalid shed name '%s'", name);
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, method, path, NULL, &response, &error) < 0)
        return fail(&error);
    if (cli->json && response.json != NULL)
        print_json(response.json);
    else if (!cli->json)
        printf("%s %s\n", done, name);
    client_response_clear(&response);
    return EXIT_OK;
}

static int cmd_start(struct cli *cli, int argc, char **argv)
{
    return lifecycle(cli, "start", argc, argv, "POST", "/start", "started");
}

static int cmd_stop(struct cli *cli, int argc, char **argv)
{
    return lifecycle(cli, "stop", argc, argv, "POST", "/stop", "stopped");
}

static int cmd_delete(struct cli *cli, int argc, char **argv)
{
    return lifecycle(cli, "delete", argc, argv, "DELETE", "", "deleted");
}

static int cmd_create(struct cli *cli, int argc, char **argv)
{
    json_t *body = json_object();
    if (body == NULL)
        return fail(&(struct client_error){"NO_MEMORY", "out of memory"});
    int rc = parse_create(find_command("create"), argc, argv, body);
    if (rc != 0) {
        json_decref(body);
        return rc == 1 ? EXIT_OK : rc;
    }
    struct create_progress progress = {.tty = isatty(STDERR_FILENO) && !cli->json};
    struct client_response response;
    struct client_error error;
    rc = client_stream(&cli->client, "POST", "/api/sheds", body, on_create_event, &progress,
                       &response, &error);
    json_decref(body);
    if (rc < 0)
        return fail(&error);
    json_t *shed = progress.result != NULL ? progress.result : response.json;
    if (progress.failed) {
        rc = fail(&progress.error);
    } else if (shed == NULL) {
        rc = fail(&(struct client_error){"PROTOCOL", "the stream ended without a result"});
    } else {
        if (cli->json)
            print_json(shed);
        else
            print_shed(shed);
        rc = EXIT_OK;
    }
    if (progress.result != NULL)
        json_decref(progress.result);
    client_response_clear(&response);
    return rc;
}

static void print_sessions(const json_t *body)
{
    struct table table = {.columns = 5};
    table_add(&table, (const char *[]){"NAME", "SHED", "ATTACHED", "WINDOWS", "CREATED"});
    size_t i;
    json_t *session;
    json_array_foreach(json_object_get(body, "sessions"), i, session)
    {
        char windows[24];
        snprintf(windows, sizeof windows, "%lld", int_field(session, "window_count"));
        table_add(&table, (const char *[]){
                              str_field(session, "name"), str_field(session, "shed_name"),
                              json_is_true(json_object_get(session, "attached")) ? "yes" : "no",
                              windows, str_field(session, "created_at")});
    }
    table_print_free(&table);
}

static int cmd_sessions(struct cli *cli, int argc, char **argv)
{
    int rc = parse_no_options(find_command("sessions"), argc, argv);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    if (argc - optind > 1)
        return usage_error("sessions", "expected at most one shed NAME");
    char path[512] = "/api/sessions";
    if (argc - optind == 1 && shed_path(path, sizeof path, argv[optind], "/sessions") < 0)
        return usage_error("sessions", "invalid shed name '%s'", argv[optind]);
    return get_and_print(cli, path, print_sessions);
}

static int cmd_kill_session(struct cli *cli, int argc, char **argv)
{
    int rc = parse_no_options(find_command("kill-session"), argc, argv);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    if (argc - optind != 2)
        return usage_error("kill-session", "expected NAME and SESSION");
    const char *session = argv[optind + 1];
    char suffix[300], path[600];
    if (strpbrk(session, "/?#% ") != NULL || strlen(session) > 256)
        return usage_error("kill-session", "invalid session name '%s'", session);
    snprintf(suffix, sizeof suffix, "/sessions/%s", session);
    if (shed_path(path, sizeof path, argv[optind], suffix) < 0)
        return usage_error("kill-session", "invalid shed name '%s'", argv[optind]);
    if (delete_request(cli, path) != EXIT_OK)
        return EXIT_FAIL;
    if (!cli->json)
        printf("killed session %s in %s\n", session, argv[optind]);
    return EXIT_OK;
}

/* ---- images -------------------------------------------------------------------------- */

static void print_image_table(const json_t *images)
{
    struct table table = {.columns = 6};
    table_add(&table, (const char *[]){"NAME", "CACHED", "SIZE", "SOURCE", "REF", "DIGEST"});
    size_t i;
    json_t *image;
    json_array_foreach(images, i, image)
    {
        char size[32] = "-";
        if (int_field(image, "size_bytes") > 0)
            format_size((uint64_t)int_field(image, "size_bytes"), size, sizeof size);
        char digest[20];
        snprintf(digest, sizeof digest, "%.19s", str_field(image, "digest"));
        table_add(&table, (const char *[]){
                              str_field(image, "name"),
                              json_is_true(json_object_get(image, "cached")) ? "yes" : "no", size,
                              str_field(image, "source"), str_field(image, "docker_ref"), digest});
    }
    table_print_free(&table);
}

static void print_images(const json_t *body)
{
    print_image_table(json_object_get(body, "images"));
}

static int images_prune(struct cli *cli, int argc, char **argv)
{
    static const struct option options[] = {
        {"dry-run", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    bool dry_run = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "nh", options, NULL)) != -1) {
        if (opt == 'n') {
            dry_run = true;
        } else if (opt == 'h') {
            printf("Usage: shed images prune [--dry-run]\n\nDelete cached images that neither "
                   "the config nor any shed uses.\n  -n, --dry-run  only list them\n");
            return EXIT_OK;
        } else {
            return usage_error("images prune", "invalid option");
        }
    }
    if (optind != argc)
        return usage_error("images prune", "unexpected argument '%s'", argv[optind]);
    struct client_response response;
    struct client_error error;
    const char *path =
        dry_run ? "/api/images/prune?dry_run=true" : "/api/images/prune?dry_run=false";
    if (client_request(&cli->client, "POST", path, NULL, &response, &error) < 0)
        return fail(&error);
    if (cli->json) {
        print_json(response.json);
    } else {
        json_t *deleted = json_object_get(response.json, "deleted");
        printf("%s %zu image(s)\n", dry_run ? "would delete" : "deleted", json_array_size(deleted));
        if (json_array_size(deleted) > 0)
            print_image_table(deleted);
    }
    client_response_clear(&response);
    return EXIT_OK;
}

static int images_rm(struct cli *cli, int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: shed images rm NAME\n\nRemove a cached image variant.\n");
        return EXIT_OK;
    }
    if (argc != 2)
        return usage_error("images rm", "expected exactly one image NAME");
    if (strpbrk(argv[1], "/?#% ") != NULL)
        return usage_error("images rm", "invalid image name '%s'", argv[1]);
    char path[512];
    snprintf(path, sizeof path, "/api/images/%s", argv[1]);
    if (delete_request(cli, path) != EXIT_OK)
        return EXIT_FAIL;
    if (!cli->json)
        printf("removed image %s\n", argv[1]);
    return EXIT_OK;
}

static int cmd_images(struct cli *cli, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "rm") == 0)
        return images_rm(cli, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "prune") == 0)
        return images_prune(cli, argc - 1, argv + 1);
    int rc = parse_no_options(find_command("images"), argc, argv);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    if (optind != argc)
        return usage_error("images", "unknown subcommand '%s' (rm, prune)", argv[optind]);
    return get_and_print(cli, "/api/images", print_images);
}

/* ---- tunnel -------------------------------------------------------------------------- */

struct tunnel {
    const struct client *client;
    const char *shed;
    uint16_t remote_port;
};

struct tunnel_connection {
    const struct tunnel *tunnel;
    int local_fd;
};

/* Copies bytes both ways until both directions reached end of file (half-closes passed on). */
static void copy_both_ways(int a, int b)
{
    struct pollfd fds[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    int open_directions = 2;
    char buf[65536];
    while (open_directions > 0) {
        if (TEMP_FAILURE_RETRY(poll(fds, 2, -1)) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = TEMP_FAILURE_RETRY(recv(fds[i].fd, buf, sizeof buf, 0));
            int other = i == 0 ? b : a;
            if (n > 0 && sock_send_all(other, buf, (size_t)n) == 0)
                continue;
            if (n < 0 || n > 0)
                return; /* an error on either side ends the tunnel */
            shutdown(other, SHUT_WR);
            fds[i].fd = -1;
            open_directions--;
        }
    }
}

static void *tunnel_connection_run(void *arg)
{
    struct tunnel_connection *connection = arg;
    const struct tunnel *tunnel = connection->tunnel;
    int remote_fd = -1;
    char *extra = NULL;
    size_t extra_len = 0;
    struct client_error error;
    if (client_connect_upgrade(tunnel->client, tunnel->shed, tunnel->remote_port, &remote_fd,
                               &extra, &extra_len, &error) < 0) {
        fail(&error);
    } else {
        if (sock_send_all(connection->local_fd, extra, extra_len) == 0)
            copy_both_ways(connection->local_fd, remote_fd);
        close(remote_fd);
    }
    free(extra);
    close(connection->local_fd);
    free(connection);
    return NULL;
}

static int listen_local(uint16_t port, int *fd_out, struct client_error *error)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return client_errorf(error, "IO", "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0) {
        int saved = errno;
        close(fd);
        return client_errorf(error, "IO", "cannot listen on 127.0.0.1:%u: %s", (unsigned)port,
                             strerror(saved));
    }
    *fd_out = fd;
    return 0;
}

static int parse_port_pair(const char *text, uint16_t *local, uint16_t *remote)
{
    unsigned a = 0, b = 0;
    char tail;
    if (sscanf(text, "%u:%u%c", &a, &b, &tail) != 2 || a < 1 || a > 65535 || b < 1 || b > 65535)
        return -1;
    *local = (uint16_t)a;
    *remote = (uint16_t)b;
    return 0;
}

/* Probes the upgrade once before listening, so that a shed that is missing, stopped or a
 * server without connect support fails at once rather than on the first connection. */
static int probe_tunnel(const struct tunnel *tunnel, struct client_error *error)
{
    int fd = -1;
    char *extra = NULL;
    size_t extra_len = 0;
    if (client_connect_upgrade(tunnel->client, tunnel->shed, tunnel->remote_port, &fd, &extra,
                               &extra_len, error) < 0)
        return -1;
    free(extra);
    close(fd);
    return 0;
}

static int cmd_tunnel(struct cli *cli, int argc, char **argv)
{
    int rc = parse_no_options(find_command("tunnel"), argc, argv);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    uint16_t local = 0, remote = 0;
    if (argc - optind != 2 || parse_port_pair(argv[optind + 1], &local, &remote) < 0)
        return usage_error("tunnel", "expected NAME LOCAL:REMOTE (ports 1-65535)");
    struct tunnel tunnel = {.client = &cli->client, .shed = argv[optind], .remote_port = remote};
    if (strpbrk(tunnel.shed, "/?#% ") != NULL)
        return usage_error("tunnel", "invalid shed name '%s'", tunnel.shed);
    struct client_error error;
    int listen_fd = -1;
    if (probe_tunnel(&tunnel, &error) < 0 || listen_local(local, &listen_fd, &error) < 0)
        return fail(&error);
    fprintf(stderr, "shed: forwarding 127.0.0.1:%u to %s:%u (Ctrl-C to stop)\n", (unsigned)local,
            tunnel.shed, (unsigned)remote);
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            close(listen_fd);
            return fail(&(struct client_error){"IO", "accept failed"});
        }
        struct tunnel_connection *connection = malloc(sizeof *connection);
        pthread_t thread;
        if (connection == NULL) {
            close(fd);
            continue;
        }
        *connection = (struct tunnel_connection){.tunnel = &tunnel, .local_fd = fd};
        if (pthread_create(&thread, NULL, tunnel_connection_run, connection) != 0) {
            close(fd);
            free(connection);
            continue;
        }
        pthread_detach(thread);
    }
}

/* ---- main ---------------------------------------------------------------------------- */

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: shed [-s SERVER] [--json] COMMAND [ARGS...]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOptions:\n"
                 "  -s, --server=SERVER  a URL (http://host:port) or a server name from\n"
                 "                       ~/.config/shed/client.yaml (default: its `default`, else\n"
                 "                       http://127.0.0.1:8080)\n"
                 "      --token=TOKEN    bearer token (default: $SHED_API_TOKEN or the config's)\n"
                 "  -j, --json           print the server's JSON instead of tables\n"
                 "  -h, --help           show this help\n"
                 "      --version        show the version\n"
                 "\nRun 'shed COMMAND --help' for a command's options.\n");
}

struct global_args {
    const char *server;
    const char *token;
    bool json;
};

/* 0: run a command at argv[optind]; 1: done (help/version); else a usage status. */
static int parse_global(int argc, char **argv, struct global_args *args)
{
    enum { OPT_VERSION = 256, OPT_TOKEN };
    static const struct option options[] = {
        {"server", required_argument, NULL, 's'},      {"json", no_argument, NULL, 'j'},
        {"token", required_argument, NULL, OPT_TOKEN}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},   {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "+s:jh", options, NULL)) != -1) {
        switch (opt) {
        case 's': args->server = optarg; break;
        case 'j': args->json = true; break;
        case OPT_TOKEN: args->token = optarg; break;
        case 'h': print_usage(stdout); return 1;
        case OPT_VERSION: printf("shed %s\n", SHED_VERSION); return 1;
        default: return usage_error(NULL, "invalid option");
        }
    }
    if (optind >= argc) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct global_args args = {.token = getenv("SHED_API_TOKEN")};
    int rc = parse_global(argc, argv, &args);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    const struct command *command = find_command(argv[optind]);
    if (command == NULL)
        return usage_error(NULL, "unknown command '%s'", argv[optind]);
    cleanup_free char *url = NULL, *config_token = NULL;
    struct client_error error;
    if (client_resolve_server(args.server, &url, &config_token, &error) < 0)
        return fail(&error);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return fail(&(struct client_error){"NO_MEMORY", "cannot initialise libcurl"});
    struct cli cli = {.json = args.json};
    if (client_init(&cli.client, url, args.token != NULL ? args.token : config_token, &error) < 0)
        return fail(&error);
    rc = command->run(&cli, argc - optind, argv + optind);
    client_cleanup(&cli.client);
    curl_global_cleanup();
    return rc;
}
