/* conv2d and conv_transpose2d: forward vs float64 loops, data/weight/bias gradients vs finite
 * differences (CRN kernel and stride, padding, output padding, stride > kernel), the fused
 * activation epilogues, conv2d's asymmetric padding and conv_transpose2d's end crop, bad input. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sn_optest.h"

typedef struct {
    bool transposed, bias;
    int64_t N, C, H, W, K, kh, kw, Ho, Wo;
    int sh, sw, ph, pw, oph, opw;
    int eh, ew; /* conv2d: padding after (bottom, right); conv_transpose2d: end crop */
    sn_act act;
    double p0, p1;
} cv_ud;

/* conv2d: y[n,k,oh,ow] = b[k] + sum x[n,c,oh*sh-ph+i,ow*sw-pw+j] w[k,c,i,j]
 * conv_transpose2d: y[n,k,h*sh-ph+i,w*sw-pw+j] += x[n,c,h,w] w[c,k,i,j] */
static void ref_conv(void *ud, double **in, double *out) {
    cv_ud *u = ud;
    const double *x = in[0], *w = in[1], *b = u->bias ? in[2] : NULL;
    int64_t ny = u->N * u->K * u->Ho * u->Wo;
    for (int64_t i = 0; i < ny; i++) out[i] = b ? b[(i / (u->Ho * u->Wo)) % u->K] : 0;
    for (int64_t n = 0; n < u->N; n++)
        for (int64_t k = 0; k < u->K; k++)
            for (int64_t c = 0; c < u->C; c++)
                for (int64_t i = 0; i < u->kh; i++)
                    for (int64_t j = 0; j < u->kw; j++) {
                        if (!u->transposed) {
                            double wv = w[((k * u->C + c) * u->kh + i) * u->kw + j];
                            for (int64_t oh = 0; oh < u->Ho; oh++)
                                for (int64_t ow = 0; ow < u->Wo; ow++) {
                                    int64_t ih = oh * u->sh - u->ph + i, iw = ow * u->sw - u->pw + j;
                                    if (ih < 0 || ih >= u->H || iw < 0 || iw >= u->W) continue;
                                    out[((n * u->K + k) * u->Ho + oh) * u->Wo + ow] +=
                                        wv * x[((n * u->C + c) * u->H + ih) * u->W + iw];
                                }
                        } else {
                            double wv = w[((c * u->K + k) * u->kh + i) * u->kw + j];
                            for (int64_t h = 0; h < u->H; h++)
                                for (int64_t ww = 0; ww < u->W; ww++) {
                                    int64_t oh = h * u->sh - u->ph + i, ow = ww * u->sw - u->pw + j;
                                    if (oh < 0 || oh >= u->Ho || ow < 0 || ow >= u->Wo) continue;
                                    out[((n * u->K + k) * u->Ho + oh) * u->Wo + ow] +=
                                        wv * x[((n * u->C + c) * u->H + h) * u->W + ww];
                                }
                        }
                    }
    for (int64_t i = 0; i < ny; i++) {
        double v = out[i];
        switch (u->act) {
        case SN_ACT_RELU: v = v > 0 ? v : 0; break;
        case SN_ACT_ELU: v = v > 0 ? v : u->p0 * expm1(v); break;
        case SN_ACT_SOFTPLUS: v = v * u->p0 > u->p1 ? v : log1p(exp(u->p0 * v)) / u->p0; break;
        case SN_ACT_SIGMOID: v = 1 / (1 + exp(-v)); break;
        case SN_ACT_TANH: v = tanh(v); break;
        default: break;
        }
        out[i] = v;
    }
}

/* new_api: sn_conv2d_pad / sn_conv_transpose2d_crop with eh, ew (conv2d: padding after;
 * conv_transpose2d: crop); otherwise the symmetric wrappers (eh, ew unused) */
