/* Vulkan kernels: MATMUL, LINEAR (bias + activation epilogue), BIAS_GRAD, and the GEMM
 * and helper passes (vk_gemm.h) the other heavy families reuse. */
#include "backends/vulkan/vk_gemm.h"

#include <stdlib.h>
#include <string.h>

/* The GEMM shaders: a barrier-free one reading its operands straight from memory (CPU
 * drivers, lavapipe and SwiftShader, which run a workgroup's barriers as switches between
 * its invocations: 3-4x faster there), 64x64 shared-memory tiles, and the register-blocked
 * 128x128 / 128x64 / 64x128 tiles (8x8 outputs per invocation; the GPU default).
 * SN_VK_GEMM=direct|tiled|
 * big|big128x128|big128x64|big64x128 forces one (big: the big tile the shape favours);
 * read on every call, for tests and benchmarks. */
typedef struct {
    int sh;
    int64_t bm, bn; /* output tile */
} gemm_shader;

static const gemm_shader GEMM_DIRECT = {SN_VK_SH_MATMUL_GEMM_DIRECT, 32, 32},
                         GEMM_TILED = {SN_VK_SH_MATMUL_GEMM, 64, 64},
                         GEMM_BIG = {SN_VK_SH_MATMUL_GEMM_BIG, 128, 128},
                         GEMM_BIG_128X64 = {SN_VK_SH_MATMUL_GEMM_BIG_128X64, 128, 64},
                         GEMM_BIG_64X128 = {SN_VK_SH_MATMUL_GEMM_BIG_64X128, 64, 128};

static int64_t gemm_tiles(const sn_vk_gemm_args *g, gemm_shader t) {
    return ((g->M + t.bm - 1) / t.bm) * ((g->N + t.bn - 1) / t.bn) * g->batch;
}
/* the share of the tiles' outputs inside C */
static double gemm_fill(const sn_vk_gemm_args *g, gemm_shader t) {
    return (double)g->M * (double)g->N * (double)g->batch / ((double)gemm_tiles(g, t) * (double)(t.bm * t.bn));
}

/* The big tile for g: 128x128 while there are ~2 workgroups per multiprocessor on the
 * largest GPUs (H100: 132) and few outputs are padding, else whichever half tile (twice
 * the workgroups) wastes less. */
static gemm_shader gemm_big(sn_vk *vk, const sn_vk_gemm_args *g) {
    const sn_vk_limits *l = sn_vk_limits_of(vk);
    /* 128x128 needs 256 invocations and 17 KB of shared memory (double-buffered [2][8][33]
     * vec4 tiles of A and B), above Vulkan's minimums (128, 16 KB); the half tiles fit any device */
    bool fits = l->shared_bytes >= 2 * 2 * 8 * 33 * 16 && l->max_invocations >= 256 && l->max_wg_size[0] >= 256;
    if (fits && gemm_tiles(g, GEMM_BIG) >= 256 && gemm_fill(g, GEMM_BIG) >= 0.75) return GEMM_BIG;
    return gemm_fill(g, GEMM_BIG_64X128) > gemm_fill(g, GEMM_BIG_128X64) ? GEMM_BIG_64X128 : GEMM_BIG_128X64;
}

/* the one place that picks a GEMM shader; sh -1 for an SN_VK_GEMM value it does not know */
static gemm_shader gemm_pick(sn_vk *vk, const sn_vk_gemm_args *g) {
    /* train.mixed_precision: the f16 cooperative-matrix GEMM (128x128 tiles, these push constants) */
    const int f16 = sn_vk_f16_gemm_shader(vk);
    if (f16 >= 0) return (gemm_shader){f16, 128, 128};
    const char *e = getenv("SN_VK_GEMM");
    gemm_shader big = gemm_big(vk, g);
    if (e && *e) {
        if (!strcmp(e, "direct")) return GEMM_DIRECT;
        if (!strcmp(e, "tiled")) return GEMM_TILED;
        if (!strcmp(e, "big")) return big;
        if (!strcmp(e, "big128x128")) return GEMM_BIG;
        if (!strcmp(e, "big128x64")) return GEMM_BIG_128X64;
        if (!strcmp(e, "big64x128")) return GEMM_BIG_64X128;
        return (gemm_shader){-1, 0, 0}; /* a typo must not silently test the default */
    }
    if (sn_vk_limits_of(vk)->cpu_driver) return GEMM_DIRECT;
    /* GPUs: the big tile the shape favours. bench_vk_gemm on an H200 (NVIDIA 580.159.04,
     * 2026-12-07): 17-35 TFLOP/s on the CRN's GEMMs against 15-19 for the 64x64 tile, and
     * the prototype step 27.8 ms against 30.2 (both with SN_VK_RNN_VARIANT=j2s32) */
    return big;
}

