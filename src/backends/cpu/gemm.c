/* sgemm: the BLAS when there is one, else a blocked C GEMM over the pool. */
#include "backends/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#ifdef SN_HAVE_CBLAS
#if defined(SN_HAVE_ACCELERATE)
#include <Accelerate/Accelerate.h>
#elif defined(SN_CBLAS_NO_HEADER)
enum CBLAS_ORDER { CblasRowMajor = 101 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, float,
                 const float *, int, const float *, int, float, float *, int);
#else
#include <cblas.h>
#endif
#endif

#ifndef SN_HAVE_CBLAS
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
#endif

#ifdef SN_HAVE_CBLAS
/* Optional (SN_BLAS_SPLIT=1): the BLAS runs single-threaded and sn_sgemm splits C
 * over our pool. OpenBLAS's own workers spin-yield for ~0.1 s after every call
 * (THREAD_TIMEOUT) on the cores our pool needs next; but per-task single-threaded
 * calls repack the shared operand, and measured slower than OpenBLAS's threading
 * with OPENBLAS_THREAD_TIMEOUT=4 in the environment, so this is off by default. */
typedef struct {
    bool ta, tb, split_n;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb;
    float *C;
    int64_t ldc;
} blas_job;

static void blas_1t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* blocks [b, e) of 16 rows or columns of C */
static void blas_part(void *arg, int64_t b, int64_t e, int tid) {
    const blas_job *j = arg;
    if (j->split_n) {
        int64_t n0 = b * 16, n1 = e * 16 < j->N ? e * 16 : j->N;
        blas_1t(j->ta, j->tb, j->M, n1 - n0, j->K, j->alpha, j->A, j->lda, j->tb ? j->B + n0 * j->ldb : j->B + n0,
                j->ldb, j->beta, j->C + n0, j->ldc);
    } else {
        int64_t m0 = b * 16, m1 = e * 16 < j->M ? e * 16 : j->M;
        blas_1t(j->ta, j->tb, m1 - m0, j->N, j->K, j->alpha, j->ta ? j->A + m0 : j->A + m0 * j->lda, j->lda, j->B,
                j->ldb, j->beta, j->C + m0 * j->ldc, j->ldc);
    }
}

int sn_blas_split = -1; /* read by cpu_backend.c when it sets OpenBLAS's threads */

bool sn_gemm_split_enabled(void) {
    if (sn_blas_split < 0) {
        const char *e = getenv("SN_BLAS_SPLIT");
        sn_blas_split = e && *e == '1';
    }
    return sn_blas_split;
}
#endif

void sn_sgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef SN_HAVE_CBLAS
    int nt = sn_pool_size(p);
    if (sn_gemm_split_enabled() && nt > 1 && K > 0 && M * N * K >= (int64_t)1 << 18) {
        /* split the longer side of C in 16-wide blocks, at least ~2^17 MACs a task */
        blas_job j = {trans_a, trans_b, N >= M, M, N, K, alpha, beta, A, B, lda, ldb, C, ldc};
        int64_t blocks = ((j.split_n ? N : M) + 15) / 16;
        int64_t per_block = 16 * (j.split_n ? M : N) * K;
        int64_t grain = ((int64_t)1 << 17) / per_block + 1;
        sn_pool_for(p, blocks, grain, blas_part, &j);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int64_t n = 0; n < N; n++) c[n] *= beta;
    }
    if (K <= 0) return;
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, A, B, lda, ldb, C, ldc};
    sn_pool_for(p, M, 8, gemm_rows, &j);
#endif
}
