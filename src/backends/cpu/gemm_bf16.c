/* bf16 GEMM for train.mixed_precision on the CPU: both operands rounded to bf16
 * (round to nearest even) while they are packed, products accumulated in f32 with
 * AVX512-BF16's vdpbf16ps (two bf16 products per f32 lane and instruction), C and
 * alpha/beta in f32. Debian's OpenBLAS exports no sbgemm, so this is ours.
 *
 * The kernels carry per-function target attributes, so one binary runs everywhere;
 * sn_cpu_bf16_isa() checks the CPU at run time. Without AVX512-BF16 sn_bgemm still
 * computes the same rounding in portable C (slowly): the backend refuses bf16 mode
 * there (cpu_backend.c), the fallback only keeps direct callers and tests honest.
 *
 * Layout (BLIS-style): op(A) [M,K] packed into strips of MR rows, op(B) [K,N] into
 * panels of NR columns, both as k-pairs (one u32 = bf16 of k even | k odd << 16),
 * K padded to even with zeros. Both are packed once per call over the pool, then
 * tiles of C (MB x NB) run over the pool, each looping over K in KC blocks. */
#include "backends/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BF_X86 1
#endif

#define MR 8     /* rows of a strip: 8 x 3 accumulators + 3 B loads + 1 broadcast of 32 zmm */
#define NR 48    /* columns of a panel: three 16-lane vectors */
#define KCP 192  /* k-pairs per K block: a 48-column panel slice is 36 KB (L1), a strip's 6 KB */
#define MBS 12   /* strips per C tile (96 rows) */
#define NBP 4    /* panels per C tile (192 columns) */

const char *sn_cpu_bf16_isa(void) {
    static int level = -1; /* 0 none, 1 AVX512-BF16, 2 AVX512-BF16 and AMX-BF16 */
    if (level < 0) {
        int l = 0;
#ifdef BF_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            l = __builtin_cpu_supports("amx-bf16") ? 2 : 1;
#endif
        level = l;
    }
    /* SN_CPU_NO_BF16=1 simulates a CPU without it (tests); read on every call so a
     * test can switch it */
    const char *e = getenv("SN_CPU_NO_BF16");
    if (e && *e == '1') return NULL;
    return level == 2 ? "AVX512-BF16, AMX-BF16" : level == 1 ? "AVX512-BF16" : NULL;
}

static bool have_bf16(void) { return sn_cpu_bf16_isa() != NULL; }

uint16_t sn_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float sn_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static inline uint32_t pair_of(float lo, float hi) {
    return (uint32_t)sn_f32_to_bf16(lo) | (uint32_t)sn_f32_to_bf16(hi) << 16;
}

#ifdef BF_X86
/* 16 pairs (x[2i], x[2i+1]) from 32 contiguous floats */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static inline __m512i pairs32(const float *x) {
    /* cvtne2ps(a, b): b's 16 values in the low half, a's in the high: the bf16 of x[0..31] in order */
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}

/* o[i] = pair(s0[i], s1[i]) for i < n (n a multiple of 16) */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static void zip_rows_avx(uint32_t *o, const float *s0,
                                                                                        const float *s1, int64_t n) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t i = 0; i < n; i += 16) {
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s1 + i), _mm512_loadu_ps(s0 + i));
        _mm512_storeu_si512(o + i, _mm512_permutexvar_epi16(idx, v));
    }
}

/* dst[i] = pair(x[2i], x[2i+1]) for i < (n+1)/2, the odd tail padded with 0 */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static void row_pairs_avx(uint32_t *dst,
                                                                                         const float *x,
                                                                                         int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(dst + i / 2, pairs32(x + i));
    for (; i < n; i += 2) dst[i / 2] = pair_of(x[i], i + 1 < n ? x[i + 1] : 0.0f);
}
#endif

