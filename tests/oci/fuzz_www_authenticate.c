/* Fuzz target: the WWW-Authenticate challenge parser (a registry's 401). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A header value is a string: libcurl hands it over NUL-terminated. */
    char *header = malloc(size + 1);
    if (header == NULL)
        return 0;
    memcpy(header, data, size);
    header[size] = '\0';
    struct auth_challenge challenge;
    struct shed_err err = {0};
    if (auth_challenge_parse(header, &challenge, &err) == 0) {
        if (challenge.scheme == AUTH_BEARER && (challenge.realm == NULL || challenge.realm[0] == 0))
            abort(); /* a bearer challenge is only accepted with a realm */
        auth_challenge_free(&challenge);
    }
    free(header);
    return 0;
}
