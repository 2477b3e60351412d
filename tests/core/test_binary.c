/* binary ops: add/mul with broadcasting, scale, reduce_to, expand (forward vs float64, backward vs
 * finite differences, bad input). */
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
