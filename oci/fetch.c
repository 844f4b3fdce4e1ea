/* Blob downloads: several at once over one libcurl multi handle. Each blob streams into
 * <hex>.tmp (flocked, so two pulls never write the same file) while sha256 and size are
 * checked; a complete, verified file is fsynced and renamed to <hex>. An existing .tmp is a
 * verified-so-far prefix: it is hashed and the rest is asked for with Range. Transient
 * failures (408/429/5xx, dropped connections) are retried with backoff or Retry-After. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "oci_private.h"

#define FETCH_DEFAULT_PARALLEL 4
#define FETCH_BUFFER_SIZE (512 * 1024)
#define FETCH_LOCK_POLL_MS 100
#define FETCH_ERROR_BODY_MAX 1024
/* curl hands the body over in 16 KiB pieces; writing 1 MiB at a time saves syscalls, and
 * starting writeback of every flushed MiB makes the final fsync overlap the download
 * instead of following it (the disk, not the network, bounds a loopback pull). */
#define FETCH_WRITE_BUFFER (1024 * 1024)

enum transfer_state {
    TRANSFER_PENDING, /* not started, or waiting (lock held elsewhere, backoff) until due_ms */
    TRANSFER_RUNNING, /* in the multi handle */
    TRANSFER_DONE,
};

struct fetch_session;

struct transfer {
    const struct blob_fetch *blob;
    struct fetch_session *session;
    enum transfer_state state;
    uint64_t due_ms;
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char *final_path, *tmp_path, *url;
    int fd; /* the locked .tmp, -1 until the lock is held */
    struct sha256_ctx *sha;
    uint64_t offset;    /* bytes received and hashed: in .tmp or in write_buffer */
    char *write_buffer; /* FETCH_WRITE_BUFFER bytes not yet written to .tmp */
    size_t buffered;
    uint64_t flushed;       /* bytes written to .tmp */
    uint64_t request_start; /* the offset the running request asked for */
    bool resumed;           /* started from a partial .tmp left by an earlier pull */
    struct http_response response;
    bool body_checked, body_accepted;
    char error_body[FETCH_ERROR_BODY_MAX + 1];
    size_t error_body_len;
    unsigned attempt, redirects, auth_rounds;
    uint64_t attempt_bytes;
    bool local_failure; /* the write callback failed: session->err says why */
};

struct fetch_session {
    struct registry_client *client;
    struct oci_store *store;
    const struct oci_pull_opts *opts;
    struct fetch_progress *progress;
    CURLM *multi;
    struct transfer *transfers;
    size_t count;
    uint64_t bytes_fetched;
    struct shed_err *err;
};

/* ---- progress ---------------------------------------------------------------------------- */

static void report(struct transfer *t, enum oci_progress_event event, bool already_present)
{
    struct fetch_progress *p = t->session->progress;
    if (p == NULL || p->opts == NULL || p->opts->progress == NULL ||
        t->blob->layer_index == SIZE_MAX)
        return;
    struct oci_progress info = {
        .event = event,
        .layer_index = t->blob->layer_index,
        .image = p->image,
        .layer_bytes_done = t->offset,
        .layer_bytes_total = t->blob->size,
        .bytes_done = p->bytes_done,
        .bytes_total = p->bytes_total,
        .already_present = already_present,
    };
    p->opts->progress(&info, p->opts->progress_ctx);
}

static bool counts_for_progress(const struct transfer *t)
{
    return t->session->progress != NULL && t->blob->layer_index != SIZE_MAX;
}

static void count_bytes(struct transfer *t, uint64_t n)
{
    if (counts_for_progress(t))
        t->session->progress->bytes_done += n;
}

static void uncount_bytes(struct transfer *t, uint64_t n)
{
    if (counts_for_progress(t))
        t->session->progress->bytes_done -= n;
}

/* ---- the .tmp file ------------------------------------------------------------------------ */

