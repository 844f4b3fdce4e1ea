/* The one error type of the project: a code that maps 1:1 to the REST API's error codes
 * (plus a few internal codes that reach the edge as BACKEND_ERROR) and a human message. */
#ifndef SHED_ERR_H
#define SHED_ERR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum shed_code {
    SHED_OK = 0,
    /* API codes (../shared/spec/api.md) */
    SHED_E_INVALID_REQUEST,
    SHED_E_INVALID_SHED_NAME,
    SHED_E_INVALID_REPO_URL,
    SHED_E_INVALID_LOCAL_DIR,
    SHED_E_INVALID_SESSION_NAME,
    SHED_E_INVALID_PORT,
    SHED_E_UNKNOWN_IMAGE,
    SHED_E_UNAUTHORIZED,
    SHED_E_NAMESPACE_RESERVED,
    SHED_E_SHED_NOT_FOUND,
    SHED_E_IMAGE_NOT_FOUND,
    SHED_E_SESSION_NOT_FOUND,
    SHED_E_SHED_NOT_CONNECTED,
    SHED_E_NOT_FOUND,
    SHED_E_METHOD_NOT_ALLOWED,
    SHED_E_SHED_ALREADY_EXISTS,
    SHED_E_SHED_ALREADY_RUNNING,
    SHED_E_SHED_ALREADY_STOPPED,
    SHED_E_SHED_NOT_RUNNING,
    SHED_E_IMAGE_IN_USE,
    SHED_E_NAMESPACE_ALREADY_REGISTERED,
    SHED_E_PAYLOAD_TOO_LARGE,
    SHED_E_BACKEND_ERROR,
    SHED_E_NOT_SUPPORTED,
    SHED_E_CONNECT_FAILED,
    SHED_E_TMUX_NOT_AVAILABLE,
    SHED_E_PLUGINS_DISABLED,
    SHED_E_SERVER_BUSY,     /* 503: the server's connection limits (docs/api.md) */
    SHED_E_REQUEST_TIMEOUT, /* 408: the request did not arrive within its deadline */
    /* Internal codes: reported as BACKEND_ERROR over HTTP, by name on the CLI. */
    SHED_E_IO, /* a syscall on local files failed */
    SHED_E_NO_MEMORY,
    SHED_E_INVALID_REF,   /* an image reference that does not parse */
    SHED_E_REGISTRY,      /* the registry answered with an error or could not be reached */
    SHED_E_AUTH,          /* the registry refused our credentials */
    SHED_E_INTEGRITY,     /* digest or size mismatch */
    SHED_E_UNSUPPORTED,   /* a media type, platform or feature we do not handle */
    SHED_E_INVALID_IMAGE, /* a layer or manifest whose content is malformed */
    SHED_E_NO_SPACE,      /* the image does not fit in the requested filesystem size */
    SHED_E_CONFIG,        /* server.yaml is invalid */
    SHED_E_INTERRUPTED,   /* cancelled by a signal */
    SHED_E_COUNT
};

struct shed_err {
    enum shed_code code;
    /* The errno of the syscall that failed (shed_errf_errno), 0 when the error did not come
     * from one. Callers test it with shed_err_is_errno, e.g. to tell "the file is not there"
     * (ENOENT) from a real I/O error; the code stays what the failure means at the edge. */
    int sys_errno;
    char msg[512];
};

/* Fills err (when non-NULL) and returns -1, so callers can `return shed_errf(...)`. */
int shed_errf(struct shed_err *err, enum shed_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like shed_errf with ": strerror(errnum)" appended. */
int shed_errf_errno(struct shed_err *err, enum shed_code code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends context to an existing message: "context: old message". Returns -1. */
int shed_err_prefix(struct shed_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void shed_err_clear(struct shed_err *err);
/* True when err came from a syscall that failed with errnum. */
static inline bool shed_err_is_errno(const struct shed_err *err, int errnum)
{
    return err != NULL && err->sys_errno == errnum;
}

/* "SHED_NOT_FOUND", … for API codes; internal codes map to "BACKEND_ERROR". */
const char *shed_code_api_name(enum shed_code code);
/* The code's own name, internal ones included ("IO", "REGISTRY", …), for CLI messages. */
const char *shed_code_name(enum shed_code code);
int shed_code_http_status(enum shed_code code);

#endif
