/* sgemm: OpenBLAS (opened at run time), Accelerate on macOS, else a blocked C GEMM
 * over the pool. OpenBLAS is opened with dlopen rather than linked so that sinter
 * sets OPENBLAS_THREAD_TIMEOUT before the library reads it at load: by default its
 * workers spin-yield ~0.1 s after every call on the cores our pool needs next (the
 * LSTM's per-timestep loops ran 2-3x slower). It also lets one binary run where
 * OpenBLAS is missing. */
#include "backends/cpu/cpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(SN_HAVE_ACCELERATE)
#include <Accelerate/Accelerate.h>
#endif

#ifndef SN_OPENBLAS_PATH
#define SN_OPENBLAS_PATH "libopenblas.so.0"
#endif

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
static sgemm_fn g_sgemm;
static void (*g_set_threads)(int);
static char g_blas_name[64] = "builtin";
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void load_blas(void) {
#if defined(SN_HAVE_ACCELERATE)
    snprintf(g_blas_name, sizeof g_blas_name, "Accelerate");
#else
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0); /* 2^4 cycles: workers sleep at once */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* OpenBLAS's DYNAMIC_ARCH picks its kernels from the CPU model number; a CPU it
     * does not know (a newer model, or a VM that hides the model) can fall back to
     * Haswell or even SSE kernels, several times slower. Where the AVX-512 subset of
     * its SkylakeX kernels is there (and enabled by the OS), name that core unless
     * the user chose one. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
#endif
    const char *cands[] = {getenv("SINTER_OPENBLAS"), SN_OPENBLAS_PATH, "libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        if (!cands[i] || !*cands[i]) continue;
        void *h = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        g_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
        g_set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        if (g_sgemm) {
            char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
            const char *core = corename ? corename() : NULL;
            if (core && *core) snprintf(g_blas_name, sizeof g_blas_name, "OpenBLAS (%s)", core);
            else snprintf(g_blas_name, sizeof g_blas_name, "OpenBLAS");
            return;
        }
        dlclose(h);
    }
    sn_log(SN_LOG_WARN, "OpenBLAS not found (install libopenblas0 or set SINTER_OPENBLAS=/path/libopenblas.so.0): "
                        "matrix products use sinter's built-in GEMM, which is slower");
#endif
}

const char *sn_blas_name(void) {
    pthread_once(&g_once, load_blas);
    return g_blas_name;
}

/* SN_GEMM_SPLIT=1: the BLAS runs single-threaded and sn_sgemm splits each product
 * into column (or row) blocks over sinter's pool, one BLAS call per thread. For
 * where the BLAS's own threads synchronise badly (their waits call sched_yield,
 * which costs a lot under some hypervisors/sandboxes), at the price of each thread
 * packing the shared operand itself. */
static int gemm_split(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SN_GEMM_SPLIT");
        on = e && *e == '1';
    }
    return on;
}

static int g_blas_threads = 1; /* what sn_blas_set_threads last asked for */

void sn_blas_set_threads(int n) {
    pthread_once(&g_once, load_blas);
    g_blas_threads = gemm_split() ? 1 : n;
    if (g_set_threads) g_set_threads(g_blas_threads);
}

void sn_blas_serial(bool on) {
    pthread_once(&g_once, load_blas);
    if (g_set_threads && g_blas_threads != 1) g_set_threads(on ? 1 : g_blas_threads);
}

typedef struct {
    bool ta, tb, split_n;
    int64_t M, N, K, chunk;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb;
    float *C;
    int64_t ldc;
} split_job;

