/* LSTM and GRU: forward against a float64 reference of PyTorch's equations,
 * backward against central finite differences of that reference, bad input. */
#include "sn_test.h"
#include "core/core.h"
#include "backends/cpu/rnn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double dsig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* nn.LSTM / nn.GRU (batch_first, zero initial state); w[4*L] as in the op; y[B,T,H] */
static void rnn_ref(bool lstm, int B, int T, int I, int H, int L, const double *x, double *const *w, double *y) {
    int G = (lstm ? 4 : 3) * H;
    double *in = malloc(sizeof(double) * B * T * (I > H ? I : H));
    double *out = malloc(sizeof(double) * B * T * H);
    double *h = malloc(sizeof(double) * H), *cc = malloc(sizeof(double) * H);
    double *gx = malloc(sizeof(double) * G), *gh = malloc(sizeof(double) * G);
    memcpy(in, x, sizeof(double) * B * T * I);
    int nin = I;
    for (int l = 0; l < L; l++) {
        const double *wih = w[4 * l], *whh = w[4 * l + 1], *bih = w[4 * l + 2], *bhh = w[4 * l + 3];
        for (int b = 0; b < B; b++) {
            for (int j = 0; j < H; j++) h[j] = cc[j] = 0;
            for (int t = 0; t < T; t++) {
                const double *xt = in + (b * T + t) * nin;
                for (int k = 0; k < G; k++) {
                    double s = bih[k], r = bhh[k];
                    for (int m = 0; m < nin; m++) s += wih[k * nin + m] * xt[m];
                    for (int m = 0; m < H; m++) r += whh[k * H + m] * h[m];
                    gx[k] = s;
                    gh[k] = r;
                }
                for (int j = 0; j < H; j++) {
                    if (lstm) {
                        double i = dsig(gx[j] + gh[j]), f = dsig(gx[H + j] + gh[H + j]);
                        double g = tanh(gx[2 * H + j] + gh[2 * H + j]), o = dsig(gx[3 * H + j] + gh[3 * H + j]);
                        cc[j] = f * cc[j] + i * g;
                        out[(b * T + t) * H + j] = o * tanh(cc[j]);
                    } else {
                        double r = dsig(gx[j] + gh[j]), z = dsig(gx[H + j] + gh[H + j]);
                        double n = tanh(gx[2 * H + j] + r * gh[2 * H + j]);
                        out[(b * T + t) * H + j] = (1 - z) * n + z * h[j];
                    }
                }
                for (int j = 0; j < H; j++) h[j] = out[(b * T + t) * H + j];
            }
        }
        memcpy(in, out, sizeof(double) * B * T * H);
        nin = H;
    }
    memcpy(y, out, sizeof(double) * B * T * H);
    free(in), free(out), free(h), free(cc), free(gx), free(gh);
}

static double *to_d(const float *f, int64_t n) {
    double *d = malloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

static double loss_ref(bool lstm, int B, int T, int I, int H, int L, const double *x, double *const *w,
                       const double *R, double *y) {
    rnn_ref(lstm, B, T, I, H, L, x, w, y);
    double s = 0;
    for (int i = 0; i < B * T * H; i++) s += y[i] * R[i];
    return s;
}

/* central FD of loss w.r.t. p[0..n) (in place perturbation) */
static void fd_grad(bool lstm, int B, int T, int I, int H, int L, double *x, double **w, const double *R,
                    double *p, int64_t n, double *g) {
    double *y = malloc(sizeof(double) * B * T * H);
    const double eps = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double s = p[i];
        p[i] = s + eps;
        double lp = loss_ref(lstm, B, T, I, H, L, x, w, R, y);
        p[i] = s - eps;
        double lm = loss_ref(lstm, B, T, I, H, L, x, w, R, y);
        p[i] = s;
        g[i] = (lp - lm) / (2 * eps);
    }
    free(y);
}

static double max_abs(const double *g, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(g[i]));
    return m;
}

