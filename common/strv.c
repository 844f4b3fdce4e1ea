#include "strv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

/* Takes ownership of text (freed on failure). */
static int strv_push(struct strv *v, char *text, struct shed_err *err)
{
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    /* one more for the new string, one for the terminating NULL */
    if (ARRAY_RESERVE(v->items, v->capacity, v->count + 2, err) < 0) {
        free(text);
        return -1;
    }
    v->items[v->count++] = text;
    v->items[v->count] = NULL;
    return 0;
}

int strv_add(struct strv *v, const char *text, struct shed_err *err)
{
    return strv_push(v, strdup(text), err);
}

int strv_add_unique(struct strv *v, const char *text, struct shed_err *err)
{
    return strv_contains(v, text) ? 0 : strv_add(v, text, err);
}

int strv_addf(struct strv *v, struct shed_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    return strv_push(v, text, err);
}

bool strv_contains(const struct strv *v, const char *text)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->items[i], text) == 0)
            return true;
    return false;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strv_sort(struct strv *v)
{
    if (v->count > 1)
        qsort(v->items, v->count, sizeof v->items[0], compare_strings);
}

char **strv_steal(struct strv *v)
{
    char **items = v->items;
    *v = STRV_INIT;
    return items;
}

void strv_free_items(char **items)
{
    if (items == NULL)
        return;
    for (char **item = items; *item != NULL; item++)
        free(*item);
    free(items);
}

void strv_free(struct strv *v)
{
    strv_free_items(strv_steal(v));
}