static void split_part(void *arg, int64_t c0, int64_t c1, int tid) {
    const split_job *j = arg;
    for (int64_t c = c0; c < c1; c++) {
        int64_t dim = j->split_n ? j->N : j->M, r0 = c * j->chunk, r1 = r0 + j->chunk < dim ? r0 + j->chunk : dim;
        if (r0 >= r1) continue;
        if (j->split_n) /* columns [r0, r1) of C and of op(B) */
            g_sgemm(ROW_MAJOR, j->ta ? TRANS : NO_TRANS, j->tb ? TRANS : NO_TRANS, (int)j->M, (int)(r1 - r0),
                    (int)j->K, j->alpha, j->A, (int)j->lda, j->tb ? j->B + r0 * j->ldb : j->B + r0, (int)j->ldb,
                    j->beta, j->C + r0, (int)j->ldc);
        else /* rows [r0, r1) of C and of op(A) */
            g_sgemm(ROW_MAJOR, j->ta ? TRANS : NO_TRANS, j->tb ? TRANS : NO_TRANS, (int)(r1 - r0), (int)j->N,
                    (int)j->K, j->alpha, j->ta ? j->A + r0 : j->A + r0 * j->lda, (int)j->lda, j->B, (int)j->ldb,
                    j->beta, j->C + r0 * j->ldc, (int)j->ldc);
    }
}

typedef struct {
    bool ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A, *B;
    int64_t lda, ldb;
    float *C;
    int64_t ldc;
} gemm_job;

#define BK 256
#define BN 512

static inline float at(const float *X, bool t, int64_t ld, int64_t r, int64_t c) {
    return t ? X[c * ld + r] : X[r * ld + c];
}

/* rows [b, e) of C; C already scaled by beta */
static void gemm_rows(void *arg, int64_t b, int64_t e, int tid) {
    gemm_job *j = arg;
    float bpack[BK * 64];
    for (int64_t n0 = 0; n0 < j->N; n0 += 64) {
        int64_t nn = j->N - n0 < 64 ? j->N - n0 : 64;
        for (int64_t k0 = 0; k0 < j->K; k0 += BK) {
            int64_t kk = j->K - k0 < BK ? j->K - k0 : BK;
            for (int64_t k = 0; k < kk; k++)
                for (int64_t n = 0; n < nn; n++) bpack[k * 64 + n] = at(j->B, j->tb, j->ldb, k0 + k, n0 + n);
            for (int64_t m = b; m < e; m++) {
                float acc[64] = {0};
                for (int64_t k = 0; k < kk; k++) {
                    float a = at(j->A, j->ta, j->lda, m, k0 + k);
                    const float *bp = bpack + k * 64;
                    for (int64_t n = 0; n < 64; n++) acc[n] += a * bp[n];
                }
                float *c = j->C + m * j->ldc + n0;
                for (int64_t n = 0; n < nn; n++) c[n] += j->alpha * acc[n];
            }
        }
    }
}

void sn_sgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#if defined(SN_HAVE_ACCELERATE)
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return;
#endif
    pthread_once(&g_once, load_blas);
    int nth = sn_pool_size(p);
    if (g_sgemm && gemm_split() && nth > 1 && (double)M * N * K >= (double)(1 << 21)) {
        /* split the larger of M, N: each thread then packs the smaller operand */
        bool split_n = N >= M;
        int64_t dim = split_n ? N : M, chunk = (dim + nth - 1) / nth;
        chunk = (chunk + 15) & ~(int64_t)15;
        if (dim > chunk) {
            split_job j = {trans_a, trans_b, split_n, M, N, K, chunk, alpha, beta, A, B, lda, ldb, C, ldc};
            sn_pool_for(p, (dim + chunk - 1) / chunk, 1, split_part, &j);
            return;
        }
    }
    if (g_sgemm) {
        g_sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)M, (int)N, (int)K, alpha, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int64_t n = 0; n < N; n++) c[n] *= beta;
    }
    if (K <= 0) return;
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, A, B, lda, ldb, C, ldc};
    sn_pool_for(p, M, 8, gemm_rows, &j);
}

void sn_sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#if defined(SN_HAVE_ACCELERATE)
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return;
#endif
    pthread_once(&g_once, load_blas);
    if (g_sgemm) {
        g_sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)M, (int)N, (int)K, alpha, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int64_t n = 0; n < N; n++) c[n] *= beta;
    }
    if (K <= 0) return;
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, A, B, lda, ldb, C, ldc};
    gemm_rows(&j, 0, M, 0);
}
