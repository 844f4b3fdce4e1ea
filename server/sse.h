/* Server-sent events: a response whose frames are produced by a worker thread while the
 * connection's thread sends them.
 *
 * The server runs one thread per connection, so the response's content callback may block:
 * it waits on a condition variable until the producer queued a frame or finished. The
 * producer runs on its own thread (started by sse_stream_start) and never blocks on the
 * client: frames are queued in memory, so a slow or vanished client cannot stall the work
 * being reported (a create always runs to its end, success or rollback).
 *
 * Lifetime: libmicrohttpd frees the response when the request ends (sent, client gone, or
 * server stopping); that free waits for the producer thread to return, then releases the
 * stream and the producer's argument. The server therefore never frees its context while a
 * producer still uses it (MHD_stop_daemon joins the connection threads). */
#ifndef SHED_API_SSE_H
#define SHED_API_SSE_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>

#include "common/shed_err.h"

struct sse_stream;

/* Runs on the producer thread; the stream ends when it returns. */
typedef void (*sse_producer)(struct sse_stream *stream, void *arg);

/* Starts producer(stream, arg) on a new thread and builds the 200 text/event-stream response
 * (Cache-Control: no-cache) that streams what it sends. On success the stream owns arg
 * (arg_free(arg) runs once the producer returned and the response is gone; arg_free may be
 * NULL); on failure the caller still owns arg and nothing runs. */
int sse_stream_start(sse_producer producer, void *arg, void (*arg_free)(void *arg),
                     struct MHD_Response **response, struct shed_err *err);

/* Queues "event: <event>\ndata: <data as one line of JSON>\n\n"; takes ownership of data
 * (NULL, from a failed allocation, fails). -1 when the frame could not be queued: the stream
 * is then cut off with an error instead of silently losing a frame. */
int sse_stream_send(struct sse_stream *stream, const char *event, json_t *data);

/* True once the client is gone (nothing sent from now on reaches anyone). */
bool sse_stream_closed(struct sse_stream *stream);

#endif
