/* batchnorm2d: training and eval forward vs float64, dx/dgamma/dbeta (packed output read through
 * views) vs finite differences, saved mean/invstd, running-stat updates as PyTorch, bad input.
 * The same for the fused batchnorm2d_elu (ELU(BN(x)) in one op). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"
#include "backends/cpu/vmath.h"

typedef struct {
    bool training;
    int64_t N, C, HW;
    double eps;
    const double *rm, *rv; /* eval statistics */
    bool elu;              /* fused: ELU(BN(x)) with alpha */
    double alpha;
} bn_ud;

static void bn_stats(const bn_ud *u, const double *x, int64_t c, double *mean, double *var) {
    double s = 0, q = 0, cnt = (double)(u->N * u->HW);
    for (int64_t n = 0; n < u->N; n++)
        for (int64_t i = 0; i < u->HW; i++) s += x[(n * u->C + c) * u->HW + i];
    *mean = s / cnt;
    for (int64_t n = 0; n < u->N; n++)
        for (int64_t i = 0; i < u->HW; i++) {
            double d = x[(n * u->C + c) * u->HW + i] - *mean;
            q += d * d;
        }
    *var = q / cnt; /* biased */
}

static void ref_bn(void *ud, double **in, double *out) {
    bn_ud *u = ud;
    const double *x = in[0], *g = in[1], *b = in[2];
    for (int64_t c = 0; c < u->C; c++) {
        double mean, var;
        if (u->training) bn_stats(u, x, c, &mean, &var);
        else {
            mean = u->rm[c];
            var = u->rv[c];
        }
        double is = 1.0 / sqrt(var + u->eps);
        for (int64_t n = 0; n < u->N; n++)
            for (int64_t i = 0; i < u->HW; i++) {
                int64_t k = (n * u->C + c) * u->HW + i;
                double z = (x[k] - mean) * is * g[c] + b[c];
                out[k] = u->elu && z <= 0 ? u->alpha * expm1(z) : z;
            }
    }
}

