#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

struct sha256_ctx {
    EVP_MD_CTX *md;
};

struct sha256_ctx *sha256_new(void)
{
    struct sha256_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        sha256_free(ctx);
        return NULL;
    }
    return ctx;
}

int sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
    return EVP_DigestUpdate(ctx->md, data, len) == 1 ? 0 : -1;
}

int sha256_final_digest(struct sha256_ctx *ctx, char out[DIGEST_STRING_LEN + 1])
{
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx->md, raw, &n) != 1 || n != 32)
        return -1;
    memcpy(out, "sha256:", 7);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

void sha256_free(struct sha256_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int sha256_digest_of(const void *data, size_t len, char out[DIGEST_STRING_LEN + 1])
{
    struct sha256_ctx *ctx = sha256_new();
    if (ctx == NULL)
        return -1;
    int rc = sha256_update(ctx, data, len) == 0 ? sha256_final_digest(ctx, out) : -1;
    sha256_free(ctx);
    return rc;
}

int sha256_digest_of_file(const char *path, char out[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    struct sha256_ctx *ctx = sha256_new();
    if (ctx == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot initialise sha256");
    static const size_t chunk = 1 << 20;
    cleanup_free char *buf = malloc(chunk);
    int rc = buf == NULL ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory") : 0;
    while (rc == 0) {
        ssize_t n = TEMP_FAILURE_RETRY(read(fd, buf, chunk));
        if (n < 0)
            rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", path);
        else if (n == 0)
            break;
        else if (sha256_update(ctx, buf, (size_t)n) < 0)
            rc = shed_errf(err, SHED_E_IO, "sha256 failed");
    }
    if (rc == 0 && sha256_final_digest(ctx, out) < 0)
        rc = shed_errf(err, SHED_E_IO, "sha256 failed");
    sha256_free(ctx);
    return rc;
}

bool digest_is_valid(const char *digest)
{
    if (digest == NULL || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != DIGEST_STRING_LEN)
        return false;
    for (const char *p = digest + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}
