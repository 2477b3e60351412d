/* Shared by the tests that run the `sinter` binary on a tiny config: writing
 * a config file, running with stdout/stderr captured, checking both, and
 * reading a run directory back. Include after sn_test.h, app_util.h, app_run.h. */
#ifndef SN_APP_CLI_H
#define SN_APP_CLI_H

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "sinter/safetensors.h"

static char g_cli_out[400], g_cli_err[400];

/* cfg as a YAML file at tmp/name; returns its path (static buffer per call site: copy it). */
static inline const char *cli_write_conf(const sn_config *c, const char *name, char *path, size_t n) {
    app_path(path, n, name);
    char *yaml = NULL;
    SN_ASSERT_OK(sn_config_to_yaml(c, &yaml));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    fclose(f);
    free(yaml);
    return path;
}

static inline void cli_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs the binary (args NULL-terminated); stdout/stderr kept for cli_err_has. */
static inline int cli_run(const char *const *args) {
    app_path(g_cli_out, sizeof g_cli_out, "cli_stdout.txt");
    app_path(g_cli_err, sizeof g_cli_err, "cli_stderr.txt");
    int rc = app_run_sinter(args, g_cli_out, g_cli_err, NULL);
    if (rc < 0) fail_msg("the sinter binary is not built in %s", SN_BINARY_DIR);
    return rc;
}

/* Fails with the output when the exit code or a phrase of stderr (or stdout) differs. */
static inline void cli_expect(int rc, int want, const char *phrase) {
    char *e = app_slurp(g_cli_err), *o = app_slurp(g_cli_out);
    int ok = rc == want && (!phrase || strstr(e, phrase) || strstr(o, phrase));
    if (!ok) fail_msg("exit %d (want %d); want '%s' in the output\nstderr: %s\nstdout: %.2000s", rc, want,
                      phrase ? phrase : "", e, o);
    free(e);
    free(o);
}

static inline int cli_err_has(const char *phrase) {
    char *e = app_slurp(g_cli_err);
    int r = strstr(e, phrase) != NULL;
    free(e);
    return r;
}

static inline int cli_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in a folder, "." and ".." not counted (-1: no folder). */
static inline int cli_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Files whose name holds ".tmp" in dir and dir/samples. */
static inline int cli_count_tmp(const char *dir) {
    int n = 0;
    for (int k = 0; k < 2; k++) {
        char p[700];
        snprintf(p, sizeof p, k ? "%s/samples" : "%s", dir);
        DIR *d = opendir(p);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)))
            if (strstr(e->d_name, ".tmp")) n++;
        closedir(d);
    }
    return n;
}

/* The run's TensorBoard event file (the newest when several); 0 if none. */
static inline int cli_event_file(const char *dir, char *out, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    char best[300] = "";
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "events.out.tfevents.", 20) && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    if (!best[0]) return 0;
    snprintf(out, n, "%s/%s", dir, best);
    return 1;
}

/* Walks the TFRecord framing of an event file: the number of whole records,
 * or -1 when the file does not end on a record boundary (a torn record).
 * *session_start gets the step of the last SessionLog START event (-1: none). */
static inline int cli_event_records(const char *path, int64_t *session_start) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int n = 0;
    if (session_start) *session_start = -1;
    for (;;) {
        unsigned char hdr[12];
        size_t got = fread(hdr, 1, 12, f);
        if (got == 0) break;
        if (got != 12) { n = -1; break; }
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)hdr[i] << (8 * i);
        if (len > (1u << 26)) { n = -1; break; }
        unsigned char *data = malloc(len + 4);
        if (fread(data, 1, len + 4, f) != len + 4) { free(data); n = -1; break; }
        /* Event: field 2 step (varint), field 7 session_log */
        int64_t step = 0;
        int has_session = 0;
        for (uint64_t p = 0; p < len;) {
            uint64_t key = 0;
            for (int s = 0; p < len; s += 7) { key |= (uint64_t)(data[p] & 0x7f) << s; if (!(data[p++] & 0x80)) break; }
            int field = (int)(key >> 3), wire = (int)(key & 7);
            if (wire == 0) {
                uint64_t v = 0;
                for (int s = 0; p < len; s += 7) { v |= (uint64_t)(data[p] & 0x7f) << s; if (!(data[p++] & 0x80)) break; }
                if (field == 2) step = (int64_t)v;
            } else if (wire == 1) {
                p += 8;
            } else if (wire == 2) {
                uint64_t l = 0;
                for (int s = 0; p < len; s += 7) { l |= (uint64_t)(data[p] & 0x7f) << s; if (!(data[p++] & 0x80)) break; }
                if (field == 7) has_session = 1;
                p += l;
            } else if (wire == 5) {
                p += 4;
            } else {
                break;
            }
        }
        if (has_session && session_start) *session_start = step;
        free(data);
        n++;
    }
    fclose(f);
    return n;
}

/* The last byte of a file is '\n' (no line cut in the middle). */
static inline int cli_ends_with_newline(const char *path) {
    char *s = app_slurp(path);
    size_t n = strlen(s);
    int r = n > 0 && s[n - 1] == '\n';
    free(s);
    return r;
}

#endif
