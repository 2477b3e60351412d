/* CPU kernels: LSTM and GRU forward and backward over a whole sequence.
 *
 * Forward per layer: the input projection of all timesteps is one GEMM written into
 * the gates region of the saved state; then per timestep one recurrent GEMM
 * (h_{t-1}[B,H] x w_hh^T) accumulated into that step's gate rows (strided views,
 * no copies) and a fused cell loop parallel over (batch, hidden).
 * Backward per layer, from the top: per timestep the fused cell backward writes the
 * pre-activation gate gradients dG_t and one GEMM gives dh_{t-1} = dG_t w_hh; after
 * the loop the weight gradients are big GEMMs over all timesteps and dx_in = dG w_ih
 * feeds the layer below. */
#include "backends/cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <stdatomic.h>
#include <sys/mman.h>
#endif

#include "backends/cpu/vmath.h"

/* SN_RNN_PROF=1: time the LSTM phases (input GEMMs, recurrent loops, weight-gradient
 * GEMMs) and print the totals at exit, to see where a step goes. */
enum { P_INPROJ, P_FWD_LOOP, P_BWD_LOOP, P_BWD_WGRAD, P_BWD_DX, P_N };
static double g_prof[P_N];
static int g_prof_on = -1;
static const char *g_prof_name[P_N] = {"fwd input GEMM", "fwd recurrent loop", "bwd recurrent loop",
                                       "bwd weight GEMMs", "bwd dx GEMM"};
static void prof_dump(void) {
    for (int i = 0; i < P_N; i++) fprintf(stderr, "  lstm %-20s %9.1f ms\n", g_prof_name[i], g_prof[i]);
}
static double prof_now(void) {
    if (g_prof_on < 0) {
        const char *e = getenv("SN_RNN_PROF");
        g_prof_on = e && *e == '1';
        if (g_prof_on) atexit(prof_dump);
    }
    if (!g_prof_on) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
#define PROF(slot, t0) do { if (g_prof_on) { double t1_ = prof_now(); g_prof[slot] += t1_ - (t0); (t0) = t1_; } } while (0)

/* The packed w_hh (16 MB at the prototype size) streams through every timestep: on
 * 4 KB pages that is 4096 TLB entries per step, more than the STLB holds. One
 * process-wide buffer on 2 MB pages (mmap + MADV_HUGEPAGE, kept for the next call;
 * not malloc'ed, so it is no leak) serves the op that grabs it; a concurrent op
 * falls back to the backend's scratch. SN_RNN_HUGE=0 turns it off. */
#ifdef __linux__
static atomic_int g_huge_busy;
static char *g_huge;
static size_t g_huge_bytes;
#endif

static float *wpack_get(sn_cpu *c, size_t n, bool *huge) {
    *huge = false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SN_RNN_HUGE");
        on = !(e && *e == '0');
    }
    size_t bytes = (n * sizeof(float) + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    if (on && !atomic_exchange(&g_huge_busy, 1)) {
        if (g_huge_bytes < bytes) {
            if (g_huge) munmap(g_huge, g_huge_bytes + ((size_t)2 << 20));
            g_huge = NULL;
            g_huge_bytes = 0;
            void *m = mmap(NULL, bytes + ((size_t)2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m != MAP_FAILED) {
                g_huge = m;
                g_huge_bytes = bytes;
            }
        }
        if (g_huge) {
            char *a = (char *)(((uintptr_t)g_huge + ((size_t)2 << 20) - 1) & ~(uintptr_t)(((size_t)2 << 20) - 1));
            madvise(a, bytes, MADV_HUGEPAGE);
            *huge = true;
            return (float *)a;
        }
        atomic_store(&g_huge_busy, 0);
    }
#endif
    return sn_cpu_scratch(c, n);
}

static void wpack_put(bool huge) {
#ifdef __linux__
    if (huge) atomic_store(&g_huge_busy, 0);
#endif
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Rows [b0*H + j) of a cell loop split into per-batch contiguous j ranges. */
#define FOR_BJ(i0, i1, H, ...)                                             \
    for (int64_t b = (i0) / (H); b * (H) < (i1); b++) {                    \
        int64_t j0 = (i0) - b * (H) > 0 ? (i0) - b * (H) : 0;              \
        int64_t j1 = (i1) - b * (H) < (H) ? (i1) - b * (H) : (H);          \
        for (int64_t j = j0; j < j1; j++) __VA_ARGS__                             \
    }

/* Grain of the cell loops: enough work per thread to beat the wake-up cost. */
#define CELL_GRAIN 1024

typedef struct {
    float *db;
    const float *g;
    int64_t rows, cols;
} colsum_job;

static void colsum_part(void *arg, int64_t c0, int64_t c1, int tid) {
    const colsum_job *j = arg;
    for (int64_t c = c0; c < c1; c++) j->db[c] = 0;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *p = j->g + r * j->cols;
        for (int64_t c = c0; c < c1; c++) j->db[c] += p[c];
    }
}

static void colsum(sn_cpu *c, float *db, const float *g, int64_t rows, int64_t cols) {
    colsum_job j = {db, g, rows, cols};
    sn_pool_for(c->pool, cols, 256, colsum_part, &j);
}

/* dw_hh[G,H] = sum_b sum_{t>=1} dG[b,t]^T h[b,t-1]. Rows b*T+t of dG and h are
 * consecutive over the whole batch, so one GEMM with K = B*T-1 pairs dG row r with h
 * row r-1; it also pairs the B-1 rows b*T (b >= 1) with the last h of sequence b-1,
 * which a rank-(B-1) GEMM over those strided rows takes back out. Two GEMMs instead
 * of B with K = T-1 (they thread poorly at large thread counts). */
static void recurrent_wgrad(sn_cpu *c, float *dw, const float *dg, const float *h, int64_t B, int64_t T,
                            int64_t G, int64_t H) {
    if (T < 2) {
        memset(dw, 0, (size_t)(G * H) * sizeof *dw);
        return;
    }
    sn_sgemm(c->pool, true, false, G, H, B * T - 1, 1.0f, dg + G, G, h, H, 0.0f, dw, H);
    if (B > 1)
        sn_sgemm(c->pool, true, false, G, H, B - 1, -1.0f, dg + T * G, T * G, h + (T - 1) * H, T * H, 1.0f, dw, H);
}

typedef struct {
    float *gates;
    const float *b_ih, *b_hh;
    int64_t G;
} bias_rows_job;

static void bias_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    const bias_rows_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *g = j->gates + r * j->G;
        if (j->b_hh)
            for (int64_t k = 0; k < j->G; k++) g[k] = j->b_ih[k] + j->b_hh[k];
        else memcpy(g, j->b_ih, (size_t)j->G * sizeof *g);
    }
}

