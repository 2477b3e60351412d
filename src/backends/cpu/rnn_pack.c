/* CPU RNN kernels: w_hh packed into panels for the AVX-512 packed skinny GEMM, and
 * the buffer on huge pages that holds it. */
#include "backends/cpu/rnn_internal.h"

#include <stdlib.h>
#ifdef __linux__
#include <stdatomic.h>
#include <sys/mman.h>
#endif

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

float *sn_rnn_wpack_get(sn_cpu *c, size_t n, bool *huge) {
    *huge = false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    static int huge_sw = -1;
    int on = sn_cpu_switch_on(&huge_sw, "SN_RNN_HUGE");
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

void sn_rnn_wpack_put(bool huge) {
#ifdef __linux__
    if (huge) atomic_store(&g_huge_busy, 0);
#endif
}

/* ------------------------------------------------ packed skinny GEMM (AVX-512)
 * The dot-product kernels of rnn_vec.c end every 4 weight rows with horizontal
 * sums, and a thread's rows of w_hh^T sit 16 KB apart (few L2 sets). Packed into
 * panels of 16 output columns, k-major (P[panel][k][16], one cache line per k),
 * each thread streams its own contiguous panels: per k, 4 panel loads, 4 broadcasts
 * of A[b,k] and 16 FMAs straight into the outputs, no reductions. */
#define PANEL 16

static int64_t panels_of(int64_t N) { return (N + PANEL - 1) / PANEL; }

int64_t sn_rnn_packed_floats(int64_t N, int64_t K) { return panels_of(N) * PANEL * K; }

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
void sn_rnn_pack_panels(sn_cpu *c, float *P, const float *W, int64_t N, int64_t K, int64_t sn, int64_t sk) {
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
__attribute__((target("avx512f"))) void sn_rnn_skinny_packed(const float *A, int64_t lda, int64_t B,
                                                            const float *P, int64_t K, float *C, int64_t ldc,
                                                            int64_t n0, int64_t n1, bool acc) {
    /* a block of 4 panels (256 KB at K = 1024) is read from L3 once and from L2 for
     * every further group of 4 batch rows */
    int64_t n = n0;
    for (; n + 4 * PANEL <= n1; n += 4 * PANEL) {
        const float *p0 = P + (n / PANEL) * K * PANEL, *p1 = p0 + K * PANEL, *p2 = p1 + K * PANEL,
                    *p3 = p2 + K * PANEL;
        for (int64_t b0 = 0; b0 < B; b0 += 4) {
            int nb = B - b0 < 4 ? (int)(B - b0) : 4;
            const float *a[4];
            for (int b = 0; b < 4; b++) a[b] = A + (b0 + (b < nb ? b : 0)) * lda;
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
    }
    for (; n < n1; n += PANEL) { /* leftover panels, the last one maybe partial */
        const float *pp = P + (n / PANEL) * K * PANEL;
        __mmask16 m = n1 - n >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);
        for (int64_t b0 = 0; b0 < B; b0 += 4) {
            int nb = B - b0 < 4 ? (int)(B - b0) : 4;
            const float *a[4];
            for (int b = 0; b < 4; b++) a[b] = A + (b0 + (b < nb ? b : 0)) * lda;
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

/* ------------------------------------------------ ping-pong traversal
 * A thread's share of the packed w_hh (4 MB per step at H=1024, 2 threads, bf16)
 * overflows its L2 (1-2 MB): walked in the same order every step, LRU evicts each
 * panel before it comes round again, so every step streams all of it from L3. Walked
 * forward on even steps and backward on odd ones, the panels a thread read last at
 * step t are the first it reads at t+1, still in its L2. Only the order in which
 * independent blocks of output columns are visited changes: each column's products
 * and their accumulation order are the same, so the results are bit-identical.
 * The reuse is per block of 4 panels over all of K, so it pays where a block is well
 * under the L2: on the 2-core EPYC (1 MB L2) at H=1024 the bf16 loops (blocks of 128
 * and 512 KB) ran 12-14% faster and the f32 forward (256 KB) ~10%, while the f32
 * backward (1 MB blocks) did not change. SN_CPU_RNN_PINGPONG=0 turns it off (read once). */
static int g_pingpong = -1;

bool sn_rnn_pingpong(void) {
    if (g_pingpong < 0) {
        const char *e = getenv("SN_CPU_RNN_PINGPONG");
        g_pingpong = !(e && *e == '0');
    }
    return g_pingpong;
}

void sn_rnn_pingpong_set(int on) { g_pingpong = on < 0 ? -1 : on != 0; }

#ifdef SN_SKINNY_X86
/* the blocks of 4 panels (64 columns) of [n0, n1), last first: the kernel's own
 * blocking, so each block runs exactly as inside the forward call */
#define REV_BLOCKS(n0, n1, call)                                                \
    for (int64_t s_ = (n0) + ((n1) - (n0) - 1) / (4 * PANEL) * (4 * PANEL); s_ >= (n0); s_ -= 4 * PANEL) { \
        int64_t e_ = s_ + 4 * PANEL < (n1) ? s_ + 4 * PANEL : (n1);             \
        call;                                                                   \
    }

void sn_rnn_skinny_packed_dir(const float *A, int64_t lda, int64_t B, const float *P, int64_t K, float *C,
                              int64_t ldc, int64_t n0, int64_t n1, bool acc, bool rev) {
    if (!rev || n1 <= n0) {
        sn_rnn_skinny_packed(A, lda, B, P, K, C, ldc, n0, n1, acc);
        return;
    }
    REV_BLOCKS(n0, n1, sn_rnn_skinny_packed(A, lda, B, P, K, C, ldc, s_, e_, acc))
}

void sn_rnn_skinny_packed_bf16_dir(const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP,
                                   float *C, int64_t ldc, int64_t n0, int64_t n1, bool acc, bool rev) {
    if (!rev || n1 <= n0) {
        sn_rnn_skinny_packed_bf16(A, lda, B, P, KP, C, ldc, n0, n1, acc);
        return;
    }
    REV_BLOCKS(n0, n1, sn_rnn_skinny_packed_bf16(A, lda, B, P, KP, C, ldc, s_, e_, acc))
}
#endif

/* the packed path: AVX-512 and not turned off (SN_SKINNY_PACKED=0) */
bool sn_rnn_use_packed(int64_t B) {
    static int on = -1;
    ppf_init();
    if (on < 0) {
        const char *e = getenv("SN_SKINNY_PACKED");
        on = sn_rnn_skinny_level() == 2 && !(e && *e == '0');
    }
    return on && B <= sn_rnn_skinny_max_b();
}


/* ------------------------------------------------ packed bf16 w_hh (mixed precision)
 * The same panels of 16 output columns, but per k-pair: 16 u32 = the bf16 of (n, 2kp)
 * in the low half and of (n, 2kp+1) in the high half, one cache line per two k: half
 * the bytes streamed per step. A comes in as k-pairs too (sn_bf16_pairs), so each
 * vdpbf16ps does two k steps of 16 columns with f32 accumulation. */
int64_t sn_rnn_packed16_words(int64_t N, int64_t K) { return panels_of(N) * PANEL * ((K + 1) / 2); }

typedef struct {
    uint32_t *P;
    const float *W;
    int64_t N, K, sn, sk;
} pack16_job;

#ifdef SN_SKINNY_X86
/* pack16_part where W's k-th row holds the columns side by side (sn == 1: the
 * backward's w_hh^T): per k-pair, the panel's 16 values of rows 2kp and 2kp+1 zipped
 * into one line, 8 panels at a time so each row is read 512 B in a row. The same
 * conversion as sn_bf16_pairs (vcvtne2ps2bf16), the same bits as pack16_panel. */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static void pack16_kmajor(const pack16_job *j,
                                                                                         int64_t p0, int64_t p1) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int64_t KP = (j->K + 1) / 2;
    for (int64_t g0 = p0; g0 < p1; g0 += 8) {
        int64_t g1 = g0 + 8 < p1 ? g0 + 8 : p1;
        for (int64_t kp = 0; kp < KP; kp++) {
            const float *s0 = j->W + 2 * kp * j->sk, *s1 = s0 + j->sk;
            bool odd = 2 * kp + 1 < j->K;
            for (int64_t p = g0; p < g1; p++) {
                int64_t nn = j->N - p * PANEL < PANEL ? j->N - p * PANEL : PANEL;
                __mmask16 m = nn == PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << nn) - 1);
                __m512 lo = _mm512_maskz_loadu_ps(m, s0 + p * PANEL);
                __m512 hi = odd ? _mm512_maskz_loadu_ps(m, s1 + p * PANEL) : _mm512_setzero_ps();
                __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16 bf16, then hi's */
                _mm512_storeu_si512(j->P + p * KP * PANEL + kp * PANEL, _mm512_permutexvar_epi16(idx, v));
            }
        }
    }
}
#endif

/* k-pairs [kp0, KP) of panel p, one k-pair at a time (any layout, any CPU) */
static void pack16_panel(const pack16_job *j, int64_t p, int64_t kp0) {
    int64_t KP = (j->K + 1) / 2;
    float row[2 * PANEL];
    uint32_t *d = j->P + p * KP * PANEL;
    int64_t nn = j->N - p * PANEL < PANEL ? j->N - p * PANEL : PANEL;
    for (int64_t kp = kp0; kp < KP; kp++) {
        for (int64_t i = 0; i < PANEL; i++) {
            const float *w = j->W + (p * PANEL + i) * j->sn;
            int64_t k = 2 * kp;
            row[2 * i] = i < nn ? w[k * j->sk] : 0.0f;
            row[2 * i + 1] = i < nn && k + 1 < j->K ? w[(k + 1) * j->sk] : 0.0f;
        }
        sn_bf16_pairs(d + kp * PANEL, row, 2 * PANEL);
    }
}

#ifdef SN_SKINNY_X86
/* pack16_part where W's rows are the panel's columns (sk == 1: the forward's w_hh):
 * per panel, 16 k-pairs of its 16 rows at a time (32 floats a row -> 16 pairs, one
 * vcvtne2ps2bf16 as in sn_bf16_pairs), transposed through a 1 KB tile; the k-pairs
 * past the last whole 16 go through pack16_panel. */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) static void pack16_rowmajor(const pack16_job *j,
                                                                                           int64_t p0, int64_t p1) {
    int64_t KP = (j->K + 1) / 2;
    uint32_t tile[PANEL][PANEL];
    for (int64_t p = p0; p < p1; p++) {
        uint32_t *d = j->P + p * KP * PANEL;
        int64_t nn = j->N - p * PANEL < PANEL ? j->N - p * PANEL : PANEL, kp0 = 0;
        for (; 2 * kp0 + 2 * PANEL <= j->K; kp0 += PANEL) {
            for (int64_t i = 0; i < PANEL; i++) {
                __m512i v = _mm512_setzero_si512();
                if (i < nn) {
                    const float *w = j->W + (p * PANEL + i) * j->sn + 2 * kp0;
                    v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(w + PANEL), _mm512_loadu_ps(w));
                }
                _mm512_storeu_si512(tile[i], v);
            }
            for (int64_t q = 0; q < PANEL; q++)
                for (int64_t i = 0; i < PANEL; i++) d[(kp0 + q) * PANEL + i] = tile[i][q];
        }
        pack16_panel(j, p, kp0);
    }
}
#endif

