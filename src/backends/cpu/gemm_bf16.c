/* bf16 GEMM for train.mixed_precision on the CPU: both operands rounded to bf16
 * (round to nearest even) while they are packed, products accumulated in f32, C and
 * alpha/beta in f32. Debian's OpenBLAS exports no sbgemm, so this is ours.
 *
 * Three paths, chosen per call (bgemm_path):
 *  - AMX-BF16 (Sapphire Rapids and later) where the CPU has it, the kernel grants the
 *    tile state (arch_prctl, once per process) and SN_CPU_AMX is not 0: 16x16 tiles of
 *    tdpbf16ps, the loop in gemm_bf16_amx.h;
 *  - AVX512-BF16: vdpbf16ps (two bf16 products per f32 lane and instruction);
 *  - portable C with the same rounding (slowly): the backend refuses bf16 mode there
 *    (cpu_backend.c), it only keeps direct callers and tests honest.
 * The kernels carry per-function target attributes (the AMX instructions are inline
 * assembly), so one binary runs everywhere; sn_cpu_bf16_isa() checks the CPU at run time.
 *
 * Layout (BLIS-style): op(A) [M,K] packed into strips of rows, op(B) [K,N] into panels
 * of columns, both as k-pairs (one u32 = bf16 of k even | k odd << 16), K padded with
 * zero pairs (to even; for AMX to a multiple of 16 pairs). Strips for AVX512: per
 * k-pair MR consecutive rows (broadcast one at a time); for AMX: per 16 k-pairs a
 * 16 x 16 block, row by row (a tile's rows). Panels (both): per k-pair the panel's
 * columns side by side (a B tile row is 16 of them). Both are packed once per call
 * over the pool in (strip or panel) x K-range pieces, then tiles of C run over the
 * pool, each looping over K in blocks; with fewer C tiles than threads and a long K
 * the K range is split over the threads too (partial C, then a parallel reduction).
 * The packing buffer is kept between calls (one cached block) so a training step
 * does not fault in fresh pages for every product. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall */
#endif
#include "backends/cpu/cpu.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BF_X86 1
#endif
#if defined(BF_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define BF_AMX 1
#endif

#define MR 8     /* AVX512: rows of a strip: 8 x 3 accumulators + 3 B loads + 1 broadcast of 32 zmm */
#define NR 48    /* AVX512: columns of a panel: three 16-lane vectors */
#define KCP 192  /* AVX512: k-pairs per K block: a 48-column panel slice is 36 KB (L1), a strip's 6 KB */
#define MBS 12   /* AVX512: strips per C tile (96 rows) */
#define NBP 4    /* AVX512: panels per C tile (192 columns) */
#define MRA 16   /* AMX: rows of a strip (a tile's rows) */
#define NRA 32   /* AMX: columns of a panel (two tiles) */
#define KCA 128  /* AMX: k-pairs per K block (multiple of 16): two strips' slices 16 KB, a panel's 16 KB: both in L1 (256 was 10-18% slower on a 2-core AMX Xeon) */
#define MBA 6    /* AMX: strips per C tile (96 rows) */
#define NBA 6    /* AMX: panels per C tile (192 columns); the tile's accumulators 72 KB */
#define PKC 256  /* k-pairs per packing piece (a multiple of 16) */

enum { PATH_C, PATH_AVX, PATH_AMX, PATH_AMX_EMU };

static int isa_level(void) {
    static int level = -1; /* 0 none, 1 AVX512-BF16, 2 AVX512-BF16 and AMX-BF16 */
    if (level < 0) {
        int l = 0;
#ifdef BF_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            l = __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-tile") ? 2 : 1;
#endif
        level = l;
    }
    return level;
}

const char *sn_cpu_bf16_isa(void) {
    int level = isa_level();
    /* SN_CPU_NO_BF16=1 simulates a CPU without it (tests); read on every call so a
     * test can switch it */
    const char *e = getenv("SN_CPU_NO_BF16");
    if (e && *e == '1') return NULL;
    return level == 2 ? "AVX512-BF16, AMX-BF16" : level == 1 ? "AVX512-BF16" : NULL;
}

/* Linux hands out the AMX tile data state (8 KB of XSAVE area a thread) only on
 * request; the permission is for the whole process, all its threads */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static bool amx_granted;
static void amx_request(void) {
#ifdef BF_AMX
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0) amx_granted = true;
    else
        sn_log(SN_LOG_WARN, "bf16 GEMM: the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s); "
                            "using AVX512-BF16 instead (a kernel older than 5.16?)", strerror(errno));
