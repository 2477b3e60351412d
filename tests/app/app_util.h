/* Shared by the tests of src/train: a private temp dir, a tiny generated
 * corpus and a tiny config (fast on 2 cores). */
#ifndef SN_APP_UTIL_H
#define SN_APP_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sinter/config.h"
#include "sinter/data.h"
#include "sinter/train.h"

static char g_app_tmp[256];

static void app_tmp_cleanup(void) {
    if (!g_app_tmp[0] || getenv("SN_KEEP_TMP")) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", g_app_tmp, g_app_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_app_tmp);
}

static inline const char *app_tmp(void) {
    if (!g_app_tmp[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_app_tmp, sizeof g_app_tmp, "%s/sn_app_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(g_app_tmp)) { perror("mkdtemp"); exit(1); }
        atexit(app_tmp_cleanup);
    }
    return g_app_tmp;
}

static inline const char *app_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", app_tmp(), name);
    return buf;
}

/* ~1 minute of synthetic speech: 12-ish clean files, noises, validation files. */
static inline const char *app_corpus(void) {
    static char dir[300];
    if (!dir[0]) {
        app_path(dir, sizeof dir, "corpus");
        sn_demo_options o = {0};
        o.force_synth = 1;
        if (sn_demo_corpus(dir, 1.0, 7, &o, NULL) != SN_OK) {
            fprintf(stderr, "demo corpus: %s\n", sn_last_error());
            exit(1);
        }
    }
    return dir;
}

/* A tiny CRN on the tiny corpus: channels [4,8,8,8,16], hidden 32, 0.5 s. */
static inline void app_config(sn_config *c) {
    sn_config_defaults(c);
    const char *d = app_corpus();
    snprintf(c->data.clean_dir, sizeof c->data.clean_dir, "%s/clean", d);
    snprintf(c->data.noise_dir, sizeof c->data.noise_dir, "%s/noise", d);
    snprintf(c->data.valid_dir, sizeof c->data.valid_dir, "%s/valid", d);
    snprintf(c->out_dir, sizeof c->out_dir, "%s/runs", app_tmp());
    snprintf(c->device, sizeof c->device, "cpu");
    c->data.segment_seconds = 0.5;
    c->train.batch_size = 4;
    c->train.num_workers = 2;
    c->train.epochs = 100;
    c->train.log_every = 1;
    c->train.valid_every = 0;
    c->train.ckpt_every = 0;
    c->train.audio_samples = 1;
    c->train.lr = 3e-3;
    c->model.hidden = 32;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(c->model.channels, ch, sizeof ch);
}

/* Loss column (3rd) of metrics.csv training rows. Returns the count. */
static inline int app_read_losses(const char *run_dir, double *loss, long long *step, int max) {
    char p[1200], line[1024];
    snprintf(p, sizeof p, "%s/metrics.csv", run_dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (!strncmp(line, "step", 4)) continue;
        char *a = strchr(line, ','), *b = a ? strchr(a + 1, ',') : NULL;
        if (!b || b[1] == ',') continue; /* validation row */
        step[n] = atoll(line);
        loss[n] = strtod(b + 1, NULL);
        n++;
    }
    fclose(f);
    return n;
}
#endif