int sn_vk_gemm_shader(sn_vk *vk, const sn_vk_gemm_args *g) { return gemm_pick(vk, g).sh; }

/* vec4 loads/stores of an operand: a 16-byte aligned base, leading dimension and the
 * batch strides in use multiples of 4 (flags bits 9-11 of the big shaders) */
static bool vec4_ok(uint64_t addr, int64_t ld, const int64_t s[2], int64_t batch, int64_t binner) {
    int64_t zo = binner > 1 ? (batch + binner - 1) / binner : batch;
    return addr % 16 == 0 && ld % 4 == 0 && (zo <= 1 || s[0] % 4 == 0) && (binner <= 1 || s[1] % 4 == 0);
}

/* push constants of shaders/matmul_gemm.comp, matmul_gemm_direct.comp, matmul_gemm_big*.comp, matmul_gemm_coop*.comp */
typedef struct {
    uint64_t A, B, C, bias;
    int32_t M, N, K, lda, ldb, ldc;
    int32_t sA0, sA1, sB0, sB1, sC0, sC1;
    int32_t binner, flags;
    float alpha, beta, p0, p1;
    int32_t Ktot;
} gemm_push;

/* push constants of shaders/matmul_splitk_sum.comp */
typedef struct {
    uint64_t part, C, bias;
    int32_t M, N, S, ldc, bias_mode, act;
    float alpha, beta, p0, p1;
} splitk_push;

/* Few output tiles over a long reduction (weight gradients: 16x6 outputs over 10^5
 * products) would leave all but a few workgroups idle: S products over slices of K
 * into parts [S, M, N], then their sum in a fixed order with the epilogue. *done
 * stays false (nothing recorded) where splitting does not pay. */
static sn_status gemm_splitk(sn_vk *vk, const sn_vk_gemm_args *g, gemm_shader sh, bool *done, const char *what) {
    *done = false;
    int64_t tiles = gemm_tiles(g, sh);
    if (g->batch != 1 || tiles >= 32 || g->K < 4096) return SN_OK;
    int64_t S = (64 + tiles - 1) / tiles; /* about 64 workgroups */
    if (S > g->K / 1024) S = g->K / 1024;   /* each at least 1024 deep */
    if (S < 2) return SN_OK;
    int64_t Kc = ((g->K + S - 1) / S + 15) & ~(int64_t)15;
    S = (g->K + Kc - 1) / Kc;
    uint64_t part = sn_vk_temp(vk, (size_t)(S * g->M * g->N) * sizeof(float), NULL);
    if (!part) return sn_error_prefix(SN_ERR_NOMEM, "Vulkan GEMM (%s): split-K parts", what);
    gemm_push p = {0};
    p.A = g->A;
    p.B = g->B;
    p.C = part;
    p.M = (int32_t)g->M;
    p.N = (int32_t)g->N;
    p.K = (int32_t)Kc;
    p.Ktot = (int32_t)g->K;
    p.lda = (int32_t)g->lda;
    p.ldb = (int32_t)g->ldb;
    p.ldc = (int32_t)g->N;
    p.sA0 = (int32_t)(g->ta ? Kc * g->lda : Kc);
    p.sB0 = (int32_t)(g->tb ? Kc : Kc * g->ldb);
    p.sC0 = (int32_t)(g->M * g->N);
    p.binner = 1;
    const int64_t sa[2] = {p.sA0, 0}, sb[2] = {p.sB0, 0}, sc[2] = {p.sC0, 0};
    p.flags = (g->ta ? 1 : 0) | (g->tb ? 2 : 0) | 256 | (vec4_ok(p.A, p.lda, sa, S, 1) ? 512 : 0) |
              (vec4_ok(p.B, p.ldb, sb, S, 1) ? 1024 : 0) | (vec4_ok(p.C, p.ldc, sc, S, 1) ? 2048 : 0);
    p.alpha = 1.0f;
    sn_status s = sn_vk_dispatch(vk, sh.sh, &p, sizeof p, (uint32_t)((g->N + sh.bn - 1) / sh.bn),
                                 (uint32_t)((g->M + sh.bm - 1) / sh.bm), (uint32_t)S);
    if (s != SN_OK) return sn_error_prefix(s, "Vulkan GEMM (%s)", what);
    splitk_push q = {part, g->C, g->bias_mode ? g->bias : 0, (int32_t)g->M, (int32_t)g->N, (int32_t)S,
                     (int32_t)g->ldc, g->bias_mode, g->act, g->alpha, g->beta, g->p0, g->p1};
    s = sn_vk_dispatch(vk, SN_VK_SH_MATMUL_SPLITK_SUM, &q, sizeof q, sn_vk_groups(g->M * g->N, 256), 1, 1);
    if (s != SN_OK) return sn_error_prefix(s, "Vulkan GEMM (%s)", what);
    *done = true;
    return SN_OK;
}

