/* A growable vector of malloc'd strings, kept NULL-terminated so that items can go wherever a
 * char ** is expected (an argv, a caller's result). */
#ifndef SHED_STRV_H
#define SHED_STRV_H

#include <stdbool.h>
#include <stddef.h>

#include "shed_err.h"

struct strv {
    char **items; /* NULL while empty; otherwise items[count] == NULL */
    size_t count;
    size_t capacity;
};

#define STRV_INIT ((struct strv){NULL, 0, 0})

/* Appends a copy of text: 0, or -1 with SHED_E_NO_MEMORY (v unchanged). */
int strv_add(struct strv *v, const char *text, struct shed_err *err);
/* Appends a copy of text unless an equal string is already there. */
int strv_add_unique(struct strv *v, const char *text, struct shed_err *err);
/* Appends a formatted string. */
int strv_addf(struct strv *v, struct shed_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool strv_contains(const struct strv *v, const char *text);
/* Sorts in strcmp order. */
void strv_sort(struct strv *v);
/* Hands the NULL-terminated array (NULL when empty) to the caller and leaves v empty. */
char **strv_steal(struct strv *v);
/* Frees every string and the array; v is empty (and reusable) afterwards. */
void strv_free(struct strv *v);
/* Frees a NULL-terminated array such as strv_steal returns (NULL is fine). */
void strv_free_items(char **items);

#define cleanup_strv __attribute__((cleanup(strv_free)))

#endif
