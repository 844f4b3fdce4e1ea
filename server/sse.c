/* Server-sent events on a producer thread (see sse.h). */
#include "sse.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"

#define SSE_BLOCK_SIZE 4096

struct sse_stream {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char *queued; /* bytes not yet handed to libmicrohttpd: queued[sent..length) */
    size_t sent, length, capacity;
    bool producer_done;
    bool broken;      /* a frame could not be queued: end the response with an error */
    bool client_gone; /* the response was freed */
    bool thread_started;
    pthread_t thread;
    sse_producer producer;
    void *arg;
    void (*arg_free)(void *arg);
};

/* Called with the lock held. */
static bool queue_bytes(struct sse_stream *stream, const char *bytes, size_t len)
{
    if (stream->sent == stream->length)
        stream->sent = stream->length = 0; /* everything went out: reuse the buffer */
    if (ARRAY_RESERVE(stream->queued, stream->capacity, stream->length + len, NULL) < 0)
        return false;
    memcpy(stream->queued + stream->length, bytes, len);
    stream->length += len;
    return true;
}

static char *format_frame(const char *event, json_t *data)
{
    /* JSON_COMPACT output has no newline (strings escape theirs), so data is one line. */
    char *json = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (json == NULL)
        return NULL;
    char *frame = NULL;
    if (asprintf(&frame, "event: %s\ndata: %s\n\n", event, json) < 0)
        frame = NULL;
    free(json);
    return frame;
}

int sse_stream_send(struct sse_stream *stream, const char *event, json_t *data)
{
    char *frame = data != NULL ? format_frame(event, data) : NULL;
    json_decref(data);
    pthread_mutex_lock(&stream->lock);
    bool queued = frame != NULL && !stream->broken && queue_bytes(stream, frame, strlen(frame));
    if (!queued)
        stream->broken = true;
    pthread_cond_broadcast(&stream->changed);
    pthread_mutex_unlock(&stream->lock);
    free(frame);
    return queued ? 0 : -1;
}

bool sse_stream_closed(struct sse_stream *stream)
{
    pthread_mutex_lock(&stream->lock);
    bool gone = stream->client_gone;
    pthread_mutex_unlock(&stream->lock);
    return gone;
}

/* libmicrohttpd's content callback, on the connection's thread: waits for bytes. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct sse_stream *stream = cls;
    pthread_mutex_lock(&stream->lock);
    while (stream->sent == stream->length && !stream->producer_done && !stream->broken)
        pthread_cond_wait(&stream->changed, &stream->lock);
    ssize_t result;
    if (stream->broken) {
        result = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (stream->sent == stream->length) {
        result = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        size_t len = stream->length - stream->sent;
        if (len > max)
            len = max;
        memcpy(buf, stream->queued + stream->sent, len);
        stream->sent += len;
        result = (ssize_t)len;
    }
    pthread_mutex_unlock(&stream->lock);
    return result;
}

static void *run_producer(void *cls)
{
    struct sse_stream *stream = cls;
    stream->producer(stream, stream->arg);
    pthread_mutex_lock(&stream->lock);
    stream->producer_done = true;
    pthread_cond_broadcast(&stream->changed);
    pthread_mutex_unlock(&stream->lock);
    return NULL;
}

static void stream_free(struct sse_stream *stream)
{
    pthread_mutex_destroy(&stream->lock);
    pthread_cond_destroy(&stream->changed);
    free(stream->queued);
    free(stream);
}

/* libmicrohttpd frees the response: the request is over. The producer is left to finish its
 * work (a create must complete or roll back), and waited for. */
static void release_stream(void *cls)
{
    struct sse_stream *stream = cls;
    pthread_mutex_lock(&stream->lock);
    stream->client_gone = true;
    pthread_mutex_unlock(&stream->lock);
    if (stream->thread_started)
        pthread_join(stream->thread, NULL);
    if (stream->arg != NULL && stream->arg_free != NULL)
        stream->arg_free(stream->arg);
    stream_free(stream);
}

static struct sse_stream *stream_new(sse_producer producer, void *arg, void (*arg_free)(void *))
{
    struct sse_stream *stream = calloc(1, sizeof *stream);
    if (stream == NULL)
        return NULL;
    if (pthread_mutex_init(&stream->lock, NULL) != 0) {
        free(stream);
        return NULL;
    }
    if (pthread_cond_init(&stream->changed, NULL) != 0) {
        pthread_mutex_destroy(&stream->lock);
        free(stream);
        return NULL;
    }
    stream->producer = producer;
    stream->arg = arg;
    stream->arg_free = arg_free;
    return stream;
}

static bool add_stream_headers(struct MHD_Response *response)
{
    return MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") ==
               MHD_YES &&
           MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES;
}

int sse_stream_start(sse_producer producer, void *arg, void (*arg_free)(void *arg),
                     struct MHD_Response **response_out, struct shed_err *err)
{
    struct sse_stream *stream = stream_new(producer, arg, arg_free);
    if (stream == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory starting an event stream");
    struct MHD_Response *response = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, SSE_BLOCK_SIZE, read_stream, stream, release_stream);
    if (response == NULL) {
        stream_free(stream);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory starting an event stream");
    }
    /* From here the response owns the stream: destroying it runs release_stream. */
    int rc = add_stream_headers(response) ? 0 : -1;
    if (rc == 0)
        rc = pthread_create(&stream->thread, NULL, run_producer, stream);
    if (rc != 0) {
        stream->arg = NULL; /* stays the caller's */
        MHD_destroy_response(response);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot start the event stream's thread");
    }
    stream->thread_started = true;
    *response_out = response;
    return 0;
}
