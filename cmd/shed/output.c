/* What every shed command prints with: errors, JSON, tables (shed.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed.h"

int shed_fail(const struct client_error *error)
{
    fprintf(stderr, "shed: %s: %s\n", error->code, error->message);
    return CLI_EXIT_FAILURE;
}

void shed_print_json(const json_t *json)
{
    char *text = json != NULL ? json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    printf("%s\n", text != NULL ? text : "null");
    free(text);
}

int shed_api_path(char *out, size_t outlen, const char *collection, const char *name,
                  const char *suffix)
{
    /* Names are validated by the server; only refuse what would change the path itself. */
    if (name[0] == '\0' || strpbrk(name, "/?#% ") != NULL || strlen(name) > 256)
        return -1;
    snprintf(out, outlen, "/api/%s/%s%s", collection, name, suffix);
    return 0;
}
