/* The CUDA backend's shared state, error helpers, workspace and GEMM helpers.
 * Every file of src/backends/cuda/ is CUDA C++ and includes this header. */
#ifndef SN_BACKENDS_CUDA_COMMON_H
#define SN_BACKENDS_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include "core/fastdiv.h"
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sinter/backend.h"

#define SN_CU_THREADS 256
/* two floats as a bf16 pair, lo in the low half (the lower k of an mma fragment) */
__device__ __forceinline__ unsigned bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}
/* c (16x8, f32) += a (16x16 bf16, row-major fragment) * b (16x8 bf16, column fragment) */
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint4 a, const uint2 b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b.x), "r"(b.y));
#else
    (void)c, (void)a, (void)b;
    __trap(); /* bf16 mode needs compute capability 8.0: never launched below it */
#endif
}

/* pinned staging buffers for upload/download (two, so one fills while the other copies) */
#define SN_CU_STAGE_BYTES ((size_t)8 << 20)
/* tensors one prefetched batch may hold (a training batch: input and target) */
#define SN_CU_PREFETCH_MAX 8
/* gradient buckets in flight on the collective stream at once */
#define SN_CU_COLL_EVENTS 64

/* Workspace slots: each grows on the eager first run of a segment (never while a
 * graph is being captured) and old buffers are kept until the backend goes, because
 * graphs captured earlier still point into them. */
enum { SN_WS_OP = 0, SN_WS_OP2, SN_WS_CVT, SN_WS_RED, SN_WS_COUNT };

typedef struct sn_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    size_t blas_ws_bytes;
    void *ws[SN_WS_COUNT];
    size_t ws_cap[SN_WS_COUNT];
    void **retired;
    int nretired, capretired;
    size_t retired_bytes;
    int ngraphs;            /* captured graphs alive: while 0, grown workspaces free the old buffer */
    bool tf32, bf16;
    bool capturing;
    int nsm;
    void *stage[2];
    cudaEvent_t stage_ev[2];
    int stage_next;
    /* prefetch: host -> pinned -> device staging on the copy stream while the compute
     * stream runs; device staging -> destination on the compute stream before its next work */
    cudaStream_t copy_stream;
    void *pf_host, *pf_dev;
    size_t pf_cap, pf_used;
    cudaEvent_t pf_copied, pf_consumed;
    struct { void *dst; size_t off, n; } pf_pending[SN_CU_PREFETCH_MAX];
    int pf_npending;
    char name[128];
    /* side stream (SN_RNN_OVERLAP=1): an RNN backward's weight-gradient GEMMs of one
     * layer run there beside the next layer's recurrence; its own cuBLAS handle and
     * workspace, made on the first eager use (rnn.cu) */
    cudaStream_t side;
    cublasHandle_t side_blas;
    void *side_blas_ws;
    cudaEvent_t side_fork, side_join;
    /* data parallel: the device collective (NCCL) and its stream; gradient buckets
     * reduce there while the compute stream goes on, and a node that reads a bucket
     * waits for its event first (collective.cu) */
    const sn_collective *coll;
    cudaStream_t comm_stream;
    cudaEvent_t coll_ready;
    cudaEvent_t coll_ev[SN_CU_COLL_EVENTS];
    struct { const sn_tensor *t; int ev; } coll_pending[SN_CU_COLL_EVENTS];
    int coll_npending, coll_next_ev;
} sn_cuda;

/* Sets the last error to "CUDA error in <where>: <reason> (what to do)" and returns SN_ERR_DEVICE. */
sn_status sn_cu_err(cudaError_t e, const char *where);
sn_status sn_cu_blas_err(cublasStatus_t s, const char *where);

#define CU_TRY(call, where)                                  \
    do {                                                     \
        cudaError_t e_ = (call);                             \
        if (e_ != cudaSuccess) return sn_cu_err(e_, where);  \
    } while (0)
/* after a kernel launch: launch-configuration errors show here */
#define CU_LAUNCHED(where)                                   \
    do {                                                     \
        cudaError_t e_ = cudaGetLastError();                 \
        if (e_ != cudaSuccess) return sn_cu_err(e_, where);  \
    } while (0)