static void run_conv_x(bool transposed, bool bias, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t kh,
                       int64_t kw, int sh, int sw, int ph, int pw, int oph, int opw, bool new_api, int eh, int ew,
                       sn_act act, float p0, float p1) {
    sn_ctx *ctx = sn_ctx_new();
    if (!new_api) {
        eh = transposed ? 0 : ph;
        ew = transposed ? 0 : pw;
    }
    uint64_t seed = 17 + (uint64_t)(K * 7 + sh + transposed) + 101 * (uint64_t)act + 13 * (uint64_t)(eh + 3 * ew);
    int64_t xs[4] = {N, C, H, W}, ws[4] = {transposed ? C : K, transposed ? K : C, kh, kw};
    sn_tensor *x = leaf(ctx, 4, xs, "x", &seed, -1, 1, true);
    sn_tensor *w = leaf(ctx, 4, ws, "w", &seed, -0.5f, 0.5f, true);
    sn_tensor *b = bias ? leaf(ctx, 1, &K, "b", &seed, -0.5f, 0.5f, true) : NULL;
    sn_tensor *y;
    if (new_api)
        y = transposed ? sn_conv_transpose2d_crop(ctx, x, w, b, sh, sw, ph, pw, oph, opw, eh, ew, act, p0, p1)
                       : sn_conv2d_pad(ctx, x, w, b, sh, sw, ph, eh, pw, ew, act, p0, p1);
    else
        y = transposed ? sn_conv_transpose2d_act(ctx, x, w, b, sh, sw, ph, pw, oph, opw, act, p0, p1)
                       : sn_conv2d_act(ctx, x, w, b, sh, sw, ph, pw, act, p0, p1);
    if (!y) fail_msg("%s", sn_last_error());
    cv_ud u = {transposed, bias, N, C, H, W, K, kh, kw, 0, 0, sh, sw, ph, pw, oph, opw, eh, ew, act, p0, p1};
    u.Ho = transposed ? (H - 1) * sh - 2 * ph + kh + oph - eh : (H + ph + eh - kh) / sh + 1;
    u.Wo = transposed ? (W - 1) * sw - 2 * pw + kw + opw - ew : (W + pw + ew - kw) / sw + 1;
    assert_int_equal(y->shape[0], N);
    assert_int_equal(y->shape[1], K);
    assert_int_equal(y->shape[2], u.Ho);
    assert_int_equal(y->shape[3], u.Wo);
    assert_int_equal(y->ip[6], eh);
    assert_int_equal(y->ip[7], ew);
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(sn_grad_conv(ctx, y, dy, ds));
    for (int i = 0; i < 2; i++) { /* the *_BWD ops carry the forward's geometry */
        assert_int_equal(ds[i]->ip[6], eh);
        assert_int_equal(ds[i]->ip[7], ew);
        assert_int_equal(ds[i]->ip[2], ph);
    }
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    ref_t r = {.f = ref_conv, .ud = &u, .nout = sn_nelem(y)};
    ref_add(&r, x->data, sn_nelem(x));
    ref_add(&r, w->data, sn_nelem(w));
    if (bias) ref_add(&r, b->data, K);
    char what[128];
    snprintf(what, sizeof what, "%s %s (%d,%d) act %d (%g, %g)", transposed ? "conv_transpose2d" : "conv2d",
             transposed ? "crop" : "pad after", eh, ew, (int)act, (double)p0, (double)p1);
    check_fwd(what, y->data, &r, 1e-5);
    for (int i = 0; i < (bias ? 3 : 2); i++) {
        assert_true(sn_same_shape(ds[i], y->src[i]));
        check_grad(what, ds[i]->data, &r, dy->data, i, 1e-4);
    }
    ref_free(&r);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void run_conv_act(bool transposed, bool bias, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t kh,
                         int64_t kw, int sh, int sw, int ph, int pw, int oph, int opw, sn_act act, float p0, float p1) {
    run_conv_x(transposed, bias, N, C, H, W, K, kh, kw, sh, sw, ph, pw, oph, opw, false, 0, 0, act, p0, p1);
}

static void run_conv(bool transposed, bool bias, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t kh,
                     int64_t kw, int sh, int sw, int ph, int pw, int oph, int opw) {
    run_conv_act(transposed, bias, N, C, H, W, K, kh, kw, sh, sw, ph, pw, oph, opw, SN_ACT_NONE, 0, 0);
}

static void test_conv2d(void **state) {
    /* the CRN encoder's kernel (2,3) stride (1,2), no padding */
    run_conv(false, true, 2, 3, 5, 9, 4, 2, 3, 1, 2, 0, 0, 0, 0);
    /* padding, 3x3, stride 2 both ways, no bias */
    run_conv(false, false, 3, 2, 7, 8, 5, 3, 3, 2, 2, 1, 1, 0, 0);
    /* 1x1, stride 1, asymmetric padding */
    run_conv(false, true, 2, 4, 3, 5, 3, 1, 1, 1, 1, 0, 2, 0, 0);
    /* stride 3 wider than the kernel: some inputs unused */
    run_conv(false, true, 1, 2, 8, 10, 2, 2, 2, 3, 3, 1, 0, 0, 0);
}

static void test_conv_transpose2d(void **state) {
    /* the CRN decoder: kernel (2,3) stride (1,2), output_padding (0,1) and (0,0) */
    run_conv(true, true, 2, 3, 5, 4, 2, 2, 3, 1, 2, 0, 0, 0, 1);
    run_conv(true, true, 2, 4, 4, 9, 3, 2, 3, 1, 2, 0, 0, 0, 0);
    /* padding, 3x3, stride 2 with output padding in both dims, no bias */
    run_conv(true, false, 3, 2, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1);
    /* stride 3 wider than the kernel */
    run_conv(true, true, 1, 2, 3, 4, 2, 2, 2, 3, 3, 0, 1, 2, 0);
}

/* each activation fused into conv2d and conv_transpose2d (odd sizes, batch > 1; 1x1 too) */
static const struct { sn_act act; float p0, p1; } g_acts[] = {
    {SN_ACT_RELU, 0, 0},           {SN_ACT_ELU, 1.0f, 0},  {SN_ACT_ELU, 0.3f, 0}, {SN_ACT_SOFTPLUS, 1.0f, 20.0f},
    {SN_ACT_SOFTPLUS, 8.0f, 17.0f} /* beta*x on both sides of the threshold */,
    {SN_ACT_SIGMOID, 0, 0},        {SN_ACT_TANH, 0, 0},
};

static void test_conv2d_act(void **state) {
    for (size_t a = 0; a < sizeof g_acts / sizeof *g_acts; a++) {
        run_conv_act(false, true, 2, 3, 5, 9, 3, 2, 3, 1, 2, 0, 0, 0, 0, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
        run_conv_act(false, false, 3, 2, 7, 8, 5, 3, 3, 2, 2, 1, 1, 0, 0, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
        run_conv_act(false, true, 2, 4, 3, 5, 3, 1, 1, 1, 1, 0, 2, 0, 0, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
    }
}

static void test_conv_transpose2d_act(void **state) {
    for (size_t a = 0; a < sizeof g_acts / sizeof *g_acts; a++) {
        run_conv_act(true, true, 2, 3, 5, 4, 3, 2, 3, 1, 2, 0, 0, 0, 1, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
        run_conv_act(true, false, 3, 2, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
        run_conv_act(true, true, 2, 3, 3, 5, 2, 1, 1, 1, 1, 0, 0, 0, 0, g_acts[a].act, g_acts[a].p0, g_acts[a].p1);
    }
}

/* the fused result equals the activation op applied to the plain conv's output */
static void test_conv_act_vs_unfused(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 91;
    sn_tensor *x = leaf(ctx, 4, (int64_t[]){3, 4, 7, 11}, "x", &seed, -1, 1, false);
    sn_tensor *w = leaf(ctx, 4, (int64_t[]){5, 4, 2, 3}, "w", &seed, -0.5f, 0.5f, false);
    sn_tensor *wt = leaf(ctx, 4, (int64_t[]){4, 5, 2, 3}, "wt", &seed, -0.5f, 0.5f, false);
    sn_tensor *b = leaf(ctx, 1, (int64_t[]){5}, "b", &seed, -0.5f, 0.5f, false);
    sn_tensor *c = sn_conv2d(ctx, x, w, b, 1, 2, 0, 0), *t = sn_conv_transpose2d(ctx, x, wt, b, 1, 2, 0, 0, 0, 1);
    assert_int_equal(c->ip[SN_IP_ACT], SN_ACT_NONE);
    sn_tensor *f[4] = {sn_conv2d_act(ctx, x, w, b, 1, 2, 0, 0, SN_ACT_ELU, 1.0f, 0),
                       sn_conv2d_act(ctx, x, w, b, 1, 2, 0, 0, SN_ACT_SIGMOID, 0, 0),
                       sn_conv_transpose2d_act(ctx, x, wt, b, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, 1.0f, 20.0f),
                       sn_conv_transpose2d_act(ctx, x, wt, b, 1, 2, 0, 0, 0, 1, SN_ACT_TANH, 0, 0)};
    sn_tensor *u[4] = {sn_elu(ctx, c, 1.0f), sn_sigmoid(ctx, c), sn_softplus(ctx, t, 1.0f, 20.0f), sn_tanh(ctx, t)};
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    for (int k = 0; k < 4; k++)
        if (!(sn_test_rel_err_f(f[k]->data, u[k]->data, sn_nelem(f[k]), 1.0) < 1e-6))
            fail_msg("fused %s differs from the separate op", sn_op_name(u[k]->op));
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

/* conv2d with padding before != after (top/bottom, left/right), odd sizes, batch > 1 */
static void test_conv2d_pad(void **state) {
    /* the CRN encoder: one causal frame before in time, none after */
    run_conv_x(false, true, 2, 3, 5, 9, 4, 2, 3, 1, 2, 1, 0, 0, 0, true, 0, 0, SN_ACT_NONE, 0, 0);
    /* after > before in both dims, 3x3 stride 2, no bias */
    run_conv_x(false, false, 3, 2, 7, 8, 5, 3, 3, 2, 2, 0, 1, 0, 0, true, 2, 0, SN_ACT_NONE, 0, 0);
    /* stride wider than the kernel, padding only after */
    run_conv_x(false, true, 2, 2, 7, 9, 3, 2, 2, 3, 2, 0, 0, 0, 0, true, 2, 3, SN_ACT_NONE, 0, 0);
    /* 1x1: the grid reaches past the image (padding after only) */
    run_conv_x(false, true, 2, 4, 3, 5, 3, 1, 1, 1, 1, 0, 2, 0, 0, true, 1, 0, SN_ACT_NONE, 0, 0);
    /* with the activation epilogues */
    for (size_t a = 0; a < sizeof g_acts / sizeof *g_acts; a++) {
        run_conv_x(false, true, 2, 3, 5, 9, 3, 2, 3, 1, 2, 1, 0, 0, 0, true, 0, 0, g_acts[a].act, g_acts[a].p0,
                   g_acts[a].p1);
        run_conv_x(false, false, 3, 2, 6, 7, 4, 3, 2, 2, 1, 2, 0, 0, 0, true, 1, 3, g_acts[a].act, g_acts[a].p0,
                   g_acts[a].p1);
    }
}

/* conv_transpose2d with rows/columns cropped off the end of the output */
static void test_conv_transpose2d_crop(void **state) {
    /* the CRN decoder: stride (1,2), output_padding (0,1) and (0,0), the last frame cropped */
    run_conv_x(true, true, 2, 3, 5, 4, 2, 2, 3, 1, 2, 0, 0, 0, 1, true, 1, 0, SN_ACT_NONE, 0, 0);
    run_conv_x(true, true, 2, 4, 4, 9, 3, 2, 3, 1, 2, 0, 0, 0, 0, true, 1, 0, SN_ACT_NONE, 0, 0);
    /* rows and columns, 3x3, stride 2 with output padding and padding, no bias */
    run_conv_x(true, false, 3, 2, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, true, 2, 3, SN_ACT_NONE, 0, 0);
    /* stride wider than the kernel, columns only */
    run_conv_x(true, true, 1, 2, 3, 5, 2, 2, 2, 3, 3, 0, 1, 2, 0, true, 0, 4, SN_ACT_NONE, 0, 0);
    /* 1x1 stride 1 (cropping keeps it off the GEMM-only path) */
    run_conv_x(true, true, 2, 3, 3, 5, 2, 1, 1, 1, 1, 0, 0, 0, 0, true, 1, 2, SN_ACT_NONE, 0, 0);
    for (size_t a = 0; a < sizeof g_acts / sizeof *g_acts; a++) {
        run_conv_x(true, true, 2, 3, 5, 4, 3, 2, 3, 1, 2, 0, 0, 0, 1, true, 1, 0, g_acts[a].act, g_acts[a].p0,
                   g_acts[a].p1);
        run_conv_x(true, false, 3, 2, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, true, 1, 2, g_acts[a].act, g_acts[a].p0,
                   g_acts[a].p1);
    }
}

/* The CRN's fused forms equal sn_pad + conv2d and conv_transpose2d + sn_slice, and a
 * recomputed copy (sn_remat) of each equals the original. */
static void test_conv_pad_crop_vs_separate(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_ctx_set_remat(ctx, 2);
    uint64_t seed = 57;
    sn_tensor *x = leaf(ctx, 4, (int64_t[]){3, 4, 7, 11}, "x", &seed, -1, 1, false);
    sn_tensor *w = leaf(ctx, 4, (int64_t[]){5, 4, 2, 3}, "w", &seed, -0.5f, 0.5f, false);
    sn_tensor *wt = leaf(ctx, 4, (int64_t[]){4, 5, 2, 3}, "wt", &seed, -0.5f, 0.5f, false);
    sn_tensor *b = leaf(ctx, 1, (int64_t[]){5}, "b", &seed, -0.5f, 0.5f, false);
    int pads[8] = {0, 0, 0, 0, 1, 2, 3, 0};
    sn_tensor *cf = sn_conv2d_pad(ctx, x, w, b, 1, 2, 1, 2, 3, 0, SN_ACT_ELU, 1.0f, 0);
    sn_tensor *cs = sn_elu(ctx, sn_conv2d(ctx, sn_pad(ctx, x, pads), w, b, 1, 2, 0, 0), 1.0f);
    sn_tensor *tf = sn_conv_transpose2d_crop(ctx, x, wt, b, 1, 2, 0, 0, 0, 1, 1, 2, SN_ACT_SOFTPLUS, 1.0f, 20.0f);
    sn_tensor *tfull = sn_conv_transpose2d_act(ctx, x, wt, b, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, 1.0f, 20.0f);
    assert_non_null(tfull);
    int64_t st[4] = {0, 0, 0, 0}, sz[4] = {3, 5, tfull->shape[2] - 1, tfull->shape[3] - 2};
    sn_tensor *ts = sn_slice(ctx, tfull, st, sz);
    assert_non_null(cf);
    assert_non_null(tf);
    sn_tensor *cr = sn_remat(ctx, cf), *tr = sn_remat(ctx, tf);
    assert_true(cr != cf && tr != tf);
    assert_memory_equal(cr->ip, cf->ip, sizeof cf->ip);
    assert_memory_equal(tr->ip, tf->ip, sizeof tf->ip);
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    sn_tensor *pairs[4][2] = {{cf, cs}, {tf, ts}, {cr, cf}, {tr, tf}};
    for (int k = 0; k < 4; k++) {
        assert_true(sn_same_shape(pairs[k][0], pairs[k][1]));
        if (!(sn_test_rel_err_f(pairs[k][0]->data, pairs[k][1]->data, sn_nelem(pairs[k][0]), 1.0) < 1e-6))
            fail_msg("pair %d: the fused %s differs from the separate ops", k, sn_op_name(pairs[k][0]->op));
    }
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static void test_conv_bad_input(void **state) {
    sn_ctx *ctx = sn_ctx_new();
    sn_tensor *x = sn_new_4d(ctx, 2, 3, 5, 9, 0, "x"), *w = sn_new_4d(ctx, 4, 2, 2, 3, 0, "w"),
              *wok = sn_new_4d(ctx, 4, 3, 2, 3, 0, "w"), *big = sn_new_4d(ctx, 4, 3, 7, 3, 0, "w"),
              *b = sn_new_1d(ctx, 5, 0, "b"), *x3 = sn_new_2d(ctx, 3, 5, 0, "x");
    EXPECT_FAIL(sn_conv2d(ctx, x, w, NULL, 1, 2, 0, 0), "conv2d");
    EXPECT_FAIL(sn_conv2d(ctx, x, w, NULL, 1, 2, 0, 0), "input channels");
    EXPECT_FAIL(sn_conv2d(ctx, x, wok, b, 1, 2, 0, 0), "bias");
    EXPECT_FAIL(sn_conv2d(ctx, x3, wok, NULL, 1, 2, 0, 0), "4-D");
    EXPECT_FAIL(sn_conv2d(ctx, x, big, NULL, 1, 1, 0, 0), "smaller than the kernel");
    EXPECT_FAIL(sn_conv2d(ctx, x, wok, NULL, 0, 2, 0, 0), "stride");
    EXPECT_FAIL(sn_conv2d(ctx, x, wok, NULL, 1, 2, -1, 0), "padding");
    EXPECT_FAIL(sn_conv2d(ctx, NULL, wok, NULL, 1, 2, 0, 0), "NULL");
    EXPECT_FAIL(sn_conv2d(ctx, x, NULL, NULL, 1, 2, 0, 0), "NULL");
    sn_tensor *wt = sn_new_4d(ctx, 3, 4, 2, 3, 0, "wt"), *wbad = sn_new_4d(ctx, 4, 3, 2, 3, 0, "wt");
    EXPECT_FAIL(sn_conv_transpose2d(ctx, x, wbad, NULL, 1, 2, 0, 0, 0, 1), "conv_transpose2d");
    EXPECT_FAIL(sn_conv_transpose2d(ctx, x, wt, NULL, 1, 2, 0, 0, 1, 0), "output padding");
    EXPECT_FAIL(sn_conv_transpose2d(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 2), "output padding");
    EXPECT_FAIL(sn_conv_transpose2d(ctx, x, wt, b, 1, 2, 0, 0, 0, 1), "bias");
    EXPECT_FAIL(sn_conv_transpose2d(ctx, x, wt, NULL, 1, 2, 9, 0, 0, 1), "empty");
    /* the activation epilogue */
    int n0 = sn_ctx_count(ctx);
    EXPECT_FAIL(sn_conv2d_act(ctx, x, wok, NULL, 1, 2, 0, 0, (sn_act)7, 0, 0), "conv2d: unknown activation 7");
    EXPECT_FAIL(sn_conv2d_act(ctx, x, wok, NULL, 1, 2, 0, 0, (sn_act)-3, 0, 0), "conv2d: unknown activation");
    EXPECT_FAIL(sn_conv2d_act(ctx, x, wok, NULL, 1, 2, 0, 0, SN_ACT_ELU, -0.5f, 0), "conv2d: ELU alpha");
    EXPECT_FAIL(sn_conv_transpose2d_act(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, SN_ACT_COUNT, 0, 0),
                "conv_transpose2d: unknown activation");
    EXPECT_FAIL(sn_conv_transpose2d_act(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, -1.0f, 20.0f),
                "conv_transpose2d: softplus beta");
    /* asymmetric padding and cropping */
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, 1, -1, 0, 0, SN_ACT_NONE, 0, 0), "conv2d");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, 1, -1, 0, 0, SN_ACT_NONE, 0, 0), "bottom -1");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, -2, 0, 0, 0, SN_ACT_NONE, 0, 0), "padding");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, 0, 0, 0, -1, SN_ACT_NONE, 0, 0), "right -1");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, 0, 0, -1, 3, SN_ACT_NONE, 0, 0), "left -1");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, big, NULL, 1, 1, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), "smaller than the kernel");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, w, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), "input channels");
    EXPECT_FAIL(sn_conv2d_pad(ctx, x, wok, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_ELU, -1.0f, 0), "conv2d: ELU alpha");
    /* x [2,3,5,9], wt [3,4,2,3], stride (1,2), output padding (0,1): output 6 x 20 */
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, -1, 0, SN_ACT_NONE, 0, 0),
                "conv_transpose2d: crop");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 0, -2, SN_ACT_NONE, 0, 0), "crop");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 6, 0, SN_ACT_NONE, 0, 0),
                "conv_transpose2d");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 6, 0, SN_ACT_NONE, 0, 0),
                "smaller than the output");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 0, 20, SN_ACT_NONE, 0, 0), "crop");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, -1, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0), "padding");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 2, 1, 0, SN_ACT_NONE, 0, 0),
                "output padding");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wbad, NULL, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0),
                "conv_transpose2d");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_SOFTPLUS, 0, 20.0f),
                "conv_transpose2d: softplus beta");
    EXPECT_FAIL(sn_conv_transpose2d_crop(ctx, NULL, wt, NULL, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0), "NULL");
    {
        sn_tensor *ok = sn_conv_transpose2d_crop(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, 5, 19, SN_ACT_NONE, 0, 0);
        assert_non_null(ok); /* the largest crop: one element left */
        assert_int_equal(ok->shape[2], 1);
        assert_int_equal(ok->shape[3], 1);
        n0++;
    }
    assert_int_equal(sn_ctx_count(ctx), n0); /* no node left behind */
    /* shape errors still come first and name the op */
    EXPECT_FAIL(sn_conv_transpose2d_act(ctx, x, wbad, NULL, 1, 2, 0, 0, 0, 1, SN_ACT_RELU, 0, 0), "conv_transpose2d");
    /* a fused softplus below threshold 17 builds, but has no gradient from its output */
    sn_tensor *y = sn_conv_transpose2d_act(ctx, x, wt, NULL, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, 1.0f, 3.0f);
    assert_non_null(y);
    x->flags |= SN_FLAG_NEEDS_GRAD;
    sn_tensor *ds[SN_MAX_SRC] = {0};
    EXPECT_STATUS(sn_grad_conv(ctx, y, y, ds), SN_ERR_UNSUPPORTED, "threshold >= 17");
    EXPECT_STATUS(sn_grad_conv(ctx, y, y, ds), SN_ERR_UNSUPPORTED, "conv_transpose2d");
    sn_ctx_free(ctx);
}