static bool fits32(int64_t v) { return v >= 0 && v <= INT32_MAX; }

sn_status sn_vk_check_elems(int64_t n, const sn_tensor *node) {
    if (n > (int64_t)UINT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "Vulkan %s '%s': %lld elements in one operand; the shaders index with 32 bits (at most 2^32): "
                        "use a smaller batch size or segment length",
                        sn_op_name(node->op), node->name, (long long)n);
    return SN_OK;
}

sn_status sn_vk_gemm(sn_vk *vk, const sn_vk_gemm_args *g, const char *what) {
    if (g->M <= 0 || g->N <= 0 || g->batch <= 0) return SN_OK;
    int64_t binner = g->binner > 0 ? g->binner : 1;
    /* the largest element index each operand is read at must fit the shader's 32 bits */
    int64_t zo = (g->batch - 1) / binner, zi = binner > 1 ? binner - 1 : 0;
    int64_t ra = g->ta ? g->K : g->M, rb = g->tb ? g->N : g->K;
    int64_t ea = zo * g->sA[0] + zi * g->sA[1] + ra * g->lda, eb = zo * g->sB[0] + zi * g->sB[1] + rb * g->ldb;
    int64_t ec = zo * g->sC[0] + zi * g->sC[1] + g->M * g->ldc;
    if (ea > (int64_t)UINT32_MAX || eb > (int64_t)UINT32_MAX || ec > (int64_t)UINT32_MAX || !fits32(g->K) ||
        !fits32(g->lda) || !fits32(g->ldb) || !fits32(g->ldc) || g->batch > 65535)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "Vulkan GEMM (%s): %lldx%lldx%lld x %lld is beyond the shader's 32-bit indexing; use a smaller "
                        "batch size or segment length",
                        what, (long long)g->M, (long long)g->N, (long long)g->K, (long long)g->batch);
    for (int k = 0; k < 2; k++)
        if (!fits32(g->sA[k]) || !fits32(g->sB[k]) || !fits32(g->sC[k]))
            return sn_error(SN_ERR_UNSUPPORTED, "Vulkan GEMM (%s): batch stride beyond 32 bits", what);
    const gemm_shader sh = gemm_pick(vk, g);
    if (sh.sh < 0)
        return sn_error(SN_ERR_CONFIG, "Vulkan GEMM (%s): SN_VK_GEMM='%s' is none of direct, tiled, big, big128x128, "
                        "big128x64, big64x128: unset it for the automatic choice", what, getenv("SN_VK_GEMM"));
    const int64_t mchunk = (int64_t)65535 * sh.bm, nchunk = (int64_t)65535 * sh.bn;
    if (g->M <= mchunk && g->N <= nchunk) {
        bool done;
        SN_VK_TRY(gemm_splitk(vk, g, sh, &done, what));
        if (done) return SN_OK;
    }
    /* more than 65535 tiles along M or N: several dispatches over sub-blocks */
    for (int64_t m0 = 0; m0 < g->M; m0 += mchunk)
        for (int64_t n0 = 0; n0 < g->N; n0 += nchunk) {
            int64_t M = g->M - m0 < mchunk ? g->M - m0 : mchunk, N = g->N - n0 < nchunk ? g->N - n0 : nchunk;
            gemm_push p = {0};
            p.A = sn_vk_at(g->A, g->ta ? m0 : m0 * g->lda);
            p.B = sn_vk_at(g->B, g->tb ? n0 * g->ldb : n0);
            p.C = sn_vk_at(g->C, m0 * g->ldc + n0);
            p.bias = g->bias_mode == SN_VK_BIAS_COL   ? sn_vk_at(g->bias, n0)
                     : g->bias_mode == SN_VK_BIAS_ROW ? sn_vk_at(g->bias, m0)
                                                      : 0;
            p.M = (int32_t)M;
            p.N = (int32_t)N;
            p.K = (int32_t)g->K;
            p.lda = (int32_t)g->lda;
            p.ldb = (int32_t)g->ldb;
            p.ldc = (int32_t)g->ldc;
            p.sA0 = (int32_t)g->sA[0];
            p.sA1 = (int32_t)g->sA[1];
            p.sB0 = (int32_t)g->sB[0];
            p.sB1 = (int32_t)g->sB[1];
            p.sC0 = (int32_t)g->sC[0];
            p.sC1 = (int32_t)g->sC[1];
            p.binner = (int32_t)binner;
            p.flags = (g->ta ? 1 : 0) | (g->tb ? 2 : 0) | ((g->bias_mode & 3) << 2) | ((g->act & 15) << 4) |
                      (vec4_ok(p.A, g->lda, g->sA, g->batch, binner) ? 512 : 0) |
                      (vec4_ok(p.B, g->ldb, g->sB, g->batch, binner) ? 1024 : 0) |
                      (vec4_ok(p.C, g->ldc, g->sC, g->batch, binner) ? 2048 : 0);
            p.alpha = g->alpha;
            p.beta = g->beta;
            p.p0 = g->p0;
            p.p1 = g->p1;
            p.Ktot = (int32_t)g->K;
            sn_status s = sn_vk_dispatch(vk, sh.sh, &p, sizeof p, (uint32_t)((N + sh.bn - 1) / sh.bn),
                                         (uint32_t)((M + sh.bm - 1) / sh.bm), (uint32_t)g->batch);
            if (s != SN_OK) return sn_error_prefix(s, "Vulkan GEMM (%s)", what);
        }
    return SN_OK;
}

