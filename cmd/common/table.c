/* table.h: aligned columns. */
#include "cmd/common/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
