/* Fuzz target: the server.yaml loader. Any bytes are parsed as a config; one that parses is
 * printed (config check's output) and must parse back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static FILE *sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* ~/ paths expand against HOME; keep them independent of the machine. */
    setenv("HOME", "/home/fuzz", 1);
    sink = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shed_config config;
    struct shed_err err = {0};
    if (shed_config_parse((const char *)data, size, "fuzz.yaml", &config, &err) < 0) {
        if (err.code != SHED_E_CONFIG && err.code != SHED_E_NO_MEMORY)
            abort(); /* a refusal is always a config error */
        return 0;
    }
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *out = open_memstream(&printed, &printed_len);
    if (out != NULL) {
        shed_config_print(&config, out);
        fclose(out);
        struct shed_config again;
        struct shed_err again_err = {0};
        /* What config check prints reads back as a configuration. */
        if (shed_config_parse(printed, printed_len, "printed.yaml", &again, &again_err) < 0) {
            fprintf(stderr, "printed config does not parse back: %s\n%s", again_err.msg, printed);
            abort();
        }
        shed_config_free(&again);
        free(printed);
    }
    if (sink != NULL)
        shed_config_print(&config, sink);
    shed_config_free(&config);
    return 0;
}
