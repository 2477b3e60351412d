/* The data-parallel ops on the CPU with a stand-in collective: W identical processes
 * (the sum over the group is W times the local value). ALLREDUCE packs its inputs at
 * 64-aligned offsets (gaps zero) and scales the sum; synchronised BatchNorm over W
 * identical processes equals plain BatchNorm on the same batch (a wrong global count
 * would show), except the running variance, unbiased over W times the values; and an
 * ALLREDUCE with no collective attached does not plan. The real MPI group is tested in
 * tests/dist and tests/app/test_dist_train.c. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_calls;

static sn_status fake_allreduce(void *user, const void *src, void *dst, size_t n, bool f64, void *stream) {
    int w = *(int *)user;
    g_calls++;
    for (size_t i = 0; i < n; i++) {
        if (f64) ((double *)dst)[i] = w * ((const double *)src)[i];
        else ((float *)dst)[i] = (float)w * ((const float *)src)[i];
    }
    return SN_OK;
}

static int g_world = 2;
static sn_collective g_coll = {fake_allreduce, &g_world, 2, false};

static void fill(float *x, int64_t n, float a) {
    for (int64_t i = 0; i < n; i++) x[i] = sinf(a * (float)(i + 1)) + 0.1f * (float)(i % 7);
}

static void test_allreduce_packs_and_scales(void **state) {
    (void)state;
    sn_backend *b = sn_cpu_backend_new(1);
    b->coll = &g_coll;
    sn_ctx *c = sn_ctx_new();
    int64_t n[3] = {5, 70, 3};
    sn_tensor *in[3];
    float vals[3][70];
    for (int i = 0; i < 3; i++) {
        in[i] = sn_new_1d(c, n[i], SN_FLAG_PERSIST | SN_FLAG_INPUT, "g");
        fill(vals[i], n[i], 0.3f + (float)i);
    }
    sn_tensor *mean = sn_allreduce(c, 3, in, 0.5f), *sum = sn_allreduce(c, 1, in + 1, 1.0f);
    assert_non_null(mean);
    assert_int_equal(sn_nelem(mean), 64 + 128 + 3);
    assert_int_equal(sn_allreduce_offset(mean, 2), 192);
    assert_int_equal(sn_nelem(sum), 70);
    mean->flags |= SN_FLAG_OUTPUT;
    sum->flags |= SN_FLAG_OUTPUT;
    sn_graph *g = sn_graph_new(c);
    SN_ASSERT_OK(sn_graph_add(g, mean));
    SN_ASSERT_OK(sn_graph_add(g, sum));
    SN_ASSERT_OK(sn_ctx_alloc_persistent(c, b));
    for (int i = 0; i < 3; i++) SN_ASSERT_OK(sn_tensor_set(in[i], vals[i], n[i]));
    sn_plan_opts po = {.backend = b, .fallback = b};
    sn_plan *p = NULL;
    SN_ASSERT_OK(sn_plan_new(g, &po, &p));
    g_calls = 0;
    SN_ASSERT_OK(sn_plan_run(p));
    assert_int_equal(g_calls, 2); /* one collective call per bucket */
    float out[195], out2[70];
    SN_ASSERT_OK(sn_tensor_get(mean, out, 195));
    SN_ASSERT_OK(sn_tensor_get(sum, out2, 70));
    for (int i = 0; i < 3; i++)
        for (int64_t k = 0; k < n[i]; k++) assert_float_equal(out[sn_allreduce_offset(mean, i) + k], vals[i][k], 1e-6);
    for (int k = 5; k < 64; k++) assert_true(out[k] == 0.0f);
    for (int k = 64 + 70; k < 192; k++) assert_true(out[k] == 0.0f);
    for (int k = 0; k < 70; k++) assert_float_equal(out2[k], 2.0f * vals[1][k], 1e-6);
    sn_plan_free(p);
    /* without a collective the op has nowhere to run */
    b->coll = NULL;
    assert_int_not_equal(sn_plan_new(g, &po, &p), SN_OK);
    assert_non_null(strstr(sn_last_error(), "allreduce"));
    sn_graph_free(g);
    sn_ctx_free(c);
    sn_backend_free(b);
    /* bad arguments */
    c = sn_ctx_new();
    sn_tensor *t = sn_new_1d(c, 4, SN_FLAG_PERSIST, "t");
    assert_null(sn_allreduce(c, 0, &t, 1.0f));
    assert_null(sn_allreduce(c, 1, &t, 0.0f));
    assert_int_equal(sn_batchnorm_sync(t), SN_ERR_INVALID_ARG);
    sn_ctx_free(c);
}

