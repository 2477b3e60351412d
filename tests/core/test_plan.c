/* The memory planner and the scheduler: peaks, liveness without overlap, values
 * equal to unplanned evaluation under poisoned memory, CPU fallback with copies,
 * and the errors for bad graphs. */
#include "sn_test.h"
#include "sinter/nn.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a test device: the CPU's kernels behind another name, refusing some ops,
 * counting its allocations and filling fresh memory with NaN ---- */
typedef struct testdev {
    sn_backend b;
    sn_backend_i iface;
    sn_backend *cpu;
    bool refuse[SN_OP_COUNT];
    size_t allocated;
    int nalloc;
} testdev;

static const char *td_name(sn_backend *b) { return "testdev"; }
static void td_free(sn_backend *b) {}
static sn_status td_alloc(sn_backend *b, size_t bytes, void **base) {
    testdev *d = (testdev *)b;
    sn_status s = d->cpu->i->alloc(d->cpu, bytes, base);
    if (s == SN_OK) {
        float nan = NAN;
        for (size_t i = 0; i < bytes / 4; i++) memcpy((char *)*base + 4 * i, &nan, 4);
        d->allocated += bytes;
        d->nalloc++;
    }
    return s;
}
static bool td_supports(sn_backend *b, const sn_tensor *t) { return !((testdev *)b)->refuse[t->op]; }
static sn_status td_compute(sn_backend *b, sn_tensor **nodes, int n, void **state) {
    testdev *d = (testdev *)b;
    for (int i = 0; i < n; i++)
        if (d->refuse[nodes[i]->op]) return sn_error(SN_ERR_INTERNAL, "testdev ran refused op %s", sn_op_name(nodes[i]->op));
    return d->cpu->i->compute(d->cpu, nodes, n, state);
}

static testdev *testdev_new(sn_backend *cpu) {
    testdev *d = calloc(1, sizeof *d);
    d->cpu = cpu;
    d->iface = *cpu->i;
    d->iface.name = td_name;
    d->iface.free = td_free;
    d->iface.alloc = td_alloc;
    d->iface.supports_op = td_supports;
    d->iface.compute = td_compute;
    d->b.i = &d->iface;
    d->b.ctx = cpu->ctx;
    d->b.is_host = true;
    return d;
}

/* a branchy graph of elementwise and shape ops */
static sn_tensor *build_chain(sn_ctx *c, sn_tensor *x, sn_tensor *w) {
    sn_tensor *a = sn_elu(c, x, 1.0f);
    sn_tensor *b = sn_tanh(c, a);
    sn_tensor *d = sn_mul(c, b, w);
    sn_tensor *e = sn_sigmoid(c, sn_add(c, d, a));
    sn_tensor *cat[2] = {e, b};
    sn_tensor *f = sn_concat(c, 2, cat, 1);
    sn_tensor *g = sn_scale(c, sn_relu(c, f), 0.5f);
    int perm[3] = {0, 2, 1};
    return sn_softplus(c, sn_permute(c, g, perm), 1.0f, 20.0f);
}

