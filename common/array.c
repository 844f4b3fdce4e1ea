#include "array.h"

#include <stdint.h>
#include <stdlib.h>

/* The first allocation: at least this many bytes, so small arrays do not realloc per add. */
#define ARRAY_MIN_BYTES 64

void *array_grow(void *items, size_t *capacity, size_t need, size_t item_size)
{
    if (item_size == 0)
        return NULL;
    if (need <= *capacity && items != NULL)
        return items;
    if (need > SIZE_MAX / item_size)
        return NULL;
    size_t grown = *capacity > 0 ? *capacity : ARRAY_MIN_BYTES / item_size;
    if (grown == 0)
        grown = 1;
    while (grown < need)
        grown = grown <= SIZE_MAX / 2 / item_size ? grown * 2 : need;
    void *moved = realloc(items, grown * item_size);
    if (moved == NULL)
        return NULL;
    *capacity = grown;
    return moved;
}
