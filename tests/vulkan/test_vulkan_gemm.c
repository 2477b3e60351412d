/* The Vulkan GEMM (sn_vk_gemm) through every shader (SN_VK_GEMM=direct|tiled|big128x128|
 * big128x64|big64x128, big and the default choice) against a float64 reference on fresh random inputs: all four
 * transpose combinations, sizes off every tile (and K off the K step), two-level batches,
 * split-K, alpha/beta, bias per column and per row, activation epilogues, operands that
 * allow vec4 loads and ones that do not (odd offsets and leading dimensions). C's padding
 * around the product must stay untouched. Exits with 77 when there is no Vulkan device. */
#include "sn_test.h"
#include "core/core.h"
#include "backends/registry.h"

#ifdef SN_HAVE_VULKAN
#include "backends/vulkan/vk_gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sn_backend *g_vk;
static uint64_t g_seed = 0x9e3779b97f4a7c15ull;

typedef struct {
    const char *what;
    bool ta, tb;
    int64_t M, N, K;
    int64_t pad;     /* added to every leading dimension */
    int64_t off;     /* elements before each operand (1: no vec4 loads) */
    int64_t batch, binner;
    float alpha, beta;
    int bias_mode, act;
} gcase;

static sn_vk_gemm_args g_args;
static sn_status run_gemm(sn_vk *vk, void *arg) { return sn_vk_gemm(vk, &g_args, (const char *)arg); }

static double act_ref(int act, double x) {
    switch (act) {
    case SN_ACT_RELU: return x > 0 ? x : 0;
    case SN_ACT_ELU: return x > 0 ? x : 1.0 * expm1(x);
    case SN_ACT_TANH: return tanh(x);
    case SN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    default: return x;
    }
}

