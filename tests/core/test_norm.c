/* LayerNorm and softmax: float64 references, finite-difference gradients, bad input. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { E = 13 }; /* an odd normalised width */
static int M = 6; /* rows: 2x3, or many to split the backward over threads */

/* nn.LayerNorm (biased variance) then loss = sum(y * R) */
static double ln_ref(const double *x, const double *g, const double *b, const double *R, double eps, double *y) {
    double L = 0;
    for (int r = 0; r < M; r++) {
        double mu = 0, var = 0;
        for (int e = 0; e < E; e++) mu += x[r * E + e];
        mu /= E;
        for (int e = 0; e < E; e++) var += (x[r * E + e] - mu) * (x[r * E + e] - mu);
        var /= E;
        for (int e = 0; e < E; e++) {
            double v = (x[r * E + e] - mu) / sqrt(var + eps) * g[e] + b[e];
            if (y) y[r * E + e] = v;
            L += v * R[r * E + e];
        }
    }
    return L;
}

static double sm_ref(const double *x, const double *R, double *y) {
    double L = 0;
    for (int r = 0; r < M; r++) {
        double mx = x[r * E], s = 0;
        for (int e = 1; e < E; e++) mx = fmax(mx, x[r * E + e]);
        for (int e = 0; e < E; e++) s += exp(x[r * E + e] - mx);
        for (int e = 0; e < E; e++) {
            double v = exp(x[r * E + e] - mx) / s;
            if (y) y[r * E + e] = v;
            L += v * R[r * E + e];
        }
    }
    return L;
}

static double *to_d(const float *f, int n) {
    double *d = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) d[i] = f[i];
    return d;
}

/* max |a - g| / max|g| with g the FD gradient computed by the caller */
static double grad_err(const float *a, const double *g, int n) {
    double s = 1e-3, m = 0;
    for (int i = 0; i < n; i++) s = fmax(s, fabs(g[i]));
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - g[i]) / s);
    return m;
}

static void check_layernorm(int rows, bool fd_x) {
    M = rows;
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 7;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, M / 2, E}, SN_FLAG_NEEDS_GRAD, "x");
    sn_tensor *g = sn_new_1d(ctx, E, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "gamma");
    sn_tensor *b = sn_new_1d(ctx, E, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "beta");
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, M / 2, E}, 0, "dy");
    double *xd = to_d(sn_test_leaf(x, &seed, -2, 3), M * E), *gd = to_d(sn_test_leaf(g, &seed, 0.5f, 1.5f), E);
    double *bd = to_d(sn_test_leaf(b, &seed, -1, 1), E), *R = to_d(sn_test_leaf(dy, &seed, -1, 1), M * E);
    sn_tensor *y = sn_layernorm(ctx, x, g, b, 1e-5f);
    assert_non_null(y);
    sn_tensor *dsrc[3] = {0};
    SN_ASSERT_OK(sn_grad_norm(ctx, y, dy, dsrc));
    SN_ASSERT_OK(sn_test_eval(ctx, be));
    double *yd = malloc(sizeof(double) * M * E);
    ln_ref(xd, gd, bd, R, 1e-5, yd);
    assert_true(sn_test_rel_err(y->data, yd, M * E, 1e-1) < 1e-5); /* |y| ~ 1: f32 rounding */
    free(yd);
    double *p[3] = {xd, gd, bd};
    int n[3] = {M * E, E, E};
    for (int i = fd_x ? 0 : 1; i < 3; i++) {
        double *fd = malloc(sizeof(double) * n[i]);
        for (int k = 0; k < n[i]; k++) {
            double s = p[i][k], h = 1e-6;
            p[i][k] = s + h;
            double lp = ln_ref(xd, gd, bd, R, 1e-5, NULL);
            p[i][k] = s - h;
            double lm = ln_ref(xd, gd, bd, R, 1e-5, NULL);
            p[i][k] = s;
            fd[k] = (lp - lm) / (2 * h);
        }
        double e = grad_err(dsrc[i]->data, fd, n[i]);
        if (!(e < 1e-4)) fail_msg("layernorm grad %d: rel err %g", i, e);
        free(fd);
    }
    free(xd), free(gd), free(bd), free(R);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

static void test_layernorm(void **st) { check_layernorm(6, true); }
/* 700 rows: the backward splits rows over 2 threads and sums their dgamma/dbeta */
static void test_layernorm_many_rows(void **st) { check_layernorm(700, false); }

static void test_softmax(void **st) {
    M = 6;
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 9;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 2, (int64_t[]){M, E}, SN_FLAG_NEEDS_GRAD, "x");
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 2, (int64_t[]){M, E}, 0, "dy");
    float *xf = sn_test_leaf(x, &seed, -4, 4);
    xf[5] = 60.0f; /* large logits stay finite */
    double *xd = to_d(xf, M * E), *R = to_d(sn_test_leaf(dy, &seed, -1, 1), M * E);
    sn_tensor *y = sn_softmax(ctx, x);
    sn_tensor *dsrc[1] = {0};
    SN_ASSERT_OK(sn_grad_norm(ctx, y, dy, dsrc));
    SN_ASSERT_OK(sn_test_eval(ctx, be));
    double yd[6 * E], fd[6 * E];
    sm_ref(xd, R, yd);
    assert_true(sn_test_rel_err(y->data, yd, M * E, 1e-3) < 1e-5);
    for (int k = 0; k < M * E; k++) {
        double s = xd[k], h = 1e-6;
        xd[k] = s + h;
        double lp = sm_ref(xd, R, NULL);
        xd[k] = s - h;
        double lm = sm_ref(xd, R, NULL);
        xd[k] = s;
        fd[k] = (lp - lm) / (2 * h);
    }
    assert_true(grad_err(dsrc[0]->data, fd, M * E) < 1e-4);
    free(xd), free(R);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

static void test_norm_bad_input(void **st) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, 3, E}, 0, "x");
    sn_tensor *g = sn_new_1d(ctx, E, 0, "gamma"), *b = sn_new_1d(ctx, E, 0, "beta");
    sn_tensor *g2 = sn_new_1d(ctx, E + 1, 0, "gamma_bad");
    assert_null(sn_layernorm(ctx, x, g2, b, 1e-5f));
    assert_non_null(strstr(sn_last_error(), "layernorm"));
    assert_non_null(strstr(sn_last_error(), "weight must be [13]"));
    assert_null(sn_layernorm(ctx, x, g, g2, 1e-5f));
    assert_non_null(strstr(sn_last_error(), "bias must be [13]"));
    assert_null(sn_layernorm(ctx, x, g, b, 0.0f));
    assert_non_null(strstr(sn_last_error(), "eps"));
    sn_clear_error();
    assert_null(sn_layernorm(ctx, x, NULL, b, 1e-5f));
    assert_non_null(strstr(sn_last_error(), "layernorm"));
    sn_clear_error();
    assert_null(sn_softmax(ctx, NULL));
    assert_non_null(strstr(sn_last_error(), "softmax"));
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_many_rows),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_norm_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
