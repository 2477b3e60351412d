/* Datasets and the loader: determinism across thread counts, mixing levels,
 * validation sets, and bad input (each a clear error naming the file). */
#define _DEFAULT_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sinter/audio.h"
#include "sinter/data.h"

static char g_root[512];

static void mkdirs(const char *p) {
    char b[1024];
    snprintf(b, sizeof b, "%s", p);
    for (char *q = b + 1; *q; q++)
        if (*q == '/') { *q = 0; mkdir(b, 0755); *q = '/'; }
    mkdir(b, 0755);
}

static void path(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%s", g_root, rel); }

/* speech-ish test signal: an amplitude-modulated harmonic tone with pauses */
static void write_speech(const char *rel, double secs, int rate, unsigned seed) {
    char p[1024];
    path(p, sizeof p, rel);
    char d[1024];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = 0;
    mkdirs(d);
    int64_t n = (int64_t)(secs * rate);
    float *x = malloc((size_t)n * sizeof *x);
    double f0 = 100 + 20 * (seed % 7);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / rate;
        double env = fmax(0, sin(2 * M_PI * 3.0 * t + seed));
        double v = 0;
        for (int h = 1; h < 8; h++) v += sin(2 * M_PI * f0 * h * t) / h;
        x[i] = (float)(0.2 * env * v);
    }
    assert_int_equal(sn_audio_write(p, x, n, 1, rate, 0), SN_OK);
    free(x);
}

static void write_noise(const char *rel, double secs, unsigned seed) {
    char p[1024];
    path(p, sizeof p, rel);
    char d[1024];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = 0;
    mkdirs(d);
    int64_t n = (int64_t)(secs * 16000);
    float *x = malloc((size_t)n * sizeof *x);
    uint64_t k = sn_rng_key(seed, 0, 0, 0);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(0.1 * (sn_rng_uniform(k, (uint64_t)i) - 0.5));
    assert_int_equal(sn_audio_write(p, x, n, 1, 16000, 0), SN_OK);
    free(x);
}