/* gates[B*T, G] = in[B*T, K] w_ih^T + b_ih (+ b_hh when given) */
static void input_proj(sn_cpu *c, float *gates, const float *in, const float *w_ih, const float *b_ih,
                       const float *b_hh, int64_t BT, int64_t K, int64_t G) {
    bias_rows_job j = {gates, b_ih, b_hh, G};
    sn_pool_for(c->pool, BT, 16, bias_rows, &j);
    sn_sgemm(c->pool, false, true, BT, G, K, 1.0f, in, K, w_ih, K, 1.0f, gates, G);
}


/* ------------------------------------------------ skinny recurrent GEMM
 * The per-step products have only B (batch) rows: h_{t-1}[B,H] x w_hh^T. A BLAS
 * packs the whole 16 MB weight on every call for that; streaming the weight rows
 * once against up to 4 batch rows at a time is 2-3x faster at the prototype size.
 * Larger batches go through sn_sgemm, where packing pays. */
#define SKINNY_MAX_B 8
#ifndef SKINNY_PF
#define SKINNY_PF 256 /* prefetch distance in floats (0: off) */
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SN_SKINNY_X86 1

/* C[b, n] (+)= sum_k A[b,k] W[n,k], b < nb <= 4, n in [n0, n1) */
__attribute__((target("avx512f"))) static void skinny_avx512(const float *A, int64_t lda, int nb, const float *W,
                                                           int64_t K, float *C, int64_t ldc, int64_t n0,
                                                           int64_t n1, bool acc) {
    const float *a[4];
    for (int b = 0; b < 4; b++) a[b] = A + (b < nb ? b : 0) * lda;
    int64_t K16 = K & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);
    for (int64_t n = n0; n < n1; n += 2) {
        bool two = n + 1 < n1;
        const float *w0 = W + n * K, *w1 = two ? w0 + K : w0;
        __m512 s[2][4];
        for (int b = 0; b < 4; b++) s[0][b] = s[1][b] = _mm512_setzero_ps();
        for (int64_t k = 0; k <= K16; k += 16) {
            __m512 x0, x1, h[4];
            if (k < K16) {
                x0 = _mm512_loadu_ps(w0 + k);
                x1 = _mm512_loadu_ps(w1 + k);
                for (int b = 0; b < 4; b++) h[b] = _mm512_loadu_ps(a[b] + k);
            } else {
                if (!tail) break;
                x0 = _mm512_maskz_loadu_ps(tail, w0 + k);
                x1 = _mm512_maskz_loadu_ps(tail, w1 + k);
                for (int b = 0; b < 4; b++) h[b] = _mm512_maskz_loadu_ps(tail, a[b] + k);
            }
            for (int b = 0; b < 4; b++) {
                s[0][b] = _mm512_fmadd_ps(x0, h[b], s[0][b]);
                s[1][b] = _mm512_fmadd_ps(x1, h[b], s[1][b]);
            }
        }
        for (int b = 0; b < nb; b++) {
            float v0 = _mm512_reduce_add_ps(s[0][b]);
            C[b * ldc + n] = acc ? C[b * ldc + n] + v0 : v0;
            if (two) {
                float v1 = _mm512_reduce_add_ps(s[1][b]);
                C[b * ldc + n + 1] = acc ? C[b * ldc + n + 1] + v1 : v1;
            }
        }
    }
}

/* Same, 4 weight rows at a time (16 accumulators: 4 W + 4 h loads per 16 FMAs);
 * the leftover rows go through skinny_avx512. */
__attribute__((target("avx512f"))) static void skinny4_avx512(const float *A, int64_t lda, int nb, const float *W,
                                                            int64_t K, float *C, int64_t ldc, int64_t n0,
                                                            int64_t n1, bool acc) {
    const float *a[4];
    for (int b = 0; b < 4; b++) a[b] = A + (b < nb ? b : 0) * lda;
    int64_t K16 = K & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        const float *w0 = W + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        __m512 s[4][4];
        for (int r = 0; r < 4; r++)
            for (int b = 0; b < 4; b++) s[r][b] = _mm512_setzero_ps();
        for (int64_t k = 0; k <= K16; k += 16) {
            __m512 x[4], h[4];
            if (k < K16) {
                if (SKINNY_PF) { /* the weight streams from L3/memory when it is not L2-resident */
                    _mm_prefetch((const char *)(w0 + k + SKINNY_PF), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w1 + k + SKINNY_PF), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w2 + k + SKINNY_PF), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w3 + k + SKINNY_PF), _MM_HINT_T0);
                }
                x[0] = _mm512_loadu_ps(w0 + k);
                x[1] = _mm512_loadu_ps(w1 + k);
                x[2] = _mm512_loadu_ps(w2 + k);
                x[3] = _mm512_loadu_ps(w3 + k);
                for (int b = 0; b < 4; b++) h[b] = _mm512_loadu_ps(a[b] + k);
            } else {
                if (!tail) break;
                x[0] = _mm512_maskz_loadu_ps(tail, w0 + k);
                x[1] = _mm512_maskz_loadu_ps(tail, w1 + k);
                x[2] = _mm512_maskz_loadu_ps(tail, w2 + k);
                x[3] = _mm512_maskz_loadu_ps(tail, w3 + k);
                for (int b = 0; b < 4; b++) h[b] = _mm512_maskz_loadu_ps(tail, a[b] + k);
            }
            for (int r = 0; r < 4; r++)
                for (int b = 0; b < 4; b++) s[r][b] = _mm512_fmadd_ps(x[r], h[b], s[r][b]);
        }
        for (int b = 0; b < nb; b++) {
            /* reduce 4 rows at once: pairwise adds of the halves, then one 128-bit store */
            __m512 r01 = _mm512_add_ps(_mm512_shuffle_f32x4(s[0][b], s[1][b], 0x44),
                                       _mm512_shuffle_f32x4(s[0][b], s[1][b], 0xEE));
            __m512 r23 = _mm512_add_ps(_mm512_shuffle_f32x4(s[2][b], s[3][b], 0x44),
                                       _mm512_shuffle_f32x4(s[2][b], s[3][b], 0xEE));
            /* r01 lanes: [s0 lo256 + s0 hi256 | s1 ...] as 4 x 128-bit: s0a s0b s1a s1b */
            __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(r01, r23, 0x88), _mm512_shuffle_f32x4(r01, r23, 0xDD));
            /* q 128-bit lanes: s0, s1, s2, s3 (each 4 partial sums) */
            __m128 l0 = _mm512_castps512_ps128(q), l1 = _mm512_extractf32x4_ps(q, 1);
            __m128 l2 = _mm512_extractf32x4_ps(q, 2), l3 = _mm512_extractf32x4_ps(q, 3);
            __m128 t01 = _mm_hadd_ps(l0, l1), t23 = _mm_hadd_ps(l2, l3);
            __m128 v = _mm_hadd_ps(t01, t23);
            float *c = C + b * ldc + n;
            if (acc) v = _mm_add_ps(v, _mm_loadu_ps(c));
            _mm_storeu_ps(c, v);
        }
    }
    if (n < n1) skinny_avx512(A, lda, nb, W, K, C, ldc, n, n1, acc);
}

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

