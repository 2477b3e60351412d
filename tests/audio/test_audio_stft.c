/* STFT/iSTFT against the float64 numpy reference (data/stft_ref.bin, made by
 * gen_stft_ref.py) and round-trip reconstruction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "sinter/audio.h"
#include "refdata.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif

static ref_file g_ref;

static int setup(void **state) {
    if (ref_load(SN_SOURCE_DIR "/tests/audio/data/stft_ref.bin", &g_ref) != 0) {
        fprintf(stderr, "cannot load %s/tests/audio/data/stft_ref.bin\n", SN_SOURCE_DIR);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    ref_free(&g_ref);
    return 0;
}

static const ref_array *need(const char *name) {
    const ref_array *r = ref_get(&g_ref, name);
    assert_non_null(r);
    return r;
}

/* max |a-b| relative to max |b| */
static double max_rel_err(const float *a, const float *b, long n) {
    double e = 0, m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > e) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / (m > 0 ? m : 1);
}

static void test_frames(void **state) {
    assert_int_equal(sn_stft_frames(0), 0);
    assert_int_equal(sn_stft_frames(319), 0);
    assert_int_equal(sn_stft_frames(320), 1);
    assert_int_equal(sn_stft_frames(479), 1);
    assert_int_equal(sn_stft_frames(480), 2);
    assert_int_equal(sn_stft_frames(16000), 99);
}

static void test_forward_matches_reference(void **state) {
    const ref_array *x = need("x"), *re = need("re"), *im = need("im"), *mag = need("mag");
    int64_t T = sn_stft_frames(x->count);
    assert_int_equal(T * SN_NBINS, re->count);
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    float *r = malloc(T * SN_NBINS * sizeof *r), *i = malloc(T * SN_NBINS * sizeof *i);
    float *m = malloc(T * SN_NBINS * sizeof *m), *p = malloc(T * SN_NBINS * sizeof *p);
    assert_int_equal(sn_stft_forward(s, x->v, x->count, r, i), SN_OK);
    double er = max_rel_err(r, re->v, re->count), ei = max_rel_err(i, im->v, im->count);
    assert_int_equal(sn_stft_mag_phase(s, x->v, x->count, m, p), SN_OK);
    double em = max_rel_err(m, mag->v, mag->count);
    printf("forward: max rel err re %.2e im %.2e mag %.2e\n", er, ei, em);
    assert_true(er < 1e-5 && ei < 1e-5 && em < 1e-5);
    /* phase: mag*cos(phase) reproduces re */
    for (long k = 0; k < re->count; k++) assert_true(fabs(m[k] * cosf(p[k]) - r[k]) < 1e-4);
    free(r), free(i), free(m), free(p);
    sn_stft_free(s);
}

static void test_istft_matches_reference(void **state) {
    const ref_array *x = need("x"), *yre = need("Yre"), *yim = need("Yim"), *y = need("istft");
    int64_t T = yre->count / SN_NBINS, n = x->count;
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    float *out = malloc(n * sizeof *out);
    assert_int_equal(sn_istft(s, yre->v, yim->v, T, out, n), SN_OK);
    double e = max_rel_err(out, y->v, n);
    printf("istft: max rel err %.2e\n", e);
    assert_true(e < 1e-5);
    /* samples past the last frame have no window: exactly 0, as in the reference */
    for (int64_t k = (T - 1) * SN_HOP + SN_NFFT; k < n; k++) assert_true(out[k] == 0.0f);
    assert_true(out[0] == 0.0f); /* w[0] = 0: guard region */
    free(out);
    sn_stft_free(s);
}

static void test_enhance_path(void **state) {
    const ref_array *x = need("x"), *enh = need("enhance");
    int64_t n = x->count, T = sn_stft_frames(n);
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    float *m = malloc(T * SN_NBINS * sizeof *m), *p = malloc(T * SN_NBINS * sizeof *p);
    float *y = malloc(n * sizeof *y);
    assert_int_equal(sn_stft_mag_phase(s, x->v, n, m, p), SN_OK);
    for (int64_t k = 0; k < T * SN_NBINS; k++) m[k] = m[k] * (0.5f + 0.4f * m[k] / (1 + m[k]));
    assert_int_equal(sn_istft_mag_phase(s, m, p, T, y, n), SN_OK);
    /* Near the ends the WOLA divides by w^2 ~ 1e-7, which magnifies float32
     * rounding; the interior (a full hop in from each end) is held to 1e-5. */
    int64_t lo = SN_HOP, hi = (T - 1) * SN_HOP + SN_HOP;
    double e = max_rel_err(y + lo, enh->v + lo, hi - lo), eall = max_rel_err(y, enh->v, n);
    printf("enhance (mag + noisy phase): max rel err %.2e interior, %.2e incl. edges\n", e, eall);
    assert_true(e < 1e-5);
    assert_true(eall < 1e-3);
    for (int64_t k = 0; k < n; k++) assert_true((enh->v[k] == 0.0f) == (y[k] == 0.0f) || fabs(enh->v[k]) < 1e-6);
    free(m), free(p), free(y);
    sn_stft_free(s);
}

