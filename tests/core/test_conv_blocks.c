/* The CPU convolution kernels against float64 loops on shapes that reach every branch
 * of the row-blocked path: the direct kernels (sh = 1, output rows a multiple of 8: the
 * planes, the 8 x 48 tiles with their masked tails), the BLAS fallbacks beside them (rows
 * not a multiple of 8, sh = 2), short and wide rows, stride 1/2/3 in width with kernels
 * wider than the stride, padding before and after, the transposed conv's output padding
 * and end crop, batch > 1, the weight gradient's transposed form (output rows 32, 48,
 * 64, 80, 112: its 48- and 32-row tiles, tap groups with tails) beside the lane-sum form,
 * stride-2 rows of 16 or more (vector copies and gather rows) and narrower (scalar).
 * Small blocks (SN_CONV_BLOCK) split each image into many
 * blocks (and the weight gradient's planes into chunks of channels) and 3 threads split
 * the rows unevenly. Forward, data, weight and bias
 * gradients, each to 1e-5 of the largest reference value. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sn_optest.h"

/* sn_optest.h's g_cpu, with 3 threads: an uneven split of the rows */
static int setup3(void **state) {
    (void)state;
    g_cpu = sn_cpu_backend_new(3);
    return g_cpu ? 0 : -1;
}

typedef struct {
    bool tr;
    int64_t N, C, H, W, K, kh, kw;
    int sh, sw;
    int pt, pb, pl, pr;     /* conv2d: padding before/after; conv_transpose2d: pt/pl padding, pb/pr end crop */
    int oph, opw;           /* conv_transpose2d: output padding */
    sn_act act;             /* forward only (the gradients are checked with SN_ACT_NONE) */
} cv_case;

static double act_ref(sn_act a, double v) {
    switch (a) {
    case SN_ACT_ELU: return v > 0 ? v : expm1(v);
    case SN_ACT_RELU: return v > 0 ? v : 0;
    default: return v;
    }
}

static void check(const char *what, int idx, const float *got, const double *ref, int64_t n) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    double e = sn_test_rel_err(got, ref, n, fmax(mx, 1e-30));
    if (!(e < 1e-5)) fail_msg("case %d: %s rel err %.3g", idx, what, e);
}

