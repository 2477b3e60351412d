/* shape ops: view/reshape, copy, concat, pad, slice, permute (forward vs float64, backward vs
 * finite differences, view offsets, bad input). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"

static void unravel(int nd, const int64_t *sh, int64_t i, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = i % sh[d];
        i /= sh[d];
    }
}
static int64_t ravel(int nd, const int64_t *sh, const int64_t *idx) {
    int64_t o = 0;
    for (int d = 0; d < nd; d++) o = o * sh[d] + idx[d];
    return o;
}

typedef struct {
    sn_op op;
    int nd, nsrc, axis;
    int64_t in[4][6], out[6];
    int p[12];
} sh_ud;

static void ref_shape(void *ud, double **in, double *out) {
    sh_ud *u = ud;
    int64_t n = 1, idx[6], sidx[6];
    for (int d = 0; d < u->nd; d++) n *= u->out[d];
    for (int64_t i = 0; i < n; i++) {
        unravel(u->nd, u->out, i, idx);
        double v = 0;
        switch (u->op) {
        case SN_OP_CONCAT: {
            int64_t k = idx[u->axis];
            for (int s = 0; s < u->nsrc; s++) {
                if (k < u->in[s][u->axis]) {
                    memcpy(sidx, idx, sizeof idx);
                    sidx[u->axis] = k;
                    v = in[s][ravel(u->nd, u->in[s], sidx)];
                    break;
                }
                k -= u->in[s][u->axis];
            }
            break;
        }
        case SN_OP_PAD: {
            bool inside = true;
            for (int d = 0; d < u->nd; d++) {
                sidx[d] = idx[d] - u->p[2 * d];
                if (sidx[d] < 0 || sidx[d] >= u->in[0][d]) inside = false;
            }
            v = inside ? in[0][ravel(u->nd, u->in[0], sidx)] : 0;
            break;
        }
        case SN_OP_SLICE:
            for (int d = 0; d < u->nd; d++) sidx[d] = idx[d] + u->p[d];
            v = in[0][ravel(u->nd, u->in[0], sidx)];
            break;
        case SN_OP_PERMUTE:
            for (int d = 0; d < u->nd; d++) sidx[u->p[d]] = idx[d];
            v = in[0][ravel(u->nd, u->in[0], sidx)];
            break;
        default: v = in[0][i]; break; /* copy, reshape */
        }
        out[i] = v;
    }
}