static void check_rnn(bool lstm, int B, int T, int I, int H, int L, bool x_grad) {
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 1234 + B * 7 + T * 11 + L;
    int64_t G = (lstm ? 4 : 3) * H;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){B, T, I}, x_grad ? SN_FLAG_NEEDS_GRAD : 0, "x");
    sn_tensor *w[8];
    double *wd[8];
    for (int l = 0; l < L; l++) {
        int64_t in = l == 0 ? I : H;
        w[4 * l] = sn_new_2d(ctx, G, in, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_ih");
        w[4 * l + 1] = sn_new_2d(ctx, G, H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_hh");
        w[4 * l + 2] = sn_new_1d(ctx, G, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_ih");
        w[4 * l + 3] = sn_new_1d(ctx, G, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_hh");
    }
    float *xf = sn_test_leaf(x, &seed, -1.0f, 1.0f);
    for (int i = 0; i < 4 * L; i++) wd[i] = to_d(sn_test_leaf(w[i], &seed, -0.6f, 0.6f), sn_nelem(w[i]));
    sn_tensor *y = lstm ? sn_lstm(ctx, x, L, H, w) : sn_gru(ctx, x, L, H, w);
    assert_non_null(y);
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){B, T, H}, 0, "dy");
    float *rf = sn_test_leaf(dy, &seed, -1.0f, 1.0f);
    sn_tensor *dsrc[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_rnn(ctx, y, dy, dsrc));
    assert_true((dsrc[0] != NULL) == x_grad);
    SN_ASSERT_OK(sn_test_eval(ctx, be));

    int64_t ny = (int64_t)B * T * H, nx = (int64_t)B * T * I;
    double *xd = to_d(xf, nx), *R = to_d(rf, ny), *yd = malloc(sizeof(double) * ny);
    rnn_ref(lstm, B, T, I, H, L, xd, wd, yd);
    double e = sn_test_rel_err(y->data, yd, ny, 1e-2);
    assert_true(e < 1e-4); /* f32 vs f64 over a short recurrence */

    for (int i = 0; i < 1 + 4 * L; i++) {
        double *p = i == 0 ? xd : wd[i - 1];
        int64_t n = i == 0 ? nx : sn_nelem(w[i - 1]);
        if (i == 0 && !x_grad) continue;
        assert_non_null(dsrc[i]);
        double *g = malloc(sizeof(double) * n);
        fd_grad(lstm, B, T, I, H, L, xd, wd, R, p, n, g);
        double scale = fmax(max_abs(g, n), 1e-3), m = 0;
        const float *a = dsrc[i]->data;
        for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(a[k] - g[k]) / scale);
        if (!(m < 1e-4)) fail_msg("%s grad of src %d: rel err %g", lstm ? "lstm" : "gru", i, m);
        free(g);
    }
    free(xd), free(R), free(yd);
    for (int i = 0; i < 4 * L; i++) free(wd[i]);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

static void test_lstm_2layer(void **s) { check_rnn(true, 2, 5, 6, 4, 2, true); }
static void test_lstm_1layer_odd(void **s) { check_rnn(true, 3, 7, 5, 3, 1, true); }
static void test_lstm_no_dx(void **s) { check_rnn(true, 1, 4, 3, 5, 2, false); }
static void test_lstm_t1(void **s) { check_rnn(true, 2, 1, 3, 4, 2, true); }
/* H=17: the vector kernels' full blocks plus a tail; B=5: two row groups; B=9 and 21:
 * more groups on the skinny kernels; B=9 past a skinny limit of 8: the sgemm path */
static void check_big_batches(bool lstm) {
    check_rnn(lstm, 9, 3, 4, 5, 2, true);
    check_rnn(lstm, 21, 3, 4, 5, 2, true);
    sn_rnn_skinny_max_b_set(8);
    check_rnn(lstm, 9, 3, 4, 5, 2, true);
    sn_rnn_skinny_max_b_set(-1);
}
static void test_lstm_wide(void **s) { check_rnn(true, 5, 3, 18, 17, 2, true); }
static void test_lstm_big_batch(void **s) { check_big_batches(true); }
static void test_gru_wide(void **s) { check_rnn(false, 5, 3, 18, 17, 2, true); }
static void test_gru_big_batch(void **s) { check_big_batches(false); }

/* The f32 recurrent kernels against float64: sn_rnn_skinny_nt (W row-major; past 4
 * rows it walks W in blocks of 64 rows) and, with AVX-512, the packed kernel (blocks of
 * 4 panels, the batch groups inside each block), over batches of one to five row
 * groups, ranges that start past 0 and end inside a block, accumulating or not. */
static void test_recurrent_f32_kernels(void **s) {
    if (sn_rnn_skinny_level() == 0) skip(); /* no AVX2/AVX-512: the BLAS serves the steps */
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 99;
    const int64_t Bs[] = {1, 4, 7, 9, 20}, Ks[] = {33, 64}, ranges[][2] = {{0, 200}, {4, 197}, {64, 130}};
    for (size_t ib = 0; ib < 5; ib++)
        for (size_t ik = 0; ik < 2; ik++)
            for (size_t r = 0; r < 3; r++)
                for (int acc = 0; acc < 2; acc++)
                    for (int packed = 0; packed < 2; packed++) {
                        int64_t B = Bs[ib], K = Ks[ik], N = 200, n0 = ranges[r][0], n1 = ranges[r][1], lda = K + 3;
                        if (packed && (sn_rnn_skinny_level() != 2 || n0 % 16)) continue;
                        float *A = sn_test_rand_new(B * lda, &seed, -1, 1), *W = sn_test_rand_new(N * K, &seed, -1, 1);
                        float *C = sn_test_rand_new(B * N, &seed, -1, 1), *C0 = malloc((size_t)(B * N) * sizeof *C0);
                        memcpy(C0, C, (size_t)(B * N) * sizeof *C);
                        float *P = NULL;
                        if (packed) {
#ifdef SN_SKINNY_X86
                            assert_int_equal(posix_memalign((void **)&P, 64, (size_t)sn_rnn_packed_floats(N, K) * 4), 0);
                            sn_rnn_pack_panels(be->ctx, P, W, N, K, K, 1);
                            sn_rnn_skinny_packed(A, lda, B, P, K, C, N, n0, n1, acc);
#endif
                        } else
                            sn_rnn_skinny_nt(A, lda, B, W, K, C, N, n0, n1, acc);
                        for (int64_t b = 0; b < B; b++)
                            for (int64_t n = 0; n < N; n++) {
                                double ref = C0[b * N + n], sa = fabs(ref);
                                if (n >= n0 && n < n1) {
                                    double d = 0;
                                    for (int64_t k = 0; k < K; k++) {
                                        d += (double)A[b * lda + k] * W[n * K + k];
                                        sa += fabs((double)A[b * lda + k] * W[n * K + k]);
                                    }
                                    ref = acc ? ref + d : d;
                                }
                                double err = fabs(C[b * N + n] - ref);
                                if (!(err <= sa * (K + 2) * ldexp(1, -23) + 1e-30))
                                    fail_msg("%s B=%lld K=%lld [%lld,%lld) acc %d: [%lld,%lld] = %.9g vs %.9g",
                                             packed ? "packed" : "skinny_nt", (long long)B, (long long)K,
                                             (long long)n0, (long long)n1, acc, (long long)b, (long long)n,
                                             C[b * N + n], ref);
                            }
                        free(A), free(W), free(C), free(C0), free(P);
                    }
    sn_backend_free(be);
}
static void test_gru_2layer(void **s) { check_rnn(false, 2, 5, 6, 4, 2, true); }
static void test_gru_1layer_odd(void **s) { check_rnn(false, 3, 7, 5, 3, 1, true); }
static void test_gru_t1(void **s) { check_rnn(false, 2, 1, 3, 5, 2, true); }

static void test_rnn_bad_input(void **s) {
    sn_ctx *ctx = sn_ctx_new();
    int H = 4;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, 5, 6}, 0, "x");
    sn_tensor *w[8] = {
        sn_new_2d(ctx, 16, 6, 0, "w_ih0"), sn_new_2d(ctx, 16, 4, 0, "w_hh0"), sn_new_1d(ctx, 16, 0, "b_ih0"),
        sn_new_1d(ctx, 16, 0, "b_hh0"),    sn_new_2d(ctx, 16, 4, 0, "w_ih1"), sn_new_2d(ctx, 16, 4, 0, "w_hh1"),
        sn_new_1d(ctx, 16, 0, "b_ih1"),    sn_new_1d(ctx, 16, 0, "b_hh1"),
    };
    assert_non_null(sn_lstm(ctx, x, 2, H, w));
    /* GRU wants 3H rows */
    assert_null(sn_gru(ctx, x, 2, H, w));
    assert_non_null(strstr(sn_last_error(), "gru"));
    assert_non_null(strstr(sn_last_error(), "weight_ih_l0"));
    /* wrong input width of layer 0 */
    sn_tensor *bad = sn_new_2d(ctx, 16, 5, 0, "w_ih_bad");
    sn_tensor *w2[8];
    memcpy(w2, w, sizeof w2);
    w2[0] = bad;
    assert_null(sn_lstm(ctx, x, 2, H, w2));
    assert_non_null(strstr(sn_last_error(), "lstm"));
    assert_non_null(strstr(sn_last_error(), "[16,6]"));
    /* layer 1 takes hidden-sized input */
    memcpy(w2, w, sizeof w2);
    w2[4] = w[0];
    assert_null(sn_lstm(ctx, x, 2, H, w2));
    assert_non_null(strstr(sn_last_error(), "weight_ih_l1"));
    /* bias length */
    memcpy(w2, w, sizeof w2);
    w2[7] = sn_new_1d(ctx, 12, 0, "b_short");
    assert_null(sn_lstm(ctx, x, 2, H, w2));
    assert_non_null(strstr(sn_last_error(), "bias_hh_l1"));
    /* too many layers for one op, bad hidden, 2-D input, NULL weight, NULL input */
    assert_null(sn_lstm(ctx, x, 9, H, w));
    assert_non_null(strstr(sn_last_error(), "layers"));
    assert_null(sn_lstm(ctx, x, 2, 0, w));
    assert_non_null(strstr(sn_last_error(), "hidden"));
    sn_tensor *x2 = sn_new_2d(ctx, 5, 6, 0, "x2d");
    assert_null(sn_lstm(ctx, x2, 2, H, w));
    assert_non_null(strstr(sn_last_error(), "batch, time, features"));
    memcpy(w2, w, sizeof w2);
    w2[5] = NULL;
    sn_clear_error();
    assert_null(sn_lstm(ctx, x, 2, H, w2));
    assert_non_null(strstr(sn_last_error(), "weight_hh_l1"));
    assert_null(sn_lstm(ctx, x, 2, H, NULL));
    assert_non_null(strstr(sn_last_error(), "weight array"));
    sn_clear_error();
    assert_null(sn_lstm(ctx, NULL, 2, H, w));
    assert_non_null(strstr(sn_last_error(), "lstm"));
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lstm_2layer),   cmocka_unit_test(test_lstm_1layer_odd), cmocka_unit_test(test_lstm_no_dx),
        cmocka_unit_test(test_lstm_t1),       cmocka_unit_test(test_gru_2layer),      cmocka_unit_test(test_gru_1layer_odd),
        cmocka_unit_test(test_gru_t1),        cmocka_unit_test(test_lstm_wide),       cmocka_unit_test(test_lstm_big_batch),
        cmocka_unit_test(test_gru_wide),      cmocka_unit_test(test_gru_big_batch),
        cmocka_unit_test(test_recurrent_f32_kernels),        cmocka_unit_test(test_rnn_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
