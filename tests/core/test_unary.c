/* unary ops: relu, elu, softplus, sigmoid, tanh and their backward ops (forward vs float64,
 * backward vs finite differences, extremes, bad input). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers: float64 references, finite differences, error checks ---- */
static sn_backend *g_cpu;
static int setup(void **state) {
    g_cpu = sn_cpu_backend_new(2);
    return g_cpu ? 0 : -1;
}
static int teardown(void **state) {
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

static double *to_d(const float *x, int64_t n) {
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

static double ref_loss(ref_t *r, const double *R) {
    double *o = malloc((size_t)r->nout * sizeof *o), s = 0;
    r->f(r->ud, r->in, o);
    for (int64_t i = 0; i < r->nout; i++) s += o[i] * R[i];
    free(o);
    return s;
}

static double max_abs(const double *g, int64_t n) {
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

static sn_tensor *leaf(sn_ctx *ctx, int ndim, const int64_t *shape, const char *name, uint64_t *seed, float lo,
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
/* ---- end of shared helpers ---- */

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
        cmocka_unit_test(test_unary_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