__attribute__((target("avx2,fma"))) static void skinny_avx2(const float *A, int64_t lda, int nb, const float *W,
                                                          int64_t K, float *C, int64_t ldc, int64_t n0, int64_t n1,
                                                          bool acc) {
    const float *a[4];
    for (int b = 0; b < 4; b++) a[b] = A + (b < nb ? b : 0) * lda;
    int64_t K8 = K & ~(int64_t)7;
    for (int64_t n = n0; n < n1; n += 2) {
        bool two = n + 1 < n1;
        const float *w0 = W + n * K, *w1 = two ? w0 + K : w0;
        __m256 s[2][4];
        for (int b = 0; b < 4; b++) s[0][b] = s[1][b] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K8; k += 8) {
            __m256 x0 = _mm256_loadu_ps(w0 + k), x1 = _mm256_loadu_ps(w1 + k);
            for (int b = 0; b < 4; b++) {
                __m256 h = _mm256_loadu_ps(a[b] + k);
                s[0][b] = _mm256_fmadd_ps(x0, h, s[0][b]);
                s[1][b] = _mm256_fmadd_ps(x1, h, s[1][b]);
            }
        }
        for (int b = 0; b < nb; b++) {
            float v0 = hsum256(s[0][b]), v1 = hsum256(s[1][b]);
            for (int64_t k = K8; k < K; k++) v0 += w0[k] * a[b][k], v1 += w1[k] * a[b][k];
            C[b * ldc + n] = acc ? C[b * ldc + n] + v0 : v0;
            if (two) C[b * ldc + n + 1] = acc ? C[b * ldc + n + 1] + v1 : v1;
        }
    }
}
#endif

/* 2: AVX-512, 1: AVX2+FMA, 0: use sn_sgemm */
static int skinny_level(void) {
    static int level = -1;
    if (level < 0) {
        int l = 0;
#ifdef SN_SKINNY_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) l = 2;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 1;
#endif
        level = l;
    }
    return level;
}

/* C[b, n] (+)= sum_k A[b,k] W[n,k] for all B rows (in groups of 4), n in [n0, n1) */
static void skinny_nt(const float *A, int64_t lda, int64_t B, const float *W, int64_t K, float *C, int64_t ldc,
                      int64_t n0, int64_t n1, bool acc) {
#ifdef SN_SKINNY_X86
    for (int64_t b = 0; b < B; b += 4) {
        int nb = B - b < 4 ? (int)(B - b) : 4;
        if (skinny_level() == 2) skinny4_avx512(A + b * lda, lda, nb, W, K, C + b * ldc, ldc, n0, n1, acc);
        else skinny_avx2(A + b * lda, lda, nb, W, K, C + b * ldc, ldc, n0, n1, acc);
    }
#endif
}

static bool use_skinny(int64_t B) { return B <= SKINNY_MAX_B && skinny_level() > 0; }


/* ------------------------------------------------ packed skinny GEMM (AVX-512)
 * The dot-product kernels above end every 4 weight rows with horizontal sums, and
 * a thread's rows of w_hh^T sit 16 KB apart (few L2 sets). Packed instead into
 * panels of 16 output columns, k-major (P[panel][k][16], one cache line per k),
 * each thread streams its own contiguous panels: per k, 4 panel loads, 4 broadcasts
 * of A[b,k] and 16 FMAs straight into the outputs, no reductions. */
#define PANEL 16

static int64_t panels_of(int64_t N) { return (N + PANEL - 1) / PANEL; }

typedef struct {
    float *P;
    const float *W;
    int64_t N, K, sn, sk; /* element (n, k) at W[n*sn + k*sk] */
} pack_job;

static void pack_part(void *arg, int64_t p0, int64_t p1, int tid) {
    const pack_job *j = arg;
    for (int64_t p = p0; p < p1; p++) {
        float *d = j->P + p * j->K * PANEL;
        int64_t nn = j->N - p * PANEL < PANEL ? j->N - p * PANEL : PANEL;
        if (j->sk == 1) { /* rows of W are the panel's columns: 16 streams over k */
            for (int64_t k0 = 0; k0 < j->K; k0 += 64)
                for (int64_t i = 0; i < PANEL; i++) {
                    const float *src = j->W + (p * PANEL + i) * j->sn;
                    int64_t k1 = k0 + 64 < j->K ? k0 + 64 : j->K;
                    for (int64_t k = k0; k < k1; k++) d[k * PANEL + i] = i < nn ? src[k] : 0.0f;
                }
        } else
            for (int64_t k = 0; k < j->K; k++)
                for (int64_t i = 0; i < PANEL; i++)
                    d[k * PANEL + i] = i < nn ? j->W[(p * PANEL + i) * j->sn + k * j->sk] : 0.0f;
    }
}

/* P = panels of the [N, K] operand with element (n, k) at W[n*sn + k*sk] */
static void pack_panels(sn_cpu *c, float *P, const float *W, int64_t N, int64_t K, int64_t sn, int64_t sk) {
    pack_job j = {P, W, N, K, sn, sk};
    sn_pool_for(c->pool, panels_of(N), 4, pack_part, &j);
}

/* software prefetch distance of the packed kernel, in k steps (SN_RNN_PF; default 0,
 * off): meant for panels streaming from L3, but on the 16-core Xeon 16 steps ahead
 * was within noise at 16 threads and ~8% slower at 2, so it stays an experiment */