/* The bf16 panels are packed at every LSTM call (twice per layer and training step).
 * The generic loop, one sn_bf16_pairs call (and its getenv) per k-pair and strided
 * reads, took ~2 ms (forward) and ~3.5 ms (backward, w_hh^T) per layer at H=1024 from
 * a cold cache on the 2-core EPYC; the two layouts' own loops ~0.4 and ~0.6 ms. */
static void pack16_part(void *arg, int64_t p0, int64_t p1, int tid) {
    const pack16_job *j = arg;
#ifdef SN_SKINNY_X86
    if (j->sk == 1 && sn_cpu_bf16_isa()) {
        pack16_rowmajor(j, p0, p1);
        return;
    }
    if (j->sn == 1 && sn_cpu_bf16_isa()) {
        pack16_kmajor(j, p0, p1);
        return;
    }
#endif
    for (int64_t p = p0; p < p1; p++) pack16_panel(j, p, 0);
}

void sn_rnn_pack_panels_bf16(sn_cpu *c, uint32_t *P, const float *W, int64_t N, int64_t K, int64_t sn, int64_t sk) {
    pack16_job j = {P, W, N, K, sn, sk};
    sn_pool_for(c->pool, panels_of(N), 4, pack16_part, &j);
}

/* The recurrent product on AMX tiles where the bf16 GEMM uses them (rnn_amx.h). With
 * AVX512-BF16 the loops were half arithmetic-bound (on a 2-core AMX Xeon, 41 GB/s of
 * w_hh against 56 for the f32 loops); on the tiles they stream at the f32 rate: the
 * bf16 LSTM's recurrent loops 28-35% faster there, the training step 15%.
 * SN_CPU_RNN_AMX=0 keeps them on AVX512-BF16 (read once); sn_rnn_amx_set overrides (tests). */