static void write_text(const char *rel, const char *text) {
    char p[1024];
    path(p, sizeof p, rel);
    char d[1024];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = 0;
    mkdirs(d);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_corpus(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/sn_test_data_XXXXXX");
    assert_non_null(mkdtemp(g_root));
    for (unsigned i = 0; i < 7; i++) {
        char r[64];
        snprintf(r, sizeof r, "mix/clean/%s/utt%u.wav", i % 2 ? "spk1" : "spk2", i);
        write_speech(r, 1.5 + 0.4 * i, 16000, i);
    }
    write_speech("mix/clean/utt_44k.wav", 2.0, 22050, 9); /* resampled on load */
    write_speech("mix/clean/short.wav", 0.5, 16000, 11);  /* shorter than a segment: padded */
    write_noise("mix/noise/n0.wav", 3.0, 1);
    write_noise("mix/noise/sub/n1.wav", 0.3, 2); /* shorter than a segment: looped */
    write_noise("mix/noise/n2.wav", 2.0, 3);
    for (unsigned i = 0; i < 5; i++) {
        char r[64];
        snprintf(r, sizeof r, "pair/clean/p%u.wav", i);
        write_speech(r, 1.2 + 0.1 * i, 16000, i);
        snprintf(r, sizeof r, "pair/noisy/p%u.wav", i);
        write_noise(r, 1.2 + 0.1 * i, 10 + i);
    }
    return 0;
}

static int teardown_corpus(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (strncmp(g_root, "/tmp/sn_test_data_", 18) == 0 && system(cmd) != 0) return 0;
    return 0;
}

static void mix_config(sn_data_config *c, char *cd, char *nd) {
    sn_data_config_default(c);
    path(cd, 1024, "mix/clean");
    path(nd, 1024, "mix/noise");
    c->clean_dir = cd;
    c->noise_dir = nd;
    c->segment_seconds = 1.0;
    c->seed = 1234;
}

/* every batch of two epochs, as one flat float array */
static float *all_batches(sn_dataset *ds, int workers, int B, size_t *nfloat, int epochs) {
    sn_loader_config lc;
    sn_loader_config_default(&lc);
    lc.batch_size = B;
    lc.num_workers = workers;
    sn_loader *l = NULL;
    assert_int_equal(sn_loader_new(ds, &lc, &l), SN_OK);
    int64_t steps = sn_loader_steps(l);
    sn_batch *b = NULL;
    float *acc = NULL;
    size_t n = 0;
    for (int e = 0; e < epochs; e++) {
        assert_int_equal(sn_loader_start_epoch(l, (uint64_t)e), SN_OK);
        for (int64_t s = 0; s < steps; s++) {
            assert_int_equal(sn_loader_next(l, &b), SN_OK);
            assert_non_null(b);
            assert_int_equal(b->step, s);
            size_t spec = (size_t)b->batch * b->frames * b->bins, wav = (size_t)b->batch * b->samples;
            acc = realloc(acc, (n + 3 * spec + 2 * wav) * sizeof *acc);
            memcpy(acc + n, b->noisy_mag, spec * 4); n += spec;
            memcpy(acc + n, b->clean_mag, spec * 4); n += spec;
            memcpy(acc + n, b->noisy_phase, spec * 4); n += spec;
            memcpy(acc + n, b->noisy, wav * 4); n += wav;
            memcpy(acc + n, b->clean, wav * 4); n += wav;
            sn_loader_release(l, b);
        }
        assert_int_equal(sn_loader_next(l, &b), SN_OK);
        assert_null(b); /* end of epoch */
    }
    sn_loader_stats st;
    sn_loader_get_stats(l, &st);
    assert_int_equal(st.batches, steps * epochs);
    assert_true(st.wait_total_s >= 0 && st.wait_mean_s <= st.wait_max_s + 1e-12);
    sn_loader_free(l);
    *nfloat = n;
    return acc;
}

static void test_determinism_across_workers(void **state) {
    (void)state;
    for (int cached = 1; cached >= 0; cached--) {
        char cd[1024], nd[1024];
        sn_data_config c;
        mix_config(&c, cd, nd);
        c.cache_mb = cached ? 64 : 0; /* 0: every read streams from disk */
        sn_dataset *tr = NULL;
        assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
        assert_int_equal(sn_dataset_len(tr), 9);
        size_t n0, n;
        float *ref = all_batches(tr, 0, 2, &n0, 2);
        for (int w = 1; w <= 4; w++) {
            float *got = all_batches(tr, w, 2, &n, 2);
            assert_int_equal(n, n0);
            assert_memory_equal(ref, got, n * sizeof *ref);
            free(got);
        }
        /* reopening gives the same data too */
        sn_dataset *tr2 = NULL;
        assert_int_equal(sn_dataset_open(&c, &tr2, NULL), SN_OK);
        float *again = all_batches(tr2, 3, 2, &n, 2);
        assert_memory_equal(ref, again, n * sizeof *ref);
        free(again);
        sn_dataset_free(tr2);
        free(ref);
        sn_dataset_free(tr);
    }
}

static void test_epochs_differ_and_items(void **state) {
    (void)state;
    char cd[1024], nd[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    c.snr_db[0] = c.snr_db[1] = 5.0;
    c.gain_db[0] = c.gain_db[1] = 0.0;
    sn_dataset *tr = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    int64_t N = sn_dataset_samples(tr);
    assert_int_equal(N, 16000);
    float *a = malloc(N * 4), *b = malloc(N * 4), *a2 = malloc(N * 4), *b2 = malloc(N * 4);
    int differ = 0;
    for (int64_t i = 0; i < sn_dataset_len(tr); i++) {
        assert_int_equal(sn_dataset_get(tr, 0, i, a, b), SN_OK);
        assert_int_equal(sn_dataset_get(tr, 1, i, a2, b2), SN_OK);
        if (memcmp(a, a2, N * 4)) differ++;
        float peak = 0;
        double pn = 0;
        for (int64_t k = 0; k < N; k++) {
            peak = fmaxf(peak, fmaxf(fabsf(a[k]), fabsf(b[k])));
            double d = (double)a[k] - b[k];
            pn += d * d;
        }
        assert_true(peak <= 0.99f + 1e-6f);
        /* SNR by active speech level: exactly the drawn 5 dB unless the
         * segment fell into a pause (then the file level is used) */
        double lev = sn_active_level(b, N, 16000);
        if (lev > -99) {
            double snr = lev - 10 * log10(pn / N);
            if (getenv("SN_VERBOSE")) printf("    item %lld snr %.3f\n", (long long)i, snr);
            assert_true(fabs(snr - 5.0) < 0.05);
        }
    }
    assert_true(differ >= sn_dataset_len(tr) - 1);
    free(a); free(b); free(a2); free(b2);
    sn_dataset_free(tr);
}

static void test_valid_fraction_fixed(void **state) {
    (void)state;
    char cd[1024], nd[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    c.valid_fraction = 0.25;
    sn_dataset *tr = NULL, *va = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, &va), SN_OK);
    assert_non_null(va);
    assert_int_equal(sn_dataset_len(tr) + sn_dataset_len(va), 9);
    assert_int_equal(sn_dataset_len(va), 2);
    assert_true(sn_dataset_is_fixed(va));
    int64_t N = sn_dataset_samples(va);
    float *a = malloc(N * 4), *b = malloc(N * 4), *a2 = malloc(N * 4), *b2 = malloc(N * 4);
    assert_int_equal(sn_dataset_get(va, 0, 1, a, b), SN_OK);
    assert_int_equal(sn_dataset_get(va, 7, 1, a2, b2), SN_OK);
    assert_memory_equal(a, a2, N * 4);
    /* the held-out files do not depend on the training seed */
    c.seed = 99;
    sn_dataset *tr2 = NULL, *va2 = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr2, &va2), SN_OK);
    assert_int_equal(sn_dataset_get(va2, 3, 1, a2, b2), SN_OK);
    assert_memory_equal(a, a2, N * 4);
    /* loader over the valid set: all items, last batch padded */
    sn_loader_config lc;
    sn_loader_config_default(&lc);
    lc.batch_size = 3;
    lc.drop_last = 0;
    lc.num_workers = 1;
    sn_loader *l = NULL;
    assert_int_equal(sn_loader_new(va, &lc, &l), SN_OK);
    assert_int_equal(sn_loader_steps(l), 1);
    sn_batch *bt;
    assert_int_equal(sn_loader_next(l, &bt), SN_OK);
    assert_int_equal(bt->n_valid, 2);
    sn_loader_release(l, bt);
    sn_loader_free(l);
    free(a); free(b); free(a2); free(b2);
    sn_dataset_free(tr); sn_dataset_free(va); sn_dataset_free(tr2); sn_dataset_free(va2);
}