static int64_t g_ppf = -1;
static void ppf_init(void) {
    if (g_ppf < 0) {
        const char *e = getenv("SN_RNN_PF");
        g_ppf = e && *e ? atoll(e) : 0;
    }
}
#ifdef SN_SKINNY_X86
/* C[b, n] (+)= sum_k A[b,k] Op[n,k] for b < B, n in [n0, n1) (n0 a multiple of 16),
 * Op packed in P */
__attribute__((target("avx512f"))) static void skinny_packed(const float *A, int64_t lda, int64_t B,
                                                            const float *P, int64_t K, float *C, int64_t ldc,
                                                            int64_t n0, int64_t n1, bool acc) {
    for (int64_t b0 = 0; b0 < B; b0 += 4) {
        int nb = B - b0 < 4 ? (int)(B - b0) : 4;
        const float *a[4];
        for (int b = 0; b < 4; b++) a[b] = A + (b0 + (b < nb ? b : 0)) * lda;
        int64_t n = n0;
        for (; n + 4 * PANEL <= n1; n += 4 * PANEL) {
            const float *p0 = P + (n / PANEL) * K * PANEL, *p1 = p0 + K * PANEL, *p2 = p1 + K * PANEL,
                        *p3 = p2 + K * PANEL;
            __m512 s[4][4];
            for (int b = 0; b < 4; b++)
                for (int r = 0; r < 4; r++) s[b][r] = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k++) {
                if (g_ppf > 0) {
                    _mm_prefetch((const char *)(p0 + (k + g_ppf) * PANEL), _MM_HINT_T0);
                    _mm_prefetch((const char *)(p1 + (k + g_ppf) * PANEL), _MM_HINT_T0);
                    _mm_prefetch((const char *)(p2 + (k + g_ppf) * PANEL), _MM_HINT_T0);
                    _mm_prefetch((const char *)(p3 + (k + g_ppf) * PANEL), _MM_HINT_T0);
                }
                __m512 w0 = _mm512_load_ps(p0 + k * PANEL), w1 = _mm512_load_ps(p1 + k * PANEL);
                __m512 w2 = _mm512_load_ps(p2 + k * PANEL), w3 = _mm512_load_ps(p3 + k * PANEL);
                for (int b = 0; b < 4; b++) {
                    __m512 x = _mm512_set1_ps(a[b][k]);
                    s[b][0] = _mm512_fmadd_ps(w0, x, s[b][0]);
                    s[b][1] = _mm512_fmadd_ps(w1, x, s[b][1]);
                    s[b][2] = _mm512_fmadd_ps(w2, x, s[b][2]);
                    s[b][3] = _mm512_fmadd_ps(w3, x, s[b][3]);
                }
            }
            for (int b = 0; b < nb; b++)
                for (int r = 0; r < 4; r++) {
                    float *cp = C + (b0 + b) * ldc + n + r * PANEL;
                    __m512 v = acc ? _mm512_add_ps(s[b][r], _mm512_loadu_ps(cp)) : s[b][r];
                    _mm512_storeu_ps(cp, v);
                }
        }
        for (; n < n1; n += PANEL) { /* leftover panels, the last one maybe partial */
            const float *pp = P + (n / PANEL) * K * PANEL;
            __mmask16 m = n1 - n >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);
            __m512 s[4];
            for (int b = 0; b < 4; b++) s[b] = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k++) {
                __m512 w = _mm512_load_ps(pp + k * PANEL);
                for (int b = 0; b < 4; b++) s[b] = _mm512_fmadd_ps(w, _mm512_set1_ps(a[b][k]), s[b]);
            }
            for (int b = 0; b < nb; b++) {
                float *cp = C + (b0 + b) * ldc + n;
                __m512 v = acc ? _mm512_add_ps(s[b], _mm512_maskz_loadu_ps(m, cp)) : s[b];
                _mm512_mask_storeu_ps(cp, m, v);
            }
        }
    }
}
#endif

/* the packed path: AVX-512 and not turned off (SN_SKINNY_PACKED=0) */
static bool use_packed(int64_t B) {
    static int on = -1;
    ppf_init();
    if (on < 0) {
        const char *e = getenv("SN_SKINNY_PACKED");
        on = skinny_level() == 2 && !(e && *e == '0');
    }
    return on && B <= SKINNY_MAX_B;
}

/* SN_LSTM_REGION=0: one sn_pool_for per timestep instead of one region per layer */
static bool use_region(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SN_LSTM_REGION");
        on = !(e && *e == '0');
    }
    return on;
}

typedef struct {
    const float *A, *W;
    float *C;
    int64_t lda, B, K, ldc;
    bool acc;
} skinny_job;

static void skinny_part(void *arg, int64_t n0, int64_t n1, int tid) {
    const skinny_job *j = arg;
    skinny_nt(j->A, j->lda, j->B, j->W, j->K, j->C, j->ldc, n0, n1, j->acc);
}

/* C[B,N] (+)= A[B,K] W[N,K]^T, skinny kernel over the pool or sn_sgemm */
static void step_gemm_nt(sn_cpu *c, int64_t B, int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                         float *C, int64_t ldc, bool acc) {
    if (use_skinny(B)) {
        skinny_job j = {A, W, C, lda, B, K, ldc, acc};
        sn_pool_for(c->pool, N, 64, skinny_part, &j);
    } else {
        sn_sgemm(c->pool, false, true, B, N, K, 1.0f, A, lda, W, K, acc ? 1.0f : 0.0f, C, ldc);
    }
}

typedef struct {
    float *dst;
    const float *src;
    int64_t R, C;
} transpose_job;

static void transpose_part(void *arg, int64_t c0, int64_t c1, int tid) {
    const transpose_job *j = arg;
    for (int64_t r0 = 0; r0 < j->R; r0 += 32)
        for (int64_t cc = c0; cc < c1; cc++)
            for (int64_t r = r0; r < r0 + 32 && r < j->R; r++) j->dst[cc * j->R + r] = j->src[r * j->C + cc];
}

/* dst[C,R] = src[R,C]^T */
static void transpose(sn_cpu *c, float *dst, const float *src, int64_t R, int64_t C) {
    transpose_job j = {dst, src, R, C};
    sn_pool_for(c->pool, C, 64, transpose_part, &j);
}

/* ------------------------------------------------------------------ LSTM */

typedef struct {
    float *g;           /* gates of step t: row b at g + b*gs */
    float *c, *h;       /* c, h of step t: row b at + b*hs */
    const float *cp;    /* c of step t-1 (NULL at t = 0) */
    int64_t H, gs, hs;
    const float *hp;    /* h of step t-1 (NULL at t = 0) */
    const float *w_hh;
    int64_t B;
    int64_t ps;         /* row stride of cp/hp (T*H inside the sequence, H for an initial state) */
    const float *wp;    /* w_hh packed per gate (4 blocks of panels_of(H) panels), or NULL */
} lstm_fwd_job;

