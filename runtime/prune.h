/* `system prune`: plan first, then carry out exactly the plan (api.md POST /api/system/prune).
 *
 * prune_plan snapshots every metadata.json mtime before asking the probe whether sheds run,
 * then lists every action (and every skip, with its verbatim reason) in the order they will
 * run: instances, images (decided as if the planned instances were already gone), orphans,
 * console logs. A dry run is the plan itself. prune_execute performs the listed actions only;
 * each one re-checks its safety condition first (the shed still is not running and its lock
 * is free, the image is still unreferenced, the orphan's lock is still free and its rootfs
 * still absent) and otherwise moves to `skipped` with the reason. Nothing that the plan did not
 * list is ever deleted: a real run deletes a subset of its dry run under the same state.
 *
 * One prune runs at a time per instance_dir (<instance_dir>/.locks/.system-prune.lock, held
 * from prune_plan to prune_plan_free); sheds and image variants are locked with the same locks
 * the server and the image cache use. */
#ifndef SHED_RUNTIME_PRUNE_H
#define SHED_RUNTIME_PRUNE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/df.h"
#include "runtime/instance.h"

enum prune_scope {
    PRUNE_SCOPE_IMAGES = 1u << 0,
    PRUNE_SCOPE_INSTANCES = 1u << 1,
    PRUNE_SCOPE_LOGS = 1u << 2,
    PRUNE_SCOPE_ORPHANS = 1u << 3,
};

#define PRUNE_SCOPE_DEFAULT (PRUNE_SCOPE_IMAGES | PRUNE_SCOPE_INSTANCES | PRUNE_SCOPE_ORPHANS)
#define PRUNE_DEFAULT_UNTIL_SECONDS (72u * 3600u)
#define PRUNE_DEFAULT_LOG_TAIL_BYTES (5u << 20)
#define PRUNE_MAX_LOG_TAIL_BYTES (64u << 20)
/* A .tmp younger than this may belong to a conversion that is still writing it. */
#define PRUNE_TMP_MIN_AGE_SECONDS 3600u

/* Skip reasons (api.md, verbatim). */
#define PRUNE_REASON_RUNNING "cannot prune running shed"
#define PRUNE_REASON_LOCK_HELD "lock held (conversion in progress)"
#define PRUNE_REASON_LOCK_RETAINED "lock file retained"
/* "too recent (3h < 72h)" is built by prune_reason_too_recent. */

/* "images" → PRUNE_SCOPE_IMAGES, …; 0 for an unknown name. */
unsigned prune_scope_from_name(const char *name);
/* The names of the scopes set in scopes, api.md order: images, instances, logs, orphans. */
json_t *prune_scopes_to_json(unsigned scopes);
/* Durations like Go's time.ParseDuration restricted to h, m, s units with integer values:
 * "72h", "90m", "1h30m", "0s", "0". Negative or unparsable → SHED_E_INVALID_REQUEST. */
int prune_parse_duration(const char *text, uint64_t *seconds, struct shed_err *err);
/* Go's Duration.String(): "72h0m0s", "1h30m0s", "5m0s", "0s". */
void prune_format_duration(uint64_t seconds, char *out, size_t len);

struct prune_opts {
    const struct shed_config *config;
    struct instance_store *instances;
    const struct shed_probe *probe;
    unsigned scopes;         /* 0: PRUNE_SCOPE_DEFAULT */
    uint64_t until_seconds;  /* instances whose metadata.json is older than now - until */
    uint64_t log_tail_bytes; /* 0: PRUNE_DEFAULT_LOG_TAIL_BYTES */
    bool dry_run;
};

enum prune_kind {
    PRUNE_KIND_INSTANCE,
    PRUNE_KIND_IMAGE,
    PRUNE_KIND_TMP,
    PRUNE_KIND_SOURCE,
    PRUNE_KIND_LOCK,
    PRUNE_KIND_BLOB,
    PRUNE_KIND_CONSOLE_LOG,
    /* a shed directory without metadata.json (orphans scope; "instance" in JSON) */
    PRUNE_KIND_ORPHAN_INSTANCE,
};

const char *prune_kind_name(enum prune_kind kind);

enum prune_action { PRUNE_ACTION_DELETE, PRUNE_ACTION_TRUNCATE };

struct prune_item {
    enum prune_kind kind;
    char *name; /* shed or image name; NULL for files */
    char *path;
    enum prune_action action;
    struct df_size freed; /* what this item alone frees (files = inodes removed) */
    char *reason;         /* skipped items: why */
    /* what the action removes, as measured by the plan */
    struct df_file_list files;
    char *lock_path; /* orphans: the canonical .lock to probe; NULL = every variant lock */
    struct timespec metadata_mtime; /* instances: the snapshot the age came from */
    uint64_t keep_bytes;            /* console logs: the tail to keep */
};

struct prune_list {
    struct prune_item *items;
    size_t count;
};

struct prune_plan {
    struct prune_opts opts;
    struct prune_list items; /* in execution order */
    struct prune_list skipped;
    char **notes; /* NULL-terminated */
    size_t note_count;
    struct df_size freed; /* totals: extents shared only among pruned files counted once */
    time_t now;
    bool executed;
    int prune_lock_fd;
    struct df_extent_index *extents;
};

/* Builds the plan (see above). The plan keeps opts' pointers: config, instances and probe
 * must outlive it. */
int prune_plan(const struct prune_opts *opts, struct prune_plan **plan, struct shed_err *err);
/* Carries out the plan (nothing for a dry run). Returns -1 only when the very first action
 * failed (nothing changed); a later failure stops the run, leaves the failed and remaining
 * items in `skipped` and adds a "partial failure: …" note, and returns 0. */
int prune_execute(struct prune_plan *plan, struct shed_err *err);
void prune_plan_free(struct prune_plan *plan);

/* The POST /api/system/prune body. */
json_t *prune_plan_to_json(const struct prune_plan *plan, const char *server_name);

/* Keeps the last keep_bytes of the file at path, in place: the inode stays, so a writer that
 * has it open with O_APPEND keeps appending to the same file. Bytes appended while the tail
 * is being moved are moved too. *freed: logical and physical bytes the truncation released. */
int prune_truncate_log(const char *path, uint64_t keep_bytes, struct df_size *freed,
                       struct shed_err *err);

#endif