/* evaluates y (built from srcs), its gradients through sn_grad_shape, and checks both */
static void check_shape_op(sn_ctx *ctx, sn_tensor *y, int nsrc, sn_tensor **srcs, sh_ud *u, uint64_t *seed) {
    assert_non_null(y);
    sn_tensor *dy = leaf_like(ctx, y, "dy", seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_shape(ctx, y, dy, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    u->nd = y->ndim;
    u->nsrc = nsrc;
    memcpy(u->out, y->shape, sizeof u->out);
    ref_t r = {.f = ref_shape, .ud = u, .nout = sn_nelem(y)};
    for (int s = 0; s < nsrc; s++) {
        memcpy(u->in[s], srcs[s]->shape, sizeof u->in[s]);
        ref_add(&r, srcs[s]->data, sn_nelem(srcs[s]));
    }
    check_fwd(sn_op_name(y->op), y->data, &r, 1e-7);
    for (int s = 0; s < nsrc; s++) {
        assert_true(sn_same_shape(ds[s], srcs[s]));
        check_grad(sn_op_name(y->op), ds[s]->data, &r, dy->data, s, 1e-6);
    }
    ref_free(&r);
}

static void test_concat(void **state) {
    uint64_t seed = 1;
    for (int axis = 0; axis < 4; axis++) {
        sn_ctx *ctx = sn_ctx_new();
        int64_t s0[4] = {2, 3, 5, 7}, s1[4] = {2, 3, 5, 7}, s2[4] = {2, 3, 5, 7};
        s1[axis] = 4;
        s2[axis] = 1;
        sn_tensor *src[3] = {leaf(ctx, 4, s0, "a", &seed, -1, 1, true), leaf(ctx, 4, s1, "b", &seed, -1, 1, true),
                             leaf(ctx, 4, s2, "c", &seed, -1, 1, true)};
        sh_ud u = {.op = SN_OP_CONCAT, .axis = axis};
        check_shape_op(ctx, sn_concat(ctx, 3, src, axis), 3, src, &u, &seed);
        sn_test_free_data(ctx);
        sn_ctx_free(ctx);
    }
}

static void test_pad_slice(void **state) {
    uint64_t seed = 2;
    sn_ctx *ctx = sn_ctx_new();
    int64_t s[4] = {2, 3, 6, 5};
    sn_tensor *a = leaf(ctx, 4, s, "a", &seed, -1, 1, true);
    int causal[8] = {0, 0, 0, 0, 1, 0, 0, 0};  /* the CRN's one frame at the start of time */
    sh_ud u = {.op = SN_OP_PAD};
    memcpy(u.p, causal, sizeof causal);
    check_shape_op(ctx, sn_pad(ctx, a, causal), 1, &a, &u, &seed);
    int pads[8] = {1, 0, 0, 2, 3, 1, 2, 2};
    sh_ud u2 = {.op = SN_OP_PAD};
    memcpy(u2.p, pads, sizeof pads);
    check_shape_op(ctx, sn_pad(ctx, a, pads), 1, &a, &u2, &seed);
    int64_t st[4] = {1, 0, 2, 1}, sz[4] = {1, 3, 3, 4};
    sh_ud u3 = {.op = SN_OP_SLICE, .p = {1, 0, 2, 1}};
    check_shape_op(ctx, sn_slice(ctx, a, st, sz), 1, &a, &u3, &seed);
    int64_t st2[4] = {0, 0, 0, 0}, crop[4] = {2, 3, 5, 5};  /* drop the last time frame */
    sh_ud u4 = {.op = SN_OP_SLICE};
    check_shape_op(ctx, sn_slice(ctx, a, st2, crop), 1, &a, &u4, &seed);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_permute(void **state) {
    uint64_t seed = 3;
    int perms[4][4] = {{0, 2, 1, 3}, {3, 1, 0, 2}, {0, 1, 2, 3}, {1, 3, 2, 0}};
    for (int k = 0; k < 4; k++) {
        sn_ctx *ctx = sn_ctx_new();
        int64_t s[4] = {2, 5, 3, 7};
        sn_tensor *a = leaf(ctx, 4, s, "a", &seed, -1, 1, true);
        sh_ud u = {.op = SN_OP_PERMUTE};
        memcpy(u.p, perms[k], sizeof perms[k]);
        check_shape_op(ctx, sn_permute(ctx, a, perms[k]), 1, &a, &u, &seed);
        sn_test_free_data(ctx);
        sn_ctx_free(ctx);
    }
}

/* shapes large enough for the threaded box copy: row ranges that start mid-dim, runs
 * of 4 (the LSTM's permute), of 5, of 40 and strided ones, and a channel slice of a few
 * long rows cut into pieces; forward only, exact against the reference */
static void check_big(sn_ctx *ctx, sn_tensor *y, sn_tensor *a, sh_ud *u) {
    assert_non_null(y);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    u->nd = y->ndim;
    u->nsrc = 1;
    memcpy(u->out, y->shape, sizeof u->out);
    memcpy(u->in[0], a->shape, sizeof u->in[0]);
    int64_t n = sn_nelem(y), na = sn_nelem(a);
    double *in = malloc((size_t)na * sizeof *in), *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < na; i++) in[i] = ((float *)a->data)[i];
    ref_shape(u, &in, out);
    for (int64_t i = 0; i < n; i++)
        if (((float *)y->data)[i] != (float)out[i])
            fail_msg("%s: element %lld is %g, not %g", sn_op_name(y->op), (long long)i, (double)((float *)y->data)[i],
                     out[i]);
    free(in);
    free(out);
}

static void test_box_large(void **state) {
    uint64_t seed = 5;
    static const int64_t shapes[4][4] = {{2, 300, 70, 4}, {2, 130, 61, 5}, {1, 90, 33, 40}, {3, 40, 41, 6}};
    int perms[2][4] = {{0, 2, 1, 3}, {0, 3, 2, 1}};
    for (int k = 0; k < 4; k++)
        for (int q = 0; q < 2; q++) {
            sn_ctx *ctx = sn_ctx_new();
            sn_tensor *a = leaf(ctx, 4, shapes[k], "a", &seed, -1, 1, false);
            sh_ud u = {.op = SN_OP_PERMUTE};
            memcpy(u.p, perms[q], sizeof perms[q]);
            check_big(ctx, sn_permute(ctx, a, perms[q]), a, &u);
            sn_test_free_data(ctx);
            sn_ctx_free(ctx);
        }
    for (int k = 0; k < 2; k++) { /* the decoder's skip-gradient halves; a crop of the last frame */
        sn_ctx *ctx = sn_ctx_new();
        int64_t s[4] = {3, 8, 100, 90};
        sn_tensor *a = leaf(ctx, 4, s, "a", &seed, -1, 1, false);
        int64_t st[4] = {0, 4 * k, 0, 0}, sz[4] = {3, 4, 100, 90}, st2[4] = {0, 0, 0, 0}, sz2[4] = {3, 8, 99, 90};
        sh_ud u = {.op = SN_OP_SLICE, .p = {0, 4 * k, 0, 0}};
        check_big(ctx, k ? sn_slice(ctx, a, st, sz) : sn_slice(ctx, a, st2, sz2), a, &u);
        sn_test_free_data(ctx);
        sn_ctx_free(ctx);
    }
}

static void test_copy_reshape(void **state) {
    uint64_t seed = 4;
    sn_ctx *ctx = sn_ctx_new();
    int64_t s[3] = {4, 6, 5}, r[2] = {24, 5};
    sn_tensor *a = leaf(ctx, 3, s, "a", &seed, -1, 1, true);
    sh_ud u = {.op = SN_OP_COPY};
    check_shape_op(ctx, sn_copy(ctx, a), 1, &a, &u, &seed);
    sn_tensor *v = sn_reshape(ctx, a, 2, r);
    assert_non_null(v);
    assert_int_equal(v->op, SN_OP_VIEW);
    assert_ptr_equal(v->view_src, a);
    sh_ud u2 = {.op = SN_OP_VIEW};
    check_shape_op(ctx, v, 1, &a, &u2, &seed);
    assert_ptr_equal(v->data, a->data);  /* a view shares memory */
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* views at offsets resolve to the root buffer, as the packed-gradient reads need */
static void test_view_offsets(void **state) {
    uint64_t seed = 5;
    sn_ctx *ctx = sn_ctx_new();
    int64_t n = 200, s1[1] = {150}, s2[2] = {10, 4};
    sn_tensor *buf = leaf(ctx, 1, &n, "packed", &seed, -1, 1, true);
    sn_tensor *v1 = sn_view(ctx, buf, 1, s1, 30);
    sn_tensor *v2 = sn_view(ctx, v1, 2, s2, 64);
    assert_non_null(v2);
    assert_ptr_equal(v2->view_src, buf);
    assert_int_equal(v2->view_offs, (30 + 64) * sizeof(float));
    assert_int_equal(v2->ip[0], 64);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    const float *b = buf->data, *x = v2->data;
    for (int i = 0; i < 40; i++) assert_true(x[i] == b[94 + i]);
    /* an offset view is not differentiated */
    sn_tensor *ds[SN_MAX_SRC] = {0};
    EXPECT_STATUS(sn_grad_shape(ctx, v1, v1, ds), SN_ERR_UNSUPPORTED, "view");
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_shape_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *a = sn_new_4d(ctx, 2, 3, 4, 5, 0, "a"), *b = sn_new_4d(ctx, 2, 3, 9, 6, 0, "b"),
              *c = sn_new_2d(ctx, 2, 3, 0, "c");
    int64_t r[2] = {7, 8}, ok[2] = {6, 20}, neg[2] = {-1, 120};
    EXPECT_FAIL(sn_reshape(ctx, a, 2, r), "reshape");
    EXPECT_FAIL(sn_reshape(ctx, a, 2, r), "[7,8]");
    EXPECT_FAIL(sn_reshape(ctx, a, 2, neg), "reshape");
    EXPECT_FAIL(sn_reshape(ctx, NULL, 2, ok), "NULL");
    EXPECT_FAIL(sn_view(ctx, a, 2, ok, 1), "view");  /* 1 + 120 > 120 elements */
    EXPECT_FAIL(sn_view(ctx, a, 2, ok, -1), "view");
    sn_tensor *ab[2] = {a, b}, *ac[2] = {a, c}, *an[2] = {a, NULL};
    EXPECT_FAIL(sn_concat(ctx, 2, ab, 2), "concat");  /* dim 3 differs too */
    EXPECT_FAIL(sn_concat(ctx, 2, ac, 0), "concat");
    EXPECT_FAIL(sn_concat(ctx, 2, ab, 7), "axis");
    EXPECT_FAIL(sn_concat(ctx, 2, an, 0), "NULL");
    EXPECT_FAIL(sn_concat(ctx, 0, ab, 0), "concat");
    int negpad[8] = {0, 0, 0, 0, -1, 0, 0, 0};
    EXPECT_FAIL(sn_pad(ctx, a, negpad), "pad");
    EXPECT_FAIL(sn_pad(ctx, a, NULL), "pad");
    int64_t st[4] = {0, 0, 2, 0}, sz[4] = {2, 3, 3, 5};
    EXPECT_FAIL(sn_slice(ctx, a, st, sz), "slice");  /* 2+3 > 4 */
    int64_t st2[4] = {0, 0, -1, 0}, sz2[4] = {2, 3, 1, 5};
    EXPECT_FAIL(sn_slice(ctx, a, st2, sz2), "slice");
    int dup[4] = {0, 1, 1, 3}, oob[4] = {0, 1, 2, 4};
    EXPECT_FAIL(sn_permute(ctx, a, dup), "permute");
    EXPECT_FAIL(sn_permute(ctx, a, oob), "permute");
    EXPECT_FAIL(sn_permute(ctx, NULL, oob), "NULL");
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat),       cmocka_unit_test(test_pad_slice),    cmocka_unit_test(test_permute),
        cmocka_unit_test(test_box_large),
        cmocka_unit_test(test_copy_reshape), cmocka_unit_test(test_view_offsets), cmocka_unit_test(test_shape_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