/* one case on the shader SN_VK_GEMM names; fails with the worst element */
static void run_case(const gcase *c, const char *shader) {
    const int64_t M = c->M, N = c->N, K = c->K, B = c->batch, bi = c->binner > 1 ? c->binner : 1;
    const int64_t ar = c->ta ? K : M, ac = c->ta ? M : K, br = c->tb ? N : K, bc = c->tb ? K : N;
    const int64_t lda = ac + c->pad, ldb = bc + c->pad, ldc = N + c->pad;
    /* two-level batches: inner products zi side by side along the rows (a head's columns),
     * outer ones after all of them */
    int64_t sA[2], sB[2], sC[2];
    if (bi > 1) {
        sA[1] = ac, sB[1] = bc, sC[1] = N;
        sA[0] = ar * (ac * bi + c->pad), sB[0] = br * (bc * bi + c->pad), sC[0] = M * (N * bi + c->pad);
    } else {
        sA[1] = sB[1] = sC[1] = 0;
        sA[0] = ar * lda + 3, sB[0] = br * ldb + 5, sC[0] = M * ldc + 2; /* odd strides: no vec4 */
        if (c->off == 0) sA[0] += 1, sB[0] += 3, sC[0] += 2; /* multiples of 4 */
    }
    const int64_t lda_ = bi > 1 ? ac * bi + c->pad : lda, ldb_ = bi > 1 ? bc * bi + c->pad : ldb,
                  ldc_ = bi > 1 ? N * bi + c->pad : ldc;
    const int64_t zo_n = (B + bi - 1) / bi;
    const int64_t na = c->off + zo_n * sA[0] + 8, nb = c->off + zo_n * sB[0] + 8, nc = c->off + zo_n * sC[0] + 8;
    const int64_t nbias = c->bias_mode == SN_VK_BIAS_ROW ? M : N;
    float *A = sn_test_rand_new(na, &g_seed, -1, 1), *Bm = sn_test_rand_new(nb, &g_seed, -1, 1);
    float *C0 = sn_test_rand_new(nc, &g_seed, -1, 1), *bias = sn_test_rand_new(nbias, &g_seed, -1, 1);
    float *C = malloc((size_t)nc * sizeof *C);
    size_t bytes = (size_t)(na + nb + nc + nbias + 64) * sizeof(float);
    void *base = NULL;
    SN_ASSERT_OK(g_vk->i->alloc(g_vk, bytes, &base));
    uint64_t dA = (uint64_t)(uintptr_t)base, dB = sn_vk_at(dA, (na + 3) & ~3), dC = sn_vk_at(dB, (nb + 3) & ~3);
    uint64_t dbias = sn_vk_at(dC, (nc + 3) & ~3);
    SN_ASSERT_OK(g_vk->i->upload(g_vk, (void *)(uintptr_t)dA, A, (size_t)na * sizeof(float)));
    SN_ASSERT_OK(g_vk->i->upload(g_vk, (void *)(uintptr_t)dB, Bm, (size_t)nb * sizeof(float)));
    SN_ASSERT_OK(g_vk->i->upload(g_vk, (void *)(uintptr_t)dC, C0, (size_t)nc * sizeof(float)));
    SN_ASSERT_OK(g_vk->i->upload(g_vk, (void *)(uintptr_t)dbias, bias, (size_t)nbias * sizeof(float)));
    g_args = (sn_vk_gemm_args){.ta = c->ta, .tb = c->tb, .M = M, .N = N, .K = K, .alpha = c->alpha, .beta = c->beta,
                               .A = sn_vk_at(dA, c->off), .B = sn_vk_at(dB, c->off), .C = sn_vk_at(dC, c->off),
                               .lda = lda_, .ldb = ldb_, .ldc = ldc_, .batch = B, .binner = bi,
                               .bias = c->bias_mode ? dbias : 0, .bias_mode = c->bias_mode, .act = c->act,
                               .p0 = 1.0f, .p1 = 20.0f};
    memcpy(g_args.sA, sA, sizeof sA);
    memcpy(g_args.sB, sB, sizeof sB);
    memcpy(g_args.sC, sC, sizeof sC);
    sn_status s = sn_vk_run(g_vk->ctx, run_gemm, (void *)c->what, 1, NULL);
    if (s != SN_OK) fail_msg("%s (%s): %s", c->what, shader, sn_last_error());
    SN_ASSERT_OK(g_vk->i->download(g_vk, C, (void *)(uintptr_t)dC, (size_t)nc * sizeof(float)));
    g_vk->i->release(g_vk, base);

    /* the reference, and every element outside the products untouched */
    char *written = calloc((size_t)nc, 1);
    double worst = 0;
    int64_t wz = 0, wm = 0, wn = 0;
    for (int64_t z = 0; z < B; z++) {
        int64_t zo = z / bi, zi = z % bi;
        const float *a = A + c->off + zo * sA[0] + zi * sA[1], *b = Bm + c->off + zo * sB[0] + zi * sB[1];
        int64_t co = c->off + zo * sC[0] + zi * sC[1];
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                    double x = c->ta ? a[k * lda_ + m] : a[m * lda_ + k], y = c->tb ? b[n * ldb_ + k] : b[k * ldb_ + n];
                    acc += x * y;
                    mag += fabs(x * y);
                }
                int64_t ci = co + m * ldc_ + n;
                double v = c->alpha * acc + (c->beta != 0 ? c->beta * C0[ci] : 0);
                if (c->bias_mode == SN_VK_BIAS_COL) v += bias[n];
                if (c->bias_mode == SN_VK_BIAS_ROW) v += bias[m];
                v = act_ref(c->act, v);
                /* fp32 sums in some fixed order: |error| <= (K + 4) u sum |a b| (u = 2^-24) */
                double tol = 6e-8 * (double)(K + 4) * fabs(c->alpha) * mag + 1e-6 * (fabs(c->beta * C0[ci]) + 2.0);
                double e = fabs((double)C[ci] - v) / tol;
                if (!(e <= worst)) worst = e, wz = z, wm = m, wn = n; /* NaN too */
                written[ci] = 1;
            }
    }
    if (!(worst <= 1.0))
        fail_msg("%s (%s): C[%lld][%lld][%lld] off by %.3g x the tolerance", c->what, shader, (long long)wz,
                 (long long)wm, (long long)wn, worst);
    for (int64_t i = 0; i < nc; i++)
        if (!written[i] && C[i] != C0[i])
            fail_msg("%s (%s): element %lld outside the product changed (%g -> %g)", c->what, shader, (long long)i,
                     C0[i], C[i]);
    free(written);
    free(A);
    free(Bm);
    free(C0);
    free(C);
    free(bias);
}