/* BN forward + backward of x [N,C,H,W]; sync: both nodes synchronised over g_world identical processes */
static void run_bn(bool sync, const float *x, const float *dyv, int64_t N, int64_t C, int64_t HW, float *y, float *dx,
                   float *dg, float *db, float *rv) {
    sn_backend *b = sn_cpu_backend_new(2);
    b->coll = &g_coll;
    sn_ctx *c = sn_ctx_new();
    sn_tensor *xt = sn_new_4d(c, N, C, HW, 1, SN_FLAG_PERSIST | SN_FLAG_INPUT, "x");
    sn_tensor *gm = sn_new_1d(c, C, SN_FLAG_PARAM, "gamma"), *bt = sn_new_1d(c, C, SN_FLAG_PARAM, "beta");
    sn_tensor *rm = sn_new_1d(c, C, SN_FLAG_PERSIST, "rm"), *rvt = sn_new_1d(c, C, SN_FLAG_PERSIST, "rv");
    sn_tensor *dyt = sn_new_4d(c, N, C, HW, 1, SN_FLAG_PERSIST | SN_FLAG_INPUT, "dy");
    xt->flags |= SN_FLAG_PARAM; /* so the backward produces dx */
    sn_tensor *yt = sn_batchnorm2d_elu(c, xt, gm, bt, rm, rvt, true, 1e-5f, 0.1f, 1.0f);
    /* loss = sum(y * dy): its gradient w.r.t. y is dy */
    sn_tensor *loss = sn_sum(c, sn_mul(c, yt, dyt));
    yt->flags |= SN_FLAG_OUTPUT;
    sn_graph *g = sn_graph_new(c);
    SN_ASSERT_OK(sn_graph_add(g, loss));
    SN_ASSERT_OK(sn_backward(g, loss));
    int nsync = 0;
    for (int i = 0; i < g->n && sync; i++)
        if (g->nodes[i]->op == SN_OP_BATCHNORM || g->nodes[i]->op == SN_OP_BATCHNORM_BWD) {
            SN_ASSERT_OK(sn_batchnorm_sync(g->nodes[i]));
            nsync++;
        }
    if (sync) assert_int_equal(nsync, 2);
    xt->grad->flags |= SN_FLAG_OUTPUT;
    gm->grad->flags |= SN_FLAG_OUTPUT;
    bt->grad->flags |= SN_FLAG_OUTPUT;
    SN_ASSERT_OK(sn_ctx_alloc_persistent(c, b));
    int64_t n = N * C * HW;
    float gv[16], bv[16], ones[16];
    fill(gv, C, 0.7f);
    fill(bv, C, 1.1f);
    for (int i = 0; i < C; i++) ones[i] = 1.0f;
    SN_ASSERT_OK(sn_tensor_set(xt, x, n));
    SN_ASSERT_OK(sn_tensor_set(dyt, dyv, n));
    SN_ASSERT_OK(sn_tensor_set(gm, gv, C));
    SN_ASSERT_OK(sn_tensor_set(bt, bv, C));
    SN_ASSERT_OK(sn_tensor_zero(rm));
    SN_ASSERT_OK(sn_tensor_set(rvt, ones, C));
    sn_plan_opts po = {.backend = b, .fallback = b};
    sn_plan *p = NULL;
    SN_ASSERT_OK(sn_plan_new(g, &po, &p));
    g_calls = 0;
    SN_ASSERT_OK(sn_plan_run(p));
    assert_int_equal(g_calls, sync ? 3 : 0); /* mean, variance; the backward's sums */
    SN_ASSERT_OK(sn_tensor_get(yt, y, n));
    SN_ASSERT_OK(sn_tensor_get(xt->grad, dx, n));
    SN_ASSERT_OK(sn_tensor_get(gm->grad, dg, C));
    SN_ASSERT_OK(sn_tensor_get(bt->grad, db, C));
    SN_ASSERT_OK(sn_tensor_get(rvt, rv, C));
    sn_plan_free(p);
    sn_graph_free(g);
    sn_ctx_free(c);
    sn_backend_free(b);
}

static void test_sync_batchnorm_identical_ranks(void **state) {
    (void)state;
    enum { N = 3, C = 4, HW = 10, n = N * C * HW };
    float x[n], dy[n], y0[n], y1[n], dx0[n], dx1[n], dg0[C], dg1[C], db0[C], db1[C], rv0[C], rv1[C];
    fill(x, n, 0.37f);
    fill(dy, n, 0.71f);
    run_bn(false, x, dy, N, C, HW, y0, dx0, dg0, db0, rv0);
    run_bn(true, x, dy, N, C, HW, y1, dx1, dg1, db1, rv1);
    for (int i = 0; i < n; i++) {
        assert_float_equal(y1[i], y0[i], 1e-5);
        assert_float_equal(dx1[i], dx0[i], 1e-5);
    }
    for (int k = 0; k < C; k++) {
        assert_float_equal(dg1[k], dg0[k], 1e-4);
        assert_float_equal(db1[k], db0[k], 1e-4);
        /* rv = 0.9 + 0.1 * unbiased var: over M = N*HW values locally, 2M in the group */
        double M = N * HW, var = (rv0[k] - 0.9) / 0.1 * (M - 1) / M;
        assert_float_equal(rv1[k], 0.9 + 0.1 * var * (2 * M) / (2 * M - 1), 1e-5);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce_packs_and_scales),
        cmocka_unit_test(test_sync_batchnorm_identical_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