#endif
}

/* per call, so tests can switch: SN_CPU_AMX_EMULATE=1 (tests only) runs the AMX loop on
 * an emulation of the tiles; SN_CPU_AMX=0 keeps an AMX CPU on AVX512-BF16 */
static int bgemm_path(void) {
    const char *e = getenv("SN_CPU_AMX_EMULATE");
    if (e && *e == '1') return PATH_AMX_EMU;
    if (!sn_cpu_bf16_isa()) return PATH_C;
    if (isa_level() == 2) {
        e = getenv("SN_CPU_AMX");
        if (!(e && *e == '0')) {
            pthread_once(&amx_once, amx_request);
            if (amx_granted) return PATH_AMX;
        }
    }
    return PATH_AVX;
}

const char *sn_cpu_bgemm_path(void) {
    switch (bgemm_path()) {
    case PATH_AMX: return "AMX-BF16";
    case PATH_AMX_EMU: return "AMX-BF16 emulated (SN_CPU_AMX_EMULATE=1, tests only)";
    case PATH_AVX: return "AVX512-BF16";
    default: return "portable C";
    }
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
    int64_t ld, rows, KP, KS, K, width; /* KP k-pairs of data, KS stored (zero pairs after KP); width: rows a block */
    int64_t nk;                         /* pieces of PKC k-pairs a block */
    bool kmajor;                        /* element (r, k) at src[k*ld + r], else src[r*ld + k] */
    bool amx;                           /* the AMX strip layout (width 16), else per k-pair `width` side by side */
} pack_job;

/* where pair kp of row i of a block goes, from the block's start */
static inline int64_t slot(const pack_job *j, int64_t kp, int64_t i) {
    return j->amx ? (kp >> 4) * 256 + i * 16 + (kp & 15) : kp * j->width + i;
}

/* pieces [i0, i1): piece = block * nk + kpiece, block of `width` rows of op(A) (or
 * columns of op(B) seen as rows), k-pairs [kpiece*PKC, +PKC) of it. Every pair is a
 * function of its two source values alone, so the split cannot change the result. */
