/* The server's ed25519 host key pair (see host_key.h). */
#include "runtime/host_key.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"

#define HOST_KEY_FILE "ssh_host_ed25519_key"
#define ED25519_KEY_BYTES 32

static void put_u32(unsigned char *out, uint32_t value)
{
    out[0] = (unsigned char)(value >> 24);
    out[1] = (unsigned char)(value >> 16);
    out[2] = (unsigned char)(value >> 8);
    out[3] = (unsigned char)value;
}

/* "ssh-ed25519 <base64 of string "ssh-ed25519" + string key> comment" (RFC 8709). */
static char *openssh_public_line(EVP_PKEY *key, const char *comment, struct shed_err *err)
{
    unsigned char raw[ED25519_KEY_BYTES];
    size_t raw_len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &raw_len) != 1 || raw_len != sizeof raw) {
        shed_errf(err, SHED_E_BACKEND_ERROR, "cannot read the ed25519 public key");
        return NULL;
    }
    static const char type[] = "ssh-ed25519";
    unsigned char blob[4 + sizeof type - 1 + 4 + ED25519_KEY_BYTES];
    put_u32(blob, sizeof type - 1);
    memcpy(blob + 4, type, sizeof type - 1);
    put_u32(blob + 4 + sizeof type - 1, ED25519_KEY_BYTES);
    memcpy(blob + 8 + sizeof type - 1, raw, ED25519_KEY_BYTES);
    unsigned char encoded[4 * ((sizeof blob + 2) / 3) + 1];
    EVP_EncodeBlock(encoded, blob, (int)sizeof blob);
    char *line = str_printf("%s %s %s", type, (const char *)encoded, comment);
    if (line == NULL)
        shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return line;
}

static EVP_PKEY *read_private_key(const char *path, struct shed_err *err)
{
    cleanup_fclose FILE *file = fopen(path, "re");
    if (file == NULL) {
        shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        shed_errf(err, SHED_E_IO, "%s is not an ed25519 private key in PEM format", path);
        return NULL;
    }
    return key;
}