static const gcase g_cases[] = {
    /* every transpose combination, vec4-able (leading dimensions multiples of 4), several
     * 128x128 tiles with partial edges, K off the step of 8 */
    {"nn aligned", false, false, 136, 200, 44, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"nt aligned", false, true, 136, 200, 44, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"tn aligned", true, false, 136, 200, 44, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"tt aligned", true, true, 136, 200, 44, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    /* odd sizes, offsets and leading dimensions: scalar loads */
    {"nn odd", false, false, 131, 67, 29, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0},
    {"nt odd", false, true, 131, 67, 29, 2, 1, 1, 1, 1.0f, 0.0f, 0, 0},
    {"tn odd", true, false, 131, 67, 29, 3, 1, 1, 1, 1.0f, 0.0f, 0, 0},
    {"tt odd", true, true, 131, 67, 29, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0},
    /* aligned leading dimensions, sizes not multiples of 4: vec4 where 4 fit, scalar at the edge */
    {"nt ragged", false, true, 70, 130, 21, 3, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"tn ragged", true, false, 130, 66, 23, 2, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    /* batches, alpha/beta, bias and activation epilogues */
    {"batch beta bias-col relu", false, false, 50, 72, 36, 0, 0, 3, 1, 1.0f, 0.5f, SN_VK_BIAS_COL, SN_ACT_RELU},
    {"batch odd bias-row tanh", true, true, 33, 45, 17, 1, 1, 3, 1, -0.5f, 1.0f, SN_VK_BIAS_ROW, SN_ACT_TANH},
    {"heads nt bias-row elu", false, true, 24, 36, 16, 0, 0, 6, 2, 0.5f, 0.0f, SN_VK_BIAS_ROW, SN_ACT_ELU},
    {"heads nn odd sigmoid", false, false, 21, 19, 13, 1, 1, 6, 3, 1.0f, 0.25f, SN_VK_BIAS_COL, SN_ACT_SIGMOID},
    /* split-K (few tiles, K >= 4096), the weight-gradient form, then odd */
    {"split-K tn", true, false, 24, 40, 4100, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"split-K nt odd beta bias", false, true, 13, 21, 4500, 1, 1, 1, 1, -1.0f, 1.0f, SN_VK_BIAS_COL, SN_ACT_NONE},
    /* degenerate */
    {"one row", false, false, 1, 5, 3, 0, 0, 1, 1, 1.0f, 0.0f, 0, 0},
    {"K 0", false, false, 9, 11, 0, 0, 0, 1, 1, 1.0f, 0.5f, SN_VK_BIAS_COL, SN_ACT_NONE},
};

static void run_shader(const char *shader) {
    if (shader) setenv("SN_VK_GEMM", shader, 1);
    else unsetenv("SN_VK_GEMM");
    for (size_t i = 0; i < sizeof g_cases / sizeof *g_cases; i++) run_case(&g_cases[i], shader ? shader : "default");
    unsetenv("SN_VK_GEMM");
}

static void test_direct(void **st) { run_shader("direct"); }
static void test_tiled(void **st) { run_shader("tiled"); }
static void test_big128x128(void **st) { run_shader("big128x128"); }
static void test_big128x64(void **st) { run_shader("big128x64"); }
static void test_big64x128(void **st) { run_shader("big64x128"); }
static void test_big(void **st) { run_shader("big"); }
static void test_default(void **st) { run_shader(NULL); }

/* an unknown SN_VK_GEMM value is an error naming the choices, not a silent default */
static sn_status run_one(sn_vk *vk, void *arg) {
    (void)arg;
    return sn_vk_gemm1(vk, false, false, 4, 4, 4, 1.0f, g_args.A, 4, g_args.A, 4, 0.0f, g_args.C, 4, "typo");
}
static void test_unknown(void **st) {
    void *base = NULL;
    SN_ASSERT_OK(g_vk->i->alloc(g_vk, 64 * sizeof(float), &base));
    g_args.A = g_args.C = (uint64_t)(uintptr_t)base;
    setenv("SN_VK_GEMM", "big128", 1);
    sn_status s = sn_vk_run(g_vk->ctx, run_one, NULL, 1, NULL);
    unsetenv("SN_VK_GEMM");
    g_vk->i->release(g_vk, base);
    assert_int_equal(s, SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "big128x64"));
}

int main(void) {
    int dev, rc = sn_test_vk_open(&dev, &g_vk);
    if (rc) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct),    cmocka_unit_test(test_tiled),     cmocka_unit_test(test_big128x128),
        cmocka_unit_test(test_big128x64), cmocka_unit_test(test_big64x128), cmocka_unit_test(test_big),
        cmocka_unit_test(test_default),   cmocka_unit_test(test_unknown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    sn_backend_free(g_vk);
    return r;
}

#else
#include <stdio.h>
int main(void) {
    printf("built without Vulkan: Vulkan tests skipped\n");
    return 77;
}
#endif