static void lstm_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_fwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        float i = sigm(g[j]), f = sigm(g[H + j]), gg = tanhf(g[2 * H + j]), o = sigm(g[3 * H + j]);
        float cp = q->cp ? q->cp[b * q->ps + j] : 0.0f;
        float cn = f * cp + i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        q->c[b * q->hs + j] = cn;
        q->h[b * q->hs + j] = o * tanhf(cn);
    })
}

#ifdef SN_VM_X86
/* lstm_cell_fwd for row b, hidden units [j0, j1), 16 at a time */
__attribute__((target("avx512f"))) static void lstm_cell_fwd_avx512(const lstm_fwd_job *q, int64_t b, int64_t j0,
                                                                   int64_t j1) {
    int64_t H = q->H;
    float *g = q->g + b * q->gs, *c = q->c + b * q->hs, *h = q->h + b * q->hs;
    const float *cp = q->cp ? q->cp + b * q->ps : NULL;
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 i = sn_sigm512(_mm512_maskz_loadu_ps(m, g + j));
        __m512 f = sn_sigm512(_mm512_maskz_loadu_ps(m, g + H + j));
        __m512 gg = sn_tanh512(_mm512_maskz_loadu_ps(m, g + 2 * H + j));
        __m512 o = sn_sigm512(_mm512_maskz_loadu_ps(m, g + 3 * H + j));
        __m512 cn = _mm512_mul_ps(i, gg);
        if (cp) cn = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp + j), cn);
        _mm512_mask_storeu_ps(g + j, m, i);
        _mm512_mask_storeu_ps(g + H + j, m, f);
        _mm512_mask_storeu_ps(g + 2 * H + j, m, gg);
        _mm512_mask_storeu_ps(g + 3 * H + j, m, o);
        _mm512_mask_storeu_ps(c + j, m, cn);
        _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, sn_tanh512(cn)));
    }
}
#endif

static void lstm_step_fused(void *arg, int64_t j0, int64_t j1, int tid) {
    const lstm_fwd_job *q = arg;
    int64_t H = q->H;
#ifdef SN_SKINNY_X86
    if (q->hp && q->wp) {
        for (int k = 0; k < 4; k++)
            skinny_packed(q->hp, q->ps, q->B, q->wp + k * panels_of(H) * PANEL * H, H, q->g + k * H, q->gs, j0, j1,
                          true);
    } else
#endif
    if (q->hp)
        for (int k = 0; k < 4; k++)
            skinny_nt(q->hp, q->ps, q->B, q->w_hh, H, q->g, q->gs, k * H + j0, k * H + j1, true);
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        for (int64_t b = 0; b < q->B; b++) lstm_cell_fwd_avx512(q, b, j0, j1);
        return;
    }
#endif
    for (int64_t b = 0; b < q->B; b++) lstm_cell_fwd(arg, b * H + j0, b * H + j1, tid);
}

/* Hidden units [j0, j1) of thread tid of nth: contiguous ranges, multiples of 16
 * floats (whole cache lines, so no two threads write the same line of h/c/gates). */
static void unit_range(int64_t H, int tid, int nth, int64_t *j0, int64_t *j1) {
    int64_t per = (H + nth - 1) / nth;
    per = (per + 15) & ~(int64_t)15;
    *j0 = tid * per < H ? tid * per : H;
    *j1 = *j0 + per < H ? *j0 + per : H;
}

/* Prefetch rows b*rs + [j0, j1) of p for b < B (the next timestep's slice of saved
 * state, which the input GEMM or the layer above left in memory long ago): issued
 * before a barrier, the misses overlap the wait instead of the next step. */
static inline void prefetch_rows(const float *p, int64_t B, int64_t rs, int64_t j0, int64_t j1) {
#if defined(__GNUC__) || defined(__clang__)
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = j0; j < j1; j += 16) __builtin_prefetch(p + b * rs + j, 1, 3);
#endif
}

typedef struct {
    float *gates, *cs, *hs;
    const float *c0, *h0, *w_hh;
    int64_t H, T, B;
    const float *wp;
} lstm_fwd_region;

static void lstm_fwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const lstm_fwd_region *r = arg;
    int64_t H = r->H, T = r->T, G = 4 * H, j0, j1;
    unit_range(H, tid, nth, &j0, &j1);
    for (int64_t t = 0; t < T; t++) {
        lstm_fwd_job q = {r->gates + t * G, r->cs + t * H, r->hs + t * H, t > 0 ? r->cs + (t - 1) * H : r->c0,
                          H, T * G, T * H, t > 0 ? r->hs + (t - 1) * H : r->h0, r->w_hh, r->B, t > 0 ? T * H : H,
                          r->wp};
        if (j0 < j1) lstm_step_fused(&q, j0, j1, tid);
        if (t + 1 < T) {
            for (int k = 0; k < 4; k++) prefetch_rows(r->gates + (t + 1) * G + k * H, r->B, T * G, j0, j1);
            prefetch_rows(r->cs + (t + 1) * H, r->B, T * H, j0, j1);
            prefetch_rows(r->hs + (t + 1) * H, r->B, T * H, j0, j1);
            sn_barrier_wait(bar); /* h_t complete before anyone reads it */
        }
    }
}