sn_status sn_vk_gemm1(sn_vk *vk, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, uint64_t A,
                      int64_t lda, uint64_t B, int64_t ldb, float beta, uint64_t C, int64_t ldc, const char *what) {
    sn_vk_gemm_args g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta, .A = A, .B = B,
                         .C = C, .lda = lda, .ldb = ldb, .ldc = ldc, .batch = 1, .binner = 1};
    return sn_vk_gemm(vk, &g, what);
}

typedef struct {
    uint64_t dst, src;
    uint32_t n;
    int32_t has_src;
    float value;
} fill_push;

sn_status sn_vk_fill(sn_vk *vk, uint64_t dst, uint64_t src, int64_t n, float value) {
    if (n <= 0) return SN_OK;
    fill_push p = {dst, src, (uint32_t)n, src != 0, value};
    return sn_vk_dispatch(vk, SN_VK_SH_MATMUL_FILL, &p, sizeof p, sn_vk_groups(n, 256), 1, 1);
}

typedef struct {
    uint64_t src, dst;
    int32_t R, C;
} transpose_push;

sn_status sn_vk_transpose(sn_vk *vk, uint64_t src, int64_t R, int64_t C, uint64_t dst) {
    if (R <= 0 || C <= 0) return SN_OK;
    transpose_push p = {src, dst, (int32_t)R, (int32_t)C};
    return sn_vk_dispatch(vk, SN_VK_SH_MATMUL_TRANSPOSE, &p, sizeof p, sn_vk_groups(R * C, 256), 1, 1);
}

typedef struct {
    uint64_t x, out;
    int32_t outer, C, inner;
} chan_push;

