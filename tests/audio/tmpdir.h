/* A private temp directory per test process, removed at exit. */
#ifndef SN_TEST_TMPDIR_H
#define SN_TEST_TMPDIR_H
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmpdir[256];

static void tmpdir_cleanup(void) {
    if (!g_tmpdir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
}

static const char *tmpdir(void) {
    if (!g_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/sn_audio_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(g_tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(tmpdir_cleanup);
    }
    return g_tmpdir;
}

static const char *tmppath(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", tmpdir(), name);
    return buf;
}

static inline void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        perror(path);
        exit(1);
    }
    fclose(f);
}
#endif