static _Atomic int g_rnn_amx = -1;

int sn_rnn_amx(void) {
    int m = atomic_load_explicit(&g_rnn_amx, memory_order_relaxed);
    if (m < 0) {
        const char *e = getenv("SN_CPU_RNN_AMX");
        m = e && *e == '0' ? 0 : sn_bgemm_amx_mode();
        atomic_store_explicit(&g_rnn_amx, m, memory_order_relaxed);
    }
    return m;
}

void sn_rnn_amx_set(int mode) { atomic_store_explicit(&g_rnn_amx, mode < 0 ? -1 : mode, memory_order_relaxed); }

#ifdef SN_SKINNY_X86
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) void
sn_rnn_skinny_packed_bf16(const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP, float *C,
                          int64_t ldc, int64_t n0, int64_t n1, bool acc) {
    int amx = sn_rnn_amx();
    if (amx && KP % 16 == 0) { /* the tiles take 16 batch rows at a time */
        bool ok = true;
        for (int64_t b0 = 0; b0 < B && ok; b0 += 16)
            ok = sn_rnn_skinny_amx(amx, A + b0 * lda, lda, B - b0 < 16 ? B - b0 : 16, P, KP, C + b0 * ldc, ldc, n0,
                                   n1, acc);
        if (ok) return;
    }
    int64_t n = n0;
    for (; n + 4 * PANEL <= n1; n += 4 * PANEL) { /* as the f32 kernel: batch groups inside a block */
        const uint32_t *p0 = P + (n / PANEL) * KP * PANEL, *p1 = p0 + KP * PANEL, *p2 = p1 + KP * PANEL,
                       *p3 = p2 + KP * PANEL;
        for (int64_t b0 = 0; b0 < B; b0 += 4) {
            int nb = B - b0 < 4 ? (int)(B - b0) : 4;
            const uint32_t *a[4];
            for (int b = 0; b < 4; b++) a[b] = A + (b0 + (b < nb ? b : 0)) * lda;
            __m512 s[4][4];
            for (int b = 0; b < 4; b++)
                for (int r = 0; r < 4; r++) s[b][r] = _mm512_setzero_ps();
            for (int64_t k = 0; k < KP; k++) {
                __m512bh w0 = (__m512bh)_mm512_loadu_si512(p0 + k * PANEL);
                __m512bh w1 = (__m512bh)_mm512_loadu_si512(p1 + k * PANEL);
                __m512bh w2 = (__m512bh)_mm512_loadu_si512(p2 + k * PANEL);
                __m512bh w3 = (__m512bh)_mm512_loadu_si512(p3 + k * PANEL);
                for (int b = 0; b < 4; b++) {
                    __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[b][k]);
                    s[b][0] = _mm512_dpbf16_ps(s[b][0], w0, x);
                    s[b][1] = _mm512_dpbf16_ps(s[b][1], w1, x);
                    s[b][2] = _mm512_dpbf16_ps(s[b][2], w2, x);
                    s[b][3] = _mm512_dpbf16_ps(s[b][3], w3, x);
                }
            }
            for (int b = 0; b < nb; b++)
                for (int r = 0; r < 4; r++) {
                    float *cp = C + (b0 + b) * ldc + n + r * PANEL;
                    __m512 v = acc ? _mm512_add_ps(s[b][r], _mm512_loadu_ps(cp)) : s[b][r];
                    _mm512_storeu_ps(cp, v);
                }
        }
    }
    for (; n < n1; n += PANEL) {
        const uint32_t *pp = P + (n / PANEL) * KP * PANEL;
        __mmask16 m = n1 - n >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);
        for (int64_t b0 = 0; b0 < B; b0 += 4) {
            int nb = B - b0 < 4 ? (int)(B - b0) : 4;
            const uint32_t *a[4];
            for (int b = 0; b < 4; b++) a[b] = A + (b0 + (b < nb ? b : 0)) * lda;
            __m512 s[4];
            for (int b = 0; b < 4; b++) s[b] = _mm512_setzero_ps();
            for (int64_t k = 0; k < KP; k++) {
                __m512bh w = (__m512bh)_mm512_loadu_si512(pp + k * PANEL);
                for (int b = 0; b < 4; b++) s[b] = _mm512_dpbf16_ps(s[b], w, (__m512bh)_mm512_set1_epi32((int)a[b][k]));
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

typedef struct {
    const uint32_t *A, *P;
    float *C;
    int64_t lda, B, KP, N, ldc;
    bool acc;
} p16_job;

static void p16_part(void *arg, int64_t q0, int64_t q1, int tid) {
    const p16_job *j = arg;
    int64_t n0 = q0 * PANEL, n1 = q1 * PANEL < j->N ? q1 * PANEL : j->N;
#ifdef SN_SKINNY_X86
    sn_rnn_skinny_packed_bf16(j->A, j->lda, j->B, j->P, j->KP, j->C, j->ldc, n0, n1, j->acc);
#endif
}

void sn_rnn_step_gemm_p16(sn_cpu *c, int64_t B, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint32_t *P, float *C, int64_t ldc, bool acc, uint32_t *a16) {
    int64_t KP = (K + 1) / 2;
    for (int64_t b = 0; b < B; b++) sn_bf16_pairs(a16 + b * KP, A + b * lda, K);
    p16_job j = {a16, P, C, KP, B, KP, N, ldc, acc};
    sn_pool_for(c->pool, panels_of(N), 4, p16_part, &j);
}
