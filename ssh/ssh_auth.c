/* Which public keys may log in: config->ssh.keys and the authorized_keys file.
 *
 * The file is read at every attempt (bounded), so adding or removing a key applies to the
 * next login without a restart. A line is "<type> <base64> [comment]"; a line that starts
 * with OpenSSH options (command="...", from="...", restrict, ...) is skipped: honouring
 * only part of what it says could give a restricted key full access. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "ssh_private.h"

#define AUTHORIZED_KEYS_MAX (1u << 20)

/* Whether one "<type> <base64> ..." line is key. */
static bool line_matches(const char *line, ssh_key key)
{
    char type[64], blob[16384];
    if (sscanf(line, "%63s %16383s", type, blob) != 2)
        return false;
    enum ssh_keytypes_e keytype = ssh_key_type_from_name(type);
    if (keytype == SSH_KEYTYPE_UNKNOWN)
        return false; /* options first, or not a key */
    ssh_key candidate = NULL;
    if (ssh_pki_import_pubkey_base64(blob, keytype, &candidate) != SSH_OK)
        return false;
    bool same = ssh_key_cmp(candidate, key, SSH_KEY_CMP_PUBLIC) == 0;
    ssh_key_free(candidate);
    return same;
}

static bool file_has_key(const char *path, ssh_key key)
{
    cleanup_free char *text = NULL;
    size_t len = 0;
    struct shed_err ignored = {0};
    if (path == NULL || fs_read_file(path, &text, &len, AUTHORIZED_KEYS_MAX, &ignored) < 0)
        return false; /* a missing file holds no key */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line += strspn(line, " \t");
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (line_matches(line, key))
            return true;
    }
    return false;
}

bool ssh_key_is_authorized(const struct shed_config *config, ssh_key key)
{
    for (char **line = config->ssh.keys; line != NULL && *line != NULL; line++)
        if (line_matches(*line, key))
            return true;
    return file_has_key(config->ssh.authorized_keys, key);
}

void ssh_key_fingerprint(ssh_key key, char *out, size_t outlen)
{
    unsigned char *hash = NULL;
    size_t hash_len = 0;
    snprintf(out, outlen, "-");
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_len) != SSH_OK)
        return;
    char *text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_len);
    if (text != NULL)
        snprintf(out, outlen, "%s", text);
    ssh_string_free_char(text);
    ssh_clean_pubkey_hash(&hash);
}