static void test_planner_values_and_overlap(void **st) {
    sn_backend *cpu = sn_cpu_backend_new(2);
    testdev *d = testdev_new(cpu);
    uint64_t seed = 7;
    /* reference: every node its own allocation */
    sn_ctx *rc = sn_ctx_new();
    sn_tensor *rx = sn_new_tensor(rc, SN_F32, 3, (int64_t[]){3, 5, 7}, 0, "x");
    sn_tensor *rw = sn_new_tensor(rc, SN_F32, 3, (int64_t[]){1, 5, 7}, 0, "w");
    float *xv = sn_test_leaf(rx, &seed, -2, 2), *wv = sn_test_leaf(rw, &seed, -1, 1);
    sn_tensor *rout = build_chain(rc, rx, rw);
    SN_ASSERT_OK(sn_test_eval(rc, cpu));

    for (int inplace = 0; inplace < 2; inplace++) {
        sn_ctx *c = sn_ctx_new();
        sn_tensor *x = sn_new_tensor(c, SN_F32, 3, (int64_t[]){3, 5, 7}, SN_FLAG_PERSIST, "x");
        sn_tensor *w = sn_new_tensor(c, SN_F32, 3, (int64_t[]){1, 5, 7}, SN_FLAG_PERSIST, "w");
        sn_tensor *out = build_chain(c, x, w);
        out->flags |= SN_FLAG_OUTPUT;
        sn_graph *g = sn_graph_new(c);
        SN_ASSERT_OK(sn_graph_add(g, out));
        SN_ASSERT_OK(sn_ctx_alloc_persistent(c, &d->b));
        SN_ASSERT_OK(sn_tensor_set(x, xv, sn_nelem(x)));
        SN_ASSERT_OK(sn_tensor_set(w, wv, sn_nelem(w)));
        d->allocated = 0;
        sn_plan *p;
        sn_plan_opts o = {.backend = &d->b, .fallback = cpu, .no_inplace = !inplace};
        SN_ASSERT_OK(sn_plan_new(g, &o, &p));
        /* the reported peak is what was allocated */
        assert_int_equal(sn_plan_peak(p), d->allocated);
        /* tensors live at the same time never share bytes (in-place hand-over excepted) */
        int n = sn_ctx_count(c), checked = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) {
                sn_tensor *a = sn_ctx_tensor(c, i), *b = sn_ctx_tensor(c, j);
                size_t ab, ae, bb, be;
                int af, al, bf, bl;
                if (!sn_plan_tensor_range(p, a, &ab, &ae, &af, &al) || !sn_plan_tensor_range(p, b, &bb, &be, &bf, &bl))
                    continue;
                checked++;
                bool live_together = af <= bl && bf <= al;
                bool handover = (al == bf && b->src[0] == a) || (bl == af && a->src[0] == b);
                if (live_together && !handover)
                    assert_true(ae <= bb || be <= ab);
            }
        assert_true(checked > 20);
        SN_ASSERT_OK(sn_plan_run(p));
        int64_t m = sn_nelem(out);
        float *got = malloc((size_t)m * sizeof *got);
        SN_ASSERT_OK(sn_tensor_get(out, got, m));
        /* the arena started as NaN: any read of a dead or unwritten slot shows up */
        assert_true(sn_test_rel_err_f(got, rout->data, m, 1e-6) == 0.0);
        /* replay gives the same */
        SN_ASSERT_OK(sn_plan_run(p));
        float *again = malloc((size_t)m * sizeof *again);
        SN_ASSERT_OK(sn_tensor_get(out, again, m));
        assert_memory_equal(got, again, (size_t)m * sizeof *got);
        size_t peak = sn_plan_peak(p);
        if (inplace) assert_true(peak > 0);
        free(got);
        free(again);
        sn_plan_free(p);
        sn_graph_free(g);
        sn_ctx_free(c);
    }
    sn_test_free_data(rc);
    sn_ctx_free(rc);
    free(d);
    sn_backend_free(cpu);
}

static void test_inplace_lowers_peak(void **st) {
    sn_backend *cpu = sn_cpu_backend_new(1);
    size_t peaks[2];
    for (int inplace = 0; inplace < 2; inplace++) {
        sn_ctx *c = sn_ctx_new();
        sn_tensor *x = sn_new_2d(c, 64, 64, SN_FLAG_PERSIST, "x");
        sn_tensor *y = sn_tanh(c, sn_sigmoid(c, sn_elu(c, sn_scale(c, x, 2.0f), 1.0f)));
        y->flags |= SN_FLAG_OUTPUT;
        sn_graph *g = sn_graph_new(c);
        SN_ASSERT_OK(sn_graph_add(g, y));
        SN_ASSERT_OK(sn_ctx_alloc_persistent(c, cpu));
        sn_plan *p;
        sn_plan_opts o = {.backend = cpu, .no_inplace = !inplace};
        SN_ASSERT_OK(sn_plan_new(g, &o, &p));
        peaks[inplace] = sn_plan_peak(p);
        sn_plan_free(p);
        sn_graph_free(g);
        sn_ctx_free(c);
    }
    /* a chain of 4 elementwise ops: two buffers alternate without in-place, one with it */
    assert_int_equal(peaks[0], 2 * 64 * 64 * 4);
    assert_int_equal(peaks[1], 64 * 64 * 4);
    sn_backend_free(cpu);
}

