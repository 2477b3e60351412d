/* Harness for the op tests: float64 references, central finite differences of
 * sum(out * R), leaves, and error-message checks. Included by tests/core/test_<op>.c
 * (static functions: each test program gets its own copy and its own CPU backend). */
#ifndef SN_OPTEST_H
#define SN_OPTEST_H

#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sn_backend *g_cpu;
__attribute__((unused)) static int setup(void **state) {
    g_cpu = sn_cpu_backend_new(2);
    return g_cpu ? 0 : -1;
}
__attribute__((unused)) static int teardown(void **state) {
    sn_backend_free(g_cpu);
    return 0;
}

/* A float64 reference out = f(in[0..nin)); derivatives of sum(out * R) by central
 * differences (eps 1e-6 in double) stand in for the exact gradient. */
typedef void (*ref_fn)(void *ud, double **in, double *out);
typedef struct {
    ref_fn f;
    void *ud;
    int nin;
    double *in[12];
    int64_t n[12];
    int64_t nout;
} ref_t;

__attribute__((unused)) static double *to_d(const float *x, int64_t n) {
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

__attribute__((unused)) static int ref_add(ref_t *r, const float *x, int64_t n) {
    r->in[r->nin] = to_d(x, n);
    r->n[r->nin] = n;
    return r->nin++;
}

__attribute__((unused)) static void ref_free(ref_t *r) {
    for (int i = 0; i < r->nin; i++) free(r->in[i]);
    r->nin = 0;
}

__attribute__((unused)) static double ref_loss(ref_t *r, const double *R) {
    double *o = malloc((size_t)r->nout * sizeof *o), s = 0;
    r->f(r->ud, r->in, o);
    for (int64_t i = 0; i < r->nout; i++) s += o[i] * R[i];
    free(o);
    return s;
}

__attribute__((unused)) static double max_abs(const double *g, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(g[i]));
    return m;
}

/* forward: max |got - ref| / max |ref| < tol */
__attribute__((unused)) static void check_fwd(const char *what, const float *got, ref_t *r, double tol) {
    double *o = malloc((size_t)r->nout * sizeof *o);
    r->f(r->ud, r->in, o);
    double e = sn_test_rel_err(got, o, r->nout, fmax(max_abs(o, r->nout), 1e-30));
    free(o);
    if (!(e < tol)) fail_msg("%s: forward rel err %.3g (tol %.1g)", what, e, tol);
}

/* gradient of input k: max |got - fd| / max |fd| < tol */
__attribute__((unused)) static void check_grad(const char *what, const float *got, ref_t *r, const float *Rf, int k, double tol) {
    double *R = to_d(Rf, r->nout);
    int64_t n = r->n[k];
    double *g = malloc((size_t)n * sizeof *g), eps = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double x0 = r->in[k][i];
        r->in[k][i] = x0 + eps;
        double lp = ref_loss(r, R);
        r->in[k][i] = x0 - eps;
        double lm = ref_loss(r, R);
        r->in[k][i] = x0;
        g[i] = (lp - lm) / (2 * eps);
    }
    double e = sn_test_rel_err(got, g, n, fmax(max_abs(g, n), 1e-30));
    free(g);
    free(R);
    if (!(e < tol)) fail_msg("%s: gradient of input %d rel err %.3g (tol %.1g)", what, k, e, tol);
}

__attribute__((unused)) static sn_tensor *leaf(sn_ctx *ctx, int ndim, const int64_t *shape, const char *name, uint64_t *seed, float lo,
                       float hi, bool grad) {
    sn_tensor *t = sn_new_tensor(ctx, SN_F32, ndim, shape, 0, name);
    assert_non_null(t);
    sn_test_leaf(t, seed, lo, hi);
    if (grad) t->flags |= SN_FLAG_NEEDS_GRAD;
    return t;
}

__attribute__((unused)) static sn_tensor *leaf_like(sn_ctx *ctx, const sn_tensor *like, const char *name, uint64_t *seed) {
    return leaf(ctx, like->ndim, like->shape, name, seed, -1.0f, 1.0f, false);
}

#define EXPECT_FAIL(expr, substr)                                                              \
    do {                                                                                       \
        sn_clear_error();                                                                      \
        sn_tensor *t_ = (expr);                                                                \
        if (t_) fail_msg("%s succeeded, expected an error naming '%s'", #expr, substr);        \
        if (!strstr(sn_last_error(), substr))                                                  \
            fail_msg("%s: error message '%s' lacks '%s'", #expr, sn_last_error(), substr);     \
    } while (0)

#define EXPECT_STATUS(expr, st, substr)                                                        \
    do {                                                                                       \
        sn_clear_error();                                                                      \
        sn_status s_ = (expr);                                                                 \
        if (s_ != (st)) fail_msg("%s returned %s, expected %s", #expr, sn_status_name(s_), #st); \
        if (!strstr(sn_last_error(), substr))                                                  \
            fail_msg("%s: error message '%s' lacks '%s'", #expr, sn_last_error(), substr);     \
    } while (0)

#endif
