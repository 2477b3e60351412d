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
    const char *cands[] = {getenv("SINTER_OPENBLAS"), SN_OPENBLAS_PATH, "libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        if (!cands[i] || !*cands[i]) continue;
        void *h = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        g_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
        g_set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        if (g_sgemm) {
            snprintf(g_blas_name, sizeof g_blas_name, "OpenBLAS");
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

void sn_blas_set_threads(int n) {
    pthread_once(&g_once, load_blas);
    if (g_set_threads) g_set_threads(n);
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
