/* binary ops: add/mul with broadcasting, scale, reduce_to, expand (forward vs float64, backward vs
 * finite differences, bad input). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"

/* flat index of a (shape as) -> flat index of b (shape bs, right-aligned broadcast) */
typedef struct {
    int op, and_, bnd;
    int64_t as[6], bs[6];
    float s;
} bin_ud;

static int64_t bindex(const bin_ud *u, int64_t i) {
    int64_t bi = 0, st = 1;
    for (int d = u->and_ - 1; d >= 0; d--) {
        int64_t idx = i % u->as[d];
        i /= u->as[d];
        int bd = d - (u->and_ - u->bnd);
        if (bd >= 0) {
            if (u->bs[bd] != 1) bi += idx * st;
            st *= u->bs[bd];
        }
    }
    return bi;
}

static void ref_binary(void *ud, double **in, double *out) {
    bin_ud *u = ud;
    int64_t n = 1;
    for (int d = 0; d < u->and_; d++) n *= u->as[d];
    for (int64_t i = 0; i < n; i++) {
        double b = in[1][bindex(u, i)];
        out[i] = u->op == SN_OP_ADD ? in[0][i] + b : in[0][i] * b;
    }
}

static void run_binary(int op, int and_, const int64_t *as, int bnd, const int64_t *bs) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 7 + (uint64_t)op * 31 + (uint64_t)bnd;
    sn_tensor *a = leaf(ctx, and_, as, "a", &seed, -1, 1, true);
    sn_tensor *b = leaf(ctx, bnd, bs, "b", &seed, -1, 1, true);
    sn_tensor *y = op == SN_OP_ADD ? sn_add(ctx, a, b) : sn_mul(ctx, a, b);
    assert_non_null(y);
    assert_true(sn_same_shape(y, a));
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_binary(ctx, y, dy, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    bin_ud u = {.op = op, .and_ = and_, .bnd = bnd};
    memcpy(u.as, as, (size_t)and_ * sizeof *as);
    memcpy(u.bs, bs, (size_t)bnd * sizeof *bs);
    ref_t r = {.f = ref_binary, .ud = &u, .nout = sn_nelem(y)};
    ref_add(&r, a->data, sn_nelem(a));
    ref_add(&r, b->data, sn_nelem(b));
    check_fwd(sn_op_name(op), y->data, &r, 1e-6);
    assert_true(sn_same_shape(ds[0], a) && sn_same_shape(ds[1], b));
    check_grad(sn_op_name(op), ds[0]->data, &r, dy->data, 0, 1e-4);
    check_grad(sn_op_name(op), ds[1]->data, &r, dy->data, 1, 1e-4);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* add and mul over the broadcast patterns the models use */
static void test_add_mul_broadcast(void **state) {
    int64_t as[4] = {3, 4, 5, 7};
    int64_t same[4] = {3, 4, 5, 7}, chan[3] = {4, 1, 1}, last[1] = {7}, one[1] = {1}, mixed[4] = {3, 1, 5, 1},
            inner[2] = {5, 7};
    for (int op = SN_OP_ADD; op <= SN_OP_MUL; op++) {
        run_binary(op, 4, as, 4, same);
        run_binary(op, 4, as, 3, chan);
        run_binary(op, 4, as, 1, last);
        run_binary(op, 4, as, 1, one);
        run_binary(op, 4, as, 4, mixed);
        run_binary(op, 4, as, 2, inner);
    }
}

static void ref_scale(void *ud, double **in, double *out) {
    bin_ud *u = ud;
    for (int64_t i = 0; i < u->as[0]; i++) out[i] = in[0][i] * u->s;
}

static void test_scale(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 3;
    int64_t sh[2] = {37, 129};
    sn_tensor *a = leaf(ctx, 2, sh, "a", &seed, -2, 2, true);
    sn_tensor *y = sn_scale(ctx, a, -0.37f);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_binary(ctx, y, dy, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    bin_ud u = {.as = {37 * 129}, .s = -0.37f};
    ref_t r = {.f = ref_scale, .ud = &u, .nout = 37 * 129};
    ref_add(&r, a->data, sn_nelem(a));
    check_fwd("scale", y->data, &r, 1e-6);
    check_grad("scale", ds[0]->data, &r, dy->data, 0, 1e-4);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* reduce_to is the adjoint of broadcasting: checked against the same index map */
static void ref_reduce(void *ud, double **in, double *out) {
    bin_ud *u = ud;
    int64_t n = 1, m = 1;
    for (int d = 0; d < u->and_; d++) n *= u->as[d];
    for (int d = 0; d < u->bnd; d++) m *= u->bs[d];
    for (int64_t i = 0; i < m; i++) out[i] = 0;
    for (int64_t i = 0; i < n; i++) out[bindex(u, i)] += in[0][i];
}

static void run_reduce(int and_, const int64_t *as, int bnd, const int64_t *bs) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 11 + (uint64_t)bnd;
    sn_tensor *a = leaf(ctx, and_, as, "a", &seed, -1, 1, false);
    sn_tensor *y = sn_reduce_to(ctx, a, bnd, bs);
    assert_non_null(y);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    bin_ud u = {.and_ = and_, .bnd = bnd};
    memcpy(u.as, as, (size_t)and_ * sizeof *as);
    memcpy(u.bs, bs, (size_t)bnd * sizeof *bs);
    ref_t r = {.f = ref_reduce, .ud = &u, .nout = sn_nelem(y)};
    ref_add(&r, a->data, sn_nelem(a));
    check_fwd("reduce_to", y->data, &r, 1e-5);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_reduce_to(void **state) {
    int64_t as[4] = {3, 4, 5, 7};
    int64_t chan[3] = {4, 1, 1}, last[1] = {7}, one[1] = {1}, mixed[4] = {3, 1, 5, 1}, same[4] = {3, 4, 5, 7};
    run_reduce(4, as, 3, chan);
    run_reduce(4, as, 1, last);
    run_reduce(4, as, 1, one);
    run_reduce(4, as, 4, mixed);
    run_reduce(4, as, 4, same);
    int64_t big[2] = {300, 257}, col[2] = {300, 1};
    run_reduce(2, big, 2, col);
}

static void ref_expand(void *ud, double **in, double *out) {
    bin_ud *u = ud;
    for (int64_t i = 0; i < u->as[0]; i++) out[i] = in[0][0] * u->s;
}

static void test_expand(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 5;
    int64_t one[2] = {1, 1}, sh[3] = {3, 5, 11};
    sn_tensor *a = leaf(ctx, 2, one, "a", &seed, 0.5f, 1.5f, true);
    sn_tensor *y = sn_expand(ctx, a, 3, sh, 0.25f);
    assert_non_null(y);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_binary(ctx, y, dy, ds));
    assert_true(sn_same_shape(ds[0], a));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    bin_ud u = {.as = {3 * 5 * 11}, .s = 0.25f};
    ref_t r = {.f = ref_expand, .ud = &u, .nout = 3 * 5 * 11};
    ref_add(&r, a->data, 1);
    check_fwd("expand", y->data, &r, 1e-6);
    check_grad("expand", ds[0]->data, &r, dy->data, 0, 1e-4);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_binary_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *a = sn_new_2d(ctx, 3, 4, 0, "a"), *b5 = sn_new_1d(ctx, 5, 0, "b"), *big = sn_new_4d(ctx, 2, 3, 4, 1, 0, "big");
    EXPECT_FAIL(sn_add(ctx, a, b5), "add");
    EXPECT_FAIL(sn_add(ctx, a, b5), "[3,4]");
    EXPECT_FAIL(sn_mul(ctx, a, big), "mul");
    EXPECT_FAIL(sn_add(ctx, a, NULL), "NULL");
    EXPECT_FAIL(sn_mul(ctx, NULL, a), "NULL");
    EXPECT_FAIL(sn_scale(ctx, NULL, 2.0f), "NULL");
    int64_t bad[2] = {5, 4}, zero[1] = {0};
    EXPECT_FAIL(sn_reduce_to(ctx, a, 2, bad), "reduce_to");
    EXPECT_FAIL(sn_reduce_to(ctx, a, 1, zero), "reduce_to");
    EXPECT_FAIL(sn_expand(ctx, a, 2, bad, 1.0f), "expand");
    sn_tensor *s = sn_new_1d(ctx, 1, 0, "s");
    EXPECT_FAIL(sn_expand(ctx, s, 0, bad, 1.0f), "expand");
    /* reduce_to has no gradient (it lives in backward graphs only) */
    a->flags |= SN_FLAG_NEEDS_GRAD;
    int64_t tgt[1] = {4};
    sn_tensor *r = sn_reduce_to(ctx, a, 1, tgt), *ds[SN_MAX_SRC] = {0};
    assert_non_null(r);
    EXPECT_STATUS(sn_grad_binary(ctx, r, r, ds), SN_ERR_UNSUPPORTED, "reduce_to");
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_mul_broadcast), cmocka_unit_test(test_scale),  cmocka_unit_test(test_reduce_to),
        cmocka_unit_test(test_expand),            cmocka_unit_test(test_binary_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
