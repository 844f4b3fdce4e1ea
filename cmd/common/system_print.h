/* Human output of `system df` and `system prune`, from the API's JSON bodies: shared by the
 * local commands (shed-server system …) and the REST client (shed system …), so both print
 * the same thing. */
#ifndef SHED_API_SYSTEM_PRINT_H
#define SHED_API_SYSTEM_PRINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* The rollup table CATEGORY FILES LOGICAL PHYSICAL EXCLUSIVE; verbose adds one line per
 * image, shed and orphan. */
void system_print_df(FILE *out, const json_t *df, bool verbose);
/* One line per item and per skip, then the totals and notes. */
void system_print_prune(FILE *out, const json_t *prune);

#endif
