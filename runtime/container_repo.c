/* The shed's repo: cloned on the host, into the mounted rootfs, before the shed starts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "container_internal.h"

/* git's output kept for the error message. */
#define GIT_OUTPUT_MAX 2048

char *container_repo_url(const char *repo)
{
    bool shorthand = strstr(repo, "://") == NULL && strchr(repo, '@') == NULL &&
                     strchr(repo, ':') == NULL && repo[0] != '/' && strchr(repo, '/') != NULL;
    if (shorthand)
        return str_printf("https://github.com/%s.git", repo);
    return strdup(repo);
}

/* The image decides what /workspace is. A symlink would make git (running as root on the
 * host) write wherever it points on the host, so only a real directory or nothing will do. */
static int check_workspace(const char *workspace, struct shed_err *err)
{
    struct stat st;
    if (lstat(workspace, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "%s", workspace);
    }
    if (!S_ISDIR(st.st_mode))
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "the image's /workspace is not a directory (symlink or file): cannot "
                         "clone the repo into it");
    return 0;
}

/* The first line of git's complaint, for a one-line error message. */
static const char *first_error_line(char *output)
{
    char *fatal = strstr(output, "fatal:");
    char *line = fatal != NULL ? fatal : output;
    line[strcspn(line, "\n")] = '\0';
    return line;
}

int container_clone_repo(const char *rootfs, const char *repo, struct shed_err *err)
{
    cleanup_free char *url = container_repo_url(repo);
    cleanup_free char *workspace = fs_path_join(rootfs, "workspace");
    if (url == NULL || workspace == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (check_workspace(workspace, err) < 0)
        return -1;
    /* No credential prompts (there is no terminal; set through env(1) because changing
     * our own environment is not thread-safe), no hooks, and "--" so a URL can never be
     * taken for an option. */
    const char *const argv[] = {"env",
                                "GIT_TERMINAL_PROMPT=0",
                                "git",
                                "-c",
                                "core.hooksPath=/dev/null",
                                "clone",
                                "--quiet",
                                "--",
                                url,
                                workspace,
                                NULL};
    int status = 0;
    cleanup_free char *output = NULL;
    if (container_run_capture(argv, &status, &output, GIT_OUTPUT_MAX, err) < 0)
        return shed_err_prefix(err, "cannot clone %s", url);
    if (status != 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "git clone %s failed (exit %d): %s", url,
                         status, first_error_line(output));
    return 0;
}
