/* optimizer updates: Adam, AdamW, SGD (momentum, dampening, nesterov, weight decay) and gradient
 * clipping over several steps against a float64 reference of PyTorch's formulas; bad input. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"
#include "backends/cpu/vmath.h"

#define NP 1000
#define STEPS 6

typedef struct {
    bool sgd, adamw, nesterov, clip;
    float b1, b2, eps, wd, max_norm, mom, damp, lr;
} opt_cfg;

/* float64 reference of torch.optim.Adam/AdamW/SGD and clip_grad_norm_ on one tensor */
static void ref_step(const opt_cfg *o, int t, double *p, double *m, double *v, const double *g0, double sumsq) {
    double clip = 1;
    if (o->clip && o->max_norm > 0) clip = fmin(1.0, o->max_norm / (sqrt(sumsq) + 1e-6));
    for (int i = 0; i < NP; i++) {
        double g = g0[i] * clip;
        if (!o->sgd) {
            if (o->adamw) p[i] *= 1 - (double)o->lr * o->wd;
            else g += o->wd * p[i];
            m[i] = o->b1 * m[i] + (1 - (double)o->b1) * g;
            v[i] = o->b2 * v[i] + (1 - (double)o->b2) * g * g;
            double bc1 = 1 - pow(o->b1, t), bc2 = 1 - pow(o->b2, t);
            p[i] -= o->lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + o->eps);
        } else {
            g += o->wd * p[i];
            if (o->mom != 0) {
                m[i] = t == 1 ? g : o->mom * m[i] + (1 - (double)o->damp) * g;
                g = o->nesterov ? g + o->mom * m[i] : m[i];
            }
            p[i] -= o->lr * g;
        }
    }
}

static void run_opt(const opt_cfg *o) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 80;
    int64_t n = NP, nh = SN_HYPER_N, one = 1;
    sn_tensor *p = leaf(ctx, 1, &n, "param", &seed, -1, 1, false);
    sn_tensor *g = leaf(ctx, 1, &n, "grad", &seed, -1, 1, false);
    sn_tensor *m = leaf(ctx, 1, &n, "m", &seed, 0, 0, false);
    sn_tensor *v = leaf(ctx, 1, &n, "v", &seed, 0, 0, false);
    sn_tensor *h = leaf(ctx, 1, &nh, "hyper", &seed, 0, 0, false);
    sn_tensor *ss = o->clip ? leaf(ctx, 1, &one, "sumsq", &seed, 0, 0, false) : NULL;
    sn_tensor *u = o->sgd ? sn_sgd(ctx, p, g, m, h, ss, o->mom, o->damp, o->wd, o->max_norm, o->nesterov)
                          : sn_adam(ctx, p, g, m, v, h, ss, o->b1, o->b2, o->eps, o->wd, o->max_norm, o->adamw);
    if (!u) fail_msg("%s", sn_last_error());
    assert_true(sn_op_writes_src(u, 0) && sn_op_writes_src(u, 2));
    double *pd = to_d(p->data, NP), *md = calloc(NP, sizeof(double)), *vd = calloc(NP, sizeof(double));
    float *hy = h->data, *gf = g->data;
    for (int t = 1; t <= STEPS; t++) {
        sn_test_rand(gf, NP, &seed, -1, 1);  /* a fresh gradient each step */
        double *gd = to_d(gf, NP), s = 0;
        for (int i = 0; i < NP; i++) s += gd[i] * gd[i];
        if (ss) ((float *)ss->data)[0] = (float)s;
        hy[SN_HYPER_LR] = o->lr;
        hy[SN_HYPER_BC1] = (float)(1 - pow(o->b1, t));
        hy[SN_HYPER_BC2] = (float)(1 - pow(o->b2, t));
        hy[SN_HYPER_STEP] = (float)t;
        if (t == 1) SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
        else SN_ASSERT_OK(g_cpu->i->compute(g_cpu, &u, 1, NULL));
        ref_step(o, t, pd, md, vd, gd, s);
        free(gd);
    }
    double ep = sn_test_rel_err(p->data, pd, NP, fmax(max_abs(pd, NP), 1e-30));
    double em = sn_test_rel_err(m->data, md, NP, fmax(max_abs(md, NP), 1e-30));
    double ev = o->sgd ? 0 : sn_test_rel_err(v->data, vd, NP, fmax(max_abs(vd, NP), 1e-30));
    /* param changes are ~lr per step: compare the update p - p0 too, which f32 rounding of p hides */
    if (!(ep < 1e-6 && em < 1e-5 && ev < 1e-5))
        fail_msg("%s: rel err param %.3g, m/buf %.3g, v %.3g", o->sgd ? "sgd" : "adam", ep, em, ev);
    free(pd);
    free(md);
    free(vd);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* the update itself (p_after - p_before) against the reference, one step, to see past p's rounding */