static int restart_from_zero(struct transfer *t, struct shed_err *err)
{
    uncount_bytes(t, t->offset);
    if (ftruncate(t->fd, 0) < 0 || lseek(t->fd, 0, SEEK_SET) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot truncate %s", t->tmp_path);
    sha256_free(t->sha);
    t->sha = sha256_new();
    if (t->sha == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot initialise sha256");
    t->offset = t->flushed = 0;
    t->buffered = 0;
    t->resumed = false;
    return 0;
}

/* Hashes the partial download an earlier pull left, so only the rest is fetched. */
static int hash_existing_prefix(struct transfer *t, struct shed_err *err)
{
    struct stat st;
    if (fstat(t->fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", t->tmp_path);
    if ((uint64_t)st.st_size > t->blob->size)
        return restart_from_zero(t, err);
    cleanup_free char *buf = malloc(FETCH_BUFFER_SIZE);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (;;) {
        ssize_t n = TEMP_FAILURE_RETRY(read(t->fd, buf, FETCH_BUFFER_SIZE));
        if (n < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", t->tmp_path);
        if (n == 0)
            break;
        if (sha256_update(t->sha, buf, (size_t)n) < 0)
            return shed_errf(err, SHED_E_IO, "sha256 failed");
        t->offset += (uint64_t)n;
    }
    t->flushed = t->offset;
    t->resumed = t->offset > 0;
    count_bytes(t, t->offset);
    return 0;
}

/* Takes the .tmp's lock. Returns 1 when another process holds it (try again later). */
static int open_tmp_locked(struct transfer *t, struct shed_err *err)
{
    cleanup_close int fd = open(t->tmp_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", t->tmp_path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return 1;
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot lock %s", t->tmp_path);
    }
    /* The lock holder may have renamed the finished .tmp away and a new, empty .tmp may now
     * exist: make sure the file we locked is still the one named .tmp. */
    struct stat locked, named;
    if (fstat(fd, &locked) < 0 || stat(t->tmp_path, &named) < 0 || locked.st_ino != named.st_ino)
        return 1;
    t->fd = steal_fd(&fd);
    t->sha = sha256_new();
    if (t->sha == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot initialise sha256");
    return hash_existing_prefix(t, err);
}

static void close_tmp(struct transfer *t)
{
    if (t->fd >= 0)
        close(t->fd); /* releases the flock */
    t->fd = -1;
    sha256_free(t->sha);
    t->sha = NULL;
}

static int flush_buffer(struct transfer *t, struct shed_err *err)
{
    if (t->buffered == 0)
        return 0;
    if (write_all(t->fd, t->write_buffer, t->buffered) < 0)
        return shed_errf_errno(err, errno == ENOSPC ? SHED_E_NO_SPACE : SHED_E_IO, errno,
                               "cannot write %s", t->tmp_path);
    /* Only a hint to start writeback now; durability still comes from fsync. */
    (void)sync_file_range(t->fd, (off_t)t->flushed, (off_t)t->buffered, SYNC_FILE_RANGE_WRITE);
    t->flushed += t->buffered;
    t->buffered = 0;
    return 0;
}

/* Size and digest match: make the blob durable under its final name. */
static int commit_blob(struct transfer *t, struct shed_err *err)
{
    if (flush_buffer(t, err) < 0)
        return -1;
    char actual[DIGEST_STRING_LEN + 1];
    if (sha256_final_digest(t->sha, actual) < 0)
        return shed_errf(err, SHED_E_IO, "sha256 failed");
    if (strcmp(actual, t->blob->digest) != 0)
        return shed_errf(err, SHED_E_INTEGRITY,
                         "blob %s from %s has digest %s: the registry "
                         "served corrupt or tampered content",
                         t->blob->digest, registry_name(t->session->client), actual);
    if (fsync(t->fd) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot fsync %s", t->tmp_path);
    if (rename(t->tmp_path, t->final_path) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot rename %s", t->tmp_path);
    return 0;
}

/* ---- curl callbacks ---------------------------------------------------------------------- */

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct transfer *t = userdata;
    http_response_note_header(&t->response, data, size * nitems);
    return size * nitems;
}

/* "bytes START-END/TOTAL" must start where our .tmp ends. */
static bool content_range_matches(const struct transfer *t)
{
    uint64_t start, end;
    if (t->response.content_range == NULL ||
        sscanf(t->response.content_range, "bytes %" SCNu64 "-%" SCNu64, &start, &end) != 2)
        return false;
    return start == t->offset && end < t->blob->size;
}

/* Decides, at the first body byte, whether this response's body is the blob. */
static int check_body_start(struct transfer *t)
{
    struct shed_err *err = t->session->err;
    t->body_checked = true;
    long status = t->response.status;
    if (status == 200 && t->request_start > 0) {
        /* The server ignored Range (some CDNs do): start over with the full body. */
        t->body_accepted = true;
        return restart_from_zero(t, err);
    }
    if (status == 206 && !content_range_matches(t))
        return shed_errf(err, SHED_E_REGISTRY,
                         "registry answered Range bytes=%" PRIu64 "- with Content-Range \"%s\"",
                         t->offset, t->response.content_range ? t->response.content_range : "");
    t->body_accepted = status == 200 || status == 206;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    struct shed_err *err = t->session->err;
    size_t n = size * nmemb;
    if (!t->body_checked && check_body_start(t) < 0) {
        t->local_failure = true;
        return 0;
    }
    if (!t->body_accepted) { /* keep the start of an error body for the message */
        size_t room = FETCH_ERROR_BODY_MAX - t->error_body_len;
        size_t take = n < room ? n : room;
        memcpy(t->error_body + t->error_body_len, data, take);
        t->error_body_len += take;
        t->error_body[t->error_body_len] = '\0';
        return n;
    }
    if (t->offset + n > t->blob->size) {
        shed_errf(err, SHED_E_INTEGRITY,
                  "blob %s from %s is larger than the %" PRIu64 " bytes the manifest says",
                  t->blob->digest, registry_name(t->session->client), t->blob->size);
        t->local_failure = true;
        return 0;
    }
    if (t->buffered + n > FETCH_WRITE_BUFFER && flush_buffer(t, err) < 0) {
        t->local_failure = true;
        return 0;
    }
    if (n > FETCH_WRITE_BUFFER) { /* larger than the buffer: straight to the file */
        if (write_all(t->fd, data, n) < 0) {
            shed_errf_errno(err, errno == ENOSPC ? SHED_E_NO_SPACE : SHED_E_IO, errno,
                            "cannot write %s", t->tmp_path);
            t->local_failure = true;
            return 0;
        }
        t->flushed += n;
    } else {
        memcpy(t->write_buffer + t->buffered, data, n);
        t->buffered += n;
    }
    if (sha256_update(t->sha, data, n) < 0) {
        shed_errf(err, SHED_E_IO, "sha256 failed");
        t->local_failure = true;
        return 0;
    }
    t->offset += n;
    t->attempt_bytes += n;
    t->session->bytes_fetched += n;
    count_bytes(t, n);
    report(t, OCI_PROGRESS_LAYER_BYTES, false);
    return n;
}

/* ---- requests ---------------------------------------------------------------------------- */

static int append_header(struct curl_slist **headers, const char *line)
{
    if (line == NULL)
        return 0;
    struct curl_slist *grown = curl_slist_append(*headers, line);
    if (grown == NULL)
        return -1;
    *headers = grown;
    return 0;
}

static int build_headers(struct transfer *t, struct shed_err *err)
{
    struct registry_client *client = t->session->client;
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    /* Authorization goes to the registry only, never to a redirect target elsewhere. */
    const char *authorization = registry_authorization(client);
    bool own_origin = http_same_origin(t->url, registry_base_url(client));
    cleanup_free char *auth_line =
        authorization && own_origin ? str_printf("Authorization: %s", authorization) : NULL;
    cleanup_free char *range_line =
        t->offset > 0 ? str_printf("Range: bytes=%" PRIu64 "-", t->offset) : NULL;
    if ((authorization && own_origin && !auth_line) || (t->offset > 0 && !range_line) ||
        append_header(&t->headers, auth_line) < 0 || append_header(&t->headers, range_line) < 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

static int start_request(struct transfer *t, struct shed_err *err)
{
    if (registry_refresh_token_if_expired(t->session->client, err) < 0 || build_headers(t, err) < 0)
        return -1;
    http_response_free(&t->response);
    t->body_checked = t->body_accepted = false;
    t->error_body_len = 0;
    t->errbuf[0] = '\0';
    t->request_start = t->offset;
    t->attempt_bytes = 0;
    curl_easy_reset(t->easy);
    CURLcode rc = http_easy_setup(t->easy, registry_cancel_flag(t->session->client)) == 0
                      ? CURLE_OK
                      : CURLE_FAILED_INIT;
    rc |= curl_easy_setopt(t->easy, CURLOPT_URL, t->url);
    rc |= curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    rc |= curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    rc |= curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    rc |= curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    rc |= curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    rc |= curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
    rc |= curl_easy_setopt(t->easy, CURLOPT_BUFFERSIZE, (long)FETCH_BUFFER_SIZE);
    rc |= curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    if (rc != CURLE_OK)
        return shed_errf(err, SHED_E_REGISTRY, "cannot set up the request for %s", t->url);
    if (curl_multi_add_handle(t->session->multi, t->easy) != CURLM_OK)
        return shed_errf(err, SHED_E_REGISTRY, "cannot start the request for %s", t->url);
    t->state = TRANSFER_RUNNING;
    return 0;
}

static void finish(struct transfer *t, bool already_present)
{
    t->state = TRANSFER_DONE;
    close_tmp(t);
    report(t, OCI_PROGRESS_LAYER_DONE, already_present);
}

/* Opens and locks the .tmp, then either completes from disk or starts the request. */
static int begin_transfer(struct transfer *t, struct shed_err *err)
{
    if (t->fd < 0) {
        if (oci_store_has_blob(t->session->store, t->blob->digest)) {
            count_bytes(t, t->blob->size);
            t->offset = t->blob->size;
            finish(t, true);
            return 0;
        }
        int rc = open_tmp_locked(t, err);
        if (rc < 0)
            return -1;
        if (rc == 1) { /* another pull is downloading it: look again shortly */
            t->due_ms = monotonic_ms() + FETCH_LOCK_POLL_MS;
            return 0;
        }
        if (oci_store_has_blob(t->session->store, t->blob->digest)) {
            t->offset = t->blob->size;
            unlink(t->tmp_path);
            finish(t, true);
            return 0;
        }
    }
    if (t->offset == t->blob->size) { /* an earlier pull got every byte */
        if (commit_blob(t, err) < 0)
            return -1;
        finish(t, false);
        return 0;
    }
    return start_request(t, err);
}

static int schedule_retry(struct transfer *t, long retry_after, const char *why,
                          struct shed_err *err)
{
    /* An attempt that moved the download forward does not count against the limit. */
    if (t->attempt_bytes > 0)
        t->attempt = 0;
    if (++t->attempt >= HTTP_MAX_ATTEMPTS)
        return shed_errf(err, SHED_E_REGISTRY, "blob %s: giving up after %u attempts: %s",
                         t->blob->digest, t->attempt, why);
    t->due_ms = monotonic_ms() + (uint64_t)http_retry_delay_ms(t->attempt, retry_after);
    t->state = TRANSFER_PENDING;
    return 0;
}

static int follow_redirect(struct transfer *t, struct shed_err *err)
{
    if (++t->redirects > HTTP_MAX_REDIRECTS)
        return shed_errf(err, SHED_E_REGISTRY, "blob %s: too many redirects", t->blob->digest);
    char *next = http_resolve_url(t->url, t->response.location);
    if (next == NULL)
        return shed_errf(err, SHED_E_REGISTRY, "blob %s: bad redirect to %s", t->blob->digest,
                         t->response.location);
    free(t->url);
    t->url = next;
    return start_request(t, err);
}

static int on_complete_response(struct transfer *t, struct shed_err *err)
{
    long status = t->response.status;
    struct registry_client *client = t->session->client;
    if (status >= 300 && status < 400 && t->response.location != NULL)
        return follow_redirect(t, err);
    if (status == 401 && http_same_origin(t->url, registry_base_url(client)) &&
        t->auth_rounds++ < 2) {
        if (registry_authenticate(client, t->response.www_authenticate, err) < 0)
            return -1;
        return start_request(t, err);
    }
    if (status == 200 || status == 206) {
        if (t->offset == t->blob->size) {
            if (commit_blob(t, err) < 0)
                return -1;
            finish(t, false);
            return 0;
        }
        return schedule_retry(t, -1, "connection closed before the end of the blob", err);
    }
    if (status == 416) { /* our .tmp does not fit what the server has: start over */
        if (restart_from_zero(t, err) < 0)
            return -1;
        return schedule_retry(t, -1, "range not satisfiable", err);
    }
    char why[64];
    snprintf(why, sizeof why, "HTTP %ld", status);
    if (http_status_is_retryable(status))
        return schedule_retry(t, t->response.retry_after_seconds, why, err);
    if (status == 404)
        return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "blob %s not found in registry %s",
                         t->blob->digest, registry_name(client));
    if (status == 401 || status == 403)
        return shed_errf(err, SHED_E_AUTH, "registry %s denied access to blob %s (HTTP %ld)",
                         registry_name(client), t->blob->digest, status);
    return shed_errf(err, SHED_E_REGISTRY, "registry %s answered HTTP %ld for blob %s: %.200s",
                     registry_name(client), status, t->blob->digest, t->error_body);
}

static int on_done(struct transfer *t, CURLcode result, struct shed_err *err)
{
    curl_multi_remove_handle(t->session->multi, t->easy);
    t->state = TRANSFER_PENDING;
    volatile int *cancel = registry_cancel_flag(t->session->client);
    if (cancel != NULL && *cancel)
        return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
    if (t->local_failure)
        return -1; /* err was filled by the callback */
    if (result == CURLE_OK)
        return on_complete_response(t, err);
    if (http_curl_code_is_retryable(result, true))
        return schedule_retry(t, -1, t->errbuf[0] ? t->errbuf : curl_easy_strerror(result), err);
    return http_curl_error(err, result, t->url, t->errbuf);
}

/* ---- the session ------------------------------------------------------------------------- */

static int transfer_init(struct transfer *t, struct fetch_session *s, const struct blob_fetch *blob,
                         struct shed_err *err)
{
    t->blob = blob;
    t->session = s;
    t->fd = -1;
    t->response.retry_after_seconds = -1;
    t->final_path = oci_store_blob_path(s->store, blob->digest);
    t->tmp_path = store_blob_tmp_path(s->store, blob->digest);
    t->url = registry_blob_url(s->client, blob->digest);
    t->easy = curl_easy_init();
    t->write_buffer = malloc(FETCH_WRITE_BUFFER);
    if (t->final_path == NULL || t->tmp_path == NULL || t->url == NULL || t->easy == NULL ||
        t->write_buffer == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

static void transfer_cleanup(struct transfer *t, CURLM *multi)
{
    if (t->easy != NULL) {
        if (t->state == TRANSFER_RUNNING)
            curl_multi_remove_handle(multi, t->easy);
        curl_easy_cleanup(t->easy);
    }
    /* An aborted pull keeps partial downloads for the next one to resume (with what is
     * still buffered: it is verified-so-far data), not empty files. */
    if (t->state != TRANSFER_DONE && t->fd >= 0) {
        struct shed_err ignored;
        if (flush_buffer(t, &ignored) < 0 || t->offset == 0)
            unlink(t->tmp_path);
    }
    close_tmp(t);
    free(t->write_buffer);
    curl_slist_free_all(t->headers);
    http_response_free(&t->response);
    free(t->final_path);
    free(t->tmp_path);
    free(t->url);
}

/* Starts transfers that are due, up to the parallel limit; returns how many run. */
static int start_due_transfers(struct fetch_session *s, unsigned max_parallel, size_t *running,
                               uint64_t *next_due_ms, struct shed_err *err)
{
    *running = 0;
    for (size_t i = 0; i < s->count; i++)
        *running += s->transfers[i].state == TRANSFER_RUNNING;
    *next_due_ms = UINT64_MAX;
    uint64_t now = monotonic_ms();
    for (size_t i = 0; i < s->count && *running < max_parallel; i++) {
        struct transfer *t = &s->transfers[i];
        if (t->state != TRANSFER_PENDING)
            continue;
        if (t->due_ms > now) {
            *next_due_ms = t->due_ms < *next_due_ms ? t->due_ms : *next_due_ms;
            continue;
        }
        if (begin_transfer(t, err) < 0)
            return -1;
        if (t->state == TRANSFER_RUNNING)
            (*running)++;
        else if (t->state == TRANSFER_PENDING && t->due_ms < *next_due_ms)
            *next_due_ms = t->due_ms;
    }
    return 0;
}

static int drain_messages(struct fetch_session *s, struct shed_err *err)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t != NULL && on_done(t, msg->data.result, err) < 0) {
            if (err->code == SHED_E_INTEGRITY && t->resumed && t->fd >= 0) {
                /* The partial file from an earlier pull may be what is wrong: one clean
                 * retry from zero before calling the registry's content corrupt. */
                if (restart_from_zero(t, err) < 0)
                    return -1;
                t->local_failure = false;
                t->state = TRANSFER_PENDING;
                t->due_ms = 0;
                continue;
            }
            if (err->code == SHED_E_INTEGRITY && t->fd >= 0)
                unlink(t->tmp_path); /* worthless as a prefix */
            return -1;
        }
    }
    return 0;
}

static bool all_done(const struct fetch_session *s)
{
    for (size_t i = 0; i < s->count; i++)
        if (s->transfers[i].state != TRANSFER_DONE)
            return false;
    return true;
}

static int run_session(struct fetch_session *s, struct shed_err *err)
{
    unsigned max_parallel =
        s->opts && s->opts->max_parallel ? s->opts->max_parallel : FETCH_DEFAULT_PARALLEL;
    volatile int *cancel = registry_cancel_flag(s->client);
    while (!all_done(s)) {
        if (cancel != NULL && *cancel)
            return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
        size_t running;
        uint64_t next_due;
        if (start_due_transfers(s, max_parallel, &running, &next_due, err) < 0)
            return -1;
        int still_running = 0;
        if (curl_multi_perform(s->multi, &still_running) != CURLM_OK)
            return shed_errf(err, SHED_E_REGISTRY, "curl multi transfer failed");
        if (drain_messages(s, err) < 0)
            return -1;
        if (all_done(s))
            break; /* polling now would only sleep out the timeout */
        /* Wake for network activity, a retry falling due, or at least every 100 ms so a
         * signal's cancel flag is noticed. */
        long timeout = 100;
        uint64_t now = monotonic_ms();
        if (next_due != UINT64_MAX)
            timeout = next_due <= now ? 0 : (long)(next_due - now < 100 ? next_due - now : 100);
        if (curl_multi_poll(s->multi, NULL, 0, (int)timeout, NULL) != CURLM_OK)
            return shed_errf(err, SHED_E_REGISTRY, "curl multi poll failed");
    }
    return fs_fsync_dir(store_blobs_dir(s->store), err);
}

int fetch_blobs(struct registry_client *client, struct oci_store *store,
                const struct blob_fetch *blobs, size_t count, const struct oci_pull_opts *opts,
                struct fetch_progress *progress, uint64_t *bytes_fetched, struct shed_err *err)
{
    struct fetch_session s = {.client = client,
                              .store = store,
                              .opts = opts,
                              .progress = progress,
                              .count = count,
                              .err = err};
    s.multi = curl_multi_init();
    s.transfers = calloc(count ? count : 1, sizeof *s.transfers);
    int rc = s.multi != NULL && s.transfers != NULL
                 ? 0
                 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (rc == 0)
        curl_multi_setopt(s.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = transfer_init(&s.transfers[i], &s, &blobs[i], err);
    if (rc == 0)
        rc = run_session(&s, err);
    for (size_t i = 0; s.transfers != NULL && i < count; i++)
        transfer_cleanup(&s.transfers[i], s.multi);
    free(s.transfers);
    if (s.multi != NULL)
        curl_multi_cleanup(s.multi);
    *bytes_fetched += s.bytes_fetched;
    return rc;
}