static EVP_PKEY *generate_private_key(const char *path, struct shed_err *err)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL) {
        shed_errf(err, SHED_E_BACKEND_ERROR, "cannot generate an ed25519 key");
        return NULL;
    }
    BIO *memory = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len = 0;
    if (memory == NULL || PEM_write_bio_PrivateKey(memory, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (pem_len = BIO_get_mem_data(memory, &pem)) <= 0) {
        BIO_free(memory);
        EVP_PKEY_free(key);
        shed_errf(err, SHED_E_BACKEND_ERROR, "cannot encode the ed25519 host key");
        return NULL;
    }
    int rc = fs_write_file_atomic(path, pem, (size_t)pem_len, 0600, err);
    BIO_free(memory);
    if (rc < 0) {
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

char *host_key_private_path(const char *data_dir)
{
    return fs_path_join(data_dir, HOST_KEY_FILE);
}

int host_key_load_or_create(const char *data_dir, const char *comment, char **public_key,
                            struct shed_err *err)
{
    cleanup_free char *path = host_key_private_path(data_dir);
    cleanup_free char *pub_path = str_printf("%s/" HOST_KEY_FILE ".pub", data_dir);
    if (path == NULL || pub_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    /* The private key is the truth; the .pub is derived from it every start. */
    EVP_PKEY *key = fs_exists(path) ? read_private_key(path, err) : generate_private_key(path, err);
    if (key == NULL)
        return shed_err_prefix(err, "SSH host key");
    cleanup_free char *line = openssh_public_line(key, comment, err);
    EVP_PKEY_free(key);
    if (line == NULL)
        return -1;
    cleanup_free char *file_text = str_printf("%s\n", line);
    if (file_text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_write_file_atomic(pub_path, file_text, strlen(file_text), 0600, err) < 0)
        return -1;
    *public_key = steal_pointer(&line);
    return 0;
}

/* ---- the OpenSSH private key container (PROTOCOL.key of OpenSSH) ----------------------- */

/* A bounded byte buffer for the container; wiped when freed (it holds the secret). */
struct wire {
    unsigned char data[512];
    size_t len;
    bool overflow;
};

static void wire_bytes(struct wire *w, const void *bytes, size_t len)
{
    if (w->overflow || len > sizeof w->data - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->data + w->len, bytes, len);
    w->len += len;
}

static void wire_u32(struct wire *w, uint32_t value)
{
    unsigned char raw[4];
    put_u32(raw, value);
    wire_bytes(w, raw, 4);
}

static void wire_string(struct wire *w, const void *bytes, size_t len)
{
    wire_u32(w, (uint32_t)len);
    wire_bytes(w, bytes, len);
}

static void wire_cstring(struct wire *w, const char *text)
{
    wire_string(w, text, strlen(text));
}

/* The container of one unencrypted ed25519 key: public blob, then the private section
 * (check ints, type, public key, seed+public, comment, padding to 8 bytes). */
static void openssh_container(struct wire *w, const unsigned char seed[ED25519_KEY_BYTES],
                              const unsigned char pub[ED25519_KEY_BYTES], uint32_t check)
{
    struct wire public_blob = {.len = 0};
    wire_cstring(&public_blob, "ssh-ed25519");
    wire_string(&public_blob, pub, ED25519_KEY_BYTES);
    struct wire secret = {.len = 0};
    wire_u32(&secret, check);
    wire_u32(&secret, check);
    wire_cstring(&secret, "ssh-ed25519");
    wire_string(&secret, pub, ED25519_KEY_BYTES);
    wire_u32(&secret, 2 * ED25519_KEY_BYTES);
    wire_bytes(&secret, seed, ED25519_KEY_BYTES);
    wire_bytes(&secret, pub, ED25519_KEY_BYTES);
    wire_cstring(&secret, "");
    for (unsigned char pad = 1; secret.len % 8 != 0; pad++)
        wire_bytes(&secret, &pad, 1);
    wire_bytes(w, "openssh-key-v1", sizeof "openssh-key-v1"); /* with its NUL */
    wire_cstring(w, "none");
    wire_cstring(w, "none");
    wire_cstring(w, "");
    wire_u32(w, 1);
    wire_string(w, public_blob.data, public_blob.len);
    wire_string(w, secret.data, secret.len);
    w->overflow |= public_blob.overflow || secret.overflow;
    OPENSSL_cleanse(&secret, sizeof secret);
}

/* Base64 in lines of 70 between the armour lines, as ssh-keygen writes it. */
static char *armour(const struct wire *w)
{
    static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
    static const char end[] = "-----END OPENSSH PRIVATE KEY-----\n";
    unsigned char encoded[4 * ((sizeof w->data + 2) / 3) + 1];
    int encoded_len = EVP_EncodeBlock(encoded, w->data, (int)w->len);
    size_t lines = ((size_t)encoded_len + 69) / 70;
    size_t size = sizeof begin + (size_t)encoded_len + lines + sizeof end;
    char *text = malloc(size);
    if (text != NULL) {
        size_t at = (size_t)snprintf(text, size, "%s", begin);
        for (int i = 0; i < encoded_len; i += 70) {
            int chunk = encoded_len - i < 70 ? encoded_len - i : 70;
            at += (size_t)snprintf(text + at, size - at, "%.*s\n", chunk, (char *)encoded + i);
        }
        snprintf(text + at, size - at, "%s", end);
    }
    OPENSSL_cleanse(encoded, sizeof encoded);
    return text;
}

int host_key_openssh_private(const char *data_dir, char **text, struct shed_err *err)
{
    cleanup_free char *path = host_key_private_path(data_dir);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    EVP_PKEY *key = read_private_key(path, err);
    if (key == NULL)
        return shed_err_prefix(err, "SSH host key");
    unsigned char seed[ED25519_KEY_BYTES], pub[ED25519_KEY_BYTES];
    size_t seed_len = sizeof seed, pub_len = sizeof pub;
    uint32_t check = 0;
    int ok = EVP_PKEY_get_raw_private_key(key, seed, &seed_len) == 1 &&
             EVP_PKEY_get_raw_public_key(key, pub, &pub_len) == 1 && seed_len == sizeof seed &&
             pub_len == sizeof pub;
    EVP_PKEY_free(key);
    struct wire container = {.len = 0};
    if (ok) {
        memcpy(&check, pub, sizeof check); /* any value; both copies must agree */
        openssh_container(&container, seed, pub, check);
    }
    OPENSSL_cleanse(seed, sizeof seed);
    char *armoured = ok && !container.overflow ? armour(&container) : NULL;
    OPENSSL_cleanse(&container, sizeof container);
    if (!ok)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot read the raw ed25519 host key");
    if (armoured == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    *text = armoured;
    return 0;
}

void host_key_secret_free(char *text)
{
    if (text == NULL)
        return;
    OPENSSL_cleanse(text, strlen(text));
    free(text);
}
