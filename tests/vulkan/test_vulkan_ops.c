/* What the parity suite (tests/backend/test_backend_ops.c, run for vulkan, and once more
 * with SN_VK_GEMM=tiled by ctest) does not reach for the Vulkan heavy families: conv
 * geometries that split the GEMMs (split-K) under every GEMM shader (SN_VK_GEMM forces
 * each here), and recurrent layers over a single timestep (no recurrent product, a zero
 * dw_hh).
 * Each op against the CPU backend with the parity suite's tolerances, saved state
 * included. Exits with 77 (skipped) when there is no Vulkan device; SN_VK_DEVICE=N picks
 * the device (default: the first). */
#include "sn_parity.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SN_HAVE_VULKAN

static sn_backend *g_cpu, *g_vk;
static int g_dev;

/* ---------------- cases (the parity suite's, for the GEMM-based families) ---------------- */

/* The CUDA suite's weight-gradient geometries (one path here): the CRN's encoder and
 * decoder forms, odd sizes, partial tiles, 3x3 stride 2 with padding, 1x1, and larger
 * reductions. */
static void test_conv_geometries(void **st) {
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
    cross_check(c, 1e-4 /* sums of up to ~5000 terms in different orders */, 0, "conv geometries");
    sn_ctx_free(c);
    /* larger: the direct kernel splits each reduction over 10..120 blocks */
    c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -1, 1, "x", 4, 16, 101, 80), *w = LEAF(c, -0.5, 0.5, "w", 32, 16, 2, 3);
    grads(c, sn_conv2d_pad(c, x, w, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    sn_tensor *xm = LEAF(c, -1, 1, "xm", 4, 64, 41, 19), *wm = LEAF(c, -0.5, 0.5, "wm", 128, 64, 2, 3);
    grads(c, sn_conv2d_pad(c, xm, wm, NULL, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    sn_tensor *xt = LEAF(c, -1, 1, "xt", 4, 128, 41, 9), *wt = LEAF(c, -0.5, 0.5, "wt", 128, 32, 2, 3);
    grads(c, sn_conv_transpose2d_crop(c, xt, wt, NULL, 1, 2, 0, 0, 0, 0, 1, 0, SN_ACT_NONE, 0, 0), sn_grad_conv);
    cross_check(c, 1e-4 /* sums of up to 4*101*39 terms in different orders */, 0, "conv geometries (large)");
    sn_ctx_free(c);
}

static void rnn_case_sized(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H) {
    sn_ctx *c = sn_ctx_new();
    int64_t G = lstm ? 4 : 3;
    double ws = 0.4 * sqrt(8.0 / (double)H); /* keep the gates out of saturation at any H */
    sn_tensor *x = LEAF(c, -1, 1, "x", B, T, I);
    sn_tensor *w[8];
    for (int l = 0; l < 2; l++) {
        w[4 * l] = LEAF(c, -ws, ws, "w_ih", G * H, l == 0 ? I : H);
        w[4 * l + 1] = LEAF(c, -ws, ws, "w_hh", G * H, H);
        w[4 * l + 2] = LEAF(c, -0.4, 0.4, "b_ih", G * H);
        w[4 * l + 3] = LEAF(c, -0.4, 0.4, "b_hh", G * H);
    }
    sn_tensor *r = lstm ? sn_lstm(c, x, 2, (int)H, w) : sn_gru(c, x, 2, (int)H, w);
    grads(c, r, sn_grad_rnn);
    assert_non_null(sn_rnn_final_state(c, r, 0));
    if (lstm) assert_non_null(sn_rnn_final_state(c, r, 1));
    /* streaming variant with an initial state */
    sn_tensor *h0 = LEAF(c, -1, 1, "h0", 2, B, H), *c0 = LEAF(c, -1, 1, "c0", 2, B, H);
    sn_tensor *rs = lstm ? sn_lstm_state(c, x, 2, (int)H, w, h0, c0) : sn_gru_state(c, x, 2, (int)H, w, h0);
    assert_non_null(rs);
    assert_non_null(sn_rnn_final_state(c, rs, 0));
    cross_check(c, 1e-4 /* a few recurrent steps x 2 layers of f32 GEMMs */, 1e-4,
                lstm ? "lstm" : "gru");
    sn_ctx_free(c);
}

/* every variant of the workgroup step kernels but the default (test_backend_ops:vulkan-tiled
 * runs that one; src/backends/vulkan/rnn.c's table), on shapes that reach their paths: a
 * batch over 8 (two passes: the subgroup form's reuse barrier), H not a multiple of 4
 * (scalar loads), and an LSTM with H = 772 (vec4 loads reaching the unrolled loop in every
 * variant: rows over 3 x slices vec4s, 192 forward and 768 backward in the widest) */
static void test_rnn_variants(void **st) {
    (void)st;
    static const char *const names[] = {"j4s16u", "j4s16sg", "j2s16", "j2s16sg",
                                        "j2s32", "j2s32sg", "j1s64", "j1s64sg", "j4s32r"};
    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        setenv("SN_VK_RNN_VARIANT", names[v], 1);
        printf("RNN variant %s\n", names[v]);
        for (int lstm = 0; lstm < 2; lstm++) {
            rnn_case_sized(lstm, 9, 3, 5, 36);
            if (lstm) rnn_case_sized(lstm, 1, 2, 3, 772);
            rnn_case_sized(lstm, 3, 2, 3, 13);
        }
    }
    unsetenv("SN_VK_RNN_VARIANT");
}

static void test_rnn(void **st) {
    for (int lstm = 0; lstm < 2; lstm++) {
        rnn_case_sized(lstm, 3, 7, 5, 8);
        rnn_case_sized(lstm, 2, 1, 3, 20); /* one timestep */
    }
}

/* argv[1] "rnn-variants": only the RNN step-kernel variants (their own ctest entry) */
int main(int argc, char **argv) {
    int rc = sn_test_vk_open(&g_dev, &g_vk);
    if (rc) return rc;
    g_cpu = sn_cpu_backend_new(0);
    sn_par = (sn_parity){.dev = g_vk, .cpu = g_cpu, .name = "Vulkan", .seed = 0x5eed1234ull, .claims = true};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_geometries),
        cmocka_unit_test(test_rnn),
    };
    const char *filter = getenv("SN_TEST_FILTER"); /* cmocka patterns, e.g. "test_rnn*" */
    if (filter && *filter) cmocka_set_test_filter(filter);
    if (argc > 1 && !strcmp(argv[1], "rnn-variants")) {
        const struct CMUnitTest vt[] = {cmocka_unit_test(test_rnn_variants)};
        int rv = cmocka_run_group_tests(vt, NULL, NULL);
        sn_backend_free(g_vk);
        sn_backend_free(g_cpu);
        return rv;
    }
    /* each GEMM shader in turn (read on every GEMM call) */
    static const char *const paths[5] = {"tiled", "direct", "big128x128", "big128x64", "big64x128"};
    int r = 0;
    for (int k = 0; k < 5; k++) {
        setenv("SN_VK_GEMM", paths[k], 1);
        printf("GEMM shader: %s\n", paths[k]);
        r |= cmocka_run_group_tests(tests, NULL, NULL);
    }
    unsetenv("SN_VK_GEMM");
    sn_backend_free(g_vk);
    sn_backend_free(g_cpu);
    return r;
}

#else
#include <stdio.h>
int main(void) {
    printf("built without Vulkan: Vulkan tests skipped\n");
    return 77;
}
#endif