static void test_valid_dir_and_pairs(void **state) {
    (void)state;
    char cd[1024], nd[1024], vd[1024], pc[1024], pn[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    path(vd, sizeof vd, "pair"); /* clean/ + noisy/ -> paired validation */
    c.valid_dir = vd;
    sn_dataset *tr = NULL, *va = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, &va), SN_OK);
    assert_int_equal(sn_dataset_len(va), 5);
    sn_dataset_free(tr); sn_dataset_free(va);
    /* paired training set */
    sn_data_config_default(&c);
    path(pc, sizeof pc, "pair/clean");
    path(pn, sizeof pn, "pair/noisy");
    c.clean_dir = pc;
    c.noisy_dir = pn;
    c.segment_seconds = 1.0;
    c.gain_db[0] = c.gain_db[1] = 0;
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    assert_int_equal(sn_dataset_len(tr), 5);
    size_t n0, n;
    float *r0 = all_batches(tr, 0, 2, &n0, 1), *r2 = all_batches(tr, 2, 2, &n, 1);
    assert_memory_equal(r0, r2, n * 4);
    free(r0); free(r2);
    sn_dataset_free(tr);
    /* held-out pairs */
    c.valid_fraction = 0.4;
    assert_int_equal(sn_dataset_open(&c, &tr, &va), SN_OK);
    assert_int_equal(sn_dataset_len(tr), 3);
    assert_int_equal(sn_dataset_len(va), 2);
    float *a = malloc(16000 * 4), *b = malloc(16000 * 4);
    assert_int_equal(sn_dataset_get(va, 0, 1, a, b), SN_OK);
    sn_dataset_free(tr); sn_dataset_free(va);
    free(a); free(b);
}

