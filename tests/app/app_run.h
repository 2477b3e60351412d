/* Running the built `sinter` binary from a test: fork/exec with stdout and stderr
 * sent to files, the exit code (128+signal when killed) and the child's peak RSS. */
#ifndef SN_APP_RUN_H
#define SN_APP_RUN_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The whole file as a string ("" when it cannot be read); the caller frees it. */
__attribute__((unused)) static char *app_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    return s;
}

/* Runs SN_BINARY_DIR/sinter with args (NULL-terminated). Returns its exit code, or -1
 * when the binary is not built. maxrss_kb (may be NULL) gets the child's peak RSS. */
__attribute__((unused)) static int app_run_sinter(const char *const *args, const char *out_path,
                                                  const char *err_path, long *maxrss_kb) {
    char bin[600];
    snprintf(bin, sizeof bin, "%s/sinter", SN_BINARY_DIR);
    if (access(bin, X_OK) != 0) return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (; *args && n < 63; args++) argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &status, 0, &ru);
    if (maxrss_kb) *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#endif