static sn_status lstm_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H;
    float *ex = sn_extra_ptr(node);
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(node, l - 1);
        float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        float *hs = sn_rnn_h(node, l); /* the last layer writes the output directly */
        double t0 = prof_now();
        input_proj(c, gates, xin, w_ih, b_ih, b_hh, B * T, in, G);
        PROF(P_INPROJ, t0);
        /* initial state: [layers,B,H] srcs after the weights (streaming), else zeros */
        const float *h0 = node->ip[2] ? (const float *)node->src[1 + 4 * layers]->data + l * B * H : NULL;
        const float *c0 = node->ip[2] ? (const float *)node->src[2 + 4 * layers]->data + l * B * H : NULL;
        if (use_skinny(B)) {
            /* one parallel region for all timesteps: each thread owns a fixed range of
             * hidden units (its 4 gate slices of w_hh stay in its L2), barrier per step */
            if (use_region()) {
                lstm_fwd_region r = {gates, cs, hs, c0, h0, w_hh, H, T, B, NULL};
                bool huge = false;
                if (use_packed(B)) {
                    int64_t blk = panels_of(H) * PANEL * H;
                    float *wp = wpack_get(c, (size_t)(4 * blk), &huge);
                    if (!wp) return SN_ERR_NOMEM;
                    for (int k = 0; k < 4; k++) pack_panels(c, wp + k * blk, w_hh + k * H * H, H, H, H, 1);
                    r.wp = wp;
                }
                sn_pool_region(c->pool, lstm_fwd_thread, &r);
                wpack_put(huge);
            } else
                for (int64_t t = 0; t < T; t++) {
                    lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : c0, H, T * G,
                                      T * H, t > 0 ? hs + (t - 1) * H : h0, w_hh, B, t > 0 ? T * H : H};
                    sn_pool_for(c->pool, H, 64, lstm_step_fused, &q);
                }
            PROF(P_FWD_LOOP, t0);
            continue;
        }
        for (int64_t t = 0; t < T; t++) {
            lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : c0, H, T * G, T * H,
                              t > 0 ? hs + (t - 1) * H : h0, w_hh, B, t > 0 ? T * H : H};
            if (q.hp) /* gates[:,t] += h[:,t-1] w_hh^T */
                sn_sgemm(c->pool, false, true, B, G, H, 1.0f, q.hp, q.ps, w_hh, H, 1.0f, gates + t * G, T * G);
            sn_pool_for(c->pool, B * H, CELL_GRAIN, lstm_cell_fwd, &q);
        }
    }
    return SN_OK;
}

typedef struct {
    float *dg;          /* dG of step t (pre-activation), row b at + b*gs */
    const float *g;     /* activated gates of step t */
    const float *cc, *cp; /* c of steps t and t-1 (cp NULL at t = 0) */
    const float *dho;   /* dL/dh from above at step t, row b at + b*hs */
    const float *dhr;   /* dL/dh from step t+1 [B,H] (NULL at T-1) */
    float *dc;          /* [B,H]: dL/dc_t in, dL/dc_{t-1} out */
    int64_t H, gs, hs;
    /* fused step only: dhr = dG_{t+1} w_hh for the task's hidden units, then the cells */
    const float *dgn;   /* dG of step t+1 (NULL at T-1) */
    const float *wt;    /* w_hh^T [H, G] */
    float *dhw;         /* [B,H] written by the product (= dhr) */
    int64_t B;
    const float *wp;    /* w_hh as [H, G] panels (instead of wt), or NULL */
} lstm_bwd_job;

static void lstm_cell_bwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_bwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        const float *g = q->g + b * q->gs;
        float *dg = q->dg + b * q->gs;
        float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        float dh = q->dho[b * q->hs + j] + (q->dhr ? q->dhr[b * H + j] : 0.0f);
        float tc = tanhf(q->cc[b * q->hs + j]);
        float cp = q->cp ? q->cp[b * q->hs + j] : 0.0f;
        float dc = q->dc[b * H + j] + dh * o * (1.0f - tc * tc);
        dg[j] = dc * gg * i * (1.0f - i);
        dg[H + j] = dc * cp * f * (1.0f - f);
        dg[2 * H + j] = dc * i * (1.0f - gg * gg);
        dg[3 * H + j] = dh * tc * o * (1.0f - o);
        q->dc[b * H + j] = dc * f;
    })
}

#ifdef SN_VM_X86
__attribute__((target("avx512f"))) static void lstm_cell_bwd_avx512(const lstm_bwd_job *q, int64_t b, int64_t j0,
                                                                   int64_t j1) {
    int64_t H = q->H;
    const float *g = q->g + b * q->gs, *cc = q->cc + b * q->hs, *cpr = q->cp ? q->cp + b * q->hs : NULL;
    const float *dho = q->dho + b * q->hs, *dhr = q->dhr ? q->dhr + b * H : NULL;
    float *dg = q->dg + b * q->gs, *dcp = q->dc + b * H;
    __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 i = _mm512_maskz_loadu_ps(m, g + j), f = _mm512_maskz_loadu_ps(m, g + H + j);
        __m512 gg = _mm512_maskz_loadu_ps(m, g + 2 * H + j), o = _mm512_maskz_loadu_ps(m, g + 3 * H + j);
        __m512 dh = _mm512_maskz_loadu_ps(m, dho + j);
        if (dhr) dh = _mm512_add_ps(dh, _mm512_maskz_loadu_ps(m, dhr + j));
        __m512 tc = sn_tanh512(_mm512_maskz_loadu_ps(m, cc + j));
        __m512 cp = cpr ? _mm512_maskz_loadu_ps(m, cpr + j) : _mm512_setzero_ps();
        __m512 dho_ = _mm512_mul_ps(dh, o);
        __m512 dc = _mm512_fmadd_ps(dho_, _mm512_fnmadd_ps(tc, tc, one), _mm512_maskz_loadu_ps(m, dcp + j));
        _mm512_mask_storeu_ps(dg + j, m, _mm512_mul_ps(_mm512_mul_ps(dc, gg), _mm512_mul_ps(i, _mm512_sub_ps(one, i))));
        _mm512_mask_storeu_ps(dg + H + j, m,
                              _mm512_mul_ps(_mm512_mul_ps(dc, cp), _mm512_mul_ps(f, _mm512_sub_ps(one, f))));
        _mm512_mask_storeu_ps(dg + 2 * H + j, m, _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(gg, gg, one)));
        _mm512_mask_storeu_ps(dg + 3 * H + j, m,
                              _mm512_mul_ps(_mm512_mul_ps(dh, tc), _mm512_mul_ps(o, _mm512_sub_ps(one, o))));
        _mm512_mask_storeu_ps(dcp + j, m, _mm512_mul_ps(dc, f));
    }
}
#endif

/* one backward timestep for hidden units [j0, j1): dhr = dG_{t+1} w_hh (own columns
 * only, all of dG_{t+1} was written by the previous step), then the cells of step t */
static void lstm_bwd_step_fused(void *arg, int64_t j0, int64_t j1, int tid) {
    const lstm_bwd_job *q = arg;
    int64_t H = q->H;
#ifdef SN_SKINNY_X86
    if (q->dgn && q->wp) skinny_packed(q->dgn, q->gs, q->B, q->wp, 4 * H, q->dhw, H, j0, j1, false);
    else
#endif
    if (q->dgn) skinny_nt(q->dgn, q->gs, q->B, q->wt, 4 * H, q->dhw, H, j0, j1, false);
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        for (int64_t b = 0; b < q->B; b++) lstm_cell_bwd_avx512(q, b, j0, j1);
        return;
    }
