/* MATMUL, LINEAR (plain and with each activation epilogue), BIAS_GRAD: float64
 * references, finite-difference gradients through sn_grad_matmul, bad input. */
#include "sn_test.h"
#include "core/core.h"
#include "backends/cpu/vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *to_d(const float *f, int64_t n) {
    double *d = malloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

/* a LINEAR node's activation epilogue in double (PyTorch's formulas) */
static double act_d(const sn_tensor *node, double v) {
    double p0 = node->fp[SN_FP_ACT], p1 = node->fp[SN_FP_ACT + 1];
    switch (node->ip[SN_IP_ACT]) {
    case SN_ACT_RELU: return v > 0 ? v : 0;
    case SN_ACT_ELU: return v > 0 ? v : p0 * expm1(v);
    case SN_ACT_SOFTPLUS: return v * p0 > p1 ? v : log1p(exp(p0 * v)) / p0;
    case SN_ACT_SIGMOID: return 1 / (1 + exp(-v));
    case SN_ACT_TANH: return tanh(v);
    default: return v;
    }
}

/* the forward of a MATMUL or LINEAR node in double, from the srcs' shapes; returns sum(y * R) */
static double ref(const sn_tensor *node, double *const *p, const double *R, double *y) {
    const sn_tensor *a = node->src[0], *b = node->src[1];
    int nd = node->ndim;
    int64_t M = node->shape[nd - 2 >= 0 ? nd - 2 : 0], N = node->shape[nd - 1];
    double L = 0;
    if (node->op == SN_OP_LINEAR) {
        int64_t K = b->shape[1], rows = sn_nelem(a) / K;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t n = 0; n < N; n++) {
                double s = node->nsrc > 2 ? p[2][n] : 0;
                for (int64_t k = 0; k < K; k++) s += p[0][r * K + k] * p[1][n * K + k];
                s = act_d(node, s);
                if (y) y[r * N + n] = s;
                L += s * R[r * N + n];
            }
        return L;
    }
    bool ta = node->ip[0], tb = node->ip[1];
    int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t batch = sn_nelem(node) / (M * N);
    for (int64_t i = 0; i < batch; i++) {
        const double *A = p[0] + i * M * K, *B = p[1] + (b->ndim == 2 ? 0 : i * K * N);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (ta ? A[k * M + m] : A[m * K + k]) * (tb ? B[n * K + k] : B[k * N + n]);
                int64_t o = i * M * N + m * N + n;
                if (y) y[o] = s;
                L += s * R[o];
            }
    }
    return L;
}

static void check_node(sn_ctx *ctx, sn_tensor *node, uint64_t *seed) {
    sn_backend *be = sn_cpu_backend_new(2);
    double *p[3] = {0};
    for (int i = 0; i < node->nsrc; i++) p[i] = to_d(node->src[i]->data, sn_nelem(node->src[i]));
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, node->ndim, node->shape, 0, "dy");
    int64_t ny = sn_nelem(node);
    double *R = to_d(sn_test_leaf(dy, seed, -1, 1), ny), *yd = malloc(sizeof(double) * ny);
    sn_tensor *dsrc[3] = {0};
    SN_ASSERT_OK(sn_grad_matmul(ctx, node, dy, dsrc));
    SN_ASSERT_OK(sn_test_eval(ctx, be));
    ref(node, p, R, yd);
    double e = sn_test_rel_err(node->data, yd, ny, 1e-2);
    if (!(e < 1e-5)) fail_msg("%s forward rel err %g", node->name, e);
    for (int i = 0; i < node->nsrc; i++) {
        int64_t n = sn_nelem(node->src[i]);
        assert_non_null(dsrc[i]);
        assert_int_equal(sn_nelem(dsrc[i]), n);
        double *g = malloc(sizeof(double) * n), scale = 1e-3, m = 0;
        for (int64_t k = 0; k < n; k++) {
            double s = p[i][k], h = 1e-6;
            p[i][k] = s + h;
            double lp = ref(node, p, R, NULL);
            p[i][k] = s - h;
            double lm = ref(node, p, R, NULL);
            p[i][k] = s;
            g[k] = (lp - lm) / (2 * h);
            scale = fmax(scale, fabs(g[k]));
        }
        const float *a = dsrc[i]->data;
        for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(a[k] - g[k]) / scale);
        if (!(m < 1e-5)) fail_msg("%s grad of src %d: rel err %g", node->name, i, m);
        free(g);
    }
    for (int i = 0; i < 3; i++) free(p[i]);
    free(R), free(yd);
    sn_backend_free(be);
}

