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

const char *json_str(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    return value != NULL ? value : "";
}

long long json_int(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
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

void table_add(struct table *table, const char *const *values)
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

void table_print_free(struct table *table)
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
