/* train.mixed_precision on Vulkan: GEMMs with f16 operands and f32 accumulation on
 * cooperative matrices (shaders/matmul_gemm_coop.comp).
 *  - GEMMs of odd sizes (partial tiles, K off the 32 steps), every transpose, batches
 *    (strided, and one operand shared), split K, bias per row/column with activations,
 *    against a float64 reference at an f16 tolerance; each must also be off the f32
 *    result by more than f32 rounding, which shows the f16 path ran;
 *  - the GEMM-based families forward and backward (linear, matmul, conv, LSTM, attention
 *    with its batch x heads strides) against the CPU in f32;
 *  - a small CRN trained a few steps in f16 tracks the f32 losses within 1%.
 * On a device without usable cooperative matrices, asking for f16 must fail with an
 * error naming the device and the way out, and the device must not claim fast f16;
 * the test then exits 77 (skipped). bf16 is refused on Vulkan either way.
 * SN_VK_COOP=emulate runs it all through matmul_gemm_coop_emu.comp, the same shader with
 * its matrix operations emulated, on any device (ctest does, on lavapipe).
 * Standalone: build/test_vulkan_coopmat; SN_VK_DEVICE=N picks the device (default 0). */
#include "sn_parity.h"
#include "core/core.h"
#include "sinter/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SN_HAVE_VULKAN

static sn_backend *g_cpu, *g_vk;
static int g_dev;

#define F16_TOL 4e-3  /* f16 operands: 2^-11 relative each, sums of independent roundings */
#define F32_NOISE 2e-6 /* an f32 GEMM's error here is ~1e-7 */

static double act64(int act, double v, double p0) {
    switch (act) {
    case SN_ACT_RELU: return v > 0 ? v : 0;
    case SN_ACT_ELU: return v > 0 ? v : p0 * expm1(v);
    case SN_ACT_TANH: return tanh(v);
    case SN_ACT_SIGMOID: return 1 / (1 + exp(-v));
    default: return v;
    }
}

/* a [.., M|K, K|M] (ta), b [.., K|N, N|K] or 2-D (shared by the batch) */
static double *ref_matmul(const sn_tensor *a, const sn_tensor *b, bool ta, bool tb, int64_t *count) {
    int na = a->ndim, nb = b->ndim;
    int64_t M = ta ? a->shape[na - 1] : a->shape[na - 2], K = ta ? a->shape[na - 2] : a->shape[na - 1];
    int64_t N = tb ? b->shape[nb - 2] : b->shape[nb - 1];
    int64_t batch = sn_nelem(a) / (M * K);
    const float *A = a->data, *B = b->data;
    double *r = malloc((size_t)(batch * M * N) * sizeof *r);
    for (int64_t z = 0; z < batch; z++) {
        const float *Az = A + z * M * K, *Bz = B + (nb == 2 ? 0 : z * K * N);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)(ta ? Az[k * M + m] : Az[m * K + k]) * (tb ? Bz[n * K + k] : Bz[k * N + n]);
                r[(z * M + m) * N + n] = s;
            }
    }
    *count = batch * M * N;
    return r;
}

/* y = act(x w^T + b) */
static double *ref_linear(const sn_tensor *x, const sn_tensor *w, const sn_tensor *b, int act, double p0,
                          int64_t *count) {
    int64_t N = w->shape[0], K = w->shape[1], M = sn_nelem(x) / K;
    const float *X = x->data, *W = w->data;
    double *r = malloc((size_t)(M * N) * sizeof *r);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? ((const float *)b->data)[n] : 0;
            for (int64_t k = 0; k < K; k++) s += (double)X[m * K + k] * W[n * K + k];
            r[m * N + n] = act64(act, s, p0);
        }
    *count = M * N;
    return r;
}

static double nerr64(const float *a, const double *ref, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= e)) e = d; /* NaN propagates */
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return m > 0 ? e / m : e;
}

/* multiplies columns [k0, k1) of the host data of a [rows, cols] leaf by f */
static void scale_cols(sn_tensor *t, int64_t k0, int64_t k1, float f) {
    int64_t cols = t->shape[t->ndim - 1], rows = sn_nelem(t) / cols;
    float *d = t->data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = k0; k < k1; k++) d[r * cols + k] *= f;
}

typedef struct {
    sn_tensor *node;
    int kind; /* 0 matmul, 1 linear */
    bool ta, tb;
    int act;
    float p0;
} gcase;