static sn_tensor *leaf(sn_ctx *ctx, int nd, const int64_t *s, uint64_t *seed) {
    sn_tensor *t = sn_new_tensor(ctx, SN_F32, nd, s, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "leaf");
    sn_test_leaf(t, seed, -1, 1);
    return t;
}

/* M=3, K=5, N=4 with every transpose combination, batched [2,3] and shared 2-D b */
static void test_matmul_variants(void **st) {
    for (int shared = 0; shared < 2; shared++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                sn_ctx *ctx = sn_ctx_new();
                uint64_t seed = 17 + 4 * ta + 2 * tb + shared;
                int64_t as[4] = {2, 3, ta ? 5 : 3, ta ? 3 : 5};
                int64_t bs[4] = {2, 3, tb ? 4 : 5, tb ? 5 : 4};
                sn_tensor *a = leaf(ctx, 4, as, &seed);
                sn_tensor *b = shared ? leaf(ctx, 2, bs + 2, &seed) : leaf(ctx, 4, bs, &seed);
                sn_tensor *y = sn_matmul(ctx, a, b, ta, tb);
                assert_non_null(y);
                assert_int_equal(y->shape[2], 3);
                assert_int_equal(y->shape[3], 4);
                check_node(ctx, y, &seed);
                sn_test_free_data(ctx);
                sn_ctx_free(ctx);
            }
}

static void test_matmul_2d(void **st) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 5;
    sn_tensor *a = leaf(ctx, 2, (int64_t[]){7, 9}, &seed), *b = leaf(ctx, 2, (int64_t[]){9, 11}, &seed);
    check_node(ctx, sn_matmul(ctx, a, b, false, false), &seed);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_linear(void **st) {
    for (int with_b = 0; with_b < 2; with_b++) {
        sn_ctx *ctx = sn_ctx_new();
        uint64_t seed = 23 + with_b;
        sn_tensor *x = leaf(ctx, 3, (int64_t[]){2, 3, 5}, &seed), *w = leaf(ctx, 2, (int64_t[]){7, 5}, &seed);
        sn_tensor *b = with_b ? leaf(ctx, 1, (int64_t[]){7}, &seed) : NULL;
        sn_tensor *y = sn_linear(ctx, x, w, b);
        assert_non_null(y);
        assert_int_equal(y->ndim, 3);
        assert_int_equal(y->shape[2], 7);
        check_node(ctx, y, &seed);
        sn_test_free_data(ctx);
        sn_ctx_free(ctx);
    }
}

/* linear with each activation fused: odd sizes, a batch of [3,5] rows, with and without bias */
static void test_linear_act(void **st) {
    static const struct { sn_act act; float p0, p1; } acts[] = {
        {SN_ACT_RELU, 0, 0},      {SN_ACT_ELU, 1.0f, 0},        {SN_ACT_ELU, 0.3f, 0},    {SN_ACT_SOFTPLUS, 1.0f, 20.0f},
        {SN_ACT_SOFTPLUS, 8.0f, 17.0f} /* beta*x on both sides of the threshold */,
        {SN_ACT_SIGMOID, 0, 0},   {SN_ACT_TANH, 0, 0},
    };
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++)
        for (int with_b = 0; with_b < 2; with_b++) {
            sn_ctx *ctx = sn_ctx_new();
            uint64_t seed = 41 + 2 * a + with_b;
            sn_tensor *x = leaf(ctx, 3, (int64_t[]){3, 5, 7}, &seed), *w = leaf(ctx, 2, (int64_t[]){9, 7}, &seed);
            sn_tensor *b = with_b ? leaf(ctx, 1, (int64_t[]){9}, &seed) : NULL;
            sn_tensor *y = sn_linear_act(ctx, x, w, b, acts[a].act, acts[a].p0, acts[a].p1);
            if (!y) fail_msg("%s", sn_last_error());
            assert_int_equal(y->op, SN_OP_LINEAR);
            assert_int_equal(y->shape[2], 9);
            sn_set_name(y, "linear act %d (%g, %g) bias %d", (int)acts[a].act, (double)acts[a].p0,
                        (double)acts[a].p1, with_b);
            check_node(ctx, y, &seed);
            sn_test_free_data(ctx);
            sn_ctx_free(ctx);
        }
}

