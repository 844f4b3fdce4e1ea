/* Fields of the API's JSON bodies, read for printing: a missing or mistyped field reads as ""
 * or 0, which is all a table cell or a report line could show for it anyway. */
#ifndef SHED_CMD_JSON_GET_H
#define SHED_CMD_JSON_GET_H

#include <jansson.h>

static inline const char *json_get_str(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    return value != NULL ? value : "";
}

static inline long long json_get_int(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* Negative values read as 0 too (sizes and counts). */
static inline unsigned long long json_get_uint(const json_t *obj, const char *key)
{
    json_int_t value = json_integer_value(json_object_get(obj, key));
    return value > 0 ? (unsigned long long)value : 0;
}

#endif