static void run_case(const cv_case *k, int idx) {
    sn_ctx *ctx = sn_ctx_new();
    uint64_t seed = 1000 + (uint64_t)idx;
    int64_t xs[4] = {k->N, k->C, k->H, k->W}, ws[4] = {k->tr ? k->C : k->K, k->tr ? k->K : k->C, k->kh, k->kw};
    sn_tensor *x = leaf(ctx, 4, xs, "x", &seed, -1, 1, true);
    sn_tensor *w = leaf(ctx, 4, ws, "w", &seed, -0.5f, 0.5f, true);
    sn_tensor *b = leaf(ctx, 1, &k->K, "b", &seed, -0.5f, 0.5f, true);
    sn_tensor *y = k->tr ? sn_conv_transpose2d_crop(ctx, x, w, b, k->sh, k->sw, k->pt, k->pl, k->oph, k->opw, k->pb,
                                                    k->pr, k->act, 1.0f, 0.0f)
                         : sn_conv2d_pad(ctx, x, w, b, k->sh, k->sw, k->pt, k->pb, k->pl, k->pr, k->act, 1.0f, 0.0f);
    if (!y) fail_msg("case %d: %s", idx, sn_last_error());
    sn_tensor *dy = leaf_like(ctx, y, "dy", &seed), *ds[SN_MAX_SRC] = {0};
    if (k->act == SN_ACT_NONE) SN_ASSERT_OK(sn_grad_conv(ctx, y, dy, ds));
    SN_ASSERT_OK(sn_test_eval(ctx, g_cpu));
    int64_t Ho = y->shape[2], Wo = y->shape[3], ny = sn_nelem(y), nx = sn_nelem(x), nw = sn_nelem(w);
    double *ry = calloc((size_t)ny, sizeof *ry), *rdx = calloc((size_t)nx, sizeof *rdx);
    double *rdw = calloc((size_t)nw, sizeof *rdw), *rdb = calloc((size_t)k->K, sizeof *rdb);
    const float *xd = x->data, *wd = w->data, *gy = dy->data;
    /* every (input position, weight tap, output position) triple the op connects */
    for (int64_t n = 0; n < k->N; n++)
        for (int64_t c = 0; c < k->C; c++)
            for (int64_t o = 0; o < k->K; o++)
                for (int64_t i = 0; i < k->kh; i++)
                    for (int64_t j = 0; j < k->kw; j++) {
                        int64_t wi = k->tr ? ((c * k->K + o) * k->kh + i) * k->kw + j
                                           : ((o * k->C + c) * k->kh + i) * k->kw + j;
                        for (int64_t oh = 0; oh < Ho; oh++)
                            for (int64_t ow = 0; ow < Wo; ow++) {
                                int64_t ih, iw;
                                if (k->tr) { /* oh = ih*sh - pt + i */
                                    int64_t th = oh + k->pt - i, tw = ow + k->pl - j;
                                    if (th < 0 || tw < 0 || th % k->sh || tw % k->sw) continue;
                                    ih = th / k->sh, iw = tw / k->sw;
                                } else {
                                    ih = oh * k->sh - k->pt + i, iw = ow * k->sw - k->pl + j;
                                }
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                int64_t xi = ((n * k->C + c) * k->H + ih) * k->W + iw;
                                int64_t yi = ((n * k->K + o) * Ho + oh) * Wo + ow;
                                ry[yi] += (double)wd[wi] * xd[xi];
                                rdx[xi] += (double)wd[wi] * gy[yi];
                                rdw[wi] += (double)gy[yi] * xd[xi];
                            }
                    }
    for (int64_t i = 0; i < ny; i++) {
        ry[i] = act_ref(k->act, ry[i] + ((const float *)b->data)[(i / (Ho * Wo)) % k->K]);
        rdb[(i / (Ho * Wo)) % k->K] += gy[i];
    }
    check("forward", idx, y->data, ry, ny);
    if (k->act == SN_ACT_NONE) {
        check("data gradient", idx, ds[0]->data, rdx, nx);
        check("weight gradient", idx, ds[1]->data, rdw, nw);
        check("bias gradient", idx, ds[2]->data, rdb, k->K);
    }
    free(ry), free(rdx), free(rdw), free(rdb);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
}

