/* The CPU backend: a thread pool, sgemm, and one kernel file per op family. */
#ifndef SN_BACKENDS_CPU_H
#define SN_BACKENDS_CPU_H

#include "sinter/backend.h"

#include <stdlib.h>

typedef struct sn_pool sn_pool;
sn_pool *sn_pool_new(int nthreads);
void sn_pool_free(sn_pool *p);
int sn_pool_size(const sn_pool *p);
/* Calls fn(arg, begin, end, tid) over [0, n) split into at most pool-size chunks of
 * at least `grain` items; returns when all are done. Runs inline when n < 2*grain. */
typedef void (*sn_pool_fn)(void *arg, int64_t begin, int64_t end, int tid);
void sn_pool_for(sn_pool *p, int64_t n, int64_t grain, sn_pool_fn fn, void *arg);

/* A persistent parallel region: fn(arg, tid, nth, bar) runs once on each of nth
 * threads (nth = pool size, or 1 when nested / single-threaded); inside it
 * sn_barrier_wait(bar) waits for all nth threads (a spin barrier, ~1 µs), so a loop
 * of many short dependent phases (the LSTM's timesteps) pays one wake-up in all
 * instead of one sn_pool_for per phase. */
typedef struct sn_barrier sn_barrier;
typedef void (*sn_region_fn)(void *arg, int tid, int nth, sn_barrier *bar);
void sn_pool_region(sn_pool *p, sn_region_fn fn, void *arg);
void sn_barrier_wait(sn_barrier *bar);

/* Row-major C = alpha * op(A) @ op(B) + beta * C; op(A) is [M,K], op(B) is [K,N].
 * Through the BLAS when built with one (threads = the pool's size), else a blocked
 * C GEMM parallel over the pool. Call from the thread that owns the pool. */
void sn_sgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* One BLAS call on the calling thread, for use inside sn_pool_for tasks, between
 * sn_blas_serial(true) and sn_blas_serial(false) (which drop the BLAS to one thread
 * and restore it: a threaded BLAS called from several threads at once serialises). */
void sn_sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void sn_blas_serial(bool on);

/* bf16 GEMM (gemm_bf16.c), the same contract as sn_sgemm: op(A) and op(B) rounded
 * to bf16 (nearest even), products accumulated in f32, alpha, beta and C in f32.
 * Through AMX-BF16 or AVX512-BF16 where the CPU has it, else portable C (slow; the backend's bf16
 * mode refuses such a CPU). Parallel over the pool / on the calling thread. */
void sn_bgemm(sn_pool *p, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void sn_bgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* A developer switch on unless the environment sets `name` to 0, read once into
 * *cache (-1 until then): for the CPU kernels' A/B switches. */
static inline int sn_cpu_switch_on(int *cache, const char *name) {
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = !(e && *e == '0');
    }
    return *cache;
}
/* The CPU's bf16 instruction sets ("AVX512-BF16" or "AVX512-BF16, AMX-BF16"), NULL
 * without AVX512-BF16 (or when SN_CPU_NO_BF16=1 simulates that). */
const char *sn_cpu_bf16_isa(void);
/* The path sn_bgemm takes now: "AMX-BF16" (where the CPU and the kernel allow it and
 * SN_CPU_AMX is not 0), "AVX512-BF16", "portable C" (or the tests' AMX emulation). */
const char *sn_cpu_bgemm_path(void);
/* Where the bf16 products run on AMX tiles: 1 the real ones, 2 the tests' emulation
 * (SN_CPU_AMX_EMULATE=1), 0 not at all (no AMX-BF16, SN_CPU_AMX=0, or refused). */
int sn_bgemm_amx_mode(void);
/* The recurrent product C[b, n] (+)= sum_kp A[b, kp] . P[n, kp] of rnn_pack.c (A as
 * k-pairs, row stride lda u32; P its bf16 panels of 16 columns) on AMX tiles in the
 * given mode (1, 2 above). false, doing nothing, for another mode or a shape off the
 * tiles (B > 16, KP not a multiple of 16, n0 not of 16): the caller computes it. */