static void test_gemm_f64(void **st) {
    sn_ctx *c = sn_ctx_new();
    gcase cs[24];
    int n = 0;
    sn_tensor *a, *b;
    /* batched, partial tiles, K off the 32-deep steps */
    a = LEAF(c, -1, 1, "a_nn", 3, 37, 50), b = LEAF(c, -1, 1, "b_nn", 3, 50, 29);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, false), 0, false, false};
    a = LEAF(c, -1, 1, "a_tn", 3, 50, 37), b = LEAF(c, -1, 1, "b_tn", 50, 70); /* b shared by the batch */
    cs[n++] = (gcase){sn_matmul(c, a, b, true, false), 0, true, false};
    a = LEAF(c, -1, 1, "a_tt", 2, 65, 41), b = LEAF(c, -1, 1, "b_tt", 2, 19, 65);
    cs[n++] = (gcase){sn_matmul(c, a, b, true, true), 0, true, true};
    a = LEAF(c, -1, 1, "a_nt", 4, 33, 100), b = LEAF(c, -1, 1, "b_nt", 130, 100); /* one product, 132 rows */
    cs[n++] = (gcase){sn_matmul(c, a, b, false, true), 0, false, true};
    a = LEAF(c, -1, 1, "a_big", 130, 257), b = LEAF(c, -1, 1, "b_big", 257, 190);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, false), 0, false, false};
    /* few tiles over a long K: split K (4 parts), then the fixed-order sum */
    a = LEAF(c, -1, 1, "a_sk", 20, 5000), b = LEAF(c, -1, 1, "b_sk", 5000, 30);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, false), 0, false, false};
    a = LEAF(c, -1, 1, "at_sk", 5000, 20), b = LEAF(c, -1, 1, "bt_sk", 30, 5000);
    cs[n++] = (gcase){sn_matmul(c, a, b, true, true), 0, true, true};
    /* magnitudes f16 cannot hold (gradients of 1e-6, values past 65504): the per-chunk
     * scaling; small chunks then large ones along K: the accumulators rescaled */
    a = LEAF(c, -1, 1, "a_tiny", 37, 70), b = LEAF(c, -1, 1, "b_tiny", 70, 45);
    scale_cols(a, 0, 70, 1e-6f), scale_cols(b, 0, 45, 3e-7f);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, false), 0, false, false};
    a = LEAF(c, -1, 1, "a_huge", 37, 70), b = LEAF(c, -1, 1, "b_huge", 45, 70);
    scale_cols(a, 0, 70, 1e6f), scale_cols(b, 0, 70, 2e5f);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, true), 0, false, true};
    a = LEAF(c, -1, 1, "a_mix", 40, 200), b = LEAF(c, -1, 1, "b_mix", 200, 50);
    scale_cols(a, 0, 100, 1e-3f), scale_cols(a, 100, 200, 1e3f);
    cs[n++] = (gcase){sn_matmul(c, a, b, false, false), 0, false, false};
    /* bias per column and activation epilogues */
    sn_tensor *x = LEAF(c, -1, 1, "x", 5, 31, 77), *w = LEAF(c, -0.5, 0.5, "w", 45, 77), *bias = LEAF(c, -1, 1, "bias", 45);
    cs[n++] = (gcase){sn_linear_act(c, x, w, bias, SN_ACT_ELU, 1.0f, 0), 1, .act = SN_ACT_ELU, .p0 = 1.0f};
    cs[n++] = (gcase){sn_linear_act(c, x, w, bias, SN_ACT_TANH, 0, 0), 1, .act = SN_ACT_TANH};
    cs[n++] = (gcase){sn_linear_act(c, x, w, NULL, SN_ACT_RELU, 0, 0), 1, .act = SN_ACT_RELU};
    sn_par_devmap m;
    sn_par_bind(g_vk, c, &m);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = cs[i].node;
        if (g_vk->i->compute(g_vk, &t, 1, NULL) != SN_OK) fail_msg("%s: %s", t->name, sn_last_error());
    }
    float **res = sn_par_unbind(g_vk, c, &m);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = cs[i].node;
        int64_t cnt;
        double *ref = cs[i].kind == 0 ? ref_matmul(t->src[0], t->src[1], cs[i].ta, cs[i].tb, &cnt)
                                      : ref_linear(t->src[0], t->src[1], t->nsrc > 2 ? t->src[2] : NULL, cs[i].act,
                                                   cs[i].p0, &cnt);
        assert_int_equal(cnt, sn_nelem(t));
        double e = nerr64(sn_par_res_of(res, t), ref, cnt);
        printf("  %-22s %s%s %5lld outputs: error %.2e (f16 tolerance %.0e)\n", t->name, cs[i].ta ? "T" : "N",
               cs[i].tb ? "T" : "N", (long long)cnt, e, F16_TOL);
        if (!(e <= F16_TOL)) fail_msg("%s: error %.3g vs float64 > %.3g", t->name, e, F16_TOL);
        if (!(e > F32_NOISE))
            fail_msg("%s: error %.3g is f32-level: the f16 cooperative-matrix GEMM did not run", t->name, e);
        free(ref);
    }
    for (int i = 0; i < sn_ctx_count(c); i++) free(res[i]);
    free(res);
    sn_test_free_data(c);
    sn_ctx_free(c);
}

