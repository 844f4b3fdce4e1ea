/* Private to server/: the creates in flight, so that they can be cancelled — by DELETE of
 * the shed they are making (it is still "starting") and by SIGTERM. A cancelled create stops
 * the step it is in (pull, conversion, repo clone: shed_create_request.cancel) and rolls the
 * shed back. */
#ifndef SHED_API_CREATES_H
#define SHED_API_CREATES_H

#include <stdbool.h>

#include "common/shed_err.h"

struct create_registry;
struct create_ticket;

int create_registry_new(struct create_registry **registry, struct shed_err *err);
void create_registry_free(struct create_registry *registry);

/* Registers a create of name; *cancel is its flag until create_end. SHED_E_SERVER_BUSY once
 * the server is stopping. */
int create_begin(struct create_registry *registry, const char *name, struct create_ticket **ticket,
                 struct shed_err *err);
volatile int *create_cancel_flag(struct create_ticket *ticket);
void create_end(struct create_registry *registry, struct create_ticket *ticket);

/* Cancels the creates of name; true when there was one. */
bool create_cancel(struct create_registry *registry, const char *name);
/* Cancels every create and refuses new ones (the server is stopping). */
void create_cancel_all(struct create_registry *registry);

#endif