#endif
    for (int64_t b = 0; b < q->B; b++) lstm_cell_bwd(arg, b * H + j0, b * H + j1, tid);
}

typedef struct {
    float *dgs;
    const float *gates, *cs, *dho;
    float *dhr, *dc;
    const float *wt;
    int64_t H, T, B;
    const float *wp;
} lstm_bwd_region;

/* all backward timesteps of one layer on thread tid: its hidden units' columns of
 * dh/dc and gate columns of dG; one barrier per step (dG_t complete before step t-1
 * reads all of it) */
static void lstm_bwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const lstm_bwd_region *r = arg;
    int64_t H = r->H, T = r->T, G = 4 * H, j0, j1;
    unit_range(H, tid, nth, &j0, &j1);
    for (int64_t t = T - 1; t >= 0; t--) {
        lstm_bwd_job q = {r->dgs + t * G, r->gates + t * G, r->cs + t * H, t > 0 ? r->cs + (t - 1) * H : NULL,
                          r->dho + t * H, t < T - 1 ? r->dhr : NULL, r->dc, H, T * G, T * H,
                          t < T - 1 ? r->dgs + (t + 1) * G : NULL, r->wt, r->dhr, r->B, r->wp};
        if (j0 < j1) lstm_bwd_step_fused(&q, j0, j1, tid);
        if (t > 0) {
            for (int k = 0; k < 4; k++) {
                prefetch_rows(r->gates + (t - 1) * G + k * H, r->B, T * G, j0, j1);
                prefetch_rows(r->dgs + (t - 1) * G + k * H, r->B, T * G, j0, j1);
            }
            prefetch_rows(r->dho + (t - 1) * H, r->B, T * H, j0, j1);
            if (t > 1) prefetch_rows(r->cs + (t - 2) * H, r->B, T * H, j0, j1);
            sn_barrier_wait(bar);
        }
    }
}

static int64_t rnn_grad_offset(const sn_tensor *bwd, int gates, int seg) {
    const sn_tensor *x = bwd->src[1];
    return sn_rnn_grad_offset(gates, x->shape[0], x->shape[1], x->shape[2], bwd->ip[1], bwd->ip[0], seg);
}

static sn_status lstm_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    /* the dh buffers: the node's planner-allocated scratch; dG overwrites the forward's
     * gates (each read before written, by the same thread): sn_rnn_bwd_scratch_offset */
    float *sc = sn_extra_ptr(node);
    float *dhbuf = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 1);
    float *dhr = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 2);
    float *dc = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 3);
    bool skinny = use_skinny(B);
    bool packed = skinny && use_region() && use_packed(B);
    float *wt = NULL;
    bool huge = false;
    if (skinny) {
        wt = wpack_get(c, (size_t)(panels_of(H) * PANEL * G), &huge);
        if (!wt) return SN_ERR_NOMEM;
    }
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(fwd, l - 1);
        const float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        float *dgs = (float *)gates; /* dG in place of the gates */
        const float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        const float *hs = sn_rnn_h(fwd, l);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        memset(dc, 0, (size_t)(B * H) * sizeof *dc);
        if (packed) pack_panels(c, wt, w_hh, H, G, 1, H); /* dG_t w_hh: op[n=j, k=g] = w_hh[g, j] */
        else if (skinny) transpose(c, wt, w_hh, G, H); /* dG_t w_hh = dG_t (w_hh^T)^T: rows of w_hh^T stream */
        double t0 = prof_now();
        if (skinny && use_region()) {
            lstm_bwd_region r = {dgs, gates, cs, dho, dhr, dc, wt, H, T, B, packed ? wt : NULL};
            sn_pool_region(c->pool, lstm_bwd_thread, &r);
        } else if (skinny) {
            for (int64_t t = T - 1; t >= 0; t--) {
                lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                                  dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H,
                                  t < T - 1 ? dgs + (t + 1) * G : NULL, wt, dhr, B};
                sn_pool_for(c->pool, H, 64, lstm_bwd_step_fused, &q);
            }
        } else
        for (int64_t t = T - 1; t >= 0; t--) {
            lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                              dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, lstm_cell_bwd, &q);
            if (t == 0) break;
            /* dh_{t-1} = dG_t w_hh */
            if (skinny) step_gemm_nt(c, B, H, G, dgs + t * G, T * G, wt, dhr, H, false);
            else sn_sgemm(c->pool, false, false, B, H, G, 1.0f, dgs + t * G, T * G, w_hh, H, 0.0f, dhr, H);
        }
        float *dw_ih = out + rnn_grad_offset(node, 4, 1 + 4 * l), *dw_hh = out + rnn_grad_offset(node, 4, 2 + 4 * l);
        float *db_ih = out + rnn_grad_offset(node, 4, 3 + 4 * l), *db_hh = out + rnn_grad_offset(node, 4, 4 + 4 * l);
        PROF(P_BWD_LOOP, t0);
        recurrent_wgrad(c, dw_hh, dgs, hs, B, T, G, H);
        sn_sgemm(c->pool, true, false, G, in, BT, 1.0f, dgs, G, xin, in, 0.0f, dw_ih, in);
        colsum(c, db_ih, dgs, BT, G);
        memcpy(db_hh, db_ih, (size_t)G * sizeof *db_hh);
        PROF(P_BWD_WGRAD, t0);
        if (l > 0) sn_sgemm(c->pool, false, false, BT, H, G, 1.0f, dgs, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_sgemm(c->pool, false, false, BT, I, G, 1.0f, dgs, G, w_ih, I, 0.0f, out, I);
        PROF(P_BWD_DX, t0);
    }
    wpack_put(huge);
    return SN_OK;
}

/* ------------------------------------------------------------------ GRU */

typedef struct {
    float *g;           /* gates of step t: input projections in, activated r,z,n out */
    const float *gh;    /* [B,3H] h_{t-1} w_hh^T + b_hh */
    float *hn, *h;      /* hn, h of step t, row b at + b*hs */
    const float *hp;    /* h_{t-1} (NULL at t = 0) */
    int64_t H, gs, hs;
    int64_t ps;         /* row stride of hp */
} gru_fwd_job;

static void gru_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const gru_fwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        const float *gh = q->gh + b * 3 * H;
        float r = sigm(g[j] + gh[j]), z = sigm(g[H + j] + gh[H + j]);
        float hn = gh[2 * H + j];
        float n = tanhf(g[2 * H + j] + r * hn);
        float hp = q->hp ? q->hp[b * q->ps + j] : 0.0f;
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = n;
        q->hn[b * q->hs + j] = hn;
        q->h[b * q->hs + j] = (1.0f - z) * n + z * hp;
    })
}