/* All tests run on the CPU's row-blocked conv path, then (the choice is read once per
 * process, so in a fresh one) on the whole-batch im2col/col2im path, SN_CONV_FUSED=0,
 * first as one product per op (these sizes are under its chunk budget), then with two
 * images a product (folded chunks, a short last one) and one (no folding), set by
 * SN_CONV_CHUNK_IMAGES. */
int main(int argc, char **argv) {
    (void)argc;
    const char *env = getenv("SN_CONV_FUSED"), *chunk = getenv("SN_CONV_CHUNK_IMAGES");
    printf("conv path: %s, images a product: %s\n", env && *env == '0' ? "whole-batch (SN_CONV_FUSED=0)" : "row-blocked",
           chunk ? chunk : "default");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv_transpose2d),
        cmocka_unit_test(test_conv_bad_input),
        cmocka_unit_test(test_conv2d_act),
        cmocka_unit_test(test_conv_transpose2d_act),
        cmocka_unit_test(test_conv_act_vs_unfused),
        cmocka_unit_test(test_conv2d_pad),
        cmocka_unit_test(test_conv_transpose2d_crop),
        cmocka_unit_test(test_conv_pad_crop_vs_separate),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    const char *next = !env ? "" : !chunk ? "2" : !strcmp(chunk, "2") ? "1" : NULL;
    if (r == 0 && next) {
        setenv("SN_CONV_FUSED", "0", 1);
        if (*next) setenv("SN_CONV_CHUNK_IMAGES", next, 1);
        fflush(stdout);
        execv(argv[0], argv);
        fprintf(stderr, "could not re-run %s on the whole-batch path: it is untested\n", argv[0]);
        return 1;
    }
    return r;
}
