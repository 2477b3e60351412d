/* CPU RNN kernels: the GEMM building blocks shared by the LSTM and GRU passes (the
 * input projection, the per-step skinny recurrent GEMM with its AVX-512/AVX2
 * kernels, the weight-gradient GEMMs, column sums and the transpose of w_hh). */
#include "backends/cpu/rnn_internal.h"

#include <stdlib.h>
#include <string.h>

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
    sn_cpu_gemm(c, true, false, G, H, B * T - 1, 1.0f, dg + G, G, h, H, 0.0f, dw, H);
    if (B > 1)
        sn_cpu_gemm(c, true, false, G, H, B - 1, -1.0f, dg + T * G, T * G, h + (T - 1) * H, T * H, 1.0f, dw, H);
}

static int64_t grad_offset(const sn_tensor *bwd, int gates, int seg) {
    const sn_tensor *x = bwd->src[1];
    return sn_rnn_grad_offset(gates, x->shape[0], x->shape[1], x->shape[2], bwd->ip[1], bwd->ip[0], seg);
}

void sn_rnn_weight_grads(sn_cpu *c, sn_tensor *node, int gates, int l, const float *dgx, const float *dgh,
                         const float *xin, const float *hs) {
    const sn_tensor *x = node->src[1];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], G = gates * H, BT = B * T;
    int64_t in = l == 0 ? x->shape[2] : H;
    float *out = node->data;
    float *dw_ih = out + grad_offset(node, gates, 1 + 4 * l), *dw_hh = out + grad_offset(node, gates, 2 + 4 * l);
    float *db_ih = out + grad_offset(node, gates, 3 + 4 * l), *db_hh = out + grad_offset(node, gates, 4 + 4 * l);
    recurrent_wgrad(c, dw_hh, dgh, hs, B, T, G, H);
    sn_cpu_gemm(c, true, false, G, in, BT, 1.0f, dgx, G, xin, in, 0.0f, dw_ih, in);
    colsum(c, db_ih, dgx, BT, G);
    if (dgh == dgx) memcpy(db_hh, db_ih, (size_t)G * sizeof *db_hh);
    else colsum(c, db_hh, dgh, BT, G);
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
void sn_rnn_input_proj(sn_cpu *c, float *gates, const float *in, const float *w_ih, const float *b_ih,
                       const float *b_hh, int64_t BT, int64_t K, int64_t G) {
    bias_rows_job j = {gates, b_ih, b_hh, G};
    sn_pool_for(c->pool, BT, 16, bias_rows, &j);
    sn_cpu_gemm(c, false, true, BT, G, K, 1.0f, in, K, w_ih, K, 1.0f, gates, G);
}

/* ------------------------------------------------ skinny recurrent GEMM
 * The per-step products have only B (batch) rows: h_{t-1}[B,H] x w_hh^T. A BLAS
 * packs the whole 16 MB weight on every call for that; streaming the weight rows
 * once against up to 4 batch rows at a time is 2-3x faster at the prototype size.
 * Larger batches go through sn_sgemm, where packing pays. */
#ifndef SKINNY_PF
#define SKINNY_PF 256 /* prefetch distance in floats (0: off) */
#endif

#ifdef SN_SKINNY_X86
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
int sn_rnn_skinny_level(void) {
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

/* C[b, n] (+)= sum_k A[b,k] W[n,k] for all B rows (in groups of 4), n in [n0, n1). Past
 * 4 rows, W is walked in blocks of 64 rows (256 KB at K = 1024), each read from L3 once
 * and from L2 for the further groups; the blocks keep the kernels' 4- and 2-row
 * grouping from n0, so every output is computed as without them. */
void sn_rnn_skinny_nt(const float *A, int64_t lda, int64_t B, const float *W, int64_t K, float *C, int64_t ldc,
                      int64_t n0, int64_t n1, bool acc) {
#ifdef SN_SKINNY_X86
    int64_t blk = B > 4 ? 64 : n1 - n0;
    for (int64_t m0 = n0; m0 < n1; m0 += blk) {
        int64_t m1 = n1 - m0 < blk ? n1 : m0 + blk;
        for (int64_t b = 0; b < B; b += 4) {
            int nb = B - b < 4 ? (int)(B - b) : 4;
            if (sn_rnn_skinny_level() == 2) skinny4_avx512(A + b * lda, lda, nb, W, K, C + b * ldc, ldc, m0, m1, acc);
            else skinny_avx2(A + b * lda, lda, nb, W, K, C + b * ldc, ldc, m0, m1, acc);
        }
    }
#endif
}

static int64_t g_skinny_max_b = -1;
int64_t sn_rnn_skinny_max_b(void) {
    if (g_skinny_max_b < 0) {
        const char *e = getenv("SN_RNN_SKINNY_MAX_B");
        g_skinny_max_b = e && atoll(e) > 0 ? atoll(e) : SN_RNN_SKINNY_MAX_B;
    }
    return g_skinny_max_b;
}

void sn_rnn_skinny_max_b_set(int64_t b) { g_skinny_max_b = b < 0 ? -1 : b; }

bool sn_rnn_use_skinny(int64_t B) { return B <= sn_rnn_skinny_max_b() && sn_rnn_skinny_level() > 0; }

typedef struct {
    const float *A, *W;
    float *C;
    int64_t lda, B, K, ldc;
    bool acc;
} skinny_job;

static void skinny_part(void *arg, int64_t n0, int64_t n1, int tid) {
    const skinny_job *j = arg;
    sn_rnn_skinny_nt(j->A, j->lda, j->B, j->W, j->K, j->C, j->ldc, n0, n1, j->acc);
}

/* C[B,N] (+)= A[B,K] W[N,K]^T, skinny kernel over the pool or sn_sgemm */
void sn_rnn_step_gemm_nt(sn_cpu *c, int64_t B, int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                         float *C, int64_t ldc, bool acc) {
    if (sn_rnn_use_skinny(B)) {
        skinny_job j = {A, W, C, lda, B, K, ldc, acc};
        sn_pool_for(c->pool, N, 64, skinny_part, &j);
    } else {
        sn_cpu_gemm(c, false, true, B, N, K, 1.0f, A, lda, W, K, acc ? 1.0f : 0.0f, C, ldc);
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
void sn_rnn_transpose(sn_cpu *c, float *dst, const float *src, int64_t R, int64_t C) {
    transpose_job j = {dst, src, R, C};
    sn_pool_for(c->pool, C, 64, transpose_part, &j);
}