bool sn_rnn_skinny_amx(int mode, const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP, float *C,
                       int64_t ldc, int64_t n0, int64_t n1, bool acc);
/* f32 -> bf16 rounded to nearest even (NaN stays NaN), and back */
uint16_t sn_f32_to_bf16(float x);
float sn_bf16_to_f32(uint16_t h);
/* dst[i] = bf16(x[2i]) | bf16(x[2i+1]) << 16 for i < (n+1)/2 (an odd tail paired with 0):
 * the k-pairs vdpbf16ps multiplies */
void sn_bf16_pairs(uint32_t *dst, const float *x, int64_t n);

/* The BLAS in use ("OpenBLAS", "Accelerate", "builtin") and its thread count. */
const char *sn_blas_name(void);
void sn_blas_set_threads(int n);

typedef struct sn_cpu {
    sn_pool *pool;
    int nthreads;
    float *scratch;       /* grows on demand; one op at a time uses it */
    size_t scratch_cap;   /* floats */
    const sn_collective *coll; /* the backend's (set at each compute): ALLREDUCE, synchronised BatchNorm */
    bool bf16;            /* train.mixed_precision: GEMMs and the recurrent products in bf16 */
} sn_cpu;

/* The backend's GEMM: sn_bgemm in bf16 mode, else sn_sgemm. */
static inline void sn_cpu_gemm(sn_cpu *c, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                               int64_t ldc) {
    if (c->bf16) sn_bgemm(c->pool, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else sn_sgemm(c->pool, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Scratch of at least n floats, valid until the next call (NULL on OOM, error set). */
float *sn_cpu_scratch(sn_cpu *c, size_t n);

/* Kernels per family (src/backends/cpu/<family>.c): run `node` (all data resident
 * in host memory at node->data / node->src[i]->data). */
sn_status sn_cpu_binary(sn_cpu *c, sn_tensor *node);    /* ADD MUL SCALE REDUCE_TO EXPAND */
sn_status sn_cpu_unary(sn_cpu *c, sn_tensor *node);     /* RELU ELU SOFTPLUS SIGMOID TANH + _BWD */
sn_status sn_cpu_shape(sn_cpu *c, sn_tensor *node);     /* COPY CONCAT PAD SLICE PERMUTE */
sn_status sn_cpu_matmul(sn_cpu *c, sn_tensor *node);    /* MATMUL LINEAR BIAS_GRAD */
sn_status sn_cpu_conv(sn_cpu *c, sn_tensor *node);      /* CONV2D CONVT2D + BWD_DATA/BWD_W */
sn_status sn_cpu_batchnorm(sn_cpu *c, sn_tensor *node); /* BATCHNORM BATCHNORM_BWD */
sn_status sn_cpu_norm(sn_cpu *c, sn_tensor *node);      /* LAYERNORM SOFTMAX + BWD */
sn_status sn_cpu_rnn(sn_cpu *c, sn_tensor *node);       /* LSTM GRU + BWD */
sn_status sn_cpu_attention(sn_cpu *c, sn_tensor *node); /* ATTENTION ATTENTION_BWD */
sn_status sn_cpu_loss(sn_cpu *c, sn_tensor *node);      /* MSE L1 + BWD, SUM MEAN SUMSQ */
sn_status sn_cpu_optim(sn_cpu *c, sn_tensor *node);
sn_status sn_cpu_collective(sn_cpu *c, sn_tensor *node); /* ALLREDUCE */
/* y[i] = act(x[i] + (bvec ? bvec[i] : bs)) over n elements (unary.c): the bias and
 * activation epilogue of linear and the convolutions, in place when y == x */
void sn_cpu_bias_act(float *y, const float *x, int64_t n, const float *bvec, float bs, int act, float p0, float p1);     /* ADAM SGD */

#endif