static sn_status gru_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H;
    float *ex = sn_extra_ptr(node);
    float *gh = sn_cpu_scratch(c, (size_t)(B * G));
    if (!gh) return SN_ERR_NOMEM;
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(node, l - 1);
        float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        float *hs = sn_rnn_h(node, l); /* the last layer writes the output directly */
        input_proj(c, gates, xin, w_ih, b_ih, NULL, B * T, in, G);
        const float *h0 = node->ip[2] ? (const float *)node->src[1 + 4 * layers]->data + l * B * H : NULL;
        for (int64_t t = 0; t < T; t++) {
            for (int64_t b = 0; b < B; b++) memcpy(gh + b * G, b_hh, (size_t)G * sizeof *gh);
            const float *hp = t > 0 ? hs + (t - 1) * H : h0;
            int64_t ps = t > 0 ? T * H : H;
            if (hp) step_gemm_nt(c, B, G, H, hp, ps, w_hh, gh, G, true);
            gru_fwd_job q = {gates + t * G, gh, hns + t * H, hs + t * H, hp, H, T * G, T * H, ps};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, gru_cell_fwd, &q);
        }
    }
    return SN_OK;
}

typedef struct {
    float *dgx, *dgh;   /* dL/d(input projection), dL/d(h w_hh^T + b_hh) of step t, row b at + b*gs */
    const float *g, *hn, *hp; /* saved r,z,n; hn; h_{t-1} (NULL at t = 0) */
    const float *dho;   /* dL/dh from above at step t */
    float *dhr;         /* [B,H]: dL/dh_t from step t+1 in (valid when has_dhr), the direct part z*dh out */
    int has_dhr;
    int64_t H, gs, hs;
} gru_bwd_job;

static void gru_cell_bwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const gru_bwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        const float *g = q->g + b * q->gs;
        float *dgx = q->dgx + b * q->gs, *dgh = q->dgh + b * q->gs;
        float r = g[j], z = g[H + j], n = g[2 * H + j];
        float hn = q->hn[b * q->hs + j];
        float hp = q->hp ? q->hp[b * q->hs + j] : 0.0f;
        float dh = q->dho[b * q->hs + j] + (q->has_dhr ? q->dhr[b * H + j] : 0.0f);
        float dnp = dh * (1.0f - z) * (1.0f - n * n);
        float dzp = dh * (hp - n) * z * (1.0f - z);
        float drp = dnp * hn * r * (1.0f - r);
        dgx[j] = drp;
        dgx[H + j] = dzp;
        dgx[2 * H + j] = dnp;
        dgh[j] = drp;
        dgh[H + j] = dzp;
        dgh[2 * H + j] = dnp * r;
        q->dhr[b * H + j] = dh * z;
    })
}

static sn_status gru_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    /* planner-allocated scratch; dGx overwrites the forward's gates (sn_rnn_bwd_scratch_offset) */
    float *sc = sn_extra_ptr(node);
    float *dgh = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 0);
    float *dhbuf = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 1);
    float *dhr = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 2);
    bool skinny = use_skinny(B);
    float *wt = NULL;
    if (skinny) {
        wt = sn_cpu_scratch(c, (size_t)(G * H));
        if (!wt) return SN_ERR_NOMEM;
    }
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(fwd, l - 1);
        const float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        float *dgx = (float *)gates; /* dGx in place of the gates */
        const float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        const float *hs = sn_rnn_h(fwd, l);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        if (skinny) transpose(c, wt, w_hh, G, H);
        for (int64_t t = T - 1; t >= 0; t--) {
            gru_bwd_job q = {dgx + t * G, dgh + t * G, gates + t * G, hns + t * H, t > 0 ? hs + (t - 1) * H : NULL,
                             dho + t * H, dhr, t < T - 1, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, gru_cell_bwd, &q);
            if (t == 0) break;
            /* dh_{t-1} = z*dh + dGh_t w_hh */
            if (skinny) step_gemm_nt(c, B, H, G, dgh + t * G, T * G, wt, dhr, H, true);
            else sn_sgemm(c->pool, false, false, B, H, G, 1.0f, dgh + t * G, T * G, w_hh, H, 1.0f, dhr, H);
        }
        float *dw_ih = out + rnn_grad_offset(node, 3, 1 + 4 * l), *dw_hh = out + rnn_grad_offset(node, 3, 2 + 4 * l);
        float *db_ih = out + rnn_grad_offset(node, 3, 3 + 4 * l), *db_hh = out + rnn_grad_offset(node, 3, 4 + 4 * l);
        recurrent_wgrad(c, dw_hh, dgh, hs, B, T, G, H);
        sn_sgemm(c->pool, true, false, G, in, BT, 1.0f, dgx, G, xin, in, 0.0f, dw_ih, in);
        colsum(c, db_ih, dgx, BT, G);
        colsum(c, db_hh, dgh, BT, G);
        if (l > 0) sn_sgemm(c->pool, false, false, BT, H, G, 1.0f, dgx, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_sgemm(c->pool, false, false, BT, I, G, 1.0f, dgx, G, w_ih, I, 0.0f, out, I);
    }
    return SN_OK;
}

/* Last-timestep h or c of every layer, from the forward's saved state. */
static sn_status rnn_state(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *r = node->src[0];
    int layers = r->ip[0], part = node->ip[0] == 1 ? 1 : 2;
    int64_t H = r->ip[1], B = r->shape[0], T = r->shape[1];
    const float *ex = sn_extra_ptr(r);
    float *out = node->data;
    for (int l = 0; l < layers; l++) {
        const float *src = part == 1 ? ex + sn_lstm_extra_offset(B, T, H, l, 1) : sn_rnn_h(r, l);
        for (int64_t b = 0; b < B; b++)
            memcpy(out + (l * B + b) * H, src + (b * T + T - 1) * H, (size_t)H * sizeof *out);
    }
    return SN_OK;
}

sn_status sn_cpu_rnn(sn_cpu *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_LSTM: return lstm_forward(c, node);
    case SN_OP_LSTM_BWD: return lstm_backward(c, node);
    case SN_OP_GRU: return gru_forward(c, node);
    case SN_OP_GRU_BWD: return gru_backward(c, node);
    case SN_OP_RNN_STATE: return rnn_state(c, node);
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_rnn: unexpected op %s", sn_op_name(node->op));
    }
}