static const cv_case g_cases[] = {
    /* conv2d: N C H W K kh kw sh sw, pad before/after (top, bottom, left, right) */
    {false, 3, 3, 9, 101, 16, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE}, /* the CRN encoder's form, 50 wide */
    {false, 2, 3, 5, 9, 16, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},   /* 4-wide rows */
    {false, 2, 5, 7, 37, 8, 3, 2, 1, 1, 1, 1, 2, 1, 0, 0, SN_ACT_NONE},   /* stride 1, padding all round */
    {false, 2, 4, 6, 50, 24, 2, 4, 1, 3, 0, 1, 1, 2, 0, 0, SN_ACT_NONE},  /* stride 3 under a 4-wide kernel */
    {false, 2, 3, 8, 97, 32, 1, 1, 1, 2, 0, 0, 0, 1, 0, 0, SN_ACT_NONE},  /* 1x1, grid past the image */
    {false, 1, 2, 6, 33, 5, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},   /* 5 output rows: BLAS */
    {false, 2, 3, 8, 21, 8, 2, 2, 2, 2, 0, 1, 0, 0, 0, 0, SN_ACT_NONE},   /* stride 2 in height: BLAS */
    {false, 2, 3, 7, 61, 16, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_ELU},   /* epilogue with the bias */
    {false, 2, 8, 6, 45, 16, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},  /* data gradient: 24 tile rows */
    {false, 2, 9, 5, 40, 8, 2, 3, 1, 2, 1, 0, 1, 1, 0, 0, SN_ACT_NONE},   /* 27 tile rows padded to 32 */
    {false, 2, 8, 40, 45, 16, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE}, /* tall: blocks inside the grid */
    /* weight gradient with the positions as the reduction (output rows % 16 == 0, >= 32,
     * 32 taps or more): tiles of 48 and 32 rows, tap groups of 8 / 12 with tails */
    {false, 2, 7, 7, 41, 32, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},  /* 32: one 12 x 32 tile, 42 taps */
    {false, 2, 6, 6, 23, 48, 2, 3, 1, 2, 1, 0, 1, 0, 0, 0, SN_ACT_NONE},  /* 48: one 8 x 48 tile, 36 taps */
    {false, 2, 8, 9, 19, 64, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},  /* 64: 32 + 32 */
    {false, 1, 9, 5, 11, 80, 2, 2, 1, 1, 1, 0, 0, 1, 0, 0, SN_ACT_NONE},  /* 80: 48 + 32, stride 1 */
    {false, 1, 6, 4, 9, 112, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE},  /* 112: 48 + 32 + 32 */
    {false, 2, 1, 12, 161, 32, 2, 3, 1, 2, 1, 0, 0, 0, 0, 0, SN_ACT_NONE}, /* 1 channel, 6 taps: lane sums */
    /* conv_transpose2d: ..., padding (pt, pl), end crop (pb, pr), output padding */
    {true, 3, 16, 6, 23, 5, 2, 3, 1, 2, 0, 1, 0, 0, 0, 1, SN_ACT_NONE},   /* the CRN decoder's form */
    {true, 2, 8, 5, 30, 3, 3, 3, 1, 2, 1, 1, 1, 2, 0, 1, SN_ACT_NONE},    /* padding and crop both ways */
    {true, 2, 24, 4, 17, 8, 2, 2, 1, 1, 0, 0, 0, 1, 0, 0, SN_ACT_NONE},   /* stride 1 */
    {true, 2, 16, 5, 4, 1, 2, 3, 1, 2, 0, 1, 0, 0, 0, 0, SN_ACT_NONE},    /* one output channel, 4 wide */
    {true, 2, 6, 5, 19, 8, 2, 3, 1, 2, 0, 1, 0, 0, 0, 1, SN_ACT_NONE},    /* 6 input channels: BLAS */
    {true, 2, 8, 4, 11, 4, 3, 3, 2, 2, 1, 0, 1, 0, 1, 1, SN_ACT_NONE},    /* stride 2 in height */
    {true, 2, 16, 6, 41, 8, 2, 3, 1, 2, 0, 1, 0, 0, 0, 0, SN_ACT_ELU},    /* epilogue */
    {true, 2, 16, 5, 20, 9, 2, 3, 1, 2, 0, 1, 0, 0, 0, 1, SN_ACT_NONE},   /* 27 tile rows padded to 32 */
    {true, 2, 16, 30, 20, 8, 2, 3, 1, 2, 0, 1, 0, 0, 0, 1, SN_ACT_NONE},  /* tall: blocks inside the grid */
    {true, 2, 32, 7, 9, 1, 2, 3, 1, 2, 0, 1, 0, 0, 0, 1, SN_ACT_NONE},    /* 32 input channels, one output */
    {true, 2, 64, 5, 4, 6, 2, 3, 1, 2, 0, 1, 0, 0, 0, 0, SN_ACT_NONE},    /* 64 x 6: transposed weight grad */
};

static void test_conv_blocks(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof g_cases / sizeof *g_cases; i++) run_case(&g_cases[i], (int)i);
}

int main(void) {
    setenv("SN_CONV_BLOCK", "2000", 0); /* floats of columns per block: several blocks per image */
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_conv_blocks)};
    return cmocka_run_group_tests(tests, setup3, teardown);
}
