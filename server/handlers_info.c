/* GET /api/info, GET /api/ssh-host-key, and the server's ed25519 host key. */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "handlers.h"

#define HOST_KEY_FILE "ssh_host_ed25519_key"
#define ED25519_KEY_BYTES 32

void handle_info(const struct api_request *request, const struct api_context *context,
                 struct api_response *response)
{
    (void)request;
    const struct shed_config *config = context->config;
    /* The backends this build runs, so a client can offer only those. */
    json_t *backends = json_array();
    for (size_t i = 0; backends != NULL && i < context->backends->count; i++)
        json_array_append_new(backends, json_string(context->backends->items[i]->name));
    api_respond_json(response, 200,
                     json_pack("{s:s, s:s, s:i, s:i, s:s, s:o*}", "name", config->name, "version",
                               SHED_VERSION, "ssh_port", config->ssh_port, "http_port",
                               (int)context->http_port, "backend", context->info_backend,
                               "backends", backends));
}

void handle_ssh_host_key(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)request;
    api_respond_json(response, 200, json_pack("{s:s}", "host_key", context->host_public_key));
}

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

int api_host_key_load_or_create(const char *data_dir, const char *comment, char **public_key,
                                struct shed_err *err)
{
    cleanup_free char *path = fs_path_join(data_dir, HOST_KEY_FILE);
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