/* sn_linear is linear_act with no activation; the fused output equals the activation op
 * applied to the plain linear's */
static void test_linear_act_vs_unfused(void **st) {
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 77;
    sn_tensor *x = leaf(ctx, 2, (int64_t[]){13, 11}, &seed), *w = leaf(ctx, 2, (int64_t[]){6, 11}, &seed);
    sn_tensor *b = leaf(ctx, 1, (int64_t[]){6}, &seed);
    sn_tensor *plain = sn_linear(ctx, x, w, b);
    assert_int_equal(plain->ip[SN_IP_ACT], SN_ACT_NONE);
    sn_tensor *f[3] = {sn_linear_act(ctx, x, w, b, SN_ACT_RELU, 0, 0), sn_linear_act(ctx, x, w, b, SN_ACT_ELU, 1, 0),
                       sn_linear_act(ctx, x, w, b, SN_ACT_TANH, 0, 0)};
    sn_tensor *u[3] = {sn_relu(ctx, plain), sn_elu(ctx, plain, 1.0f), sn_tanh(ctx, plain)};
    SN_ASSERT_OK(sn_test_eval(ctx, be));
    for (int k = 0; k < 3; k++)
        if (!(sn_test_rel_err_f(f[k]->data, u[k]->data, sn_nelem(f[k]), 1.0) < 1e-6))
            fail_msg("fused %s differs from the separate op", sn_op_name(u[k]->op));
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

/* conv-style use: db[C] from dy[N,C,H,W] with ip[0] = 1, vs float64; runs of H*W from
 * under one vector to past 64 with a tail; the portable and the AVX-512 sums agree to
 * the bit (one lane layout and fold order) */
static void run_bias_grad(int64_t N, int64_t C, int64_t H, int64_t W) {
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 31;
    int64_t s[4] = {N, C, H, W}, HW = H * W;
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 4, s, 0, "dy");
    float *d = sn_test_leaf(dy, &seed, -1, 1);
    sn_tensor *db = sn_new_op(ctx, SN_OP_BIAS_GRAD, 1, &dy, 1, &C);
    db->ip[0] = 1;
    float *got[2];
    for (int k = 0; k < 2; k++) {
        sn_vm_cap = 2 * k;
        if (k == 0) SN_ASSERT_OK(sn_test_eval(ctx, be));
        else SN_ASSERT_OK(be->i->compute(be, &db, 1, NULL));
        got[k] = malloc((size_t)C * sizeof(float));
        memcpy(got[k], db->data, (size_t)C * sizeof(float));
    }
    sn_vm_cap = 2;
    double *ref = calloc((size_t)C, sizeof(double)), mx = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < HW; i++) ref[c] += d[(n * C + c) * HW + i];
    for (int64_t c = 0; c < C; c++) mx = fmax(mx, fabs(ref[c]));
    double e = sn_test_rel_err(got[1], ref, C, fmax(mx, 1.0));
    if (!(e < 1e-6)) fail_msg("bias_grad %lldx%lldx%lld: rel err %.3g", (long long)N, (long long)C, (long long)HW, e);
    for (int64_t c = 0; c < C; c++)
        if (got[0][c] != got[1][c])
            fail_msg("bias_grad HW %lld: channel %lld portable %.9g, AVX-512 %.9g", (long long)HW, (long long)c,
                     (double)got[0][c], (double)got[1][c]);
    free(got[0]);
    free(got[1]);
    free(ref);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

static void test_bias_grad_axis1(void **st) {
    run_bias_grad(2, 70, 3, 5);
    run_bias_grad(3, 5, 8, 8);
    run_bias_grad(2, 4, 37, 29);
    run_bias_grad(1, 3, 1, 1);
}