static void test_list_file(void **state) {
    (void)state;
    write_text("lists/mix.csv", "# a comment\nclean,noise\n../mix/clean/spk1/utt1.wav,../mix/noise/n0.wav\n"
                                "\"../mix/clean/spk2/utt2.wav\",../mix/noise/n2.wav\r\n../mix/clean/spk1/utt3.wav,../mix/noise/n0.wav\n");
    write_text("lists/pairs.csv", "clean,noisy\n../pair/clean/p0.wav,../pair/noisy/p0.wav\n../pair/clean/p1.wav,../pair/noisy/p1.wav\n");
    char lp[1024];
    sn_data_config c;
    sn_data_config_default(&c);
    c.segment_seconds = 1.0;
    path(lp, sizeof lp, "lists/mix.csv");
    c.list_file = lp;
    sn_dataset *tr = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    assert_int_equal(sn_dataset_len(tr), 3);
    sn_dataset_free(tr);
    path(lp, sizeof lp, "lists/pairs.csv");
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    assert_int_equal(sn_dataset_len(tr), 2);
    sn_dataset_free(tr);
}

static void test_listfile_parse(void **state) {
    (void)state;
    sn_listfile lf;
    const char *t = "\xEF\xBB\xBF" "clean,noisy\n a.wav , \"b,c.wav\"\n\n# x\n/abs/c.wav,\"q\"\"x.wav\"";
    assert_int_equal(sn_listfile_parse(t, strlen(t), "/base", "t.csv", &lf), SN_OK);
    assert_int_equal(lf.kind, SN_LIST_NOISY);
    assert_int_equal(lf.n, 2);
    assert_string_equal(lf.first[0], "/base/a.wav");
    assert_string_equal(lf.second[0], "/base/b,c.wav");
    assert_string_equal(lf.first[1], "/abs/c.wav");
    assert_string_equal(lf.second[1], "/base/q\"x.wav");
    assert_int_equal(lf.line[1], 5);
    sn_listfile_free(&lf);
    struct { const char *text, *want; } bad[] = {
        {"", "empty list file"},
        {"clean,noise\n", "no rows"},
        {"path,other\na,b\n", "row 1: the first row must be the header"},
        {"clean,noise\na.wav,b.wav\nc.wav\n", "row 3: 1 columns, expected 2"},
        {"clean,noise\na.wav,b.wav,c.wav\n", "row 2: 3 columns"},
        {"clean,noise\na.wav,\n", "row 2: empty noise path"},
        {"clean,noisy\n,b.wav\n", "row 2: empty clean path"},
        {"clean,noise\n\"a.wav,b.wav\n", "row 2: unterminated"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sn_listfile_parse(bad[i].text, strlen(bad[i].text), "", "x.csv", &lf), SN_ERR_FORMAT);
        if (!strstr(sn_last_error(), bad[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, sn_last_error(), bad[i].want);
        assert_non_null(strstr(sn_last_error(), "x.csv"));
    }
}

/* ---- bad input ---- */

static void expect_open_error(sn_data_config *c, const char *want1, const char *want2) {
    sn_dataset *tr = (sn_dataset *)1, *va = NULL;
    sn_status st = sn_dataset_open(c, &tr, &va);
    assert_int_not_equal(st, SN_OK);
    assert_null(tr);
    if (getenv("SN_VERBOSE")) printf("    error: %s\n", sn_last_error());
    if (!strstr(sn_last_error(), want1) || (want2 && !strstr(sn_last_error(), want2)))
        fail_msg("error '%s' lacks '%s' / '%s'", sn_last_error(), want1, want2 ? want2 : "");
}

static void test_bad_dirs(void **state) {
    (void)state;
    char cd[1024], nd[1024], p[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    path(p, sizeof p, "does/not/exist");
    c.clean_dir = p;
    expect_open_error(&c, "does not exist", "does/not/exist");
    path(p, sizeof p, "emptydir");
    mkdirs(p);
    expect_open_error(&c, "is empty", "emptydir");
    write_text("textonly/readme.txt", "hello");
    path(p, sizeof p, "textonly");
    expect_open_error(&c, "but no audio", "textonly");
    mix_config(&c, cd, nd);
    c.noise_dir = p;
    expect_open_error(&c, "data.noise_dir", "textonly");
}

static void test_unmatched_pairs(void **state) {
    (void)state;
    write_speech("unm/clean/a.wav", 0.5, 16000, 1);
    write_speech("unm/clean/b.wav", 0.5, 16000, 1);
    write_speech("unm/clean/only_clean.wav", 0.5, 16000, 1);
    write_noise("unm/noisy/a.wav", 0.5, 1);
    write_noise("unm/noisy/b.flac", 0.5, 1); /* extension ignored */
    write_noise("unm/noisy/only_noisy.wav", 0.5, 1);
    char pc[1024], pn[1024];
    sn_data_config c;
    sn_data_config_default(&c);
    path(pc, sizeof pc, "unm/clean");
    path(pn, sizeof pn, "unm/noisy");
    c.clean_dir = pc;
    c.noisy_dir = pn;
    expect_open_error(&c, "'only_clean'", "'only_noisy'");
    assert_null(strstr(sn_last_error(), "'b'"));
}

static void test_bad_list_rows(void **state) {
    (void)state;
    char lp[1024];
    sn_data_config c;
    sn_data_config_default(&c);
    c.list_file = lp;
    write_text("badlist/cols.csv", "clean,noise\n../mix/noise/n0.wav,../mix/noise/n0.wav\nonly_one\n");
    path(lp, sizeof lp, "badlist/cols.csv");
    expect_open_error(&c, "row 3", "columns");
    write_text("badlist/missing.csv", "clean,noise\n../mix/noise/n0.wav,../mix/noise/n0.wav\n\nnope.wav,../mix/noise/n0.wav\n");
    path(lp, sizeof lp, "badlist/missing.csv");
    expect_open_error(&c, "row 4", "nope.wav");
    write_text("badlist/empty.csv", "clean,noisy\n  ,../mix/noise/n0.wav\n");
    path(lp, sizeof lp, "badlist/empty.csv");
    expect_open_error(&c, "row 2", "empty clean path");
    path(lp, sizeof lp, "badlist/nonexistent.csv");
    expect_open_error(&c, "cannot open list file", "nonexistent.csv");
}

static int g_warned;
static char g_warn[1024];
static void capture_log(int level, const char *msg, void *user) {
    (void)user;
    if (level == SN_LOG_WARN) {
        g_warned++;
        snprintf(g_warn, sizeof g_warn, "%s", msg);
    }
}

static void test_silent_clean_skipped(void **state) {
    (void)state;
    write_speech("sil/clean/ok.wav", 1.5, 16000, 3);
    char p[1024];
    path(p, sizeof p, "sil/clean/silent.wav");
    float *z = calloc(16000, 4);
    assert_int_equal(sn_audio_write(p, z, 16000, 1, 16000, 0), SN_OK);
    char cd[1024], nd[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    path(cd, sizeof cd, "sil/clean");
    g_warned = 0;
    sn_set_log(capture_log, NULL, SN_LOG_WARN);
    sn_dataset *tr = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    sn_set_log(NULL, NULL, SN_LOG_WARN);
    assert_int_equal(g_warned, 1);
    assert_non_null(strstr(g_warn, "silent.wav"));
    assert_int_equal(sn_dataset_len(tr), 1);
    float *a = malloc(16000 * 4), *b = malloc(16000 * 4);
    assert_int_equal(sn_dataset_get(tr, 0, 0, a, b), SN_OK);
    for (int i = 0; i < 16000; i++) assert_true(isfinite(a[i]));
    free(a); free(b);
    sn_dataset_free(tr);
    /* only silent files: an error, not an empty dataset */
    path(p, sizeof p, "sil2/clean/silent.wav");
    mkdirs(strcat(strcpy(cd, g_root), "/sil2/clean"));
    assert_int_equal(sn_audio_write(p, z, 16000, 1, 16000, 0), SN_OK);
    sn_set_log(capture_log, NULL, SN_LOG_WARN);
    expect_open_error(&c, "silent", "sil2/clean");
    sn_set_log(NULL, NULL, SN_LOG_WARN);
    free(z);
}

static void test_corrupt_audio(void **state) {
    (void)state;
    write_speech("corrupt/clean/good.wav", 1.0, 16000, 1);
    write_text("corrupt/clean/broken.wav", "RIFF\x10\x00\x00\x00WAVEjunkjunkjunkjunk");
    char cd[1024], nd[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    path(cd, sizeof cd, "corrupt/clean");
    expect_open_error(&c, "broken.wav", NULL);
}

static int g_allocs, g_frees;
static void *count_alloc(size_t n, void *user) {
    (*(int *)user)++;
    g_allocs++;
    return malloc(n);
}
static void count_free(void *p, void *user) {
    (void)user;
    g_frees++;
    free(p);
}

static void test_loader_shutdown_and_alloc(void **state) {
    (void)state;
    char cd[1024], nd[1024];
    sn_data_config c;
    mix_config(&c, cd, nd);
    sn_dataset *tr = NULL;
    assert_int_equal(sn_dataset_open(&c, &tr, NULL), SN_OK);
    for (int w = 0; w <= 3; w++) {
        int calls = 0;
        g_allocs = g_frees = 0;
        sn_loader_config lc;
        sn_loader_config_default(&lc);
        lc.batch_size = 2;
        lc.num_workers = w;
        lc.alloc = count_alloc;
        lc.free = count_free;
        lc.alloc_user = &calls;
        sn_loader *l = NULL;
        assert_int_equal(sn_loader_new(tr, &lc, &l), SN_OK);
        assert_true(calls >= 2);
        sn_batch *b = NULL;
        assert_int_equal(sn_loader_next(l, &b), SN_OK); /* epoch 0 starts by itself */
        assert_non_null(b);
        assert_int_equal(b->frames, 1 + (16000 - 320) / 160);
        assert_int_equal(b->bins, 161);
        /* restart mid-epoch while holding a batch, then stop mid-epoch */
        assert_int_equal(sn_loader_start_epoch(l, 5), SN_OK);
        sn_batch *b2 = NULL;
        assert_int_equal(sn_loader_next(l, &b2), SN_OK);
        assert_int_equal(b2->epoch, 5);
        assert_int_equal(b2->step, 0);
        sn_loader_release(l, b);
        sn_loader_free(l); /* b2 still out: freed with the loader */
        assert_int_equal(g_allocs, g_frees);
    }
    /* holding every buffer is a clear error, not a hang */
    sn_loader_config lc;
    sn_loader_config_default(&lc);
    lc.batch_size = 1;
    lc.num_workers = 1;
    lc.prefetch = 2;
    sn_loader *l = NULL;
    assert_int_equal(sn_loader_new(tr, &lc, &l), SN_OK);
    sn_batch *x, *y, *z;
    assert_int_equal(sn_loader_next(l, &x), SN_OK);
    assert_int_equal(sn_loader_next(l, &y), SN_OK);
    assert_int_equal(sn_loader_next(l, &z), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "release"));
    sn_loader_free(l);
    /* batch bigger than the dataset */
    lc.batch_size = 100;
    assert_int_equal(sn_loader_new(tr, &lc, &l), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "batch_size"));
    sn_dataset_free(tr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listfile_parse),
        cmocka_unit_test(test_determinism_across_workers),
        cmocka_unit_test(test_epochs_differ_and_items),
        cmocka_unit_test(test_valid_fraction_fixed),
        cmocka_unit_test(test_valid_dir_and_pairs),
        cmocka_unit_test(test_list_file),
        cmocka_unit_test(test_bad_dirs),
        cmocka_unit_test(test_unmatched_pairs),
        cmocka_unit_test(test_bad_list_rows),
        cmocka_unit_test(test_silent_clean_skipped),
        cmocka_unit_test(test_corrupt_audio),
        cmocka_unit_test(test_loader_shutdown_and_alloc),
    };
    return cmocka_run_group_tests(tests, setup_corpus, teardown_corpus);
}
