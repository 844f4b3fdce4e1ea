/* Streaming sha256 over OpenSSL EVP, and helpers for "sha256:<64 hex>" digest strings. */
#ifndef SHED_DIGEST_H
#define SHED_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "shed_err.h"

#define DIGEST_STRING_LEN 71 /* "sha256:" + 64 hex */

struct sha256_ctx; /* opaque */

struct sha256_ctx *sha256_new(void);
int sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes "sha256:<hex>" (DIGEST_STRING_LEN + 1 bytes) into out. */
int sha256_final_digest(struct sha256_ctx *ctx, char out[DIGEST_STRING_LEN + 1]);
void sha256_free(struct sha256_ctx *ctx);
int sha256_digest_of(const void *data, size_t len, char out[DIGEST_STRING_LEN + 1]);
/* sha256 of a whole file; SHED_E_IO on failure. */
int sha256_digest_of_file(const char *path, char out[DIGEST_STRING_LEN + 1], struct shed_err *err);
/* True for "sha256:" followed by exactly 64 lowercase hex digits. */
bool digest_is_valid(const char *digest);

#endif