static void run_opt_delta(const opt_cfg *o) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 90;
    int64_t n = NP, nh = SN_HYPER_N, one = 1;
    sn_tensor *p = leaf(ctx, 1, &n, "param", &seed, -1, 1, false);
    sn_tensor *g = leaf(ctx, 1, &n, "grad", &seed, -1, 1, false);
    sn_tensor *m = leaf(ctx, 1, &n, "m", &seed, -0.1f, 0.1f, false);
    sn_tensor *v = leaf(ctx, 1, &n, "v", &seed, 0.01f, 0.1f, false);
    sn_tensor *h = leaf(ctx, 1, &nh, "hyper", &seed, 0, 0, false);
    sn_tensor *ss = leaf(ctx, 1, &one, "sumsq", &seed, 0, 0, false);
    sn_tensor *u = o->sgd ? sn_sgd(ctx, p, g, m, h, ss, o->mom, o->damp, o->wd, o->max_norm, o->nesterov)
                          : sn_adam(ctx, p, g, m, v, h, ss, o->b1, o->b2, o->eps, o->wd, o->max_norm, o->adamw);
    assert_non_null(u);
    int t = 3;
    double *p0 = to_d(p->data, NP), *pd = to_d(p->data, NP), *md = to_d(m->data, NP), *vd = to_d(v->data, NP),
           *gd = to_d(g->data, NP), s = 0;
    for (int i = 0; i < NP; i++) s += gd[i] * gd[i];
    ((float *)ss->data)[0] = (float)s;
    float *hy = h->data;
    hy[SN_HYPER_LR] = o->lr;
    hy[SN_HYPER_BC1] = (float)(1 - pow(o->b1, t));
    hy[SN_HYPER_BC2] = (float)(1 - pow(o->b2, t));
    hy[SN_HYPER_STEP] = (float)t;
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    ref_step(o, t, pd, md, vd, gd, s);
    const float *pf = p->data;
    double *dref = malloc(NP * sizeof(double));
    float *dgot = malloc(NP * sizeof(float));
    for (int i = 0; i < NP; i++) {
        dref[i] = pd[i] - p0[i];
        dgot[i] = (float)((double)pf[i] - p0[i]);
    }
    /* the float subtraction p - step loses ~ulp(p) = 6e-8 of a ~1e-3 step: tolerance 1e-3 */
    double e = sn_test_rel_err(dgot, dref, NP, fmax(max_abs(dref, NP), 1e-30));
    if (!(e < 1e-3)) fail_msg("%s update: rel err %.3g", o->sgd ? "sgd" : "adam", e);
    free(dref);
    free(dgot);
    free(p0);
    free(pd);
    free(md);
    free(vd);
    free(gd);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_adam(void **state) {
    opt_cfg o = {.b1 = 0.9f, .b2 = 0.999f, .eps = 1e-8f, .lr = 1e-3f};
    run_opt(&o);
    run_opt_delta(&o);
    o.wd = 0.01f; /* L2 penalty added to the gradient */
    run_opt(&o);
    run_opt_delta(&o);
}

static void test_adamw(void **state) {
    opt_cfg o = {.adamw = true, .b1 = 0.8f, .b2 = 0.99f, .eps = 1e-6f, .wd = 0.1f, .lr = 3e-3f};
    run_opt(&o);
    run_opt_delta(&o);
}

