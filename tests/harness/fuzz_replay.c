/* The main of a fuzz target in the Release and Asan builds (the Fuzz build links libFuzzer's
 * instead): runs LLVMFuzzerTestOneInput once on every file of the corpus directories given,
 * so that every seed and every input that once found a bug is a regression test of both
 * builds. Exit status 0 when every input ran (a crash or a sanitizer report ends the run),
 * 1 when a directory cannot be read or is empty. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t capacity = 4096, size = 0;
    uint8_t *data = malloc(capacity);
    for (size_t n; data != NULL && (n = fread(data + size, 1, capacity - size, f)) > 0;) {
        size += n;
        if (size == capacity) {
            uint8_t *grown = realloc(data, capacity *= 2);
            if (grown == NULL)
                free(data);
            data = grown;
        }
    }
    fclose(f);
    if (data == NULL) {
        fprintf(stderr, "fuzz_replay: out of memory\n");
        return -1;
    }
    /* Exactly size bytes, as libFuzzer hands them: ASan sees a read past the end. */
    uint8_t *exact = malloc(size > 0 ? size : 1);
    if (exact == NULL) {
        free(data);
        return -1;
    }
    memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (grown == NULL || (grown[n] = strdup(e->d_name)) == NULL) {
            free(grown != NULL ? grown : names);
            closedir(d);
            return -1;
        }
        names = grown;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, compare);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    for (int i = 1; i < argc; i++)
        if (run_dir(argv[i], &count) < 0)
            return 1;
    printf("fuzz_replay: %zu inputs ran\n", count);
    return count > 0 ? 0 : 1;
}