sn_status sn_vk_chan_sum(sn_vk *vk, uint64_t x, int64_t outer, int64_t C, int64_t inner, uint64_t out) {
    if (C <= 0) return SN_OK;
    if (outer * C * inner > (int64_t)UINT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan channel sum: %lld elements (at most 2^32)",
                        (long long)(outer * C * inner));
    chan_push p = {x, out, (int32_t)outer, (int32_t)C, (int32_t)inner};
    return sn_vk_dispatch(vk, SN_VK_SH_MATMUL_CHAN_SUM, &p, sizeof p, sn_vk_groups(C, 1), 1, 1);
}

static sn_status vk_matmul(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *a = node->src[0], *b = node->src[1];
    bool ta = node->ip[0] != 0, tb = node->ip[1] != 0;
    int na = a->ndim, nb = b->ndim;
    int64_t M = node->shape[na - 2], N = node->shape[na - 1];
    int64_t K = ta ? a->shape[na - 2] : a->shape[na - 1];
    int64_t batch = sn_nelem(node) / (M * N > 0 ? M * N : 1);
    SN_VK_TRY(sn_vk_check_elems(sn_nelem(node), node));
    sn_vk_gemm_args g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.0f, .A = sn_vk_addr(a),
                         .B = sn_vk_addr(b), .C = sn_vk_addr(node), .lda = a->shape[na - 1], .ldb = b->shape[nb - 1],
                         .ldc = N, .batch = batch, .binner = 1};
    g.sA[0] = M * K;
    g.sB[0] = nb == 2 ? 0 : K * N;
    g.sC[0] = M * N;
    if (nb == 2 && !ta) { /* a's batch rows are contiguous: one product over batch*M rows */
        g.M = batch * M;
        g.batch = 1;
    }
    return sn_vk_gemm(vk, &g, node->name);
}

static sn_status vk_linear(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *x = node->src[0], *w = node->src[1], *b = node->nsrc > 2 ? node->src[2] : NULL;
    int64_t K = w->shape[1], N = w->shape[0], M = K > 0 ? sn_nelem(x) / K : 0;
    int act = node->ip[SN_IP_ACT];
    if (act < SN_ACT_NONE || act >= SN_ACT_COUNT)
        return sn_error(SN_ERR_INTERNAL, "Vulkan linear '%s': unknown activation %d", node->name, act);
    SN_VK_TRY(sn_vk_check_elems(sn_nelem(node), node));
    sn_vk_gemm_args g = {.tb = true, .M = M, .N = N, .K = K, .alpha = 1.0f, .A = sn_vk_addr(x), .B = sn_vk_addr(w),
                         .C = sn_vk_addr(node), .lda = K, .ldb = K, .ldc = N, .batch = 1, .binner = 1,
                         .bias = b ? sn_vk_addr(b) : 0, .bias_mode = b ? SN_VK_BIAS_COL : SN_VK_BIAS_NONE,
                         .act = act, .p0 = node->fp[SN_FP_ACT], .p1 = node->fp[SN_FP_ACT + 1]};
    return sn_vk_gemm(vk, &g, node->name);
}

static sn_status vk_bias_grad(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *dy = node->src[0];
    int ax = node->ip[0] < 0 ? node->ip[0] + dy->ndim : node->ip[0];
    if (ax < 0 || ax >= dy->ndim)
        return sn_error(SN_ERR_INTERNAL, "Vulkan bias_grad '%s': axis %d of a %d-D tensor", node->name, node->ip[0],
                        dy->ndim);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++) outer *= dy->shape[d];
    for (int d = ax + 1; d < dy->ndim; d++) inner *= dy->shape[d];
    return sn_vk_chan_sum(vk, sn_vk_addr(dy), outer, dy->shape[ax], inner, sn_vk_addr(node));
}

sn_status sn_vk_matmul(sn_vk *vk, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_MATMUL: return vk_matmul(vk, node);
    case SN_OP_LINEAR: return vk_linear(vk, node);
    case SN_OP_BIAS_GRAD: return vk_bias_grad(vk, node);
    default: return sn_error(SN_ERR_INTERNAL, "Vulkan matmul: unexpected op %s", sn_op_name(node->op));
    }
}
