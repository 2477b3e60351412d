/* Every layer of the prototype against PyTorch (tests/golden/<op>.safetensors,
 * written by tests/golden/gen_golden.py in float64 from float32 inputs): the
 * forward output and the gradients of loss = sum(out * R) with respect to the
 * input and every parameter, through the whole stack (sn_backward, the planner,
 * the CPU backend's kernels). BatchNorm also checks its running statistics.
 *
 * One metric everywhere (sn_golden_err): max_i |a_i - ref_i| / max(max_i |ref_i|, floor),
 * the worst absolute error relative to the largest magnitude of the reference
 * tensor. Forward < 1e-4, gradients < 1e-3. */
#include "sn_test.h"
#include "sn_golden.h"
#include "sinter/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_FWD 1e-4
#define TOL_GRAD 1e-3
#define MAXP 12

typedef struct layer {
    const char *file;
    sn_safetensors *f;
    sn_ctx *ctx;
    sn_tensor *x;             /* the input (a "parameter" here, so it gets a gradient) */
    int np;
    sn_tensor *p[MAXP];       /* parameters, PyTorch names */
    int nbuf;
    sn_tensor *buf[4];        /* BatchNorm running stats */
} layer;

static sn_tensor *leaf(layer *L, const char *name, uint32_t flags) {
    const sn_st_tensor *st = sn_st_find(L->f, name);
    if (!st) fail_msg("%s: no tensor '%s'", L->file, name);
    return sn_new_tensor(L->ctx, SN_F32, st->ndim, st->shape, flags, name);
}

static void upload(layer *L, sn_tensor *t, const char *name) {
    int64_t n = sn_nelem(t);
    float *v = malloc((size_t)n * sizeof *v);
    SN_ASSERT_OK(sn_st_read_f32(L->f, name, v, (size_t)n));
    SN_ASSERT_OK(sn_tensor_set(t, v, n));
    free(v);
}

static double compare(layer *L, const sn_tensor *t, const char *ref_name) {
    int64_t n;
    float *r = sn_golden_read(L->f, ref_name, &n);
    assert_int_equal(n, sn_nelem(t));
    float *a = sn_golden_host(t);
    double e = sn_golden_err(a, r, n, 1e-30);
    free(a), free(r);
    return e;
}

typedef sn_tensor *(*build_fn)(layer *L);

/* Opens the file, makes leaves for "input" and params, builds the op, and runs
 * forward + backward through the planner on the CPU backend; then compares. */
static void run_layer(const char *file, const char *const *params, const char *const *bufs, build_fn build) {
    layer L = {.file = file};
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/%s", SN_SOURCE_DIR, file);
    SN_ASSERT_OK(sn_st_open(path, &L.f));
    L.ctx = sn_ctx_new();
    L.x = leaf(&L, "input", SN_FLAG_PARAM | SN_FLAG_PERSIST);
    for (; params[L.np]; L.np++) L.p[L.np] = leaf(&L, params[L.np], SN_FLAG_PARAM | SN_FLAG_PERSIST);
    for (; bufs && bufs[L.nbuf]; L.nbuf++) L.buf[L.nbuf] = leaf(&L, bufs[L.nbuf], SN_FLAG_PERSIST);
    sn_tensor *out = build(&L);
    if (!out) fail_msg("%s: building the op failed: %s", file, sn_last_error());
    sn_tensor *R = leaf(&L, "R", SN_FLAG_PERSIST | SN_FLAG_INPUT);
    sn_tensor *loss = sn_sum(L.ctx, sn_mul(L.ctx, out, R));
    assert_non_null(loss);
    out->flags |= SN_FLAG_OUTPUT;

    /* gradients land in one persistent buffer, as the model's do */
    sn_tensor *all[MAXP + 1] = {L.x};
    for (int i = 0; i < L.np; i++) all[i + 1] = L.p[i];
    int64_t total = 0;
    for (int i = 0; i <= L.np; i++) total += sn_align64(sn_nelem(all[i]));
    sn_tensor *flat = sn_new_1d(L.ctx, total, SN_FLAG_PERSIST, "grads");
    int64_t off = 0;
    for (int i = 0; i <= L.np; i++) {
        sn_tensor *g = sn_new_tensor(L.ctx, SN_F32, all[i]->ndim, all[i]->shape, SN_FLAG_PERSIST, NULL);
        sn_set_name(g, "grad.%s", all[i]->name);
        sn_alias(g, flat, off);
        all[i]->grad = g;
        off += sn_align64(sn_nelem(all[i]));
    }

    sn_backend *be = sn_cpu_backend_new(0);
    sn_graph *g = sn_graph_new(L.ctx);
    SN_ASSERT_OK(sn_graph_add(g, out));
    SN_ASSERT_OK(sn_backward(g, loss));
    SN_ASSERT_OK(sn_ctx_alloc_persistent(L.ctx, be));
    upload(&L, L.x, "input");
    for (int i = 0; i < L.np; i++) upload(&L, L.p[i], params[i]);
    for (int i = 0; i < L.nbuf; i++) upload(&L, L.buf[i], bufs[i]);
    upload(&L, R, "R");
    sn_plan *plan = NULL;
    sn_plan_opts po = {.backend = be, .fallback = be};
    SN_ASSERT_OK(sn_plan_new(g, &po, &plan));
    SN_ASSERT_OK(sn_plan_run(plan));

    double e_fwd = compare(&L, out, "output"), e_grad = 0, e_buf = 0;
    char worst[SN_NAME_LEN + 8] = "";
    for (int i = 0; i <= L.np; i++) {
        char rn[SN_NAME_LEN + 8];
        snprintf(rn, sizeof rn, "grad.%s", all[i]->name);
        double e = compare(&L, all[i]->grad, rn);
        if (!(e <= e_grad)) e_grad = e, snprintf(worst, sizeof worst, "%s", rn);
    }
    for (int i = 0; i < L.nbuf; i++) {
        char rn[SN_NAME_LEN + 8];
        snprintf(rn, sizeof rn, "%s.after", bufs[i]);
        e_buf = fmax(e_buf, compare(&L, L.buf[i], rn));
    }
    print_message("%-30s forward err %.3g, %d gradients max err %.3g (%s)", file, e_fwd, L.np + 1, e_grad, worst);
    if (L.nbuf) print_message(", running stats err %.3g", e_buf);
    print_message("\n");

    sn_plan_free(plan);
    sn_graph_free(g);
    sn_ctx_free(L.ctx);
    sn_backend_free(be);
    sn_st_close(L.f);
    assert_true(e_fwd < TOL_FWD);
    assert_true(e_grad < TOL_GRAD);
    assert_true(e_buf < TOL_FWD);
}

