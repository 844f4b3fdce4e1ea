/* shed-server: the host-side program. This file is the command table; each subcommand is
 * cmd_<name>.c, the conventions (options anywhere, help, errors) cmd/common/cli.h. */
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "common/fsutil.h"
#include "oci/oci.h"
#include "runtime/backend.h"
#include "runtime/instance.h"

static const struct cli_option global_options[] = {SERVER_CONFIG_OPTIONS, SERVER_OPTION_JSON,
                                                   SERVER_OPTIONS_END};

static const struct cli_command commands[] = {
    {"serve", NULL, "[OPTIONS]", "Serve the REST API until SIGTERM or SIGINT.",
     "SIGTERM and SIGINT stop accepting, let requests in flight finish and exit 0; running\n"
     "sheds keep running and are found again at the next start. SIGHUP re-reads server.yaml\n"
     "(see reload). One server per data dir (<data_dir>/shed-server.pid).\n",
     serve_options, .run = cmd_serve, .max_operands = 0},
    {"reload", NULL, "[OPTIONS]", "Make the running server re-read server.yaml.",
     "As SIGHUP and `systemctl reload` do: the server of this data dir (its pid file) loads\n"
     "what a restart would read and prints what took effect. bind, http_port, ssh_port,\n"
     "data_dir, images_dir, instance_dir, container_network, container,\n"
     "console_log_max_bytes and local_dir_roots keep their running values and are named as\n"
     "needing a restart. An invalid file is refused with its error (exit 1) and the server\n"
     "keeps the configuration it had.\n",
     reload_options, .run = cmd_reload, .max_operands = 0},
    {"pull", NULL, "[OPTIONS] REF", "Pull an image from a registry into the blob store.",
     "REF: [registry[:port]/]repository[:tag][@sha256:digest]; Docker Hub names may be\n"
     "short (debian, library/debian:12). localhost and 127.0.0.1 use plain HTTP.\n"
     "Prints the manifest digest. Interrupted: exit 130, the next pull resumes.\n",
     pull_options, .run = cmd_pull, .min_operands = 1, .max_operands = 1},
    {"convert", NULL, "[OPTIONS] REF -o OUT.ext4",
     "Pull an image and write it as an ext4 root filesystem.",
     "Writes the image's flattened layers as a sparse ext4 file, without root and without\n"
     "mounting anything. OUT.ext4 appears only when complete.\n",
     convert_options, .run = cmd_convert, .min_operands = 1, .max_operands = 1,
     .complete_kind = COMPLETE_FILE},
    {"config", NULL, NULL, "Validate server.yaml and print the resolved configuration.",
     .subcommands = config_commands},
    {"pull-images", NULL, "[OPTIONS]", "Make every configured image variant ready (cached ext4).",
     "Every images: entry and the base_image (as _base), in name order. A variant is pulled\n"
     "and converted only when its tag moved; variants of one digest share one conversion;\n"
     "with the registry unreachable a cached copy is used (warning). Exit 1 when any\n"
     "variant failed (the others are still done). Safe from cron.\n",
     pull_images_options, .run = cmd_pull_images, .max_operands = 0},
    {"images", "image", NULL, "List, remove or prune the cached image variants.",
     .subcommands = images_commands},
    {"import", NULL, "[OPTIONS] FILE --name NAME",
     "Make an image archive, OCI layout or rootfs tar an image variant (offline).",
     "FILE is told apart by its content: docker-archive (docker save, podman save, skopeo\n"
     "docker-archive:; the archive maybe gzip), oci-archive (a tar of an OCI layout), oci\n"
     "(an OCI layout directory) or tarball (a root filesystem tar, plain, gzip or zstd, as\n"
     "docker import takes). Blobs go into the content store with every digest verified;\n"
     "NAME-rootfs.ext4 is converted exactly as a pull converts, ready for\n"
     "`shed create x --image NAME`. Imported variants are kept by prune; `images rm NAME`\n"
     "removes one. Importing a NAME again replaces it.\n",
     import_options, .run = cmd_import, .min_operands = 1, .max_operands = 1,
     .complete_kind = COMPLETE_FILE},
    {"clone", NULL, "[OPTIONS] SRC DST", "Clone a file the way shed rootfs clones are made.",
     "A reflink (FICLONE) where the file system shares extents, else copy_file_range or a\n"
     "read/write copy that keeps holes. DST must not exist.\n",
     clone_options, .run = cmd_clone, .min_operands = 2, .max_operands = 2,
     .complete_kind = COMPLETE_FILE},
    {"export", NULL, "[OPTIONS] NAME -o FILE.ext4",
     "Flatten a stopped shed's root filesystem into one plain ext4 image.",
     "The tree the shed sees (an overlay shed's image and its changes, or its own copy) is\n"
     "written entry for entry: types, modes, owners, times, xattrs, hardlinks, devices,\n"
     "holes. FILE.ext4 appears only when complete. Needs root (it mounts the shed's disks\n"
     "in a private mount namespace). A running shed is refused: stop it first.\n",
     export_options, .run = cmd_export, .min_operands = 1, .max_operands = 1,
     .complete_kind = COMPLETE_SHED},
    {"system", NULL, NULL, "Disk usage (df) and cleanup (prune) of the data dir.",
     .subcommands = system_commands},
    {"exec", NULL, "[OPTIONS] NAME [--] CMD [ARG...]",
     "Run a command in a running shed (like docker exec).",
     "stdin, stdout and stderr are passed through. Options go before NAME, or between NAME\n"
     "and a \"--\"; everything after NAME (or after that \"--\") is CMD's.\n"
     "Exit status: CMD's own; 128+N when it was killed by signal N; 127 when CMD does not\n"
     "exist in the shed; 125 when shed-server itself failed; 2 usage error.\n",
     exec_options, .run = cmd_exec, .min_operands = 2, .max_operands = -1, .passthrough_after = 1,
     .complete_kind = COMPLETE_SHED},
    {"attach", NULL, "[OPTIONS] NAME [SESSION]",
     "Attach the terminal to a tmux session in a running shed.",
     "Session SESSION (default \"default\") is created when missing. Detach with the tmux\n"
     "prefix + d; the session keeps running. Exit status as for exec.\n",
     attach_options, .run = cmd_attach, .min_operands = 1, .max_operands = 2,
     .complete_kind = COMPLETE_SHED},
    {NULL},
};

