/* Geometric growth for dynamic arrays (systemd's greedy_realloc): amortised O(1) appends
 * without every caller writing its own doubling and overflow checks. */
#ifndef SHED_ARRAY_H
#define SHED_ARRAY_H

#include <stddef.h>

#include "shed_err.h"

/* Room for need elements of item_size bytes. items holds *capacity elements: returned as is
 * when that is enough, otherwise realloc'd to at least twice the capacity (and at least need)
 * with *capacity updated. NULL on overflow or allocation failure, items and *capacity then
 * untouched. */
void *array_grow(void *items, size_t *capacity, size_t need, size_t item_size);

/* ARRAY_RESERVE(items, capacity, need, err): makes the array lvalue items (of capacity
 * elements, a size_t lvalue) hold at least need elements. 0, or -1 with SHED_E_NO_MEMORY. */
#define ARRAY_RESERVE(items, capacity, need, err)                                                  \
    ({                                                                                             \
        __typeof__(items) grown_ = array_grow((items), &(capacity), (need), sizeof *(items));      \
        grown_ != NULL ? ((items) = grown_, 0)                                                     \
                       : shed_errf((err), SHED_E_NO_MEMORY, "out of memory");                      \
    })

#endif
