/* A backend against the CPU backend: every op forward and backward on the
 * same fresh random inputs, saved state (extra) byte layouts, in-place updates,
 * precision switches, graph capture/replay, and a whole CRN training step through
 * the planner. `test_backend_ops KIND` (cuda, vulkan; ctest runs it once per backend
 * built in). Exits with 77 (skipped) when that backend has no device here. */
#include "sn_parity.h"
#include "sinter/nn.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sn_backend_reg *g_reg;
static sn_backend *g_cpu, *g_dev;
static char g_kind[16];

/* ---------------- op families ---------------- */

static void test_binary(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 4, 5, 6), *b = LEAF(c, -1, 1, "b", 4, 5, 6);
    sn_tensor *bb = LEAF(c, -1, 1, "bb", 5, 1), *bv = LEAF(c, -1, 1, "bv", 6), *s1 = LEAF(c, -1, 1, "s1", 1);
    grads(c, sn_add(c, a, b), sn_grad_binary);
    grads(c, sn_add(c, a, bb), sn_grad_binary);
    grads(c, sn_mul(c, a, bv), sn_grad_binary);
    grads(c, sn_mul(c, a, s1), sn_grad_binary);
    grads(c, sn_scale(c, a, -0.37f), sn_grad_binary);
    /* reduce_to appears only in backward graphs: forward only */
    assert_non_null(sn_reduce_to(c, a, 2, (int64_t[]){5, 1}));
    assert_non_null(sn_reduce_to(c, a, 3, (int64_t[]){4, 1, 6}));
    grads(c, sn_expand(c, s1, 3, (int64_t[]){3, 4, 5}, 0.25f), sn_grad_binary);
    cross_check(c, 1e-6 /* elementwise f32, sums of <= 120 terms */, 0, "binary");
    sn_ctx_free(c);
}

static void test_unary(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -3, 3, "x", 3, 7, 11);
    grads(c, sn_relu(c, x), sn_grad_unary);
    grads(c, sn_elu(c, x, 1.0f), sn_grad_unary);
    grads(c, sn_softplus(c, x, 1.0f, 20.0f), sn_grad_unary);
    grads(c, sn_softplus(c, x, 2.0f, 1.5f), sn_grad_unary);
    grads(c, sn_sigmoid(c, x), sn_grad_unary);
    grads(c, sn_tanh(c, x), sn_grad_unary);
    cross_check(c, 2e-6 /* libm vs device transcendental ulps */, 0, "unary");
    sn_ctx_free(c);
}

static void test_shape(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 2, 3, 5, 7), *b = LEAF(c, -1, 1, "b", 2, 4, 5, 7), *d = LEAF(c, -1, 1, "d", 2, 1, 5, 7);
    grads(c, sn_concat(c, 3, (sn_tensor *[]){a, b, d}, 1), sn_grad_shape);
    grads(c, sn_concat(c, 2, (sn_tensor *[]){a, a}, 3), sn_grad_shape);
    grads(c, sn_pad(c, a, (int[]){0, 0, 1, 2, 1, 0, 0, 3}), sn_grad_shape);
    grads(c, sn_slice(c, b, (int64_t[]){1, 1, 0, 2}, (int64_t[]){1, 2, 4, 5}), sn_grad_shape);
    grads(c, sn_permute(c, a, (int[]){0, 2, 1, 3}), sn_grad_shape);
    grads(c, sn_permute(c, b, (int[]){3, 0, 2, 1}), sn_grad_shape);
    grads(c, sn_copy(c, d), sn_grad_shape);
    cross_check(c, 0 /* pure data movement: exact */, 0, "shape");
    sn_ctx_free(c);
}

static void test_matmul(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 3, 17, 9), *b = LEAF(c, -1, 1, "b", 3, 9, 13);
    sn_tensor *at = LEAF(c, -1, 1, "at", 3, 9, 17), *bt = LEAF(c, -1, 1, "bt", 3, 13, 9), *b2 = LEAF(c, -1, 1, "b2", 9, 13);
    grads(c, sn_matmul(c, a, b, false, false), sn_grad_matmul);
    grads(c, sn_matmul(c, at, bt, true, true), sn_grad_matmul);
    grads(c, sn_matmul(c, a, b2, false, false), sn_grad_matmul);
    grads(c, sn_matmul(c, at, b2, true, false), sn_grad_matmul);
    sn_tensor *x = LEAF(c, -1, 1, "x", 2, 5, 33), *w = LEAF(c, -1, 1, "w", 19, 33), *bias = LEAF(c, -1, 1, "bias", 19);
    grads(c, sn_linear(c, x, w, bias), sn_grad_matmul);
    grads(c, sn_linear(c, x, w, NULL), sn_grad_matmul);
    cross_check(c, 1e-5 /* f32 GEMM, K <= 33, different summation order */, 0, "matmul");
    sn_ctx_free(c);
}

static void test_conv(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -1, 1, "x", 3, 4, 9, 21);
    sn_tensor *w = LEAF(c, -0.5, 0.5, "w", 6, 4, 2, 3), *b = LEAF(c, -0.5, 0.5, "b", 6);
    grads(c, sn_conv2d(c, x, w, b, 1, 2, 0, 0), sn_grad_conv);   /* the CRN encoder shape */
    grads(c, sn_conv2d(c, x, w, NULL, 2, 3, 1, 2), sn_grad_conv);
    sn_tensor *w1 = LEAF(c, -0.5, 0.5, "w1", 5, 4, 1, 1);
    grads(c, sn_conv2d(c, x, w1, NULL, 1, 1, 0, 0), sn_grad_conv); /* 1x1: no im2col */
    sn_tensor *wt = LEAF(c, -0.5, 0.5, "wt", 4, 5, 2, 3), *bt = LEAF(c, -0.5, 0.5, "bt", 5);
    grads(c, sn_conv_transpose2d(c, x, wt, bt, 1, 2, 0, 0, 0, 1), sn_grad_conv); /* decoder, output padding */
    grads(c, sn_conv_transpose2d(c, x, wt, NULL, 2, 2, 1, 1, 1, 0), sn_grad_conv);
    cross_check(c, 2e-5 /* f32 GEMMs over K <= 3*9*21 */, 0, "conv");
    sn_ctx_free(c);
    /* outputs large enough that the bias gradient splits each channel over blocks */
    c = sn_ctx_new();
    x = LEAF(c, -1, 1, "x", 4, 4, 96, 128);
    w = LEAF(c, -0.5, 0.5, "w", 6, 4, 2, 3);
    b = LEAF(c, -0.5, 0.5, "b", 6);
    grads(c, sn_conv2d(c, x, w, b, 1, 2, 0, 0), sn_grad_conv);
    cross_check(c, 1e-4 /* sums over 4*95*63 elements in different orders */, 0, "conv (large)");
    sn_ctx_free(c);
}