/* norm of a [1000] uniform(-1,1) gradient is ~18: max_norm 2 clips, 100 leaves it */
static void test_adam_clip(void **state) {
    opt_cfg o = {.clip = true, .b1 = 0.9f, .b2 = 0.999f, .eps = 1e-8f, .lr = 1e-3f, .max_norm = 2.0f};
    run_opt(&o);
    run_opt_delta(&o);
    o.max_norm = 100.0f;
    run_opt(&o);
    o.max_norm = 0.0f; /* 0 disables clipping even with sumsq given */
    run_opt(&o);
}

static void test_sgd(void **state) {
    opt_cfg o = {.sgd = true, .lr = 0.05f, .mom = 0.9f, .damp = 0.1f, .wd = 0.01f};
    run_opt(&o);
    run_opt_delta(&o);
    opt_cfg nest = {.sgd = true, .lr = 0.05f, .mom = 0.9f, .nesterov = true};
    run_opt(&nest);
    run_opt_delta(&nest);
    opt_cfg plain = {.sgd = true, .lr = 0.1f};
    run_opt(&plain);
    opt_cfg clip = {.sgd = true, .lr = 0.1f, .mom = 0.5f, .clip = true, .max_norm = 1.0f};
    run_opt(&clip);
    run_opt_delta(&clip);
}