static void test_roundtrip(void **state) {
    int64_t n = 16000 + 123;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    unsigned r = 7;
    for (int64_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) / 16777216.0 - 0.5) + 0.3f * sinf(0.01f * i);
    }
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    int64_t T = sn_stft_frames(n);
    float *re = malloc(T * SN_NBINS * sizeof *re), *im = malloc(T * SN_NBINS * sizeof *im);
    assert_int_equal(sn_stft_forward(s, x, n, re, im), SN_OK);
    assert_int_equal(sn_istft(s, re, im, T, y, n), SN_OK);
    double e = 0;
    /* away from the edges: the first sample (w=0) and the uncovered tail */
    for (int64_t i = SN_HOP; i < (T - 1) * SN_HOP + SN_HOP; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (d > e) e = d;
    }
    printf("roundtrip: max abs err %.2e\n", e);
    assert_true(e < 1e-5);
    free(re), free(im), free(x), free(y);
    sn_stft_free(s);
}

static void test_batch_equals_single(void **state) {
    enum { B = 3, N = 2000 };
    float *x = malloc(B * N * sizeof *x);
    for (int i = 0; i < B * N; i++) x[i] = sinf(0.05f * i) * (1 + i % 7);
    int64_t T = sn_stft_frames(N);
    float *m = malloc(B * T * SN_NBINS * sizeof *m), *p = malloc(B * T * SN_NBINS * sizeof *p);
    float *m1 = malloc(T * SN_NBINS * sizeof *m1), *y = malloc(B * N * sizeof *y);
    float *y1 = malloc(N * sizeof *y1), *p1 = malloc(T * SN_NBINS * sizeof *p1);
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    assert_int_equal(sn_stft_mag_phase_batch(s, x, B, N, m, p), SN_OK);
    assert_int_equal(sn_istft_mag_phase_batch(s, m, p, B, T, y, N), SN_OK);
    for (int b = 0; b < B; b++) {
        assert_int_equal(sn_stft_mag_phase(s, x + b * N, N, m1, p1), SN_OK);
        assert_memory_equal(m1, m + b * T * SN_NBINS, T * SN_NBINS * sizeof *m1);
        assert_int_equal(sn_istft_mag_phase(s, m1, p1, T, y1, N), SN_OK);
        assert_memory_equal(y1, y + b * N, N * sizeof *y1);
    }
    /* phase may be NULL */
    assert_int_equal(sn_stft_mag_phase_batch(s, x, B, N, m, NULL), SN_OK);
    free(x), free(m), free(p), free(m1), free(y), free(y1), free(p1);
    sn_stft_free(s);
}

/* Plans are shared; executions from several threads must agree. */
static void *thread_fn(void *arg) {
    float *out = arg;
    float x[4000];
    for (int i = 0; i < 4000; i++) x[i] = cosf(0.003f * i * i);
    sn_stft *s;
    if (sn_stft_new(&s)) return NULL;
    for (int rep = 0; rep < 20; rep++) sn_stft_mag_phase(s, x, 4000, out, NULL);
    sn_stft_free(s);
    return NULL;
}

static void test_threads(void **state) {
    enum { NT = 4 };
    int64_t T = sn_stft_frames(4000);
    pthread_t th[NT];
    float *out[NT];
    for (int i = 0; i < NT; i++) {
        out[i] = calloc(T * SN_NBINS, sizeof(float));
        pthread_create(&th[i], NULL, thread_fn, out[i]);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < NT; i++) assert_memory_equal(out[0], out[i], T * SN_NBINS * sizeof(float));
    for (int i = 0; i < NT; i++) free(out[i]);
}

static void test_bad_args(void **state) {
    sn_stft *s;
    assert_int_equal(sn_stft_new(&s), SN_OK);
    float buf[400] = {0};
    assert_int_equal(sn_stft_forward(s, NULL, 400, buf, buf), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stft_forward(s, buf, -1, buf, buf), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_istft(s, buf, buf, 1, NULL, 10), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stft_new(NULL), SN_ERR_INVALID_ARG);
    /* short signal: zero frames, nothing written, no error */
    assert_int_equal(sn_stft_forward(s, buf, 100, buf, buf), SN_OK);
    /* iSTFT with n shorter than the frames: cut, no overflow */
    float re[2 * SN_NBINS] = {1}, im[2 * SN_NBINS] = {0}, y[50];
    assert_int_equal(sn_istft(s, re, im, 2, y, 50), SN_OK);
    sn_stft_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_istft_matches_reference),
        cmocka_unit_test(test_enhance_path),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
