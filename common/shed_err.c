#include "shed_err.h"

#include <stdio.h>
#include <string.h>

struct code_info {
    const char *name;
    const char *api_name;
    int http_status;
};

static const struct code_info code_table[SHED_E_COUNT] = {
    [SHED_OK] = {"OK", "OK", 200},
    [SHED_E_INVALID_REQUEST] = {"INVALID_REQUEST", "INVALID_REQUEST", 400},
    [SHED_E_INVALID_SHED_NAME] = {"INVALID_SHED_NAME", "INVALID_SHED_NAME", 400},
    [SHED_E_INVALID_REPO_URL] = {"INVALID_REPO_URL", "INVALID_REPO_URL", 400},
    [SHED_E_INVALID_LOCAL_DIR] = {"INVALID_LOCAL_DIR", "INVALID_LOCAL_DIR", 400},
    [SHED_E_INVALID_SESSION_NAME] = {"INVALID_SESSION_NAME", "INVALID_SESSION_NAME", 400},
    [SHED_E_INVALID_PORT] = {"INVALID_PORT", "INVALID_PORT", 400},
    [SHED_E_UNKNOWN_IMAGE] = {"UNKNOWN_IMAGE", "UNKNOWN_IMAGE", 400},
    [SHED_E_UNAUTHORIZED] = {"UNAUTHORIZED", "UNAUTHORIZED", 401},
    [SHED_E_NAMESPACE_RESERVED] = {"NAMESPACE_RESERVED", "NAMESPACE_RESERVED", 403},
    [SHED_E_SHED_NOT_FOUND] = {"SHED_NOT_FOUND", "SHED_NOT_FOUND", 404},
    [SHED_E_IMAGE_NOT_FOUND] = {"IMAGE_NOT_FOUND", "IMAGE_NOT_FOUND", 404},
    [SHED_E_SESSION_NOT_FOUND] = {"SESSION_NOT_FOUND", "SESSION_NOT_FOUND", 404},
    [SHED_E_SHED_NOT_CONNECTED] = {"SHED_NOT_CONNECTED", "SHED_NOT_CONNECTED", 404},
    [SHED_E_NOT_FOUND] = {"NOT_FOUND", "NOT_FOUND", 404},
    [SHED_E_METHOD_NOT_ALLOWED] = {"METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED", 405},
    [SHED_E_SHED_ALREADY_EXISTS] = {"SHED_ALREADY_EXISTS", "SHED_ALREADY_EXISTS", 409},
    [SHED_E_SHED_ALREADY_RUNNING] = {"SHED_ALREADY_RUNNING", "SHED_ALREADY_RUNNING", 409},
    [SHED_E_SHED_ALREADY_STOPPED] = {"SHED_ALREADY_STOPPED", "SHED_ALREADY_STOPPED", 409},
    [SHED_E_SHED_NOT_RUNNING] = {"SHED_NOT_RUNNING", "SHED_NOT_RUNNING", 409},
    [SHED_E_IMAGE_IN_USE] = {"IMAGE_IN_USE", "IMAGE_IN_USE", 409},
    [SHED_E_NAMESPACE_ALREADY_REGISTERED] = {"NAMESPACE_ALREADY_REGISTERED",
                                             "NAMESPACE_ALREADY_REGISTERED", 409},
    [SHED_E_PAYLOAD_TOO_LARGE] = {"PAYLOAD_TOO_LARGE", "PAYLOAD_TOO_LARGE", 413},
    [SHED_E_BACKEND_ERROR] = {"BACKEND_ERROR", "BACKEND_ERROR", 500},
    [SHED_E_NOT_SUPPORTED] = {"NOT_SUPPORTED", "NOT_SUPPORTED", 501},
    [SHED_E_CONNECT_FAILED] = {"CONNECT_FAILED", "CONNECT_FAILED", 502},
    [SHED_E_TMUX_NOT_AVAILABLE] = {"TMUX_NOT_AVAILABLE", "TMUX_NOT_AVAILABLE", 503},
    [SHED_E_PLUGINS_DISABLED] = {"PLUGINS_DISABLED", "PLUGINS_DISABLED", 503},
    [SHED_E_SERVER_BUSY] = {"SERVER_BUSY", "SERVER_BUSY", 503},
    [SHED_E_REQUEST_TIMEOUT] = {"REQUEST_TIMEOUT", "REQUEST_TIMEOUT", 408},
    [SHED_E_IO] = {"IO", "BACKEND_ERROR", 500},
    [SHED_E_NO_MEMORY] = {"NO_MEMORY", "BACKEND_ERROR", 500},
    [SHED_E_INVALID_REF] = {"INVALID_REF", "BACKEND_ERROR", 500},
    [SHED_E_REGISTRY] = {"REGISTRY", "BACKEND_ERROR", 500},
    [SHED_E_AUTH] = {"AUTH", "BACKEND_ERROR", 500},
    [SHED_E_INTEGRITY] = {"INTEGRITY", "BACKEND_ERROR", 500},
    [SHED_E_UNSUPPORTED] = {"UNSUPPORTED", "BACKEND_ERROR", 500},
    [SHED_E_INVALID_IMAGE] = {"INVALID_IMAGE", "BACKEND_ERROR", 500},
    [SHED_E_NO_SPACE] = {"NO_SPACE", "BACKEND_ERROR", 500},
    [SHED_E_CONFIG] = {"CONFIG", "BACKEND_ERROR", 500},
    [SHED_E_INTERRUPTED] = {"INTERRUPTED", "BACKEND_ERROR", 500},
};

static const struct code_info *code_lookup(enum shed_code code)
{
    if ((int)code < 0 || code >= SHED_E_COUNT || code_table[code].name == NULL)
        return &code_table[SHED_E_BACKEND_ERROR];
    return &code_table[code];
}

static void err_vset(struct shed_err *err, enum shed_code code, const char *fmt, va_list ap)
{
    err->code = code;
    err->sys_errno = 0;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int shed_errf(struct shed_err *err, enum shed_code code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

int shed_errf_errno(struct shed_err *err, enum shed_code code, int errnum, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    err->sys_errno = errnum;
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, ": %s", strerror(errnum));
    return -1;
}

int shed_err_prefix(struct shed_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    char prefix[256];
    char old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the message is for humans and stays NUL-terminated. */
    int n = snprintf(err->msg, sizeof err->msg, "%s: ", prefix);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        memcpy(err->msg + n, old, strnlen(old, sizeof err->msg - (size_t)n - 1) + 1);
    err->msg[sizeof err->msg - 1] = '\0';
    return -1;
}

void shed_err_clear(struct shed_err *err)
{
    if (err == NULL)
        return;
    err->code = SHED_OK;
    err->sys_errno = 0;
    err->msg[0] = '\0';
}

const char *shed_code_api_name(enum shed_code code)
{
    return code_lookup(code)->api_name;
}

const char *shed_code_name(enum shed_code code)
{
    return code_lookup(code)->name;
}

int shed_code_http_status(enum shed_code code)
{
    return code_lookup(code)->http_status;
}