/* alpha > 0: the fused batchnorm2d_elu */
static void run_bn(bool training, int64_t N, int64_t C, int64_t H, int64_t W, float alpha) {
    sn_ctx *ctx = sn_ctx_new();
    bool elu = alpha > 0;
    const char *what = elu ? "batchnorm2d_elu" : "batchnorm2d";
    uint64_t seed = 40 + (uint64_t)training + (uint64_t)C + (elu ? 100 : 0);
    int64_t xs[4] = {N, C, H, W};
    float eps = 1e-5f, mom = 0.1f;
    sn_tensor *x = leaf(ctx, 4, xs, "x", &seed, -1.5f, 2.5f, true);
    sn_tensor *g = leaf(ctx, 1, &C, "gamma", &seed, 0.5f, 1.5f, true);
    sn_tensor *b = leaf(ctx, 1, &C, "beta", &seed, -0.5f, 0.5f, true);
    sn_tensor *rm = leaf(ctx, 1, &C, "running_mean", &seed, -0.5f, 0.5f, false);
    sn_tensor *rv = leaf(ctx, 1, &C, "running_var", &seed, 0.5f, 1.5f, false);
    double *rm0 = to_d(rm->data, C), *rv0 = to_d(rv->data, C);
    sn_tensor *y = elu ? sn_batchnorm2d_elu(ctx, x, g, b, rm, rv, training, eps, mom, alpha)
                       : sn_batchnorm2d(ctx, x, g, b, rm, rv, training, eps, mom);
    if (!y) fail_msg("%s", sn_last_error());
    assert_int_equal(y->extra, 2 * sn_align64(C) * sizeof(float));
    assert_int_equal(y->ip[1], elu ? 1 : 0);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_batchnorm(ctx, y, dy, ds));
    assert_null(ds[3]);
    assert_null(ds[4]);
    /* the backward node carries the fused activation */
    sn_tensor *bwd = sn_root(ds[0]);
    assert_int_equal(bwd->op, SN_OP_BATCHNORM_BWD);
    assert_int_equal(bwd->ip[1], elu ? 1 : 0);
    if (elu) assert_true(bwd->fp[2] == alpha);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));

    bn_ud u = {training, N, C, H * W, eps, rm0, rv0, elu, alpha};
    ref_t r = {.f = ref_bn, .ud = &u, .nout = sn_nelem(y)};
    ref_add(&r, x->data, sn_nelem(x));
    ref_add(&r, g->data, C);
    ref_add(&r, b->data, C);
    check_fwd(what, y->data, &r, 1e-5 /* f32 normalise; ELU's expm1 within a few ulp */);
    if (elu) { /* inputs span both sides of the ELU's kink */
        int64_t neg = 0;
        for (int64_t k = 0; k < sn_nelem(y); k++) neg += ((const float *)y->data)[k] < 0;
        assert_true(neg > sn_nelem(y) / 10 && neg < sn_nelem(y) * 9 / 10);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(sn_same_shape(ds[i], y->src[i]));
        check_grad(what, ds[i]->data, &r, dy->data, i, 1e-4 /* f32 sums vs exact derivative */);
    }
    /* saved statistics and the running-stat update (PyTorch: unbiased variance, momentum m) */
    const float *mean = sn_extra_ptr(y), *invstd = mean + sn_align64(C);
    const float *rmf = rm->data, *rvf = rv->data;
    int64_t cnt = N * H * W;
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        if (training) bn_stats(&u, r.in[0], c, &m, &v);
        else {
            m = rm0[c];
            v = rv0[c];
        }
        double is = 1.0 / sqrt(v + eps);
        assert_true(fabs(mean[c] - m) <= 1e-6 * fmax(1, fabs(m)));
        assert_true(fabs(invstd[c] - is) <= 1e-5 * is);
        double erm = training ? (1 - mom) * rm0[c] + mom * m : rm0[c];
        double erv = training ? (1 - mom) * rv0[c] + mom * v * cnt / (cnt - 1) : rv0[c];
        if (!(fabs(rmf[c] - erm) <= 1e-6 && fabs(rvf[c] - erv) <= 1e-6 * erv))
            fail_msg("running stats of channel %lld: got %g %g, expected %g %g", (long long)c, rmf[c], rvf[c], erm,
                     erv);
    }
    free(rm0);
    free(rv0);
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_batchnorm_training(void **state) {
    run_bn(true, 3, 4, 5, 7, 0);
    run_bn(true, 2, 67, 3, 2, 0);  /* C > 64: invstd starts at the aligned offset 128 */
}

static void test_batchnorm_eval(void **state) { run_bn(false, 3, 4, 5, 7, 0); }

static void test_batchnorm_elu_training(void **state) {
    run_bn(true, 3, 4, 5, 7, 1.0f);
    run_bn(true, 2, 67, 3, 2, 0.7f);  /* C > 64, alpha != 1 */
    run_bn(true, 2, 3, 5, 23, 1.3f);  /* rows of 115: vector bodies and remainders */
}

static void test_batchnorm_elu_eval(void **state) {
    run_bn(false, 3, 4, 5, 7, 1.0f);
    run_bn(false, 2, 5, 3, 11, 0.5f);
}

/* runs past the kernels' block of 2048 with tails, on the portable path and (where the
 * CPU has it) the AVX-512 one: forward, saved stats and the fused ELU backward against the
 * float64 closed form (no finite differences at this size); x around 100 as well, where
 * a one-pass sum of squares would cancel */