/* Completion: shed names from the instance dir the config names, files for paths. */
static void complete(const struct cli_call *call, int kind, const char *prefix)
{
    if (kind == COMPLETE_FILE) {
        printf(":files\n");
        return;
    }
    struct shed_config config;
    struct shed_err err = {0};
    if (shed_config_load(cli_value(call, OPT_CONFIG), &config, &err) < 0)
        return;
    const char *data_dir = cli_value(call, OPT_DATA_DIR);
    struct instance_store *store = NULL;
    struct instance_list list = {0};
    /* only a store that exists: completion never creates the data dir */
    if ((data_dir == NULL || shed_config_use_data_dir(&config, data_dir, &err) == 0) &&
        kind == COMPLETE_SHED && fs_exists(config.instance_dir) &&
        instance_store_open(config.instance_dir, &store, &err) == 0 &&
        instance_store_list(store, &list, &err) == 0) {
        for (size_t i = 0; i < list.count; i++)
            if (strncmp(list.items[i].name, prefix, strlen(prefix)) == 0)
                printf("%s\n", list.items[i].name);
        instance_list_clear(&list);
    }
    instance_store_close(store);
    shed_config_free(&config);
}

/* libcurl's global state must be set up once, before any thread exists. */
static int before_run(struct cli_call *call)
{
    (void)call;
    struct shed_err err = {0};
    if (oci_global_init(&err) < 0)
        return cli_fail(&err);
    return 0;
}

/* The end of `shed-server help`: exit statuses, and the backends of this very build. */
static void build_footer(char *out, size_t len)
{
    size_t used = (size_t)snprintf(out, len, "Backends in this build:");
    const char *const *names = backend_set_builtin_names();
    for (size_t i = 0; names[i] != NULL && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, " %s", names[i]);
    if (used < len)
        snprintf(out + used, len - used,
                 " (default_backend: detect takes the first usable one).\n"
                 "\n"
                 "Exit status: 0 success; 1 failure (\"shed-server: CODE: message\" on stderr); 2\n"
                 "usage error; exec and attach: the command's own, 125 for their own failures;\n"
                 "pull: 130 when interrupted.\n");
}

int main(int argc, char **argv)
{
    static char footer[1024];
    build_footer(footer, sizeof footer);
    const struct cli_program program = {
        .name = "shed-server",
        .summary = "The shed host: the REST API server and the local admin commands.",
        .options = global_options,
        .commands = commands,
        .footer = footer,
        .version = "shed-server " SHED_VERSION,
        .before_run = before_run,
        .complete = complete,
    };
    return cli_main(&program, argc, argv, NULL);
}