static void pack_part(void *arg, int64_t i0, int64_t i1, int tid) {
    (void)tid;
    const pack_job *j = arg;
    int64_t W = j->width;
    bool fast = have_bf16(); /* once, not per k-pair (it reads the environment) */
    (void)fast;             /* used on x86 only */
    uint32_t tmp[PKC > 64 ? PKC : 64];
    uint32_t rows[NR * PKC]; /* panels: the block's rows as pairs (W <= NR rows of PKC) */
    for (int64_t it = i0; it < i1; it++) {
        int64_t blk = it / j->nk, q0 = it % j->nk * PKC;
        int64_t q1 = q0 + PKC < j->KS ? q0 + PKC : j->KS, qr = q1 < j->KP ? q1 : j->KP; /* [qr, q1): padding */
        uint32_t *d = j->dst + blk * j->KS * W;
        int64_t r0 = blk * W, nr = j->rows - r0 < W ? j->rows - r0 : W;
        if (!j->kmajor && j->amx) { /* rows contiguous over k, AMX strips: 16 pairs of a row are 64 bytes */
            for (int64_t i = 0; i < W; i++) {
                int64_t q = q0;
                if (i < nr && q0 < qr) {
                    int64_t k0 = 2 * q0, kn = (2 * qr < j->K ? 2 * qr : j->K) - k0;
                    sn_bf16_pairs(tmp, j->src + (r0 + i) * j->ld + k0, kn);
                    for (; q + 16 <= qr; q += 16) memcpy(d + (q >> 4) * 256 + i * 16, tmp + (q - q0), 64);
                    for (; q < qr; q++) d[slot(j, q, i)] = tmp[q - q0];
                }
                for (; q < q1; q++) d[slot(j, q, i)] = 0;
            }
            continue;
        }
        if (!j->kmajor) { /* rows contiguous over k, panels (pair q of row i at q * W + i): the
                           * block's rows converted first, then written pair by pair, W at a time */
            for (int64_t i = 0; i < nr && q0 < qr; i++) {
                int64_t k0 = 2 * q0, kn = (2 * qr < j->K ? 2 * qr : j->K) - k0;
                sn_bf16_pairs(rows + i * PKC, j->src + (r0 + i) * j->ld + k0, kn);
            }
            for (int64_t q = q0; q < q1; q++) {
                uint32_t *o = d + q * W;
                int64_t i = 0;
                if (q < qr)
                    for (; i < nr; i++) o[i] = rows[i * PKC + (q - q0)];
                for (; i < W; i++) o[i] = 0;
            }
            continue;
        }
        /* k-major: rows 2kp and 2kp+1 of src hold the block's W values side by side */
        if (j->amx) { /* AMX strips: 16 pairs at a time into a 16 x 16 block, written row by row */
            for (int64_t g = q0; g < q1; g += 16) {
                uint32_t blk16[16][16];
                for (int64_t kp = g; kp < g + 16; kp++) {
                    uint32_t *o = blk16[kp - g];
                    int64_t i = 0;
                    if (kp < qr) {
                        const float *s0 = j->src + 2 * kp * j->ld + r0;
                        const float *s1 = 2 * kp + 1 < j->K ? s0 + j->ld : NULL;
#ifdef BF_X86
                        if (fast && s1 && nr == 16) {
                            zip_rows_avx(o, s0, s1, 16);
                            i = 16;
                        }
#endif
                        for (; i < nr; i++) o[i] = pair_of(s0[i], s1 ? s1[i] : 0.0f);
                    }
                    for (; i < 16; i++) o[i] = 0;
                }
                uint32_t *dg = d + (g >> 4) * 256;
                for (int64_t i = 0; i < 16; i++)
                    for (int64_t q = 0; q < 16; q++) dg[i * 16 + q] = blk16[q][i];
            }
            continue;
        }
        for (int64_t kp = q0; kp < q1; kp++) { /* panels: each pair's W values side by side */
            uint32_t *o = d + kp * W;
            int64_t i = 0;
            if (kp < qr) {
                const float *s0 = j->src + 2 * kp * j->ld + r0;
                const float *s1 = 2 * kp + 1 < j->K ? s0 + j->ld : NULL;
#ifdef BF_X86
                if (fast && s1) {
                    i = nr & ~(int64_t)15;
                    zip_rows_avx(o, s0, s1, i);
                }
#endif
                for (; i < nr; i++) o[i] = pair_of(s0[i], s1 ? s1[i] : 0.0f);
            }
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
    int64_t ldc, M, N, KP, strips, panels, ntn; /* KP: k-pairs stored a strip / panel */
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

/* ---- AMX: C[mr, nr] = alpha * acc + beta * C from a 16x16 accumulator tile (C not
 * read when beta == 0) */
static void write_tile(float *C, int64_t ldc, const float *acc, int mr, int nr, float alpha, float beta) {
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        const float *a = acc + i * 16;
        if (beta != 0.0f)
            for (int n = 0; n < nr; n++) c[n] = alpha * a[n] + beta * c[n];
        else
            for (int n = 0; n < nr; n++) c[n] = alpha * a[n];
    }
}

#ifdef BF_AMX
/* the tile configuration: palette 1, tiles 0..7 all 16 rows of 64 bytes */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* The configuration is per thread (like the tiles), loaded when a thread first needs
 * it: all tiles 16 rows x 64 bytes, except that the recurrent product (rnn_amx.h) gives
 * tiles 0..4 (its C and A tiles) as many rows as its batch. tl_amx_rows: the rows of
 * tiles 0..4 in the loaded configuration, 0 for none yet. */
static _Thread_local int tl_amx_rows;
static void amx_config_rows(int rows) {
    if (tl_amx_rows == rows) return;
    _Alignas(64) amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = (uint8_t)(t < 5 ? rows : 16);
    }
    __asm__ volatile("ldtilecfg %0" ::"m"(c));
    tl_amx_rows = rows;
}
static void amx_config(void) { amx_config_rows(16); }

/* The instructions as inline assembly (binutils >= 2.36), no target attribute needed;
 * "memory" because they read and write memory the compiler cannot see through a
 * register operand (acc[] in particular). */
#define TCFG() amx_config()
#define TZ(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define TL(t, p, s) __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(p), "r"((int64_t)(s)) : "memory")
#define TS(t, p, s) __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(p), "r"((int64_t)(s)) : "memory")
#define TDP(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#define AMX_FN amx_tile_part
#include "backends/cpu/gemm_bf16_amx.h"
#undef AMX_FN
#define TCFGS(rows) amx_config_rows(rows)
#define SKINNY_FN skinny_amx
#include "backends/cpu/rnn_amx.h"
#undef SKINNY_FN
#undef TCFGS
#undef TCFG
#undef TZ
#undef TL
#undef TS
#undef TDP
#endif

/* The emulation: the same loop over eight 16 x 64-byte tiles in memory (a thread's
 * own), tdpbf16ps as Intel specifies it: per k-pair, the even then the odd product
 * added to the f32 accumulator, each rounded (denormals aside) */
static _Thread_local uint32_t emu_tile[8][256];
static _Thread_local int emu_rows = 16; /* rows of tiles 0..4, as amx_config_rows sets them */
static int emu_nrows(int t) { return t < 5 ? emu_rows : 16; }
static void emu_load(int t, const void *p, int64_t stride) {
    int n = emu_nrows(t);
    memset(emu_tile[t], 0, sizeof emu_tile[t]);
    for (int r = 0; r < n; r++) memcpy(emu_tile[t] + r * 16, (const char *)p + r * stride, 64);
}
static void emu_store(int t, void *p, int64_t stride) {
    for (int r = 0; r < emu_nrows(t); r++) memcpy((char *)p + r * stride, emu_tile[t] + r * 16, 64);
}
static void emu_dp(int c, int a, int b) {
    float *acc = (float *)emu_tile[c];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float v = acc[m * 16 + n];
            for (int q = 0; q < 16; q++) {
                uint32_t x = emu_tile[a][m * 16 + q], y = emu_tile[b][q * 16 + n];
                v += sn_bf16_to_f32((uint16_t)x) * sn_bf16_to_f32((uint16_t)y);
                v += sn_bf16_to_f32((uint16_t)(x >> 16)) * sn_bf16_to_f32((uint16_t)(y >> 16));
            }
            acc[m * 16 + n] = v;
        }
}
#define TCFG() (emu_rows = 16)
#define TZ(t) memset(emu_tile[t], 0, sizeof emu_tile[t])
#define TL(t, p, s) emu_load(t, p, s)
#define TS(t, p, s) emu_store(t, p, s)
#define TDP(c, a, b) emu_dp(c, a, b)
#define AMX_FN amx_emu_tile_part
#include "backends/cpu/gemm_bf16_amx.h"
#undef AMX_FN
#define TCFGS(rows) (emu_rows = (rows))
#define SKINNY_FN skinny_amx_emu
#include "backends/cpu/rnn_amx.h"
#undef SKINNY_FN
#undef TCFGS
#undef TCFG
#undef TZ
#undef TL
#undef TS
#undef TDP