void sn_bf16_pairs(uint32_t *dst, const float *x, int64_t n) {
#ifdef BF_X86
    if (have_bf16()) {
        row_pairs_avx(dst, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i += 2) dst[i / 2] = pair_of(x[i], i + 1 < n ? x[i + 1] : 0.0f);
}

/* ---- packing */
typedef struct {
    uint32_t *dst;
    const float *src;
    int64_t ld, rows, KP, K, width; /* width: MR (strips) or NR (panels) */
    bool kmajor;                    /* element (r, k) at src[k*ld + r], else src[r*ld + k] */
} pack_job;

/* blocks [b0, b1) of `width` rows each (rows of op(A), or columns of op(B) seen as
 * rows): dst[(blk*KP + kp)*width + i] = pair(op(blk*width + i, 2kp), op(.., 2kp+1)) */
static void pack_part(void *arg, int64_t b0, int64_t b1, int tid) {
    const pack_job *j = arg;
    int64_t W = j->width;
    uint32_t tmp[1024];
    for (int64_t blk = b0; blk < b1; blk++) {
        uint32_t *d = j->dst + blk * j->KP * W;
        int64_t r0 = blk * W, nr = j->rows - r0 < W ? j->rows - r0 : W;
        if (!j->kmajor) { /* each row contiguous over k: its pairs in order, stored W apart */
            for (int64_t i = 0; i < W; i++) {
                if (i >= nr) {
                    for (int64_t kp = 0; kp < j->KP; kp++) d[kp * W + i] = 0;
                    continue;
                }
                const float *row = j->src + (r0 + i) * j->ld;
                for (int64_t k0 = 0; k0 < j->K; k0 += 2048) {
                    int64_t kn = j->K - k0 < 2048 ? j->K - k0 : 2048;
                    sn_bf16_pairs(tmp, row + k0, kn);
                    for (int64_t q = 0; q < (kn + 1) / 2; q++) d[(k0 / 2 + q) * W + i] = tmp[q];
                }
            }
            continue;
        }
        /* k-major: rows 2kp and 2kp+1 of src hold the block's W values side by side */
        for (int64_t kp = 0; kp < j->KP; kp++) {
            const float *s0 = j->src + 2 * kp * j->ld + r0;
            const float *s1 = 2 * kp + 1 < j->K ? s0 + j->ld : NULL;
            uint32_t *o = d + kp * W;
            int64_t i = 0;
#ifdef BF_X86
            if (have_bf16() && s1) {
                i = nr & ~(int64_t)15;
                zip_rows_avx(o, s0, s1, i);
            }
#endif
            for (; i < nr; i++) o[i] = pair_of(s0[i], s1 ? s1[i] : 0.0f);
            for (; i < W; i++) o[i] = 0;
        }
    }
}

/* ---- microkernels: C[mr, nr] = alpha * (a strip . b panel over kp pairs) + cb * C
 * (C not read when cb == 0, so garbage there cannot leak in as NaN) */
#ifdef BF_X86
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static void
ukernel_avx(int64_t kp, const uint32_t *a, const uint32_t *b, float *C, int64_t ldc, int mr, int nr, float alpha,
            float cb) {
    __m512 s[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) s[i][0] = s[i][1] = s[i][2] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kp; k++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + k * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + k * NR + 16);
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(b + k * NR + 32);
        const uint32_t *ak = a + k * MR;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)ak[i]);
            s[i][0] = _mm512_dpbf16_ps(s[i][0], x, b0);
            s[i][1] = _mm512_dpbf16_ps(s[i][1], x, b1);
            s[i][2] = _mm512_dpbf16_ps(s[i][2], x, b2);
        }
    }
    __mmask16 m[3];
    for (int v = 0; v < 3; v++) {
        int left = nr - 16 * v;
        m[v] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    }
    __m512 va = _mm512_set1_ps(alpha), vc = _mm512_set1_ps(cb);
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        for (int v = 0; v < 3; v++) {
            if (!m[v]) break;
            __m512 r = _mm512_mul_ps(va, s[i][v]);
            if (cb != 0.0f) r = _mm512_fmadd_ps(vc, _mm512_maskz_loadu_ps(m[v], c + 16 * v), r);
            _mm512_mask_storeu_ps(c + 16 * v, m[v], r);
        }
    }
}
#endif

static void ukernel_c(int64_t kp, const uint32_t *a, const uint32_t *b, float *C, int64_t ldc, int mr, int nr,
                      float alpha, float cb) {
    for (int i = 0; i < mr; i++)
        for (int n = 0; n < nr; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < kp; k++) {
                uint32_t x = a[k * MR + i], y = b[k * NR + n];
                acc += sn_bf16_to_f32((uint16_t)x) * sn_bf16_to_f32((uint16_t)y) +
                       sn_bf16_to_f32((uint16_t)(x >> 16)) * sn_bf16_to_f32((uint16_t)(y >> 16));
            }
            float *c = C + i * ldc + n;
            *c = cb != 0.0f ? alpha * acc + cb * *c : alpha * acc;
        }
}

typedef struct {
    const uint32_t *ap, *bp;
    float *C;
    int64_t ldc, M, N, KP, strips, panels, ntn;
    float alpha, beta;
    int64_t kp0, kp1; /* the k-pairs this job sums (all, unless K is split over threads) */
} tile_job;

static void tile_part(void *arg, int64_t t0, int64_t t1, int tid) {
    const tile_job *j = arg;
    bool fast = have_bf16();
    for (int64_t t = t0; t < t1; t++) {
        int64_t s0 = t / j->ntn * MBS, p0 = t % j->ntn * NBP;
        int64_t s1 = s0 + MBS < j->strips ? s0 + MBS : j->strips, p1 = p0 + NBP < j->panels ? p0 + NBP : j->panels;
        for (int64_t kc = j->kp0; kc < j->kp1; kc += KCP) {
            int64_t kn = j->kp1 - kc < KCP ? j->kp1 - kc : KCP;
            float cb = kc == j->kp0 ? j->beta : 1.0f;
            for (int64_t p = p0; p < p1; p++) {
                int nr = (int)(j->N - p * NR < NR ? j->N - p * NR : NR);
                const uint32_t *b = j->bp + (p * j->KP + kc) * NR;
                for (int64_t s = s0; s < s1; s++) {
                    int mr = (int)(j->M - s * MR < MR ? j->M - s * MR : MR);
                    const uint32_t *a = j->ap + (s * j->KP + kc) * MR;
                    float *c = j->C + s * MR * j->ldc + p * NR;
#ifdef BF_X86
                    if (fast) {
                        ukernel_avx(kn, a, b, c, j->ldc, mr, nr, j->alpha, cb);
                        continue;
                    }
#endif
                    ukernel_c(kn, a, b, c, j->ldc, mr, nr, j->alpha, cb);
                }
            }
        }
    }
}

