/* A table with columns aligned to their widest cell, printed on stdout (both programs' image
 * tables and shed's own). */
#ifndef SHED_CMD_TABLE_H
#define SHED_CMD_TABLE_H

#include <stddef.h>

#define TABLE_MAX_COLUMNS 8
struct table {
    size_t columns;
    size_t width[TABLE_MAX_COLUMNS];
    char **cells; /* rows * columns, malloc'd strings */
    size_t rows;
};
/* Adds a row of columns cells (NULL: empty). */
void table_add(struct table *table, const char *const *values);
/* Prints the rows, the last column unpadded, and frees them. */
void table_print_free(struct table *table);

#endif