#define BLAS_TRY(call, where)                                            \
    do {                                                                 \
        cublasStatus_t s_ = (call);                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS) return sn_cu_blas_err(s_, where); \
    } while (0)
#define SN_TRY(expr)                    \
    do {                                \
        sn_status s_ = (expr);          \
        if (s_ != SN_OK) return s_;     \
    } while (0)

/* Workspace of at least `bytes` in slot; NULL with the error set on failure (or when it
 * would have to grow during capture). The pointer stays valid until the next call for
 * the same slot. */
void *sn_cu_ws(sn_cuda *c, int slot, size_t bytes);
/* Makes the side stream, its events and cuBLAS handle (once, outside graph capture). */
sn_status sn_cu_side_init(sn_cuda *c);

/* Grid size for a grid-stride loop over n items. */
static inline unsigned sn_cu_blocks(const sn_cuda *c, int64_t n, int threads = SN_CU_THREADS) {
    int64_t b = (n + threads - 1) / threads;
    int64_t cap = (int64_t)c->nsm * 16;
    if (cap < 64) cap = 64;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned)b;
}

#define SN_GRID_LOOP(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
/* the same over n < 2^31 (kernels that split indices with sn_fastdiv) */
#define SN_GRID_LOOP32(i, n) \
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

static inline float *sn_cu_f(const sn_tensor *t) { return (float *)t->data; }
static inline int64_t sn_cu_nel(const sn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
/* saved state of a forward node (device address) */
static inline float *sn_cu_extra(const sn_tensor *t) { return (float *)t->data + sn_align64(sn_cu_nel(t)); }

/* Row-major strided-batched C = alpha op(A) op(B) + beta C, op(A) [M,K], op(B) [K,N]
 * (cuBLAS column-major through the operand swap). f32, TF32 tensor ops when enabled,
 * or bf16 operands with f32 accumulation when the bf16 switch is on. A16/B16, when
 * not NULL, are bf16 copies of A/B already made (same layout) and are used in bf16 mode. */
sn_status sn_cu_gemm_ex(sn_cuda *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                        int64_t ldc, int64_t sC, int64_t batch, const __nv_bfloat16 *A16, const __nv_bfloat16 *B16,
                        const char *where);
static inline sn_status sn_cu_gemm(sn_cuda *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                   int64_t ldc, const char *where) {
    return sn_cu_gemm_ex(c, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, NULL, NULL, where);
}
/* elements spanned by a (possibly transposed, strided-batched) operand */
int64_t sn_cu_gemm_extent(bool t, int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch);
sn_status sn_cu_to_bf16(sn_cuda *c, __nv_bfloat16 *dst, const float *src, int64_t n);

/* Shared small kernels (binary.cu). */
/* out[j] (+)= sum over rows of x[r*cols + j]; deterministic, no atomics */
sn_status sn_cu_colsum(sn_cuda *c, const float *x, int64_t rows, int64_t cols, float *out, bool accumulate);
/* y[r*cols + j] += b[j] */
sn_status sn_cu_add_rowvec(sn_cuda *c, float *y, const float *b, int64_t rows, int64_t cols);
/* y[(o*C + ch)*inner + i] += b[ch] */
sn_status sn_cu_add_chanvec(sn_cuda *c, float *y, const float *b, int64_t outer, int64_t C, int64_t inner);
/* rows of `row` elements per launch so that a launch's indices fit 32 bits (at most
 * outer; 0 when one row is already too long) */
int64_t sn_cu_rows32(int64_t outer, int64_t row);

/* Families: run one node with all data resident on the device. */
sn_status sn_cu_binary(sn_cuda *c, sn_tensor *node);    /* ADD MUL SCALE REDUCE_TO EXPAND */
sn_status sn_cu_unary(sn_cuda *c, sn_tensor *node);     /* RELU ELU SOFTPLUS SIGMOID TANH + _BWD */
sn_status sn_cu_shape(sn_cuda *c, sn_tensor *node);     /* COPY CONCAT PAD SLICE PERMUTE */
sn_status sn_cu_matmul(sn_cuda *c, sn_tensor *node);    /* MATMUL LINEAR BIAS_GRAD */
sn_status sn_cu_conv(sn_cuda *c, sn_tensor *node);      /* CONV2D CONVT2D + BWD_DATA/BWD_W */
sn_status sn_cu_batchnorm(sn_cuda *c, sn_tensor *node); /* BATCHNORM BATCHNORM_BWD */
sn_status sn_cu_norm(sn_cuda *c, sn_tensor *node);      /* LAYERNORM SOFTMAX + BWD */
sn_status sn_cu_rnn(sn_cuda *c, sn_tensor *node);       /* LSTM GRU + BWD */
/* whether a `layers`-layer RNN op runs as one kernel here (the bf16 LSTM wavefront) */
bool sn_cu_rnn_fuses_layers(sn_cuda *c, bool lstm, int64_t batch, int64_t hidden, int layers);
sn_status sn_cu_attention(sn_cuda *c, sn_tensor *node); /* ATTENTION ATTENTION_BWD */
sn_status sn_cu_loss(sn_cuda *c, sn_tensor *node);      /* MSE L1 + BWD, SUM MEAN SUMSQ */
sn_status sn_cu_optim(sn_cuda *c, sn_tensor *node);     /* ADAM SGD (single and multi-tensor) */
sn_status sn_cu_collective(sn_cuda *c, sn_tensor *node); /* ALLREDUCE (queued on the collective stream) */
/* Makes the compute stream wait for the buckets `node` reads (before running it), or
 * for every bucket in flight (at the end of a compute call: a captured graph must
 * join the collective stream back, and later work may read any bucket). */
sn_status sn_cu_coll_wait_srcs(sn_cuda *c, const sn_tensor *node);
sn_status sn_cu_coll_join(sn_cuda *c);
/* Sums n f32 at buf in place over the group, ordered on the collective stream (so
 * that every collective of the communicator is issued in one order) and waited for
 * by the compute stream: synchronised BatchNorm's statistics. */
sn_status sn_cu_coll_sum(sn_cuda *c, float *buf, size_t n);
void sn_cu_coll_destroy(sn_cuda *c);
/* y = act(y + b[channel]) in place over [outer, C, inner] (conv.cu): the bias and
 * activation epilogue of linear and the convolutions */
sn_status sn_cu_bias_act(sn_cuda *c, float *y, const float *b, int64_t outer, int64_t C, int64_t inner, int act,
                         float p0, float p1, const char *where);

/* Row-wise softmax in place over [rows, n], optionally causal (row r of each T-block
 * masks columns > r % T): shared by SOFTMAX and ATTENTION (norm.cu). */
sn_status sn_cu_softmax_rows(sn_cuda *c, const float *x, float *y, int64_t rows, int64_t n, bool causal, int64_t T,
                             float scale);
/* dx = y * (dy - sum(dy*y)) per row, times scale */
sn_status sn_cu_softmax_bwd_rows(sn_cuda *c, const float *dy, const float *y, float *dx, int64_t rows, int64_t n,
                                 float scale);

/* Block-wide sum of one float per thread (blockDim.x a multiple of 32, <= 1024);
 * every thread gets the result. */
__device__ __forceinline__ float sn_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float sn_block_sum(float v) {
    __shared__ float sh[33];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = sn_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    float t = lane < nw ? sh[lane] : 0.0f;
    if (w == 0) {
        t = sn_warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}
__device__ __forceinline__ float sn_block_max(float v) {
    __shared__ float shm[33];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) shm[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    float t = lane < nw ? shm[lane] : -INFINITY;
    if (w == 0) {
        for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
        if (lane == 0) shm[32] = t;
    }
    __syncthreads();
    return shm[32];
}

/* Up to SN_MAX_DIMS dims of an index map, passed to kernels by value. */
typedef struct sn_cu_idx {
    int nd;
    int64_t dim[SN_MAX_DIMS];    /* output dims */
    int64_t st[SN_MAX_DIMS];     /* source element stride per output dim (0 = broadcast) */
    int64_t off[SN_MAX_DIMS];    /* start per output dim (slice) / -pad before (pad) */
    int64_t sdim[SN_MAX_DIMS];   /* source dims (pad bounds) */
} sn_cu_idx;

#endif
