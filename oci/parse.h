/* oci: the parsers of what a registry sends — manifests, indexes and WWW-Authenticate
 * challenges. Every byte they see is hostile: they bound what they read, refuse what they
 * do not understand, and never trust a declared size or type without checking it. The puller
 * uses them on every response; the fuzz targets (tests/oci/fuzz_*.c) feed them anything.
 *
 * Every function returns 0 or -1 with err filled. */
#ifndef SHED_OCI_PARSE_H
#define SHED_OCI_PARSE_H

#include <stddef.h>

#include "common/digest.h"
#include "common/shed_err.h"
#include "oci/oci.h"

/* ---- manifests and indexes (manifest.c) ------------------------------------------------- */

enum manifest_kind { MANIFEST_KIND_IMAGE, MANIFEST_KIND_INDEX };

/* Image manifest or index: the body's own mediaType wins over content_type (may be NULL);
 * without either, the shape decides. SHED_E_UNSUPPORTED for schema 1 and unknown types. */
int manifest_kind_of(const char *content_type, const char *body, size_t len,
                     enum manifest_kind *kind, struct shed_err *err);
/* An image manifest into *image (free with oci_image_free); digest is the manifest's own. */
int manifest_parse_image(const char *body, size_t len, const char *digest, struct oci_image *image,
                         struct shed_err *err);
/* The digests of every manifest an index lists, in order; *digests is malloc'd. */
int index_list_manifests(const char *body, size_t len, char (**digests)[DIGEST_STRING_LEN + 1],
                         size_t *count, struct shed_err *err);
/* Chooses the manifest for platform ("os/arch[/variant]", NULL = host) from an index. */
int index_select_platform(const char *body, size_t len, const char *platform,
                          char digest[DIGEST_STRING_LEN + 1], struct shed_err *err);

/* ---- WWW-Authenticate (auth.c) ---------------------------------------------------------- */

enum auth_scheme { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct auth_challenge {
    enum auth_scheme scheme;
    char *realm, *service, *scope; /* malloc'd; NULL when absent */
};

/* `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; a bearer challenge needs a
 * realm. Free with auth_challenge_free (also after a failure: nothing is then held). */
int auth_challenge_parse(const char *header, struct auth_challenge *challenge,
                         struct shed_err *err);
void auth_challenge_free(struct auth_challenge *challenge);

#endif
