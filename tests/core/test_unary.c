/* unary ops: relu, elu, softplus, sigmoid, tanh and their backward ops (forward vs float64,
 * backward vs finite differences, extremes, bad input). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"
#include "backends/cpu/vmath.h"

typedef struct {
    sn_op op;
    double p0, p1;
    int64_t n;
} un_ud;

static void ref_unary(void *ud, double **in, double *out) {
    un_ud *u = ud;
    for (int64_t i = 0; i < u->n; i++) {
        double x = in[0][i], y = 0;
        switch (u->op) {
        case SN_OP_RELU: y = x > 0 ? x : 0; break;
        case SN_OP_ELU: y = x > 0 ? x : u->p0 * (exp(x) - 1); break;
        case SN_OP_SOFTPLUS: y = x * u->p0 > u->p1 ? x : log1p(exp(u->p0 * x)) / u->p0; break;
        case SN_OP_SIGMOID: y = 1 / (1 + exp(-x)); break;
        case SN_OP_TANH: y = tanh(x); break;
        default: break;
        }
        out[i] = y;
    }
}

static void run_unary(sn_op op, float p0, float p1, float lo, float hi) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 100 + (uint64_t)op;
    int64_t sh[3] = {3, 41, 37};
    sn_tensor *x = leaf(ctx, 3, sh, "x", &seed, lo, hi, true), *y = NULL;
    switch (op) {
    case SN_OP_RELU: y = sn_relu(ctx, x); break;
    case SN_OP_ELU: y = sn_elu(ctx, x, p0); break;
    case SN_OP_SOFTPLUS: y = sn_softplus(ctx, x, p0, p1); break;
    case SN_OP_SIGMOID: y = sn_sigmoid(ctx, x); break;
    case SN_OP_TANH: y = sn_tanh(ctx, x); break;
    default: break;
    }
    assert_non_null(y);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_unary(ctx, y, dy, ds));
    assert_true(sn_same_shape(ds[0], x));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    un_ud u = {op, p0, p1, sn_nelem(x)};
    ref_t r = {.f = ref_unary, .ud = &u, .nout = sn_nelem(x)};
    ref_add(&r, x->data, sn_nelem(x));
    check_fwd(sn_op_name(op), y->data, &r, 2e-6);
    check_grad(sn_op_name(op), ds[0]->data, &r, dy->data, 0, 1e-4);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_relu(void **state) { run_unary(SN_OP_RELU, 0, 0, -2, 2); }
static void test_elu(void **state) {
    run_unary(SN_OP_ELU, 1.0f, 0, -4, 3);
    run_unary(SN_OP_ELU, 0.3f, 0, -4, 3);
}
/* beta 2, threshold 3: inputs on both sides of the linear cut-over; then PyTorch's defaults */
static void test_softplus(void **state) {
    run_unary(SN_OP_SOFTPLUS, 2.0f, 3.0f, -4, 4);
    run_unary(SN_OP_SOFTPLUS, 1.0f, 20.0f, -30, 30);
}
static void test_sigmoid(void **state) { run_unary(SN_OP_SIGMOID, 0, 0, -8, 8); }
static void test_tanh(void **state) { run_unary(SN_OP_TANH, 0, 0, -4, 4); }

/* SOFTPLUS_BWD with ip0 = 1 reads the forward output y (the fused epilogues' form):
 * vs finite differences of the float64 softplus, and vs the form that reads x */