static sn_tensor *b_conv(layer *L) { return sn_conv2d(L->ctx, L->x, L->p[0], L->p[1], 1, 2, 0, 0); }
static sn_tensor *b_convt(layer *L) {
    return sn_conv_transpose2d(L->ctx, L->x, L->p[0], L->p[1], 1, 2, 0, 0, 0, 1);
}
static sn_tensor *b_bn(layer *L) {
    return sn_batchnorm2d(L->ctx, L->x, L->p[0], L->p[1], L->buf[0], L->buf[1], true, 1e-5f, 0.1f);
}
static sn_tensor *b_elu(layer *L) { return sn_elu(L->ctx, L->x, 1.0f); }
static sn_tensor *b_softplus(layer *L) { return sn_softplus(L->ctx, L->x, 1.0f, 20.0f); }
static sn_tensor *b_linear(layer *L) { return sn_linear(L->ctx, L->x, L->p[0], L->p[1]); }
static sn_tensor *b_lstm(layer *L) { return sn_lstm(L->ctx, L->x, 2, 8, L->p); }
static sn_tensor *b_gru(layer *L) { return sn_gru(L->ctx, L->x, 2, 8, L->p); }
static sn_tensor *b_attention(layer *L) {
    return sn_attention(L->ctx, L->x, L->p[0], L->p[1], L->p[2], L->p[3], 4, true);
}
static sn_tensor *b_layernorm(layer *L) { return sn_layernorm(L->ctx, L->x, L->p[0], L->p[1], 1e-5f); }

static const char *const WB[] = {"weight", "bias", NULL};
static const char *const NONE[] = {NULL};
static const char *const RNN[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                  "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1", NULL};

static void test_conv2d(void **s) { (void)s; run_layer("conv2d.safetensors", WB, NULL, b_conv); }
static void test_conv_transpose2d(void **s) { (void)s; run_layer("conv_transpose2d.safetensors", WB, NULL, b_convt); }
static void test_batchnorm2d(void **s) {
    (void)s;
    static const char *const bufs[] = {"running_mean", "running_var", NULL};
    run_layer("batchnorm2d.safetensors", WB, bufs, b_bn);
}
static void test_elu(void **s) { (void)s; run_layer("elu.safetensors", NONE, NULL, b_elu); }
static void test_softplus(void **s) { (void)s; run_layer("softplus.safetensors", NONE, NULL, b_softplus); }
static void test_linear(void **s) { (void)s; run_layer("linear.safetensors", WB, NULL, b_linear); }
static void test_lstm(void **s) { (void)s; run_layer("lstm.safetensors", RNN, NULL, b_lstm); }
static void test_gru(void **s) { (void)s; run_layer("gru.safetensors", RNN, NULL, b_gru); }
static void test_attention(void **s) {
    (void)s;
    static const char *const P[] = {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", NULL};
    run_layer("attention.safetensors", P, NULL, b_attention);
}
static void test_layernorm(void **s) { (void)s; run_layer("layernorm.safetensors", WB, NULL, b_layernorm); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),    cmocka_unit_test(test_conv_transpose2d),
        cmocka_unit_test(test_batchnorm2d), cmocka_unit_test(test_elu),
        cmocka_unit_test(test_softplus),  cmocka_unit_test(test_linear),
        cmocka_unit_test(test_lstm),      cmocka_unit_test(test_gru),
        cmocka_unit_test(test_attention), cmocka_unit_test(test_layernorm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