/* the families built on the GEMM, forward and backward, against the CPU's f32 */
static void test_families(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 3, 17, 40), *b = LEAF(c, -1, 1, "b", 3, 40, 23);
    grads(c, sn_matmul(c, a, b, false, false), sn_grad_matmul);
    sn_tensor *x = LEAF(c, -1, 1, "x", 2, 9, 70), *w = LEAF(c, -0.5, 0.5, "w", 35, 70), *bias = LEAF(c, -1, 1, "bias", 35);
    grads(c, sn_linear_act(c, x, w, bias, SN_ACT_ELU, 1.0f, 0), sn_grad_matmul);
    /* conv: im2col GEMMs with a bias per row and an activation */
    sn_tensor *xc = LEAF(c, -1, 1, "xc", 3, 16, 13, 39), *wc = LEAF(c, -0.5, 0.5, "wc", 32, 16, 2, 3);
    sn_tensor *bc = LEAF(c, -0.5, 0.5, "bc", 32);
    grads(c, sn_conv2d_pad(c, xc, wc, bc, 1, 2, 1, 0, 0, 0, SN_ACT_ELU, 1.0f, 0), sn_grad_conv);
    sn_tensor *xt = LEAF(c, -1, 1, "xt", 3, 32, 7, 19), *wt = LEAF(c, -0.5, 0.5, "wt", 32, 16, 2, 3);
    grads(c, sn_conv_transpose2d_crop(c, xt, wt, NULL, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    sn_par_check(c, 1e-2 /* f16 operands; f32 rounding of the CPU is 1e3 times smaller */, 1e-2, "f16 GEMM families");
    sn_ctx_free(c);

    c = sn_ctx_new();
    int64_t B = 2, T = 9, I = 20, H = 24;
    sn_tensor *xr = LEAF(c, -1, 1, "xr", B, T, I), *wr[4];
    wr[0] = LEAF(c, -0.3, 0.3, "w_ih", 4 * H, I);
    wr[1] = LEAF(c, -0.3, 0.3, "w_hh", 4 * H, H);
    wr[2] = LEAF(c, -0.3, 0.3, "b_ih", 4 * H);
    wr[3] = LEAF(c, -0.3, 0.3, "b_hh", 4 * H);
    grads(c, sn_lstm(c, xr, 1, (int)H, wr), sn_grad_rnn);
    /* attention: batch x heads products (two-level batch strides) */
    int64_t E = 24;
    sn_tensor *xa = LEAF(c, -1, 1, "xa", 2, 11, E);
    sn_tensor *iw = LEAF(c, -0.3, 0.3, "in_w", 3 * E, E), *ib = LEAF(c, -0.3, 0.3, "in_b", 3 * E);
    sn_tensor *ow = LEAF(c, -0.3, 0.3, "out_w", E, E), *ob = LEAF(c, -0.3, 0.3, "out_b", E);
    grads(c, sn_attention(c, xa, iw, ib, ow, ob, 3, true), sn_grad_attention);
    sn_par_check(c, 1e-2, 1e-2, "f16 LSTM and attention");
    sn_ctx_free(c);
}

/* a few CRN training steps from the same start: f16 tracks f32 */
static void run_crn(sn_backend *b, int steps, float *losses) {
    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.hidden = 64;
    cfg.layers = 1;
    sn_model *m;
    SN_ASSERT_OK(sn_crn_new(&cfg, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 7));
    const int batch = 2, frames = 16;
    int64_t n = (int64_t)batch * frames * cfg.freq_bins;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    uint64_t s = 99;
    sn_test_rand(x, n, &s, 0, 1);
    for (int64_t i = 0; i < n; i++) y[i] = 0.6f * x[i]; /* a learnable target: a gain */
    sn_step *st;
    SN_ASSERT_OK(sn_step_new(m, b, g_cpu, batch, frames, NULL, &st));
    for (int k = 0; k < steps; k++) SN_ASSERT_OK(sn_step_run(st, x, y, 1e-3f, &losses[k]));
    sn_step_free(st);
    sn_model_free(m);
    free(x);
    free(y);
}

static void test_crn_tracks_f32(void **st) {
    sn_backend *b32;
    SN_ASSERT_OK(sn_vulkan_backend_new(g_dev, &b32));
    enum { STEPS = 4 };
    float l16[STEPS], l32[STEPS];
    run_crn(b32, STEPS, l32);
    run_crn(g_vk, STEPS, l16);
    sn_backend_free(b32);
    for (int k = 0; k < STEPS; k++) {
        double rel = fabs((double)l16[k] - l32[k]) / fabs((double)l32[k]);
        printf("  CRN step %d: loss f32 %.6f f16 %.6f (%.3f%%)\n", k, l32[k], l16[k], 100 * rel);
        if (!(rel <= 0.01)) fail_msg("step %d: f16 loss %.6g vs f32 %.6g: %.2f%% apart (> 1%%)", k, l16[k], l32[k], 100 * rel);
    }
    assert_true(l32[STEPS - 1] < l32[0]); /* it trains */
}

/* bf16 is refused on Vulkan with a message that says what to use */
static int bf16_refused(void) {
    sn_status s = sn_backend_set_precision(g_vk, &(sn_precision){.bf16 = true});
    if (s == SN_ERR_UNSUPPORTED && strstr(sn_last_error(), "mixed_precision=f16")) return 1;
    fprintf(stderr, "FAIL: bf16 on Vulkan: %s (%s), expected SN_ERR_UNSUPPORTED saying mixed_precision=f16\n",
            sn_status_name(s), sn_last_error());
    return 0;
}

int main(void) {
    int rc = sn_test_vk_open(&g_dev, &g_vk);
    if (rc) return rc;
    g_cpu = sn_cpu_backend_new(0);
    sn_device_info info;
    if (sn_backend_info(g_vk, &info) != SN_OK) return 1;
    printf("vulkan:%d %s: %s\n", g_dev, info.name, info.features);
    if (!bf16_refused()) return 1;
    sn_status s = sn_backend_set_precision(g_vk, &(sn_precision){.f16 = true});
    if (s != SN_OK) {
        /* no cooperative matrices: a clear refusal, and info says no fast f16 */
        const char *msg = sn_last_error();
        printf("f16 refused as it should be: %s\n", msg);
        char dev[32];
        snprintf(dev, sizeof dev, "vulkan:%d", g_dev);
        int ok = s == SN_ERR_UNSUPPORTED && strstr(msg, dev) && strstr(msg, "mixed_precision=false") && !info.f16 &&
                 !info.bf16;
        sn_backend_free(g_vk);
        sn_backend_free(g_cpu);
        if (!ok) {
            fprintf(stderr, "FAIL: the refusal must be SN_ERR_UNSUPPORTED naming %s and mixed_precision=false, and the "
                    "device must not claim f16/bf16 (f16 %d bf16 %d)\n", dev, info.f16, info.bf16);
            return 1;
        }
        printf("no usable cooperative matrices on this device: the f16 GEMM tests skipped\n");
        return 77;
    }
    const char *emu = getenv("SN_VK_COOP");
    if (emu && !strcmp(emu, "emulate"))
        printf("SN_VK_COOP=emulate: the cooperative-matrix GEMM with its matrix operations emulated\n");
    else if (!info.f16 || !strstr(info.features, "cooperative matrix f16")) {
        fprintf(stderr, "FAIL: f16 accepted but the device info does not show its cooperative matrix shape\n");
        return 1;
    }
    sn_par = (sn_parity){.dev = g_vk, .cpu = g_cpu, .name = "Vulkan f16", .seed = 0xc00bull, .claims = true};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_f64),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_crn_tracks_f32),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    sn_backend_free(g_vk);
    sn_backend_free(g_cpu);
    return r;
}

#else
#include <stdio.h>
int main(void) {
    printf("built without Vulkan: skipped\n");
    return 77;
}
#endif