static void run_bn_large(int level, float lo, float hi) {
    sn_vm_cap = level;
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 77;
    int64_t N = 2, C = 3, H = 45, W = 50, HW = H * W, xs[4] = {N, C, H, W};
    sn_tensor *x = leaf(ctx, 4, xs, "x", &seed, lo, hi, true);
    sn_tensor *g = leaf(ctx, 1, &C, "gamma", &seed, 0.5f, 1.5f, true);
    sn_tensor *b = leaf(ctx, 1, &C, "beta", &seed, -0.5f, 0.5f, true);
    sn_tensor *rm = leaf(ctx, 1, &C, "rm", &seed, 0, 0, false), *rv = leaf(ctx, 1, &C, "rv", &seed, 1, 1, false);
    sn_tensor *y = sn_batchnorm2d_elu(ctx, x, g, b, rm, rv, true, 1e-5f, 0.1f, 1.0f);
    assert_non_null(y);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_batchnorm(ctx, y, dy, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    const float *xf = x->data, *gf = g->data, *bf = b->data, *yf = y->data, *dyf = dy->data;
    const float *mean = sn_extra_ptr(y), *invstd = mean + sn_align64(C);
    double cnt = (double)(N * HW), emax[4] = {0}, rmax[4] = {0};
    double *dz = malloc((size_t)(N * HW) * sizeof *dz), *xh = malloc((size_t)(N * HW) * sizeof *xh);
    for (int64_t c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) s += xf[(n * C + c) * HW + i];
        double mu = s / cnt;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) q += pow(xf[(n * C + c) * HW + i] - mu, 2);
        double is = 1 / sqrt(q / cnt + 1e-5), sdz = 0, sdzx = 0;
        if (!(fabs(mean[c] - mu) <= 1e-6 * fmax(1, fabs(mu)) && fabs(invstd[c] - is) <= 1e-5 * is &&
              fabs(((float *)rv->data)[c] - (0.9 + 0.1 * q / (cnt - 1))) <= 1e-6))
            fail_msg("level %d channel %lld: mean %.9g (%.9g), invstd %.9g (%.9g)", level, (long long)c, mean[c], mu,
                     invstd[c], is);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (n * C + c) * HW, t = n * HW + i;
                xh[t] = (xf[k + i] - mu) * is;
                double z = xh[t] * gf[c] + bf[c], yr = z > 0 ? z : expm1(z);
                emax[0] = fmax(emax[0], fabs(yf[k + i] - yr));
                /* y = x*scale + shift in f32: the rounding of x*scale, not of y, sets the error */
                rmax[0] = fmax(rmax[0], fmax(fabs(yr), fabs(xf[k + i] * is * gf[c])));
                dz[t] = dyf[k + i] * (z > 0 ? 1 : exp(z));
                sdz += dz[t];
                sdzx += dz[t] * xh[t];
            }
        emax[2] = fmax(emax[2], fabs(((float *)ds[1]->data)[c] - sdzx));
        rmax[2] = fmax(rmax[2], fabs(sdzx));
        emax[3] = fmax(emax[3], fabs(((float *)ds[2]->data)[c] - sdz));
        rmax[3] = fmax(rmax[3], fabs(sdz));
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) {
                int64_t t = n * HW + i;
                double dx = gf[c] * is / cnt * (cnt * dz[t] - sdz - xh[t] * sdzx);
                emax[1] = fmax(emax[1], fabs(((float *)ds[0]->data)[(n * C + c) * HW + i] - dx));
                rmax[1] = fmax(rmax[1], fabs(dx));
            }
    }
    static const char *what[4] = {"y", "dx", "dgamma", "dbeta"};
    for (int k = 0; k < 4; k++)
        if (!(emax[k] <= (k ? 1e-4 : 1e-5) * fmax(rmax[k], k == 3 ? 1.0 : 1e-30)))
            fail_msg("level %d, x in [%g, %g]: %s max err %.3g of max %.3g", level, lo, hi, what[k], emax[k], rmax[k]);
    free(dz);
    free(xh);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_vm_cap = 2;
}

static void test_batchnorm_large(void **state) {
    for (int level = 0; level <= 2; level += 2) {
        run_bn_large(level, -1.5f, 2.5f);
        run_bn_large(level, 100.0f, 101.0f);
    }
}

