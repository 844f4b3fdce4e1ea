/* shed images [ls] | rm NAME... | prune [--dry-run]: the server's image variants. */
#include <stdio.h>
#include <string.h>

#include "cmd/common/cli.h"
#include "common/fsutil.h"
#include "shed.h"

static const struct cli_option list_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                                 SHED_OPTIONS_END};
static const struct cli_option prune_options[] = {
    {"dry-run", 'n', NULL, "only list what would be deleted", OPT_DRY_RUN},
    SHED_SERVER_OPTIONS,
    SHED_OPTION_JSON,
    SHED_OPTIONS_END,
};

/* The source column: where the variant comes from; _base is marked as the base image. */
static const char *source_of(const json_t *image)
{
    if (json_is_true(json_object_get(image, "is_base")) &&
        strcmp(json_str(image, "source"), "config") == 0)
        return "base_image";
    return json_str(image, "source");
}

static void print_image_table(const json_t *images)
{
    struct table table = {.columns = 6};
    table_add(&table, (const char *[]){"NAME", "CACHED", "SIZE", "SOURCE", "REF", "DIGEST"});
    size_t i;
    json_t *image;
    json_array_foreach(images, i, image)
    {
        char size[32] = "-";
        if (json_int(image, "size_bytes") > 0)
            format_size((uint64_t)json_int(image, "size_bytes"), size, sizeof size);
        char digest[20];
        snprintf(digest, sizeof digest, "%.19s", json_str(image, "digest"));
        table_add(&table,
                  (const char *[]){json_str(image, "name"),
                                   json_is_true(json_object_get(image, "cached")) ? "yes" : "no",
                                   size, source_of(image), json_str(image, "docker_ref"), digest});
    }
    table_print_free(&table);
}

static int images_ls(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, "GET", "/api/images", NULL, &response, &error) < 0)
        return shed_fail(&error);
    if (cli->json)
        shed_print_json(response.json);
    else
        print_image_table(json_object_get(response.json, "images"));
    client_response_clear(&response);
    return CLI_EXIT_OK;
}

static int images_rm(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    char path[600];
    for (size_t i = 0; i < call->operand_count; i++)
        if (shed_api_path(path, sizeof path, "images", call->operands[i], "") < 0)
            return cli_usage_error(call, "invalid image name '%s'", call->operands[i]);
    int rc = CLI_EXIT_OK;
    json_t *removed = json_array();
    for (size_t i = 0; i < call->operand_count; i++) {
        shed_api_path(path, sizeof path, "images", call->operands[i], "");
        struct client_response response;
        struct client_error error;
        if (client_request(&cli->client, "DELETE", path, NULL, &response, &error) < 0) {
            rc = shed_fail(&error);
            continue;
        }
        client_response_clear(&response);
        if (cli->json)
            json_array_append_new(removed, json_string(call->operands[i]));
        else
            printf("removed image %s\n", call->operands[i]);
        fflush(stdout);
    }
    if (cli->json) {
        json_t *answer = json_pack("{s:O}", "removed", removed);
        shed_print_json(answer);
        json_decref(answer);
    }
    json_decref(removed);
    return rc;
}

static int images_prune(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    bool dry_run = cli_flag(call, OPT_DRY_RUN);
    struct client_response response;
    struct client_error error;
    const char *path =
        dry_run ? "/api/images/prune?dry_run=true" : "/api/images/prune?dry_run=false";
    if (client_request(&cli->client, "POST", path, NULL, &response, &error) < 0)
        return shed_fail(&error);
    json_t *deleted = json_object_get(response.json, "deleted");
    if (cli->json)
        shed_print_json(response.json);
    else if (json_array_size(deleted) == 0)
        printf("Nothing to prune.\n");
    else {
        printf("%s %zu image(s)\n", dry_run ? "would delete" : "deleted", json_array_size(deleted));
        print_image_table(deleted);
    }
    client_response_clear(&response);
    return CLI_EXIT_OK;
}

const struct cli_command shed_images_commands[] = {
    {"ls", "list", "[OPTIONS]", "List the image variants.",
     "Configured variants first (the base_image as _base), then others found cached.\n",
     list_options, .run = images_ls, .max_operands = 0},
    {"rm", "remove", "[OPTIONS] NAME...", "Remove cached image variants.",
     "Refused for variants in server.yaml, used by a shed, or being converted.\n", list_options,
     .run = images_rm, .min_operands = 1, .max_operands = -1, .complete_kind = COMPLETE_IMAGE},
    {"prune", NULL, "[OPTIONS]", "Delete cached images nothing uses.", NULL, prune_options,
     .run = images_prune, .max_operands = 0},
    {NULL},
};