static void test_optim_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *p = sn_new_1d(ctx, 10, 0, "p"), *g9 = sn_new_1d(ctx, 9, 0, "g"), *g = sn_new_1d(ctx, 10, 0, "g"),
              *m = sn_new_1d(ctx, 10, 0, "m"), *v = sn_new_1d(ctx, 10, 0, "v"), *h = sn_new_1d(ctx, 4, 0, "h"),
              *h2 = sn_new_1d(ctx, 2, 0, "h"), *s2 = sn_new_1d(ctx, 2, 0, "s");
    EXPECT_FAIL(sn_adam(ctx, p, g9, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "adam");
    EXPECT_FAIL(sn_adam(ctx, p, g, g9, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "adam");
    EXPECT_FAIL(sn_adam(ctx, p, g, m, v, h2, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "hyper");
    EXPECT_FAIL(sn_adam(ctx, p, g, m, v, h, s2, 0.9f, 0.999f, 1e-8f, 0, 1, false), "sumsq");
    EXPECT_FAIL(sn_adam(ctx, p, g, m, v, h, NULL, 1.0f, 0.999f, 1e-8f, 0, 0, false), "betas");
    EXPECT_FAIL(sn_adam(ctx, p, g, m, NULL, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "NULL");
    EXPECT_FAIL(sn_sgd(ctx, p, g9, m, h, NULL, 0.9f, 0, 0, 0, false), "sgd");
    EXPECT_FAIL(sn_sgd(ctx, p, g, g9, h, NULL, 0.9f, 0, 0, 0, false), "momentum buffer");
    EXPECT_FAIL(sn_sgd(ctx, p, g, m, h, NULL, 0.0f, 0, 0, 0, true), "nesterov");
    EXPECT_FAIL(sn_sgd(ctx, p, g, m, h, NULL, 0.9f, 0.5f, 0, 0, true), "nesterov");
    EXPECT_FAIL(sn_sgd(ctx, p, g, m, h, NULL, -0.9f, 0, 0, 0, false), "momentum");
    EXPECT_FAIL(sn_sgd(ctx, NULL, g, m, h, NULL, 0.9f, 0, 0, 0, false), "NULL");
    /* zero bias corrections (the host forgot to write the hyper tensor) are an error, not NaNs */
    sn_ctx_free(ctx);
    ctx = sn_ctx_new();
    p = sn_new_1d(ctx, 10, 0, "p");
    g = sn_new_1d(ctx, 10, 0, "g");
    m = sn_new_1d(ctx, 10, 0, "m");
    v = sn_new_1d(ctx, 10, 0, "v");
    h = sn_new_1d(ctx, 4, 0, "h");
    uint64_t seed = 1;
    sn_tensor *ps[5] = {p, g, m, v, h};
    for (int i = 0; i < 4; i++) sn_test_leaf(ps[i], &seed, -1, 1);
    sn_test_leaf(h, &seed, 0, 0);
    sn_tensor *u = sn_adam(ctx, p, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false);
    assert_non_null(u);
    sn_clear_error();
    assert_int_not_equal(sn_test_eval(ctx, g_cpu), SN_OK);
    assert_non_null(strstr(sn_last_error(), "bias correction"));
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* multi-tensor updates against the single-tensor ops on the same data: the same
 * element arithmetic, so equal to the bit; params at odd offsets of a flat buffer, the
 * largest split over the pool's threads mid-tensor. The multi-tensor run takes the
 * kernels' vector path `level` (vmath.h: 2 AVX-512, 1 AVX2, 0 portable), the single ones
 * the portable path: every path must round as the scalar code does. */
#define MT_N 6
static void run_multi(int kind /* 0 adam, 1 adamw+clip, 2 sgd nesterov+clip, 3 sgd plain, 4 adam l2 */,
                      int level) {
    static const int64_t sizes[MT_N] = {37, 1000, 1, 4099, 256, 40013}, offs[MT_N] = {0, 64, 1100, 1200, 5400, 5701};
    int64_t total = 45800, nh = SN_HYPER_N, one = 1;
    bool sgd = kind == 2 || kind == 3, clip = kind == 1 || kind == 2;
    float wd = kind == 4 ? 0.05f : 0.01f * (kind != 0);
    float *final[2][3];
    for (int mt = 0; mt < 2; mt++) {
        sn_vm_cap = mt ? level : 0;
        sn_ctx *ctx = sn_ctx_new();
        uint64_t seed = 321; /* the same data in both runs */
        sn_tensor *flat = leaf(ctx, 1, &total, "flat", &seed, -1, 1, false);
        sn_tensor *m = leaf(ctx, 1, &total, "m", &seed, -0.1f, 0.1f, false);
        sn_tensor *v = leaf(ctx, 1, &total, "v", &seed, 0.01f, 0.1f, false);
        sn_tensor *h = leaf(ctx, 1, &nh, "hyper", &seed, 0, 0, false);
        sn_tensor *ss = leaf(ctx, 1, &one, "sumsq", &seed, 30, 50, false);
        float *hy = h->data;
        hy[SN_HYPER_LR] = 1e-2f;
        hy[SN_HYPER_BC1] = 1 - powf(0.9f, 3);
        hy[SN_HYPER_BC2] = 1 - powf(0.999f, 3);
        hy[SN_HYPER_STEP] = 3;
        sn_tensor *ps[MT_N], *gs[MT_N];
        for (int i = 0; i < MT_N; i++) {
            ps[i] = sn_new_1d(ctx, sizes[i], 0, "p");
            sn_alias(ps[i], flat, offs[i]);
            gs[i] = leaf(ctx, 1, &sizes[i], "g", &seed, -1, 1, false);
        }
        sn_tensor *sq = clip ? ss : NULL;
        if (mt) {
            sn_tensor *u = sgd ? sn_sgd_multi(ctx, MT_N, ps, gs, m, h, sq, 0.9f, 0.0f, 1e-3f, clip ? 2.0f : 0,
                                              kind == 2)
                               : sn_adam_multi(ctx, MT_N, ps, gs, m, v, h, sq, 0.9f, 0.999f, 1e-8f, wd,
                                               clip ? 2.0f : 0, kind == 1);
            if (!u) fail_msg("%s", sn_last_error());
            assert_true(sn_op_writes_src(u, 1) && sn_op_writes_src(u, sgd ? 2 + clip : 3 + clip));
            assert_false(sn_op_writes_src(u, 0) || sn_op_writes_src(u, (sgd ? 3 : 4) + clip));
        } else {
            for (int i = 0; i < MT_N; i++) {
                sn_tensor *mi = sn_new_1d(ctx, sizes[i], 0, "mi"), *vi = sn_new_1d(ctx, sizes[i], 0, "vi");
                sn_alias(mi, m, offs[i]);
                sn_alias(vi, v, offs[i]);
                sn_tensor *u = sgd ? sn_sgd(ctx, ps[i], gs[i], mi, h, sq, 0.9f, 0.0f, 1e-3f, clip ? 2.0f : 0, kind == 2)
                                   : sn_adam(ctx, ps[i], gs[i], mi, vi, h, sq, 0.9f, 0.999f, 1e-8f, wd,
                                             clip ? 2.0f : 0, kind == 1);
                assert_non_null(u);
            }
        }
        SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
        sn_tensor *out[3] = {flat, m, v};
        for (int k = 0; k < 3; k++) {
            final[mt][k] = malloc((size_t)total * sizeof(float));
            memcpy(final[mt][k], out[k]->data, (size_t)total * sizeof(float));
        }
        sn_test_free_data(ctx);
        sn_ctx_free(ctx);
    }
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < total; i++)
            if (final[0][k][i] != final[1][k][i])
                fail_msg("kind %d level %d: %s[%lld] multi %.9g single %.9g", kind, level,
                         k == 0 ? "param" : k == 1 ? "m" : "v", (long long)i, final[1][k][i], final[0][k][i]);
        free(final[0][k]);
        free(final[1][k]);
    }
}

static void test_multi_tensor(void **state) {
    for (int level = 0; level <= 2; level++)
        for (int kind = 0; kind < 5; kind++) run_multi(kind, level);
    sn_vm_cap = 2;
}

static void test_multi_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *flat = sn_new_1d(ctx, 100, 0, "flat"), *flat2 = sn_new_1d(ctx, 100, 0, "flat2");
    sn_tensor *m = sn_new_1d(ctx, 100, 0, "m"), *v = sn_new_1d(ctx, 100, 0, "v"), *m9 = sn_new_1d(ctx, 99, 0, "m9");
    sn_tensor *h = sn_new_1d(ctx, 4, 0, "h"), *own = sn_new_1d(ctx, 5, 0, "own");
    sn_tensor *p[SN_OPTIM_MT_MAX + 1], *g[SN_OPTIM_MT_MAX + 1];
    for (int i = 0; i <= SN_OPTIM_MT_MAX; i++) {
        p[i] = sn_new_1d(ctx, 5, 0, "p");
        sn_alias(p[i], flat, 5 * i);
        g[i] = sn_new_1d(ctx, 5, 0, "g");
    }
    sn_tensor *g4 = sn_new_1d(ctx, 4, 0, "g4"), *q = sn_new_1d(ctx, 5, 0, "q");
    sn_alias(q, flat2, 0);
    EXPECT_FAIL(sn_adam_multi(ctx, 0, p, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "adam_multi");
    EXPECT_FAIL(sn_adam_multi(ctx, SN_OPTIM_MT_MAX + 1, p, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false),
                "split");
    EXPECT_FAIL(sn_adam_multi(ctx, 2, p, g, m9, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false), "flat optimizer state");
    EXPECT_FAIL(sn_adam_multi(ctx, 1, (sn_tensor *[]){own}, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false),
                "view of one flat");
    EXPECT_FAIL(sn_adam_multi(ctx, 2, (sn_tensor *[]){p[0], q}, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false),
                "view of one flat");
    EXPECT_FAIL(sn_adam_multi(ctx, 1, p, (sn_tensor *[]){g4}, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false),
                "gradient must have");
    EXPECT_FAIL(sn_adam_multi(ctx, 2, p, (sn_tensor *[]){g[0], NULL}, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false),
                "NULL");
    EXPECT_FAIL(sn_adam_multi(ctx, 2, p, g, m, v, h, NULL, 1.5f, 0.999f, 1e-8f, 0, 0, false), "betas");
    EXPECT_FAIL(sn_sgd_multi(ctx, 2, p, g, m9, h, NULL, 0.9f, 0, 0, 0, false), "sgd_multi");
    EXPECT_FAIL(sn_sgd_multi(ctx, 2, p, g, m, h, NULL, 0.0f, 0, 0, 0, true), "nesterov");
    assert_non_null(sn_adam_multi(ctx, SN_OPTIM_MT_MAX, p, g, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false));
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam), cmocka_unit_test(test_adamw),          cmocka_unit_test(test_adam_clip),
        cmocka_unit_test(test_sgd),  cmocka_unit_test(test_optim_bad_input), cmocka_unit_test(test_multi_tensor),
        cmocka_unit_test(test_multi_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