/* ---- a whole CRN step with some ops refused by the device ---- */
static char g_log[8192];
static void capture(int level, const char *msg, void *user) {
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

static void run_crn(sn_backend *dev, sn_backend *cpu, float *losses, float *params, int64_t *np, sn_step **keep) {
    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.hidden = 32;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(cfg.channels, ch, sizeof ch);
    sn_model *m;
    SN_ASSERT_OK(sn_crn_new(&cfg, dev, &m));
    SN_ASSERT_OK(sn_model_init(m, 3));
    sn_step *s;
    SN_ASSERT_OK(sn_step_new(m, dev, cpu, 2, 6, NULL, &s));
    int64_t n = 2 * 6 * 161;
    uint64_t seed = 11;
    float *x = sn_test_rand_new(n, &seed, 0, 1), *y = sn_test_rand_new(n, &seed, 0, 1);
    for (int k = 0; k < 3; k++) SN_ASSERT_OK(sn_step_run(s, x, y, 1e-3f, &losses[k]));
    *np = sn_nelem(m->flat);
    SN_ASSERT_OK(sn_tensor_get(m->flat, params, *np));
    free(x);
    free(y);
    *keep = s;
}

static void test_fallback_crn_step(void **st) {
    sn_backend *cpu = sn_cpu_backend_new(2);
    testdev *d = testdev_new(cpu);
    d->refuse[SN_OP_SOFTPLUS_BWD] = true;
    d->refuse[SN_OP_CONV2D_BWD_W] = true;
    d->refuse[SN_OP_ADAM_MT] = true;
    d->refuse[SN_OP_BATCHNORM] = true;
    static float pa[1 << 21], pb[1 << 21];
    float la[3], lb[3];
    int64_t na, nb;
    sn_step *sa, *sb;
    run_crn(cpu, cpu, la, pa, &na, &sa);
    g_log[0] = 0;
    sn_set_log(capture, NULL, SN_LOG_WARN);
    run_crn(&d->b, cpu, lb, pb, &nb, &sb);
    sn_set_log(NULL, NULL, SN_LOG_WARN);
    assert_int_equal(na, nb);
    for (int k = 0; k < 3; k++) assert_true(fabsf(la[k] - lb[k]) <= 1e-6f * fabsf(la[k]));
    assert_true(la[2] < la[0]); /* it trains */
    assert_true(sn_test_rel_err_f(pb, pa, na, 1e-3) < 1e-5);
    /* every fallback is reported and logged; copies were inserted */
    const char *rep = sn_plan_fallback_report(sb->plan);
    assert_true(sn_plan_fallback_count(sb->plan) >= 5 + 5 + 4 + 1);
    assert_non_null(strstr(rep, "softplus"));
    assert_non_null(strstr(rep, "conv2d_bwd_w"));
    assert_non_null(strstr(rep, "adam_multi"));
    assert_non_null(strstr(rep, "not supported by testdev"));
    assert_non_null(strstr(g_log, "fallback: batchnorm2d"));
    assert_true(sn_plan_copy_count(sb->plan) > 10);
    assert_int_equal(sn_plan_fallback_count(sa->plan), 0);
    sn_model *ma = sa->m, *mb = sb->m;
    sn_step_free(sa);
    sn_step_free(sb);
    sn_model_free(ma);
    sn_model_free(mb);
    free(d);
    sn_backend_free(cpu);
}

/* ---- bad input ---- */
static void test_errors(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = sn_new_2d(c, 3, 4, 0, "a"), *b = sn_new_2d(c, 3, 5, 0, "b");
    sn_clear_error();
    assert_null(sn_add(c, a, b));
    assert_non_null(strstr(sn_last_error(), "add"));
    assert_non_null(strstr(sn_last_error(), "[3,4]"));
    assert_non_null(strstr(sn_last_error(), "[3,5]"));
    /* a NULL input propagates without replacing the first message */
    assert_null(sn_relu(c, sn_add(c, a, b)));
    assert_non_null(strstr(sn_last_error(), "[3,5]"));
    sn_clear_error();
    assert_null(sn_relu(c, NULL));
    assert_true(strlen(sn_last_error()) > 0);
    assert_null(sn_new_tensor(c, SN_F32, 2, (int64_t[]){3, 0}, 0, "zero"));
    assert_non_null(strstr(sn_last_error(), "invalid shape"));
    assert_int_equal(sn_graph_add(NULL, a), SN_ERR_INVALID_ARG);
    sn_plan *p = NULL;
    assert_int_equal(sn_plan_new(NULL, NULL, &p), SN_ERR_INVALID_ARG);
    /* the loss must have one element and depend on a parameter */
    sn_graph *g = sn_graph_new(c);
    assert_int_equal(sn_backward(g, a), SN_ERR_SHAPE);
    sn_tensor *s = sn_sum(c, a);
    assert_int_equal(sn_backward(g, s), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "depends on no parameter"));
    sn_graph_free(g);

    /* an op no backend has */
    sn_backend *cpu = sn_cpu_backend_new(1);
    testdev *d = testdev_new(cpu);
    d->refuse[SN_OP_TANH] = true;
    sn_tensor *x = sn_new_2d(c, 4, 4, SN_FLAG_PERSIST, "x");
    sn_tensor *y = sn_tanh(c, x);
    g = sn_graph_new(c);
    SN_ASSERT_OK(sn_graph_add(g, y));
    SN_ASSERT_OK(sn_ctx_alloc_persistent(c, &d->b));
    sn_plan_opts o = {.backend = &d->b, .fallback = &d->b};
    assert_int_equal(sn_plan_new(g, &o, &p), SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), "no backend runs op"));
    assert_non_null(strstr(sn_last_error(), "tanh"));
    /* too little memory is refused before running, with both numbers and advice */
    sn_plan_opts o2 = {.backend = cpu, .mem_free = 16};
    assert_int_equal(sn_plan_new(g, &o2, &p), SN_ERR_NOMEM);
    assert_non_null(strstr(sn_last_error(), "free"));
    assert_non_null(strstr(sn_last_error(), "MB"));
    assert_null(strstr(sn_last_error(), "train.")); /* the engine names no config keys */
    sn_graph_free(g);
    /* a tensor without memory */
    assert_int_equal(sn_tensor_set(a, (float[12]){0}, 12), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "no memory"));
    sn_ctx_free(c);
    free(d);
    sn_backend_free(cpu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planner_values_and_overlap),
        cmocka_unit_test(test_inplace_lowers_peak),
        cmocka_unit_test(test_fallback_crn_step),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
