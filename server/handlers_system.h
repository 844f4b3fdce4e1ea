/* handlers_system.c: GET /api/system/df and POST /api/system/prune. */
#ifndef SHED_API_HANDLERS_SYSTEM_H
#define SHED_API_HANDLERS_SYSTEM_H

#include "handlers.h"

void handle_system_df(const struct api_request *, const struct api_context *,
                      struct api_response *);
void handle_system_prune(const struct api_request *, const struct api_context *,
                         struct api_response *);

#endif