/* K split over threads, for products with fewer C tiles than threads and a long K
 * (a convolution's weight gradient: C [out, in*kh*kw], K = batch x positions): chunk s
 * of K into its own partial C, pieces (chunk, C tile) over the pool, then C = beta C +
 * the sum of the partials in chunk order. */
typedef struct {
    tile_job base;
    sn_pool_fn fn; /* the tile loop of the path */
    int64_t chunk, ntiles;
    float *part; /* [nsplit][M*N] */
} ksplit_job;

static void ksplit_part(void *arg, int64_t i0, int64_t i1, int tid) {
    const ksplit_job *k = arg;
    for (int64_t i = i0; i < i1; i++) {
        int64_t s = i / k->ntiles, t = i % k->ntiles;
        tile_job j = k->base;
        j.kp0 = s * k->chunk;
        j.kp1 = j.kp0 + k->chunk < j.KP ? j.kp0 + k->chunk : j.KP; /* never empty: see bgemm */
        j.C = k->part + s * j.M * j.N;
        j.ldc = j.N;
        j.beta = 0.0f;
        k->fn(&j, t, t + 1, tid);
    }
}

typedef struct {
    const float *part;
    float *C;
    int64_t ldc, M, N, nsplit;
    float beta;
} kreduce_job;

/* elements [e0, e1) of C in row-major order (so small M still spreads over the pool) */
static void kreduce_part(void *arg, int64_t e0, int64_t e1, int tid) {
    (void)tid;
    const kreduce_job *j = arg;
    int64_t MN = j->M * j->N;
    for (int64_t e = e0; e < e1;) {
        int64_t m = e / j->N, n0 = e % j->N, n1 = j->N < n0 + (e1 - e) ? j->N : n0 + (e1 - e);
        float *c = j->C + m * j->ldc;
        const float *pp = j->part + m * j->N;
        for (int64_t n = n0; n < n1; n++) {
            float v = j->beta != 0.0f ? j->beta * c[n] : 0.0f;
            for (int64_t i = 0; i < j->nsplit; i++) v += pp[i * MN + n];
            c[n] = v;
        }
        e += n1 - n0;
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

/* ---- the packing buffer: one block kept between calls (taken by one call at a time;
 * a concurrent call allocates its own); blocks above BUF_KEEP are not kept */
#define BUF_KEEP ((size_t)256 << 20)
typedef struct {
    size_t cap;
    char pad[56]; /* the data 64-byte aligned after the header */
} buf_hdr;
static _Atomic(buf_hdr *) g_buf;

static void *buf_take(size_t bytes, buf_hdr **h) {
    buf_hdr *b = atomic_exchange(&g_buf, NULL);
    if (!b || b->cap < bytes) {
        free(b);
        b = NULL;
        if (posix_memalign((void **)&b, 64, sizeof *b + bytes) != 0) return NULL;
        b->cap = bytes;
    }
    *h = b;
    return b + 1;
}

static void buf_give(buf_hdr *b) {
    if (b->cap > BUF_KEEP) {
        free(b);
        return;
    }
    free(atomic_exchange(&g_buf, b));
}

/* The B-streaming form, for products whose packed B is much larger than packed A (the
 * convolutions' im2col columns): A is packed whole as usual; then each task packs one
 * block of nb panels into its thread's slot (a few hundred KB, still in L2) and runs
 * every strip against it. B is read once and its packed copy never goes out to memory,
 * where the whole-B form writes it all and reads it back once per block of strips.
 * Each C element sums the same k-pairs in the same order: the same bits. */
typedef struct {
    pack_job jb;      /* the whole B (its dst unused) */
    tile_job jt;      /* the whole product (its bp unused) */
    sn_pool_fn tile_fn;
    uint32_t *slots;  /* per task slot of slot_u32 u32 */
    int64_t slot_u32, nb, ntm;
} bstream_job;

static void bstream_part(void *arg, int64_t b0, int64_t b1, int tid) {
    const bstream_job *s = arg;
    uint32_t *slot = s->slots + (int64_t)tid * s->slot_u32;
    for (int64_t pb = b0; pb < b1; pb++) {
        int64_t p0 = pb * s->nb, np = s->jt.panels - p0 < s->nb ? s->jt.panels - p0 : s->nb;
        pack_job jb = s->jb; /* a panel is jb.width columns of op(B) */
        int64_t c0 = p0 * jb.width, nc = s->jt.N - c0 < np * jb.width ? s->jt.N - c0 : np * jb.width;
        jb.dst = slot;
        jb.src = jb.kmajor ? jb.src + c0 : jb.src + c0 * jb.ld;
        jb.rows = nc;
        pack_part(&jb, 0, np * jb.nk, tid);
        tile_job jt = s->jt;
        jt.bp = slot;
        jt.C += c0;
        jt.N = nc;
        jt.panels = np;
        jt.ntn = 1;
        s->tile_fn(&jt, 0, s->ntm, tid);
    }
}

/* SN_BGEMM_STREAM=0|1 forces the whole-B or the B-streaming form (read per call: tests) */
static int bstream_forced(void) {
    const char *e = getenv("SN_BGEMM_STREAM");
    return e && (*e == '0' || *e == '1') ? *e - '0' : -1;
}

/* p NULL: everything on the calling thread */
static void bgemm(sn_pool *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(C, ldc, M, N, beta);
        return;
    }
    int path = bgemm_path();
    bool amx = path == PATH_AMX || path == PATH_AMX_EMU;
    sn_pool_fn tile_fn = tile_part;
#ifdef BF_AMX
    if (path == PATH_AMX) tile_fn = amx_tile_part;
#endif
    if (path == PATH_AMX_EMU) tile_fn = amx_emu_tile_part;
    int64_t mr = amx ? MRA : MR, nr = amx ? NRA : NR, mb = amx ? MBA : MBS, nb = amx ? NBA : NBP, kc = amx ? KCA : KCP;
    int64_t KP = (K + 1) / 2, KS = amx ? (KP + 15) & ~(int64_t)15 : KP;
    int64_t strips = (M + mr - 1) / mr, panels = (N + nr - 1) / nr;
    int64_t ntn = (panels + nb - 1) / nb, ntm = (strips + mb - 1) / mb;
    int nth = p ? sn_pool_size(p) : 1;
    /* the K split: chunks of whole 16-pair groups for AMX, and none left empty */
    int64_t nsplit = nth > 1 && ntm * ntn < nth ? KS / (2 * kc) : 1, chunk = KS;
    if (nsplit > nth) nsplit = nth;
    if (nsplit > 1) {
        chunk = (KS + nsplit - 1) / nsplit;
        if (amx) chunk = (chunk + 15) & ~(int64_t)15;
        nsplit = (KS + chunk - 1) / chunk;
    }
    size_t na = (size_t)(strips * mr * KS), nbw = (size_t)(panels * nr * KS);
    size_t npart = nsplit > 1 ? (size_t)(nsplit * M * N) : 0;
    /* B streamed where its packed copy is over 4 MB and at least half of packed A, and
     * there are at least 4 panel blocks a thread (each thread takes a contiguous share
     * of the blocks: fewer would leave threads idle; 2-core AMX Xeon: the LSTM's input
     * projection 11.5-12.1 -> 9.6-10.1 ms; its dx product (B 0.6x A, 6 blocks) 12.8-13.0
     * -> 11.9 forced; its weight gradient (B 0.25x A) 11.2 -> 13.2 ms forced) */
    int force = bstream_forced();
    bool stream = nsplit == 1 &&
                  (force == 1 || (force < 0 && nbw * 4 > ((size_t)4 << 20) && 2 * nbw >= na && ntn >= 4 * nth));
    size_t slot_u32 = (size_t)(nb * nr * KS + 16) & ~(size_t)15;
    if (stream) nbw = (size_t)nth * slot_u32;
    buf_hdr *hdr = NULL;
    uint32_t *buf = buf_take((na + nbw + npart) * 4 + 64, &hdr);
    if (!buf) {
        /* no memory for the packed copies: the f32 product is the honest fallback */
        sn_log(SN_LOG_WARN, "bf16 GEMM: cannot allocate %.1f MB for packing; computing this product in f32",
               (double)(na + nbw + npart) * 4 / 1048576.0);
        if (p) sn_sgemm(p, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        else sn_sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *part = npart ? (float *)(buf + ((na + nbw + 15) & ~(size_t)15)) : NULL;
    int64_t nk = (KS + PKC - 1) / PKC;
    pack_job ja = {buf, A, lda, M, KP, KS, K, mr, nk, ta, amx};
    pack_job jb = {buf + na, B, ldb, N, KP, KS, K, nr, nk, !tb, false};
    tile_job jt = {buf, buf + na, C, ldc, M, N, KS, strips, panels, ntn, alpha, beta, 0, KS};
    if (stream) {
        bstream_job sj = {jb, jt, tile_fn, buf + na, (int64_t)slot_u32, nb, ntm};
        if (p) {
            sn_pool_for(p, strips * nk, 1, pack_part, &ja);
            sn_pool_for(p, ntn, 1, bstream_part, &sj);
        } else {
            pack_part(&ja, 0, strips * nk, 0);
            bstream_part(&sj, 0, ntn, 0);
        }
        buf_give(hdr);
        return;
    }
    if (p) {
        sn_pool_for(p, strips * nk, 1, pack_part, &ja);
        sn_pool_for(p, panels * nk, 1, pack_part, &jb);
        if (part) {
            ksplit_job k = {jt, tile_fn, chunk, ntm * ntn, part};
            sn_pool_for(p, nsplit * ntm * ntn, 1, ksplit_part, &k);
            kreduce_job r = {part, C, ldc, M, N, nsplit, beta};
            sn_pool_for(p, M * N, 1024, kreduce_part, &r);
        } else sn_pool_for(p, ntm * ntn, 1, tile_fn, &jt);
    } else {
        pack_part(&ja, 0, strips * nk, 0);
        pack_part(&jb, 0, panels * nk, 0);
        tile_fn(&jt, 0, ntm * ntn, 0);
    }
    buf_give(hdr);
}

void sn_bgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bgemm(p, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sn_bgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bgemm(NULL, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int sn_bgemm_amx_mode(void) {
    int p = bgemm_path();
    return p == PATH_AMX ? 1 : p == PATH_AMX_EMU ? 2 : 0;
}

bool sn_rnn_skinny_amx(int mode, const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP, float *C,
                       int64_t ldc, int64_t n0, int64_t n1, bool acc) {
    if (B < 1 || B > 16 || KP < 16 || KP % 16 || n0 % 16 || n1 <= n0) return false;
#ifdef BF_AMX
    if (mode == 1) {
        skinny_amx(A, lda, B, P, KP, C, ldc, n0, n1, acc);
        return true;
    }
#endif
    if (mode == 2) {
        skinny_amx_emu(A, lda, B, P, KP, C, ldc, n0, n1, acc);
        return true;
    }
    return false;
}
