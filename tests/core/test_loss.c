/* losses and reductions: mse, l1, sum, mean, sumsq (forward vs float64, gradients vs finite
 * differences, bad input). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"

typedef struct {
    sn_op op;
    int64_t n;
    int nsrc;
    int64_t ns[4];
} ls_ud;

static void ref_loss_fn(void *ud, double **in, double *out) {
    ls_ud *u = ud;
    double s = 0;
    switch (u->op) {
    case SN_OP_MSE:
        for (int64_t i = 0; i < u->n; i++) s += (in[0][i] - in[1][i]) * (in[0][i] - in[1][i]);
        s /= (double)u->n;
        break;
    case SN_OP_L1:
        for (int64_t i = 0; i < u->n; i++) s += fabs(in[0][i] - in[1][i]);
        s /= (double)u->n;
        break;
    case SN_OP_SUM:
    case SN_OP_MEAN:
        for (int64_t i = 0; i < u->n; i++) s += in[0][i];
        if (u->op == SN_OP_MEAN) s /= (double)u->n;
        break;
    case SN_OP_SUMSQ:
        for (int k = 0; k < u->nsrc; k++)
            for (int64_t i = 0; i < u->ns[k]; i++) s += in[k][i] * in[k][i];
        break;
    default: break;
    }
    out[0] = s;
}

static void run_loss(sn_op op, int64_t d0, int64_t d1, int64_t d2) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 60 + (uint64_t)op + (uint64_t)d0;
    int64_t sh[3] = {d0, d1, d2};
    sn_tensor *a = leaf(ctx, 3, sh, "a", &seed, -1, 1, true);
    sn_tensor *b = (op == SN_OP_MSE || op == SN_OP_L1) ? leaf(ctx, 3, sh, "b", &seed, -1, 1, true) : NULL;
    sn_tensor *y = op == SN_OP_MSE ? sn_mse(ctx, a, b)
                   : op == SN_OP_L1 ? sn_l1(ctx, a, b)
                   : op == SN_OP_SUM ? sn_sum(ctx, a)
                                     : sn_mean(ctx, a);
    assert_non_null(y);
    assert_int_equal(y->ndim, 1);
    assert_int_equal(y->shape[0], 1);
    int64_t one = 1;
    sn_tensor *dl = leaf(ctx, 1, &one, "dl", &seed, 0.5f, 2.0f, false);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_loss(ctx, y, dl, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    ls_ud u = {op, sn_nelem(a), 1, {0}};
    ref_t r = {.f = ref_loss_fn, .ud = &u, .nout = 1};
    ref_add(&r, a->data, sn_nelem(a));
    if (b) ref_add(&r, b->data, sn_nelem(b));
    check_fwd(sn_op_name(op), y->data, &r, 1e-6);
    /* finite differences cost O(n^2): gradients on the small shape only (the bwd kernels are elementwise) */
    for (int i = 0; i < r.nin; i++) {
        assert_true(sn_same_shape(ds[i], a));
        if (sn_nelem(a) <= 4096) check_grad(sn_op_name(op), ds[i]->data, &r, dl->data, i, 1e-4);
    }
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* sizes beyond one reduction chunk so the per-thread partials are exercised */
static void test_mse(void **state) {
    run_loss(SN_OP_MSE, 3, 7, 11);
    run_loss(SN_OP_MSE, 4, 101, 161);
}
static void test_l1(void **state) {
    run_loss(SN_OP_L1, 3, 7, 11);
    run_loss(SN_OP_L1, 4, 101, 161);
}
static void test_sum_mean(void **state) {
    run_loss(SN_OP_SUM, 3, 7, 11);
    run_loss(SN_OP_MEAN, 3, 7, 11);
    run_loss(SN_OP_SUM, 4, 101, 161);
    run_loss(SN_OP_MEAN, 4, 101, 161);
}

static void test_sumsq(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 70;
    int64_t s0[2] = {17, 33}, s1[1] = {100003}, s2[4] = {2, 3, 4, 5};
    sn_tensor *t[3] = {leaf(ctx, 2, s0, "g0", &seed, -1, 1, false), leaf(ctx, 1, s1, "g1", &seed, -1, 1, false),
                       leaf(ctx, 4, s2, "g2", &seed, -3, 3, false)};
    sn_tensor *y = sn_sumsq(ctx, 3, t);
    assert_non_null(y);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    ls_ud u = {SN_OP_SUMSQ, 0, 3, {17 * 33, 100003, 120}};
    ref_t r = {.f = ref_loss_fn, .ud = &u, .nout = 1};
    for (int i = 0; i < 3; i++) ref_add(&r, t[i]->data, sn_nelem(t[i]));
    check_fwd("sumsq", y->data, &r, 1e-6);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_loss_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *a = sn_new_2d(ctx, 3, 4, 0, "a"), *b = sn_new_2d(ctx, 4, 3, 0, "b");
    EXPECT_FAIL(sn_mse(ctx, a, b), "mse_loss");
    EXPECT_FAIL(sn_mse(ctx, a, b), "[4,3]");
    EXPECT_FAIL(sn_l1(ctx, a, b), "l1_loss");
    EXPECT_FAIL(sn_mse(ctx, a, NULL), "NULL");
    EXPECT_FAIL(sn_sum(ctx, NULL), "NULL");
    EXPECT_FAIL(sn_mean(ctx, NULL), "NULL");
    sn_tensor *many[SN_MAX_SRC + 1];
    for (int i = 0; i <= SN_MAX_SRC; i++) many[i] = a;
    EXPECT_FAIL(sn_sumsq(ctx, SN_MAX_SRC + 1, many), "sumsq");
    EXPECT_FAIL(sn_sumsq(ctx, 0, many), "sumsq");
    many[1] = NULL;
    EXPECT_FAIL(sn_sumsq(ctx, 2, many), "NULL");
    /* sumsq is not differentiated */
    a->flags |= SN_FLAG_NEEDS_GRAD;
    sn_tensor *s = sn_sumsq(ctx, 1, &a), *ds[SN_MAX_SRC] = {0};
    EXPECT_STATUS(sn_grad_loss(ctx, s, s, ds), SN_ERR_UNSUPPORTED, "sumsq");
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mse),   cmocka_unit_test(test_l1),
        cmocka_unit_test(test_sum_mean), cmocka_unit_test(test_sumsq),
        cmocka_unit_test(test_loss_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