/* K split over threads, for products with fewer C tiles than threads and a long K
 * (a convolution's weight gradient: C [out, in*kh*kw], K = batch x positions): chunk i
 * of K into its own partial C, then C = beta C + the sum of the partials. */
typedef struct {
    tile_job base;
    int64_t chunk, ntiles;
    float *part; /* [nsplit][M*N] */
} ksplit_job;

static void ksplit_part(void *arg, int64_t i0, int64_t i1, int tid) {
    const ksplit_job *k = arg;
    for (int64_t i = i0; i < i1; i++) {
        tile_job j = k->base;
        j.kp0 = i * k->chunk;
        j.kp1 = j.kp0 + k->chunk < j.KP ? j.kp0 + k->chunk : j.KP;
        j.C = k->part + i * j.M * j.N;
        j.ldc = j.N;
        j.beta = 0.0f;
        if (j.kp0 < j.kp1) tile_part(&j, 0, k->ntiles, tid);
        else memset(j.C, 0, (size_t)(j.M * j.N) * sizeof *j.C);
    }
}

typedef struct {
    const float *part;
    float *C;
    int64_t ldc, M, N, nsplit;
    float beta;
} kreduce_job;

static void kreduce_part(void *arg, int64_t r0, int64_t r1, int tid) {
    const kreduce_job *j = arg;
    for (int64_t m = r0; m < r1; m++) {
        float *c = j->C + m * j->ldc;
        for (int64_t n = 0; n < j->N; n++) {
            float v = j->beta != 0.0f ? j->beta * c[n] : 0.0f;
            for (int64_t i = 0; i < j->nsplit; i++) v += j->part[(i * j->M + m) * j->N + n];
            c[n] = v;
        }
    }
}

static void scale_c(float *C, int64_t ldc, int64_t M, int64_t N, float beta) {
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int64_t n = 0; n < N; n++) c[n] *= beta;
    }
}

/* p NULL: everything on the calling thread */
static void bgemm(sn_pool *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(C, ldc, M, N, beta);
        return;
    }
    int64_t KP = (K + 1) / 2, strips = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
    size_t na = (size_t)(strips * MR * KP), nb = (size_t)(panels * NR * KP);
    uint32_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, (na + nb) * sizeof *buf) != 0) {
        /* no memory for the packed copies: the f32 product is the honest fallback */
        sn_log(SN_LOG_WARN, "bf16 GEMM: cannot allocate %.1f MB for packing; computing this product in f32",
               (double)(na + nb) * 4 / 1048576.0);
        if (p) sn_sgemm(p, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        else sn_sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    pack_job ja = {buf, A, lda, M, KP, K, MR, ta};
    pack_job jb = {buf + na, B, ldb, N, KP, K, NR, !tb};
    int64_t ntn = (panels + NBP - 1) / NBP, ntm = (strips + MBS - 1) / MBS;
    tile_job jt = {buf, buf + na, C, ldc, M, N, KP, strips, panels, ntn, alpha, beta, 0, KP};
    int nth = p ? sn_pool_size(p) : 1;
    int64_t nsplit = nth > 1 && ntm * ntn < nth ? KP / (2 * KCP) : 1;
    if (nsplit > nth) nsplit = nth;
    float *part = nsplit > 1 ? malloc((size_t)(nsplit * M * N) * sizeof *part) : NULL;
    if (p) {
        sn_pool_for(p, strips, 4, pack_part, &ja);
        sn_pool_for(p, panels, 2, pack_part, &jb);
        if (part) {
            ksplit_job k = {jt, (KP + nsplit - 1) / nsplit, ntm * ntn, part};
            sn_pool_for(p, nsplit, 1, ksplit_part, &k);
            kreduce_job r = {part, C, ldc, M, N, nsplit, beta};
            sn_pool_for(p, M, 16, kreduce_part, &r);
            free(part);
        } else sn_pool_for(p, ntm * ntn, 1, tile_part, &jt);
    } else {
        pack_part(&ja, 0, strips, 0);
        pack_part(&jb, 0, panels, 0);
        tile_part(&jt, 0, ntm * ntn, 0);
    }
    free(buf);
}

void sn_bgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bgemm(p, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sn_bgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bgemm(NULL, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