static void run_softplus_from_y(float beta, float thr, float lo, float hi) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 300 + (uint64_t)(beta * 10);
    int64_t sh[3] = {3, 17, 29};
    sn_tensor *x = leaf(ctx, 3, sh, "x", &seed, lo, hi, true);
    sn_tensor *y = sn_softplus(ctx, x, beta, thr);
    assert_non_null(y);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_unary(ctx, y, dy, ds)); /* from x */
    sn_tensor *s[2] = {dy, y};
    sn_tensor *gy = sn_new_op(ctx, SN_OP_SOFTPLUS_BWD, 2, s, 3, sh);
    assert_non_null(gy);
    gy->ip[0] = 1;
    gy->fp[0] = beta;
    gy->fp[1] = thr;
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    un_ud u = {SN_OP_SOFTPLUS, beta, thr, sn_nelem(x)};
    ref_t r = {.f = ref_unary, .ud = &u, .nout = sn_nelem(x)};
    ref_add(&r, x->data, sn_nelem(x));
    check_grad("softplus_bwd from y", gy->data, &r, dy->data, 0, 1e-5);
    ref_free(&r);
    const float *a = gy->data, *b = ds[0]->data;
    for (int64_t i = 0; i < sn_nelem(x); i++)
        if (!(fabsf(a[i] - b[i]) <= 4e-7f * (fabsf(b[i]) + 1e-30f) + 1e-37f))
            fail_msg("softplus_bwd from y vs from x at %g: %.9g vs %.9g", (double)((float *)x->data)[i], (double)a[i],
                     (double)b[i]);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* on the portable path, then (where the CPU has it) the AVX-512 one */
static void test_softplus_bwd_from_y(void **state) {
    for (int level = 0; level <= 2; level += 2) {
        sn_vm_cap = level;
        run_softplus_from_y(1.0f, 20.0f, -30, 30);  /* the CRN's: both sides of the threshold */
        run_softplus_from_y(8.0f, 17.0f, -4, 4);    /* beta*x on both sides of a threshold of 17 */
        run_softplus_from_y(0.5f, 20.0f, -12, 0);   /* small gradients: relative accuracy, no cancellation */
    }
    sn_vm_cap = 2;
}

/* large inputs must not produce inf/NaN */
static void test_unary_extremes(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *x = sn_new_1d(ctx, 6, 0, "x");
    float xs[6] = {-1000.0f, -90.0f, -1e-3f, 1e-3f, 90.0f, 1000.0f};
    x->data = xs;
    sn_tensor *ys[5] = {sn_relu(ctx, x), sn_elu(ctx, x, 1.0f), sn_softplus(ctx, x, 1.0f, 20.0f), sn_sigmoid(ctx, x),
                        sn_tanh(ctx, x)};
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 6; i++)
            if (!isfinite(((float *)ys[k]->data)[i]))
                fail_msg("%s(%g) is not finite", sn_op_name(ys[k]->op), (double)xs[i]);
    assert_true(((float *)ys[2]->data)[5] == 1000.0f);  /* softplus above the threshold is x */
    assert_true(((float *)ys[3]->data)[0] == 0.0f);
    sn_test_free_data(ctx);
    x->data = NULL;
    sn_ctx_free(ctx);
}

static void test_unary_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *x = sn_new_1d(ctx, 4, 0, "x");
    EXPECT_FAIL(sn_relu(ctx, NULL), "NULL");
    EXPECT_FAIL(sn_tanh(ctx, NULL), "NULL");
    EXPECT_FAIL(sn_elu(ctx, x, -1.0f), "elu");
    EXPECT_FAIL(sn_softplus(ctx, x, 0.0f, 20.0f), "softplus");
    EXPECT_FAIL(sn_softplus(ctx, x, -1.0f, 20.0f), "beta");
    /* the backward ops are not differentiated again */
    x->flags |= SN_FLAG_NEEDS_GRAD;
    sn_tensor *y = sn_relu(ctx, x), *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_unary(ctx, y, y, ds));
    ds[0]->flags |= SN_FLAG_NEEDS_GRAD;
    sn_tensor *ds2[SN_MAX_SRC] = {0};
    ds[0]->src[0]->flags |= SN_FLAG_NEEDS_GRAD;
    EXPECT_STATUS(sn_grad_unary(ctx, ds[0], ds[0], ds2), SN_ERR_UNSUPPORTED, "relu_bwd");
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu),    cmocka_unit_test(test_elu),           cmocka_unit_test(test_softplus),
        cmocka_unit_test(test_sigmoid), cmocka_unit_test(test_tanh),          cmocka_unit_test(test_unary_extremes),
        cmocka_unit_test(test_unary_bad_input), cmocka_unit_test(test_softplus_bwd_from_y),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