/* conv2d with padding after != before (sn_conv2d_pad) and conv_transpose2d with its end
 * cropped (sn_conv_transpose2d_crop), forward and backward, device vs CPU: the CRN's
 * encoder/decoder forms, rows and columns, stride 2, 1x1 (kept off the GEMM-only path),
 * with and without bias and activation. */
static void test_conv_pad_crop(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -1, 1, "x", 3, 4, 9, 21);
    sn_tensor *w = LEAF(c, -0.5, 0.5, "w", 6, 4, 2, 3), *b = LEAF(c, -0.5, 0.5, "b", 6);
    /* the CRN encoder: one causal frame before in time */
    grads(c, sn_conv2d_pad(c, x, w, b, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    grads(c, sn_conv2d_pad(c, x, w, NULL, 2, 2, 0, 2, 1, 3, SN_ACT_ELU, 1.0f, 0), sn_grad_conv);
    grads(c, sn_conv2d_pad(c, x, w, b, 2, 3, 2, 1, 3, 0, SN_ACT_SIGMOID, 0, 0), sn_grad_conv);
    sn_tensor *w1 = LEAF(c, -0.5, 0.5, "w1", 5, 4, 1, 1);
    grads(c, sn_conv2d_pad(c, x, w1, NULL, 1, 1, 0, 1, 0, 2, SN_ACT_NONE, 0, 0), sn_grad_conv);
    sn_tensor *wt = LEAF(c, -0.5, 0.5, "wt", 4, 5, 2, 3), *bt = LEAF(c, -0.5, 0.5, "bt", 5);
    sn_tensor *wt3 = LEAF(c, -0.5, 0.5, "wt3", 4, 5, 3, 3), *wt1 = LEAF(c, -0.5, 0.5, "wt1", 4, 5, 1, 1);
    /* the CRN decoder: output padding (0,1), the last frame cropped; then its last layer */
    grads(c, sn_conv_transpose2d_crop(c, x, wt, bt, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    grads(c, sn_conv_transpose2d_crop(c, x, wt, bt, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_SOFTPLUS, 1.0f, 20.0f),
          sn_grad_conv);
    grads(c, sn_conv_transpose2d_crop(c, x, wt3, NULL, 2, 2, 1, 1, 1, 1, 2, 3, SN_ACT_TANH, 0, 0), sn_grad_conv);
    grads(c, sn_conv_transpose2d_crop(c, x, wt1, bt, 1, 1, 0, 0, 0, 0, 1, 2, SN_ACT_ELU, 1.0f, 0), sn_grad_conv);
    cross_check(c, 2e-5 /* f32 GEMMs over K <= 3*9*21 */, 0, "conv pad/crop");
    sn_ctx_free(c);
    /* CRN-like sizes: several chunks of images, the bias gradient split over blocks */
    c = sn_ctx_new();
    x = LEAF(c, -1, 1, "x", 4, 16, 96, 39);
    w = LEAF(c, -0.5, 0.5, "w", 32, 16, 2, 3);
    b = LEAF(c, -0.5, 0.5, "b", 32);
    wt = LEAF(c, -0.5, 0.5, "wt", 16, 8, 2, 3);
    bt = LEAF(c, -0.5, 0.5, "bt", 8);
    grads(c, sn_conv2d_pad(c, x, w, b, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    grads(c, sn_conv_transpose2d_crop(c, x, wt, bt, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    cross_check(c, 1e-4 /* long sums in different orders */, 0, "conv pad/crop (large)");
    sn_ctx_free(c);
}

/* Convolution weight gradients through both of a backend's paths where it has two (CUDA:
 * SN_CONV_WGRAD, Vulkan: SN_VK_CONV_WGRAD, read on every call: im2col + GEMMs and the
 * direct kernel), device vs CPU. The CRN's
 * encoder and decoder forms (first and last layers too), odd sizes, channel counts that
 * leave partial tiles, 3x3 stride 2 with padding, 1x1, and sizes whose reduction the
 * direct kernel splits over many blocks, and some over several tiles. Then again in bf16
 * mode (CUDA: the tensor-core direct kernel). */
static void conv_wgrad_cases(double tol, const char *mode) {
    static const char *const paths[2] = {"gemm", "direct"};
    static const char *const vars[2] = {"SN_CONV_WGRAD", "SN_VK_CONV_WGRAD"}; /* CUDA's, Vulkan's */
    char saved[2][64] = {{0}};
    for (int v = 0; v < 2; v++) {
        const char *e = getenv(vars[v]);
        if (e) snprintf(saved[v], sizeof saved[v], "%s", e);
    }
    for (int k = 0; k < 2; k++) {
        for (int v = 0; v < 2; v++) setenv(vars[v], paths[k], 1);
        char label[64];
        sn_ctx *c = sn_ctx_new();
        /* encoder: the first layer (1 channel, 161 bins) and a middle one, one causal frame before */
        sn_tensor *x0 = LEAF(c, -1, 1, "x0", 3, 1, 17, 161), *w0 = LEAF(c, -0.5, 0.5, "w0", 16, 1, 2, 3);
        grads(c, sn_conv2d_pad(c, x0, w0, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *x1 = LEAF(c, -1, 1, "x1", 4, 16, 13, 39), *w1 = LEAF(c, -0.5, 0.5, "w1", 32, 16, 2, 3);
        sn_tensor *b1 = LEAF(c, -0.5, 0.5, "b1", 32);
        grads(c, sn_conv2d_pad(c, x1, w1, b1, 1, 2, 1, 0, 0, 0, SN_ACT_ELU, 1.0f, 0), sn_grad_conv);
        /* channel counts off the 32/64 tiles, no padding */
        sn_tensor *x2 = LEAF(c, -1, 1, "x2", 3, 24, 11, 19), *w2 = LEAF(c, -0.5, 0.5, "w2", 40, 24, 2, 3);
        grads(c, sn_conv2d(c, x2, w2, NULL, 1, 2, 0, 0), sn_grad_conv);
        /* 3x3 stride 2 padded, asymmetric padding, 1x1 */
        sn_tensor *x3 = LEAF(c, -1, 1, "x3", 3, 7, 17, 23), *w3 = LEAF(c, -0.5, 0.5, "w3", 12, 7, 3, 3);
        grads(c, sn_conv2d(c, x3, w3, NULL, 2, 2, 1, 1), sn_grad_conv);
        grads(c, sn_conv2d_pad(c, x3, w3, NULL, 2, 2, 0, 2, 1, 3, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *w31 = LEAF(c, -0.5, 0.5, "w31", 5, 7, 1, 1);
        grads(c, sn_conv2d(c, x3, w31, NULL, 1, 1, 0, 0), sn_grad_conv);
        /* decoder: a concat input (64 channels), the last frame cropped; output padding (0,1)
         * to 80 bins; the last layer (one output channel, 161 bins) */
        sn_tensor *x4 = LEAF(c, -1, 1, "x4", 4, 64, 9, 9), *wt4 = LEAF(c, -0.5, 0.5, "wt4", 64, 16, 2, 3);
        sn_tensor *bt4 = LEAF(c, -0.5, 0.5, "bt4", 16);
        grads(c, sn_conv_transpose2d_crop(c, x4, wt4, bt4, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *x5 = LEAF(c, -1, 1, "x5", 3, 16, 7, 39), *wt5 = LEAF(c, -0.5, 0.5, "wt5", 16, 8, 2, 3);
        grads(c, sn_conv_transpose2d_crop(c, x5, wt5, NULL, 1, 2, 0, 0, 0, 1, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *x6 = LEAF(c, -1, 1, "x6", 3, 32, 15, 80), *wt6 = LEAF(c, -0.5, 0.5, "wt6", 32, 1, 2, 3);
        grads(c, sn_conv_transpose2d_crop(c, x6, wt6, NULL, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_SOFTPLUS, 1.0f, 20.0f),
              sn_grad_conv);
        /* 3x3 stride 2 transposed, padded, cropped on both axes; 1x1 */
        sn_tensor *wt7 = LEAF(c, -0.5, 0.5, "wt7", 7, 5, 3, 3), *wt71 = LEAF(c, -0.5, 0.5, "wt71", 7, 3, 1, 1);
        grads(c, sn_conv_transpose2d_crop(c, x3, wt7, NULL, 2, 2, 1, 1, 1, 1, 2, 3, SN_ACT_NONE, 0, 0), sn_grad_conv);
        grads(c, sn_conv_transpose2d(c, x3, wt71, NULL, 1, 1, 0, 0, 0, 0), sn_grad_conv);
        snprintf(label, sizeof label, "conv wgrad %s (%s)", mode, paths[k]);
        cross_check(c, tol, 0, label);
        sn_ctx_free(c);
        /* larger: the direct kernel splits each reduction over 10..120 blocks */
        c = sn_ctx_new();
        sn_tensor *x = LEAF(c, -1, 1, "x", 4, 16, 101, 80), *w = LEAF(c, -0.5, 0.5, "w", 32, 16, 2, 3);
        grads(c, sn_conv2d_pad(c, x, w, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *xm = LEAF(c, -1, 1, "xm", 4, 64, 41, 19), *wm = LEAF(c, -0.5, 0.5, "wm", 128, 64, 2, 3);
        grads(c, sn_conv2d_pad(c, xm, wm, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *xt = LEAF(c, -1, 1, "xt", 4, 128, 41, 9), *wt = LEAF(c, -0.5, 0.5, "wt", 128, 32, 2, 3);
        grads(c, sn_conv_transpose2d_crop(c, xt, wt, NULL, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        /* weights over several 64 x 64 tiles, partial on both edges */
        sn_tensor *xp = LEAF(c, -1, 1, "xp", 4, 48, 21, 19), *wp = LEAF(c, -0.5, 0.5, "wp", 200, 48, 2, 3);
        grads(c, sn_conv2d_pad(c, xp, wp, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        sn_tensor *xq = LEAF(c, -1, 1, "xq", 4, 160, 17, 9), *wq = LEAF(c, -0.5, 0.5, "wq", 160, 40, 2, 3);
        grads(c, sn_conv_transpose2d_crop(c, xq, wq, NULL, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
        snprintf(label, sizeof label, "conv wgrad large %s (%s)", mode, paths[k]);
        cross_check(c, tol, 0, label);
        sn_ctx_free(c);
    }
    for (int v = 0; v < 2; v++) {
        if (saved[v][0]) setenv(vars[v], saved[v], 1);
        else unsetenv(vars[v]);
    }
}

static void test_conv_wgrad(void **st) {
    /* f32: sums of up to 4*101*39 terms in different orders */
    conv_wgrad_cases(1e-4, "f32");
    if (sn_backend_set_precision(g_dev, &(sn_precision){.bf16 = true}) != SN_OK) {
        printf("%s: conv wgrad in bf16 skipped: %s\n", g_kind, sn_last_error());
        return;
    }
    conv_wgrad_cases(2e-2 /* operands rounded to bf16, f32 sums */, "bf16");
    SN_ASSERT_OK(sn_backend_set_precision(g_dev, &(sn_precision){0}));
}

/* Fused bias + activation epilogues (linear, conv2d, conv_transpose2d on the col2im and
 * the 1x1 paths) and their backward (the act derivative from y, then the op's own), in
 * f32 and with the TF32 / bf16 GEMMs */
static void test_fused_act(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -1, 1, "x", 3, 7, 33), *w = LEAF(c, -1, 1, "w", 19, 33), *b = LEAF(c, -1, 1, "b", 19);
    grads(c, sn_linear_act(c, x, w, b, SN_ACT_RELU, 0, 0), sn_grad_matmul); /* the attention FFN's */
    grads(c, sn_linear_act(c, x, w, NULL, SN_ACT_TANH, 0, 0), sn_grad_matmul);
    sn_tensor *cx = LEAF(c, -1, 1, "cx", 3, 4, 9, 21);
    sn_tensor *cw = LEAF(c, -0.5, 0.5, "cw", 6, 4, 2, 3), *cb = LEAF(c, -0.5, 0.5, "cb", 6);
    grads(c, sn_conv2d_act(c, cx, cw, cb, 1, 2, 0, 0, SN_ACT_ELU, 1.0f, 0), sn_grad_conv);
    grads(c, sn_conv2d_act(c, cx, cw, NULL, 2, 3, 1, 2, SN_ACT_SIGMOID, 0, 0), sn_grad_conv);
    sn_tensor *tw = LEAF(c, -0.5, 0.5, "tw", 4, 5, 2, 3), *tb = LEAF(c, -0.5, 0.5, "tb", 5);
    sn_tensor *tw1 = LEAF(c, -0.5, 0.5, "tw1", 4, 5, 1, 1);
    /* the CRN's last decoder layer; then 1x1 (no col2im: the epilogue kernel) */
    grads(c, sn_conv_transpose2d_act(c, cx, tw, tb, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, 1.0f, 20.0f), sn_grad_conv);
    grads(c, sn_conv_transpose2d_act(c, cx, tw1, tb, 1, 1, 0, 0, 0, 0, SN_ACT_SOFTPLUS, 8.0f, 17.0f), sn_grad_conv);
    cross_check(c, 2e-5 /* f32 GEMMs over K <= 3*9*21, transcendental ulps */, 0, "fused bias+act");
    sn_ctx_free(c);
    const struct { bool tf32, bf16; double tol; } mode[2] = {{true, false, 3e-3}, {false, true, 2e-2}};
    for (int k = 0; k < 2; k++) { /* smooth activations only: a ReLU kink flips under rounding */
        if (sn_backend_set_precision(g_dev, &(sn_precision){.tf32 = mode[k].tf32, .bf16 = mode[k].bf16}) != SN_OK) {
            printf("%s: fused bias+act in %s skipped: %s\n", g_kind, mode[k].bf16 ? "bf16" : "tf32", sn_last_error());
            continue;
        }
        c = sn_ctx_new();
        x = LEAF(c, -1, 1, "x", 4, 9, 64);
        w = LEAF(c, -1, 1, "w", 48, 64);
        b = LEAF(c, -1, 1, "b", 48);
        grads(c, sn_linear_act(c, x, w, b, SN_ACT_ELU, 1.0f, 0), sn_grad_matmul);
        cx = LEAF(c, -1, 1, "cx", 2, 8, 6, 19);
        tw = LEAF(c, -0.5, 0.5, "tw", 8, 16, 2, 3);
        tb = LEAF(c, -0.5, 0.5, "tb", 16);
        grads(c, sn_conv_transpose2d_act(c, cx, tw, tb, 1, 2, 0, 0, 0, 1, SN_ACT_SOFTPLUS, 1.0f, 20.0f), sn_grad_conv);
        cross_check(c, mode[k].tol, 0, mode[k].bf16 ? "fused bias+act bf16" : "fused bias+act tf32");
        sn_ctx_free(c);
    }
    SN_ASSERT_OK(sn_backend_set_precision(g_dev, &(sn_precision){0}));
}

static void test_batchnorm(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -2, 3, "x", 3, 5, 7, 9);
    sn_tensor *g = LEAF(c, 0.5, 1.5, "gamma", 5), *b = LEAF(c, -0.5, 0.5, "beta", 5);
    sn_tensor *rm = LEAF(c, -0.5, 0.5, "rmean", 5), *rv = LEAF(c, 0.5, 1.5, "rvar", 5);
    sn_tensor *rm2 = LEAF(c, -0.5, 0.5, "rmean2", 5), *rv2 = LEAF(c, 0.5, 1.5, "rvar2", 5);
    rm->flags &= ~SN_FLAG_NEEDS_GRAD;
    rv->flags &= ~SN_FLAG_NEEDS_GRAD;
    rm2->flags &= ~SN_FLAG_NEEDS_GRAD;
    rv2->flags &= ~SN_FLAG_NEEDS_GRAD;
    grads(c, sn_batchnorm2d(c, x, g, b, rm, rv, true, 1e-5f, 0.1f), sn_grad_batchnorm);
    grads(c, sn_batchnorm2d(c, x, g, b, rm2, rv2, false, 1e-5f, 0.1f), sn_grad_batchnorm);
    cross_check(c, 1e-5 /* per-channel sums over 189 elements, f32 vs double */, 1e-5, "batchnorm");
    sn_ctx_free(c);
}

/* channels of several thousand elements (the Vulkan kernels split each channel into
 * chunks of >= 1024: here 5, the last partial), odd sizes, plain and fused ELU, training
 * and eval, vs the CPU */
static void test_batchnorm_large(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -2, 3, "x", 3, 6, 41, 37);
    sn_tensor *g = LEAF(c, 0.5, 1.5, "gamma", 6), *b = LEAF(c, -0.5, 0.5, "beta", 6);
    sn_tensor *rs[8];
    for (int i = 0; i < 8; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, i % 2 ? "rvar%d" : "rmean%d", i / 2);
        rs[i] = i % 2 ? LEAF(c, 0.5, 1.5, nm, 6) : LEAF(c, -0.5, 0.5, nm, 6);
        rs[i]->flags &= ~SN_FLAG_NEEDS_GRAD;
    }
    grads(c, sn_batchnorm2d(c, x, g, b, rs[0], rs[1], true, 1e-5f, 0.1f), sn_grad_batchnorm);
    grads(c, sn_batchnorm2d(c, x, g, b, rs[2], rs[3], false, 1e-5f, 0.1f), sn_grad_batchnorm);
    grads(c, sn_batchnorm2d_elu(c, x, g, b, rs[4], rs[5], true, 1e-5f, 0.1f, 1.0f), sn_grad_batchnorm);
    grads(c, sn_batchnorm2d_elu(c, x, g, b, rs[6], rs[7], false, 1e-5f, 0.1f, 0.7f), sn_grad_batchnorm);
    cross_check(c, 1e-4 /* per-channel sums over 4551 elements in different orders */, 1e-4, "batchnorm large");
    sn_ctx_free(c);
}

/* fused ELU(BN(x)): forward, saved mean/invstd, running stats, and the backward
 * (whose dy is w.r.t. the ELU output) in training and eval, vs the CPU */
static void test_batchnorm_elu(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -2, 3, "x", 3, 5, 7, 9);
    sn_tensor *g = LEAF(c, 0.5, 1.5, "gamma", 5), *b = LEAF(c, -0.5, 0.5, "beta", 5);
    sn_tensor *rm = LEAF(c, -0.5, 0.5, "rmean", 5), *rv = LEAF(c, 0.5, 1.5, "rvar", 5);
    sn_tensor *rm2 = LEAF(c, -0.5, 0.5, "rmean2", 5), *rv2 = LEAF(c, 0.5, 1.5, "rvar2", 5);
    rm->flags &= ~SN_FLAG_NEEDS_GRAD;
    rv->flags &= ~SN_FLAG_NEEDS_GRAD;
    rm2->flags &= ~SN_FLAG_NEEDS_GRAD;
    rv2->flags &= ~SN_FLAG_NEEDS_GRAD;
    grads(c, sn_batchnorm2d_elu(c, x, g, b, rm, rv, true, 1e-5f, 0.1f, 1.0f), sn_grad_batchnorm);
    grads(c, sn_batchnorm2d_elu(c, x, g, b, rm2, rv2, false, 1e-5f, 0.1f, 0.7f), sn_grad_batchnorm);
    cross_check(c, 1e-5 /* per-channel sums over 189 elements, expm1 ulps */, 1e-5, "batchnorm_elu");
    sn_ctx_free(c);
}

static void test_norm(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -2, 2, "x", 3, 7, 37);
    sn_tensor *g = LEAF(c, 0.5, 1.5, "gamma", 37), *b = LEAF(c, -0.5, 0.5, "beta", 37);
    grads(c, sn_layernorm(c, x, g, b, 1e-5f), sn_grad_norm);
    grads(c, sn_softmax(c, x), sn_grad_norm);
    cross_check(c, 2e-5 /* row reductions of 37, column sums of 21 */, 2e-5, "norm");
    sn_ctx_free(c);
}

/* env: a CUDA developer switch set for this case (SN_RNN_STEPS: the per-step GEMM path
 * instead of the persistent kernels; SN_RNN_BWD_SPLIT=0: the column backward kernel
 * instead of the split one), NULL for the defaults */
static void rnn_case_env(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H, int L, const char *env,
                         const char *val) {
    if (env) setenv(env, val, 1);
    sn_ctx *c = sn_ctx_new();
    int64_t G = lstm ? 4 : 3;
    double ws = 0.4 * sqrt(8.0 / (double)H); /* keep the gates out of saturation at any H */
    sn_tensor *x = LEAF(c, -1, 1, "x", B, T, I);
    sn_tensor *w[16];
    assert_true(L >= 1 && L <= 4);
    for (int l = 0; l < L; l++) {
        w[4 * l] = LEAF(c, -ws, ws, "w_ih", G * H, l == 0 ? I : H);
        w[4 * l + 1] = LEAF(c, -ws, ws, "w_hh", G * H, H);
        w[4 * l + 2] = LEAF(c, -0.4, 0.4, "b_ih", G * H);
        w[4 * l + 3] = LEAF(c, -0.4, 0.4, "b_hh", G * H);
    }
    sn_tensor *r = lstm ? sn_lstm(c, x, L, (int)H, w) : sn_gru(c, x, L, (int)H, w);
    grads(c, r, sn_grad_rnn);
    assert_non_null(sn_rnn_final_state(c, r, 0));
    if (lstm) assert_non_null(sn_rnn_final_state(c, r, 1));
    /* streaming variant with an initial state */
    sn_tensor *h0 = LEAF(c, -1, 1, "h0", L, B, H), *c0 = LEAF(c, -1, 1, "c0", L, B, H);
    sn_tensor *rs = lstm ? sn_lstm_state(c, x, L, (int)H, w, h0, c0) : sn_gru_state(c, x, L, (int)H, w, h0);
    assert_non_null(rs);
    assert_non_null(sn_rnn_final_state(c, rs, 0));
    char label[96];
    snprintf(label, sizeof label, "%s%s%s%s%s", lstm ? "lstm" : "gru", env ? " (" : "", env ? env : "",
             env ? "=" : "", env ? val : "");
    if (env) strcat(label, ")");
    cross_check(c, 1e-4 /* a few recurrent steps x 2 layers of f32 GEMMs */, 1e-4, label);
    sn_ctx_free(c);
    if (env) unsetenv(env);
}
static void rnn_case_layers(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H, int L, bool steps) {
    rnn_case_env(lstm, B, T, I, H, L, steps ? "SN_RNN_STEPS" : NULL, "1");
}
static void rnn_case_sized(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H, bool steps) {
    rnn_case_layers(lstm, B, T, I, H, 2, steps);
}
/* 1 and 3 layers: the Vulkan layer wavefront (SN_VK_RNN_WAVE, ctest vulkan-rnn-wave with
 * chunks of 4 steps) over a diagonal of 3 layers with T not a multiple of the chunk, T
 * under one chunk and a batch over 8; one layer (no wavefront) */
static void rnn_layer_cases(bool lstm) {
    rnn_case_layers(lstm, 3, 11, 5, 8, 3, false);
    rnn_case_layers(lstm, 9, 3, 4, 20, 3, false);
    rnn_case_layers(lstm, 2, 6, 3, 12, 1, false);
}
static void rnn_case(bool lstm) { rnn_case_sized(lstm, 3, 7, 5, 8, false); }
static void test_lstm(void **st) {
    rnn_case(true);
    rnn_case_sized(true, 3, 7, 5, 8, true);
    /* persistent kernel with 8 units per block and a partial last block (532 = 66 * 8 + 4),
     * and a batch over 8 (the wider reductions; Vulkan's step kernels take 8 rows a pass) */
    rnn_case_sized(true, 9, 5, 7, 532, false);
    rnn_case_sized(true, 2, 4, 3, 140, false);
    rnn_case_sized(true, 16, 6, 5, 96, false); /* the largest batch of the persistent kernels */
    /* one timestep (no recurrent product backward), H not a multiple of 4 or 8; a tiny H
     * with three passes over the batch */
    rnn_case_sized(true, 10, 1, 4, 37, false);
    rnn_case_sized(true, 17, 3, 2, 3, false);
    rnn_layer_cases(true);
    /* the split backward kernel: unit groups of 19 x 4 column groups (532), row slices
     * reduced in shared memory (96, the largest batch), one timestep, tiny H, 3 layers */
    rnn_case_env(true, 9, 5, 7, 532, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(true, 16, 6, 5, 96, 2, "SN_RNN_BWD_SPLIT", "1");
    /* the CRN's geometry (32 units x 4 column groups); not under the Vulkan persistent
     * kernel, whose single lavapipe workgroup would pass llvmpipe's loop limit at H = 1024 */
    if (!getenv("SN_VK_RNN_PERSIST")) rnn_case_env(true, 4, 9, 16, 1024, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(true, 10, 1, 4, 37, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(true, 17, 3, 2, 3, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(true, 3, 11, 5, 8, 3, "SN_RNN_BWD_SPLIT", "1");
    /* the column kernel at the largest batch, where the split one is the default */
    rnn_case_env(true, 16, 6, 5, 96, 2, "SN_RNN_BWD_SPLIT", "0");
    /* weight-gradient GEMMs on the CUDA side stream, three layers (two forks, one join) */
    rnn_case_env(true, 5, 9, 6, 64, 3, "SN_RNN_OVERLAP", "1");
}
static void test_gru(void **st) {
    rnn_case(false);
    rnn_case_sized(false, 3, 7, 5, 8, true);
    /* the persistent kernels as for the LSTM (a partial last block at 532), a longer
     * sequence and the largest batch; Vulkan's step kernels: reductions over more than one
     * slice per thread, a partial unit block (530), a batch over 8, one timestep */
    rnn_case_sized(false, 9, 5, 7, 532, false);
    rnn_case_sized(false, 9, 5, 7, 530, false);
    rnn_case_sized(false, 2, 4, 3, 140, false);
    rnn_case_sized(false, 4, 37, 16, 128, false);
    rnn_case_sized(false, 16, 6, 5, 96, false);
    rnn_case_sized(false, 10, 1, 4, 37, false);
    rnn_case_sized(false, 17, 3, 2, 3, false);
    rnn_layer_cases(false);
    rnn_case_env(false, 9, 5, 7, 532, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(false, 16, 6, 5, 96, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(false, 4, 37, 16, 128, 2, "SN_RNN_BWD_SPLIT", "1");
    rnn_case_env(false, 16, 6, 5, 96, 2, "SN_RNN_BWD_SPLIT", "0");
}

static void test_attention(void **st) {
    for (int causal = 0; causal < 2; causal++) {
        sn_ctx *c = sn_ctx_new();
        int64_t B = 2, T = 7, E = 12;
        sn_tensor *x = LEAF(c, -1, 1, "x", B, T, E);
        sn_tensor *iw = LEAF(c, -0.3, 0.3, "in_w", 3 * E, E), *ib = LEAF(c, -0.3, 0.3, "in_b", 3 * E);
        sn_tensor *ow = LEAF(c, -0.3, 0.3, "out_w", E, E), *ob = LEAF(c, -0.3, 0.3, "out_b", E);
        grads(c, sn_attention(c, x, iw, ib, ow, ob, 3, causal), sn_grad_attention);
        cross_check(c, 2e-5 /* GEMMs + softmax over T = 7 */, 2e-5, causal ? "attention causal" : "attention");
        sn_ctx_free(c);
    }
}

static void test_loss(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 3, 1, 33, 161), *b = LEAF(c, -1, 1, "b", 3, 1, 33, 161);
    sn_tensor *s2 = LEAF(c, -1, 1, "s2", 1000);
    grads(c, sn_mse(c, a, b), sn_grad_loss);
    grads(c, sn_l1(c, a, b), sn_grad_loss);
    grads(c, sn_sum(c, a), sn_grad_loss);
    grads(c, sn_mean(c, b), sn_grad_loss);
    assert_non_null(sn_sumsq(c, 3, (sn_tensor *[]){a, s2, b}));
    cross_check(c, 1e-5 /* sums of 16k terms: f32 tree vs CPU order */, 0, "loss");
    sn_ctx_free(c);
}

static void test_optim(void **st) {
    sn_ctx *c = sn_ctx_new();
    int64_t n = 10007;
    sn_tensor *hyper = sn_par_hyper_leaf(c, 1e-2f, 0.9f, 0.999f, 3), *hyper1 = sn_par_hyper_leaf(c, 1e-2f, 0.9f, 0.999f, 1);
    sn_tensor *sq = LEAF(c, 40, 60, "sumsq", 1);
    for (int k = 0; k < 4; k++) {
        sn_tensor *p = LEAF(c, -1, 1, "p", n), *g = LEAF(c, -1, 1, "g", n);
        sn_tensor *m = LEAF(c, -0.1, 0.1, "m", n), *v = LEAF(c, 0, 0.01, "v", n);
        if (k == 0) assert_non_null(sn_adam(c, p, g, m, v, hyper, NULL, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, false));
        if (k == 1) assert_non_null(sn_adam(c, p, g, m, v, hyper, sq, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, true));
        if (k == 2) assert_non_null(sn_sgd(c, p, g, m, hyper, sq, 0.9f, 0.0f, 1e-4f, 1.0f, true));
        if (k == 3) assert_non_null(sn_sgd(c, p, g, m, hyper1, NULL, 0.9f, 0.0f, 0.0f, 0.0f, false));
    }
    /* multi-tensor forms: params at odd offsets of a flat buffer, one launch each */
    static const int64_t sizes[5] = {37, 1000, 1, 4099, 256}, offs[5] = {0, 64, 1100, 1200, 5400};
    for (int k = 0; k < 3; k++) {
        sn_tensor *flat = LEAF(c, -1, 1, "flat", 5700), *m = LEAF(c, -0.1, 0.1, "m", 5700);
        sn_tensor *v = LEAF(c, 0, 0.01, "v", 5700), *ps[5], *gs[5];
        for (int i = 0; i < 5; i++) {
            ps[i] = sn_new_1d(c, sizes[i], 0, "p");
            sn_alias(ps[i], flat, offs[i]);
            gs[i] = LEAF(c, -1, 1, "g", sizes[i]);
        }
        if (k == 0) assert_non_null(sn_adam_multi(c, 5, ps, gs, m, v, hyper, NULL, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, false));
        if (k == 1) assert_non_null(sn_adam_multi(c, 5, ps, gs, m, v, hyper, sq, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, true));
        if (k == 2) assert_non_null(sn_sgd_multi(c, 5, ps, gs, m, hyper1, sq, 0.9f, 0.0f, 1e-4f, 1.0f, true));
    }
    cross_check(c, 1e-6 /* one elementwise update */, 0, "optim");
    sn_ctx_free(c);
}

/* TF32 and bf16 GEMMs: looser, against the f32 CPU */
static void test_precision(void **st) {
    const struct { bool tf32, bf16; double tol; } mode[2] = {{true, false, 3e-3 /* tf32 10-bit mantissa */},
                                                              {false, true, 2e-2 /* bf16 operands, f32 accumulate */}};
    for (int k = 0; k < 2; k++) {
        sn_precision pr = {.tf32 = mode[k].tf32, .bf16 = mode[k].bf16};
        if (sn_backend_set_precision(g_dev, &pr) == SN_ERR_UNSUPPORTED) {
            printf("%s: %s skipped: %s\n", g_kind, mode[k].bf16 ? "bf16" : "tf32", sn_last_error());
            continue;
        }
        sn_ctx *c = sn_ctx_new();
        sn_tensor *x = LEAF(c, -1, 1, "x", 4, 9, 64), *w = LEAF(c, -1, 1, "w", 48, 64), *b = LEAF(c, -1, 1, "b", 48);
        grads(c, sn_linear(c, x, w, b), sn_grad_matmul);
        sn_tensor *cx = LEAF(c, -1, 1, "cx", 2, 8, 6, 19), *cw = LEAF(c, -0.5, 0.5, "cw", 16, 8, 2, 3);
        grads(c, sn_conv2d(c, cx, cw, NULL, 1, 2, 0, 0), sn_grad_conv);
        sn_tensor *rx = LEAF(c, -1, 1, "rx", 2, 5, 16), *rw[4];
        rw[0] = LEAF(c, -0.3, 0.3, "w_ih", 64, 16);
        rw[1] = LEAF(c, -0.3, 0.3, "w_hh", 64, 16);
        rw[2] = LEAF(c, -0.3, 0.3, "b_ih", 64);
        rw[3] = LEAF(c, -0.3, 0.3, "b_hh", 64);
        grads(c, sn_lstm(c, rx, 1, 16, rw), sn_grad_rnn);
        cross_check(c, mode[k].tol, mode[k].tol, mode[k].bf16 ? "bf16" : "tf32");
        sn_ctx_free(c);
    }
    SN_ASSERT_OK(sn_backend_set_precision(g_dev, &(sn_precision){0}));
}

/* bf16 mode's 2-layer LSTM: on CUDA the layer wavefront kernels (forward batch <= 8,
 * backward <= 5), on every backend the bf16 forms, against the f32 CPU; the batches
 * around the wavefronts' limits, one timestep, H under 8 k tiles per warp set, the CRN's
 * H = 1024, and the per-layer kernels (SN_RNN_WAVE=0) on the same case */
static void wave_case(int64_t B, int64_t T, int64_t I, int64_t H, const char *off) {
    if (off) setenv("SN_RNN_WAVE", off, 1);
    if (!strcmp(g_kind, "cuda") && !off) {
        sn_device_info d;
        SN_ASSERT_OK(sn_backend_info(g_dev, &d));
        /* the plan must take these shapes where the card has bf16 tensor cores (H = 1024
         * needs the 227 KB of shared memory a block gets from compute capability 9.0) */
        bool want = d.cc_major >= 8 && B <= 8 && (H <= 64 || d.cc_major >= 9);
        assert_true(sn_backend_rnn_fuses_layers(g_dev, true, B, H, 2) == want);
    }
    sn_ctx *c = sn_ctx_new();
    double ws = 0.4 * sqrt(8.0 / (double)H);
    sn_tensor *x = LEAF(c, -1, 1, "x", B, T, I), *w[8];
    for (int l = 0; l < 2; l++) {
        w[4 * l] = LEAF(c, -ws, ws, "w_ih", 4 * H, l == 0 ? I : H);
        w[4 * l + 1] = LEAF(c, -ws, ws, "w_hh", 4 * H, H);
        w[4 * l + 2] = LEAF(c, -0.4, 0.4, "b_ih", 4 * H);
        w[4 * l + 3] = LEAF(c, -0.4, 0.4, "b_hh", 4 * H);
    }
    grads(c, sn_lstm(c, x, 2, (int)H, w), sn_grad_rnn);
    char label[80];
    snprintf(label, sizeof label, "lstm bf16 2 layers B=%lld T=%lld H=%lld%s", (long long)B, (long long)T,
             (long long)H, off ? " (SN_RNN_WAVE=0)" : "");
    cross_check(c, 2e-2 /* bf16 operands, f32 accumulate */, 2e-2, label);
    sn_ctx_free(c);
    if (off) unsetenv("SN_RNN_WAVE");
}
static void test_rnn_wave(void **st) {
    if (sn_backend_set_precision(g_dev, &(sn_precision){.bf16 = true}) == SN_ERR_UNSUPPORTED) {
        printf("%s: bf16 2-layer LSTM skipped: %s\n", g_kind, sn_last_error());
        return;
    }
    wave_case(4, 13, 16, 1024, NULL);
    wave_case(1, 5, 7, 16, NULL);
    wave_case(2, 1, 3, 32, NULL);
    wave_case(3, 9, 5, 48, NULL);
    wave_case(4, 6, 5, 64, NULL);
    wave_case(8, 7, 5, 1024, NULL); /* the largest batch */
    wave_case(5, 4, 5, 64, NULL);
    wave_case(6, 5, 3, 32, NULL); /* forward wavefront, per-layer backward */
    wave_case(9, 4, 5, 64, NULL); /* over the wavefront's batch: per-layer kernels */
    wave_case(3, 9, 5, 48, "0");
    SN_ASSERT_OK(sn_backend_set_precision(g_dev, &(sn_precision){0}));
}

/* ---------------- graph capture and replay ---------------- */

static void test_graph_replay(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = sn_new_4d(c, 2, 3, 6, 17, SN_FLAG_INPUT, "x"), *y = sn_new_4d(c, 2, 5, 5, 8, SN_FLAG_INPUT, "y");
    sn_tensor *w = sn_new_4d(c, 5, 3, 2, 3, SN_FLAG_PARAM, "w");
    sn_tensor *b = sn_new_1d(c, 5, SN_FLAG_PARAM, "b"), *g = sn_new_1d(c, 5, SN_FLAG_PARAM, "g");
    sn_tensor *be = sn_new_1d(c, 5, SN_FLAG_PARAM, "be");
    sn_tensor *rm = sn_new_1d(c, 5, SN_FLAG_PERSIST, "rm"), *rv = sn_new_1d(c, 5, SN_FLAG_PERSIST, "rv");
    for (sn_tensor **t = (sn_tensor *[]){x, y, w, b, g, be, rm, rv, NULL}; *t; t++) sn_test_leaf(*t, &sn_par.seed, 0.1f, 1.0f);
    sn_tensor *h = sn_elu(c, sn_batchnorm2d(c, sn_conv2d(c, x, w, b, 1, 2, 0, 0), g, be, rm, rv, true, 1e-5f, 0.1f), 1.0f);
    sn_tensor *loss = sn_mse(c, h, y);
    assert_non_null(loss);
    sn_graph *gr = sn_graph_new(c);
    SN_ASSERT_OK(sn_graph_add(gr, loss));
    SN_ASSERT_OK(sn_backward(gr, loss));
    sn_tensor *outs[4] = {loss, w->grad, b->grad, g->grad};
    for (int i = 0; i < 4; i++) assert_non_null(outs[i]);
    sn_tensor **nodes = calloc((size_t)gr->n, sizeof *nodes);
    int nn = 0;
    for (int i = 0; i < gr->n; i++)
        if (gr->nodes[i]->op != SN_OP_NONE) nodes[nn++] = gr->nodes[i];
    sn_par_devmap m;
    sn_par_bind(g_dev, c, &m);
    void *state = NULL;
    float *got[6][4];
    for (int run = 0; run < 6; run++) {
        if (run == 4) { /* new input: the replay must read it */
            float *x2 = sn_test_rand_new(sn_nelem(x), &sn_par.seed, -1, 1);
            SN_ASSERT_OK(g_dev->i->upload(g_dev, x->data, x2, sn_nbytes(x)));
            free(x2);
        }
        /* 0 eager, 1 capture, 2.. replay; 5: eager again (no state) on the new input */
        sn_status s = g_dev->i->compute(g_dev, nodes, nn, run == 5 ? NULL : &state);
        if (s != SN_OK) fail_msg("graph run %d: %s", run, sn_last_error());
        for (int i = 0; i < 4; i++) {
            got[run][i] = malloc(sn_nbytes(outs[i]));
            SN_ASSERT_OK(g_dev->i->download(g_dev, got[run][i], outs[i]->data, sn_nbytes(outs[i])));
        }
    }
    for (int i = 0; i < 4; i++) {
        size_t nb = sn_nbytes(outs[i]);
        for (int run = 1; run < 4; run++)
            if (memcmp(got[0][i], got[run][i], nb))
                fail_msg("graph replay: %s differs between the eager run and run %d (capture/replay)", outs[i]->name, run);
        if (memcmp(got[4][i], got[5][i], nb)) fail_msg("graph replay with a new input: %s differs from eager", outs[i]->name);
        if (!memcmp(got[0][i], got[4][i], nb)) fail_msg("graph replay ignored the new input (%s unchanged)", outs[i]->name);
    }
    g_dev->i->segment_free(g_dev, state);
    float **res = sn_par_unbind(g_dev, c, &m);
    for (int i = 0; i < m.n; i++) free(res[i]);
    free(res);
    for (int r = 0; r < 6; r++)
        for (int i = 0; i < 4; i++) free(got[r][i]);
    free(nodes);
    sn_graph_free(gr);
    sn_test_free_data(c);
    sn_ctx_free(c);
}

/* ---------------- a whole CRN training step through the planner ---------------- */

static void crn_steps(sn_backend *b, const sn_crn_config *cfg, int B, int T, int steps, float *losses, float **params,
                      int64_t *nflat) {
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(cfg, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 42));
    sn_optim_config opt;
    sn_optim_config_default(&opt);
    /* SGD: Adam's update is +-lr for near-zero gradients whatever their rounding, so
     * parameters could differ by lr per step; the per-op test covers Adam */
    opt.kind = SN_OPTIM_SGD;
    opt.momentum = 0.9f;
    sn_step *s = NULL;
    SN_ASSERT_OK(sn_step_new(m, b, g_cpu, B, T, &opt, &s));
    int64_t n = (int64_t)B * T * cfg->freq_bins;
    uint64_t seed = 777;
    float *x = sn_test_rand_new(n, &seed, 0, 1), *y = sn_test_rand_new(n, &seed, 0, 1);
    for (int i = 0; i < steps; i++) SN_ASSERT_OK(sn_step_run(s, x, y, 1e-2f, &losses[i]));
    *nflat = m->nflat;
    *params = malloc((size_t)m->nflat * sizeof(float));
    SN_ASSERT_OK(sn_tensor_get(m->flat, *params, m->nflat));
    free(x);
    free(y);
    sn_step_free(s);
    sn_model_free(m);
}

static void test_crn_step(void **st) {
    for (int kind = 0; kind < 3; kind++) {
        sn_crn_config cfg;
        sn_crn_config_default(&cfg);
        cfg.rnn = (sn_rnn_kind)kind;
        if (kind != SN_RNN_ATTENTION) cfg.hidden = 48;
        cfg.layers = 2;
        int ch[5] = {4, 8, 8, 16, 16};
        memcpy(cfg.channels, ch, sizeof ch);
        enum { STEPS = 5 };
        float lc[STEPS], lg[STEPS], *pc, *pg;
        int64_t nc, ng;
        crn_steps(g_cpu, &cfg, 2, 24, STEPS, lc, &pc, &nc);
        crn_steps(g_dev, &cfg, 2, 24, STEPS, lg, &pg, &ng);
        assert_int_equal(nc, ng);
        for (int i = 0; i < STEPS; i++) {
            double e = fabs((double)lg[i] - lc[i]) / fabs((double)lc[i]);
            if (!(e <= 1e-3)) /* f32 on both; differences grow with the updates */
                fail_msg("CRN %s step %d: loss %s %.7g vs CPU %.7g (rel %.3g)", sn_rnn_kind_name(cfg.rnn), i, g_kind, lg[i], lc[i], e);
        }
        double e = nerr(pg, pc, nc);
        if (!(e <= 1e-3)) fail_msg("CRN %s: parameters after %d steps differ: %.3g", sn_rnn_kind_name(cfg.rnn), STEPS, e);
        free(pc);
        free(pg);
    }
}

/* ---------------- devices and errors ---------------- */

static void test_device_info(void **st) {
    int n = g_reg->count();
    assert_true(n >= 1);
    sn_device_info d;
    SN_ASSERT_OK(g_reg->info(0, &d));
    assert_string_equal(d.kind, g_kind);
    assert_true(d.name[0] != 0 && d.type[0] != 0);
    assert_true(d.mem_total > 0 && d.mem_free <= d.mem_total);
    assert_true(d.utilization >= -1 && d.utilization <= 100);
    if (!strcmp(g_kind, "cuda")) {
        assert_true(d.compute_units > 0 && d.cc_major >= 7);
        assert_true(d.bf16 == (d.cc_major >= 8));
    }
    SN_ASSERT_OK(sn_backend_info(g_dev, &d));
    assert_int_not_equal(g_reg->info(n, &d), SN_OK);
    assert_non_null(strstr(sn_last_error(), "does not exist"));
    sn_backend *b = NULL;
    char spec[32];
    snprintf(spec, sizeof spec, "%s:%d", g_kind, n + 3);
    assert_int_equal(sn_backend_open(spec, 0, &b), SN_ERR_DEVICE);
    assert_null(b);
    assert_non_null(strstr(sn_last_error(), "not found"));
    /* an allocation far beyond the device: a clear out-of-memory error, no crash */
    void *p = NULL;
    assert_int_equal(g_dev->i->alloc(g_dev, (size_t)1 << 50, &p), SN_ERR_NOMEM);
    assert_non_null(strstr(sn_last_error(), "MB"));
    /* upload/download round trip of an odd size through the staging buffers */
    size_t nb = ((size_t)9 << 20) + 12;
    unsigned char *h = malloc(nb), *h2 = malloc(nb);
    for (size_t i = 0; i < nb; i++) h[i] = (unsigned char)(i * 131 + 7);
    SN_ASSERT_OK(g_dev->i->alloc(g_dev, nb, &p));
    SN_ASSERT_OK(g_dev->i->upload(g_dev, p, h, nb));
    memset(h, 0, nb); /* the host buffer may be reused at once */
    SN_ASSERT_OK(g_dev->i->download(g_dev, h2, p, nb));
    for (size_t i = 0; i < nb; i++)
        if (h2[i] != (unsigned char)(i * 131 + 7)) fail_msg("upload/download: byte %zu differs", i);
    g_dev->i->release(g_dev, p);
    free(h);
    free(h2);
}

int main(int argc, char **argv) {
    const char *kind = argc > 1 ? argv[1] : getenv("SN_TEST_DEVICE");
    if (!kind || !*kind) {
        fprintf(stderr, "usage: test_backend_ops KIND (cuda, vulkan, ...; or SN_TEST_DEVICE=KIND)\n");
        return 2;
    }
    snprintf(g_kind, sizeof g_kind, "%s", kind);
    for (int r = 0; r < sn_backend_reg_count(); r++)
        if (!strcmp(sn_backend_reg_get(r)->kind, kind)) g_reg = sn_backend_reg_get(r);
    if (!g_reg) {
        printf("backend '%s' is not built into this sinter: its parity tests skipped\n", kind);
        return 77;
    }
    if (g_reg->count() == 0) {
        printf("no %s device here (no driver or no GPU): %s parity tests skipped\n", kind, kind);
        return 77;
    }
    g_cpu = sn_cpu_backend_new(0);
    char spec[32];
    snprintf(spec, sizeof spec, "%s:0", kind);
    if (sn_backend_open(spec, 0, &g_dev) != SN_OK) {
        fprintf(stderr, "%s backend: %s\n", kind, sn_last_error());
        return 1;
    }
    sn_par = (sn_parity){.dev = g_dev, .cpu = g_cpu, .name = g_kind, .seed = 0x5eed1234ull};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_info), cmocka_unit_test(test_binary),        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_shape),       cmocka_unit_test(test_matmul),        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_fused_act),   cmocka_unit_test(test_conv_pad_crop), cmocka_unit_test(test_conv_wgrad),
        cmocka_unit_test(test_batchnorm),   cmocka_unit_test(test_batchnorm_elu), cmocka_unit_test(test_batchnorm_large), cmocka_unit_test(test_norm),
        cmocka_unit_test(test_lstm),        cmocka_unit_test(test_gru),           cmocka_unit_test(test_attention),
        cmocka_unit_test(test_loss),        cmocka_unit_test(test_optim),         cmocka_unit_test(test_precision),   cmocka_unit_test(test_rnn_wave),
        cmocka_unit_test(test_graph_replay), cmocka_unit_test(test_crn_step),
    };
    const char *filter = getenv("SN_TEST_FILTER"); /* e.g. "test_conv*" (scripts/gpu-check.sh) */
    if (filter && *filter) cmocka_set_test_filter(filter);
    int r = cmocka_run_group_tests_name(g_kind, tests, NULL, NULL);
    sn_backend_free(g_dev);
    sn_backend_free(g_cpu);
    return r;
}