static void test_matmul_bad_input(void **st) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *a = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, 3, 5}, 0, "a");
    sn_tensor *b = sn_new_2d(ctx, 4, 5, 0, "b");
    assert_null(sn_matmul(ctx, a, b, false, false));
    assert_non_null(strstr(sn_last_error(), "matmul"));
    assert_non_null(strstr(sn_last_error(), "inner dims"));
    assert_non_null(sn_matmul(ctx, a, b, false, true));
    sn_tensor *b3 = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){3, 5, 4}, 0, "b3");
    assert_null(sn_matmul(ctx, a, b3, false, false));
    assert_non_null(strstr(sn_last_error(), "batch dim 0"));
    sn_tensor *b4 = sn_new_tensor(ctx, SN_F32, 4, (int64_t[]){1, 2, 5, 4}, 0, "b4");
    assert_null(sn_matmul(ctx, a, b4, false, false));
    assert_non_null(strstr(sn_last_error(), "same number of dims"));
    sn_tensor *v = sn_new_1d(ctx, 5, 0, "v");
    assert_null(sn_matmul(ctx, v, b, false, true));
    assert_non_null(strstr(sn_last_error(), "at least 2 dims"));
    sn_clear_error();
    assert_null(sn_matmul(ctx, NULL, b, false, false));
    assert_non_null(strstr(sn_last_error(), "matmul"));
    /* linear */
    sn_tensor *w = sn_new_2d(ctx, 7, 4, 0, "w");
    assert_null(sn_linear(ctx, a, w, NULL));
    assert_non_null(strstr(sn_last_error(), "linear"));
    assert_non_null(strstr(sn_last_error(), "4 input features but the input's last dim is 5"));
    sn_tensor *w5 = sn_new_2d(ctx, 7, 5, 0, "w5"), *bb = sn_new_1d(ctx, 6, 0, "bias");
    assert_null(sn_linear(ctx, a, w5, bb));
    assert_non_null(strstr(sn_last_error(), "bias must be [7]"));
    assert_null(sn_linear(ctx, a, v, NULL));
    assert_non_null(strstr(sn_last_error(), "2-D"));
    sn_clear_error();
    assert_null(sn_linear(ctx, a, NULL, NULL));
    assert_non_null(strstr(sn_last_error(), "linear"));
    /* linear_act: an invalid activation or its parameters */
    int n0 = sn_ctx_count(ctx);
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, (sn_act)99, 0, 0));
    assert_non_null(strstr(sn_last_error(), "linear"));
    assert_non_null(strstr(sn_last_error(), "unknown activation 99"));
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, (sn_act)-1, 0, 0));
    assert_non_null(strstr(sn_last_error(), "linear: unknown activation"));
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, SN_ACT_COUNT, 0, 0));
    assert_non_null(strstr(sn_last_error(), "linear: unknown activation"));
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, SN_ACT_ELU, -1.0f, 0));
    assert_non_null(strstr(sn_last_error(), "linear: ELU alpha"));
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, SN_ACT_SOFTPLUS, 0.0f, 20.0f));
    assert_non_null(strstr(sn_last_error(), "linear: softplus beta"));
    sn_clear_error();
    assert_null(sn_linear_act(ctx, a, w5, NULL, SN_ACT_SOFTPLUS, 1.0f, NAN));
    assert_non_null(strstr(sn_last_error(), "softplus"));
    assert_int_equal(sn_ctx_count(ctx), n0); /* no node left behind */
    sn_clear_error();
    assert_null(sn_linear_act(ctx, NULL, w5, NULL, SN_ACT_RELU, 0, 0));
    assert_non_null(strstr(sn_last_error(), "linear"));
    /* a fused softplus below threshold 17 builds, but has no gradient from its output */
    sn_tensor *y = sn_linear_act(ctx, a, w5, NULL, SN_ACT_SOFTPLUS, 1.0f, 5.0f);
    assert_non_null(y);
    a->flags |= SN_FLAG_NEEDS_GRAD;
    sn_tensor *ds[3] = {0};
    sn_clear_error();
    assert_int_equal(sn_grad_matmul(ctx, y, y, ds), SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), "linear"));
    assert_non_null(strstr(sn_last_error(), "threshold >= 17"));
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_variants), cmocka_unit_test(test_matmul_2d),
        cmocka_unit_test(test_linear),          cmocka_unit_test(test_bias_grad_axis1),
        cmocka_unit_test(test_matmul_bad_input), cmocka_unit_test(test_linear_act),
        cmocka_unit_test(test_linear_act_vs_unfused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