/* two training steps compound the running stats as PyTorch does */
static void test_batchnorm_running_two_steps(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 9;
    int64_t C = 3, xs[4] = {2, 3, 4, 5};
    sn_tensor *x = leaf(ctx, 4, xs, "x", &seed, -2, 3, false);
    sn_tensor *g = leaf(ctx, 1, &C, "g", &seed, 1, 1, false), *b = leaf(ctx, 1, &C, "b", &seed, 0, 0, false);
    sn_tensor *rm = leaf(ctx, 1, &C, "rm", &seed, 0, 0, false), *rv = leaf(ctx, 1, &C, "rv", &seed, 1, 1, false);
    sn_tensor *y1 = sn_batchnorm2d(ctx, x, g, b, rm, rv, true, 1e-5f, 0.1f);
    sn_tensor *y2 = sn_batchnorm2d(ctx, x, g, b, rm, rv, true, 1e-5f, 0.1f);
    assert_non_null(y1);
    assert_non_null(y2);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    bn_ud u = {true, 2, 3, 20, 1e-5, NULL, NULL};
    double *xd = to_d(x->data, sn_nelem(x));
    for (int64_t c = 0; c < C; c++) {
        double m, v, erm = 0, erv = 1;
        bn_stats(&u, xd, c, &m, &v);
        for (int s = 0; s < 2; s++) {
            erm = 0.9 * erm + 0.1 * m;
            erv = 0.9 * erv + 0.1 * v * 40 / 39;
        }
        assert_true(fabs(((float *)rm->data)[c] - erm) <= 1e-6);
        assert_true(fabs(((float *)rv->data)[c] - erv) <= 1e-6 * erv);
    }
    free(xd);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_batchnorm_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *x = sn_new_4d(ctx, 2, 3, 4, 5, 0, "x"), *c3 = sn_new_1d(ctx, 3, 0, "c3"),
              *c4 = sn_new_1d(ctx, 4, 0, "c4"), *x2 = sn_new_2d(ctx, 2, 3, 0, "x2"),
              *one = sn_new_4d(ctx, 1, 3, 1, 1, 0, "one");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x, c4, c3, c3, c3, true, 1e-5f, 0.1f), "batchnorm2d");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x, c3, c3, c3, c4, true, 1e-5f, 0.1f), "running_var");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x2, c3, c3, c3, c3, true, 1e-5f, 0.1f), "4-D");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x, c3, c3, c3, c3, true, 0.0f, 0.1f), "eps");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x, c3, c3, c3, c3, true, 1e-5f, 1.5f), "momentum");
    EXPECT_FAIL(sn_batchnorm2d(ctx, one, c3, c3, c3, c3, true, 1e-5f, 0.1f), "more than one value");
    EXPECT_FAIL(sn_batchnorm2d(ctx, x, NULL, c3, c3, c3, true, 1e-5f, 0.1f), "NULL");
    assert_non_null(sn_batchnorm2d(ctx, one, c3, c3, c3, c3, false, 1e-5f, 0.1f)); /* eval is fine */
    EXPECT_FAIL(sn_batchnorm2d_elu(ctx, x, c3, c3, c3, c3, true, 1e-5f, 0.1f, 0.0f), "alpha");
    EXPECT_FAIL(sn_batchnorm2d_elu(ctx, x, c3, c3, c3, c3, true, 1e-5f, 0.1f, NAN), "alpha");
    EXPECT_FAIL(sn_batchnorm2d_elu(ctx, x, c4, c3, c3, c3, true, 1e-5f, 0.1f, 1.0f), "batchnorm2d");
    EXPECT_FAIL(sn_batchnorm2d_elu(ctx, x2, c3, c3, c3, c3, true, 1e-5f, 0.1f, 1.0f), "4-D");
    EXPECT_FAIL(sn_batchnorm2d_elu(ctx, x, c3, NULL, c3, c3, true, 1e-5f, 0.1f, 1.0f), "NULL");
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_training),
        cmocka_unit_test(test_batchnorm_eval),
        cmocka_unit_test(test_batchnorm_elu_training),
        cmocka_unit_test(test_batchnorm_elu_eval),
        cmocka_unit_test(test_batchnorm_running_two_steps),
        cmocka_unit_test(test_batchnorm_large),
        cmocka_unit_test(test_batchnorm_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
