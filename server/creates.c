/* The creates in flight (see creates.h). */
#include "creates.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct create_ticket {
    struct create_ticket *prev, *next;
    char *name;
    volatile int cancel;
};

struct create_registry {
    pthread_mutex_t lock;
    struct create_ticket *head;
    bool stopping;
};

int create_registry_new(struct create_registry **out, struct shed_err *err)
{
    struct create_registry *registry = calloc(1, sizeof *registry);
    if (registry == NULL || pthread_mutex_init(&registry->lock, NULL) != 0) {
        free(registry);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    *out = registry;
    return 0;
}

void create_registry_free(struct create_registry *registry)
{
    if (registry == NULL)
        return;
    while (registry->head != NULL)
        create_end(registry, registry->head);
    pthread_mutex_destroy(&registry->lock);
    free(registry);
}

int create_begin(struct create_registry *registry, const char *name, struct create_ticket **out,
                 struct shed_err *err)
{
    *out = NULL;
    struct create_ticket *ticket = calloc(1, sizeof *ticket);
    char *copy = strdup(name);
    if (ticket == NULL || copy == NULL) {
        free(ticket);
        free(copy);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    ticket->name = copy;
    pthread_mutex_lock(&registry->lock);
    bool stopping = registry->stopping;
    if (!stopping) {
        ticket->next = registry->head;
        if (registry->head != NULL)
            registry->head->prev = ticket;
        registry->head = ticket;
    }
    pthread_mutex_unlock(&registry->lock);
    if (stopping) {
        free(copy);
        free(ticket);
        return shed_errf(err, SHED_E_SERVER_BUSY, "the server is stopping: no new creates");
    }
    *out = ticket;
    return 0;
}

volatile int *create_cancel_flag(struct create_ticket *ticket)
{
    return &ticket->cancel;
}

void create_end(struct create_registry *registry, struct create_ticket *ticket)
{
    if (ticket == NULL)
        return;
    pthread_mutex_lock(&registry->lock);
    if (ticket->prev != NULL)
        ticket->prev->next = ticket->next;
    else
        registry->head = ticket->next;
    if (ticket->next != NULL)
        ticket->next->prev = ticket->prev;
    pthread_mutex_unlock(&registry->lock);
    free(ticket->name);
    free(ticket);
}

bool create_cancel(struct create_registry *registry, const char *name)
{
    bool found = false;
    pthread_mutex_lock(&registry->lock);
    for (struct create_ticket *t = registry->head; t != NULL; t = t->next)
        if (strcmp(t->name, name) == 0) {
            t->cancel = 1;
            found = true;
        }
    pthread_mutex_unlock(&registry->lock);
    return found;
}

void create_cancel_all(struct create_registry *registry)
{
    pthread_mutex_lock(&registry->lock);
    registry->stopping = true;
    for (struct create_ticket *t = registry->head; t != NULL; t = t->next)
        t->cancel = 1;
    pthread_mutex_unlock(&registry->lock);
}
