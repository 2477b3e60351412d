/* MATMUL LINEAR BIAS_GRAD through cuBLAS (row-major via the operand swap). */
#include "backends/cuda/cuda_common.h"

/* out[c] = sum over o < outer, i < inner of x[(o*C + c)*inner + i]; one block per channel */
__global__ void k_chan_sum(const float *x, int64_t outer, int64_t C, int64_t inner, float *out) {
    for (int64_t ch = blockIdx.x; ch < C; ch += gridDim.x) {
        float s = 0.0f;
        for (int64_t o = 0; o < outer; o++) {
            const float *p = x + (o * C + ch) * inner;
            for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) s += p[i];
        }
        s = sn_block_sum(s);
        if (threadIdx.x == 0) out[ch] = s;
    }
}

/* Few channels over many elements (conv bias gradients): S blocks per channel each sum
 * a slice into part[ch*S + s]; the last block of a channel to finish (counter, which
 * atomicInc wraps back to 0 for the next launch and graph replays) adds the S partials
 * in order, so the result does not depend on timing. */
#define SN_BG_PARTS 65536
#define SN_BG_CHANS 16384
__device__ float g_sn_bg_part[SN_BG_PARTS];
__device__ unsigned g_sn_bg_cnt[SN_BG_CHANS];

__global__ void k_chan_sum_split(const float *x, int64_t outer, int64_t C, int64_t inner, int S, float *out) {
    const int s = blockIdx.x;
    const int64_t ch = blockIdx.y, n = outer * inner, chunk = (n + S - 1) / S;
    const int64_t k0 = (int64_t)s * chunk, k1 = min(n, k0 + chunk);
    float acc = 0.0f;
    for (int64_t o = k0 / inner; o * inner < k1; o++) {
        const float *p = x + (o * C + ch) * inner;
        int64_t i0 = max(k0 - o * inner, (int64_t)0), i1 = min(k1 - o * inner, inner);
        for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) acc += p[i];
    }
    acc = sn_block_sum(acc);
    __shared__ bool last;
    if (threadIdx.x == 0) {
        g_sn_bg_part[ch * S + s] = acc;
        __threadfence();
        last = atomicInc(&g_sn_bg_cnt[ch], (unsigned)(S - 1)) == (unsigned)(S - 1);
    }
    __syncthreads();
    if (last && threadIdx.x == 0) {
        __threadfence();
        float t = 0.0f;
        for (int i = 0; i < S; i++) t += __ldcg(&g_sn_bg_part[ch * S + i]);
        out[ch] = t;
    }
}

static sn_status bias_grad(sn_cuda *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0];
    int ax = node->ip[0] < 0 ? node->ip[0] + dy->ndim : node->ip[0];
    int64_t outer = 1, inner = 1, C = dy->shape[ax];
    for (int d = 0; d < ax; d++) outer *= dy->shape[d];
    for (int d = ax + 1; d < dy->ndim; d++) inner *= dy->shape[d];
    if (inner == 1) return sn_cu_colsum(c, sn_cu_f(dy), outer, C, sn_cu_f(node), false);
    /* enough blocks to fill the GPU, each with at least 4096 elements */
    int64_t n = outer * inner, S = ((int64_t)4 * c->nsm + C - 1) / C;
    if (S > 64) S = 64;
    if (S > n / 4096) S = n / 4096;
    if (S >= 2 && C <= SN_BG_CHANS && C * S <= SN_BG_PARTS) {
        k_chan_sum_split<<<dim3((unsigned)S, (unsigned)C), 512, 0, c->stream>>>(sn_cu_f(dy), outer, C, inner, (int)S,
                                                                              sn_cu_f(node));
        CU_LAUNCHED("bias_grad");
        return SN_OK;
    }
    unsigned g = (unsigned)(C < 65535 ? C : 65535);
    k_chan_sum<<<g, 512, 0, c->stream>>>(sn_cu_f(dy), outer, C, inner, sn_cu_f(node));
    CU_LAUNCHED("bias_grad");
    return SN_OK;
}

sn_status sn_cu_matmul(sn_cuda *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_MATMUL: {
        const sn_tensor *a = node->src[0], *b = node->src[1];
        bool ta = node->ip[0] != 0, tb = node->ip[1] != 0;
        int nd = node->ndim;
        int64_t M = node->shape[nd - 2], N = node->shape[nd - 1];
        int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
        int64_t batch = sn_cu_nel(node) / (M * N);
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        int64_t sA = a->ndim > 2 ? M * K : 0, sB = b->ndim > 2 ? K * N : 0;
        if (batch > 1 && sB == 0 && !ta && sA != 0) /* shared b: one GEMM over all rows */
            return sn_cu_gemm(c, false, tb, batch * M, N, K, 1.0f, sn_cu_f(a), K, sn_cu_f(b), ldb, 0.0f, sn_cu_f(node),
                              N, "matmul");
        return sn_cu_gemm_ex(c, ta, tb, M, N, K, 1.0f, sn_cu_f(a), lda, sA, sn_cu_f(b), ldb, sB, 0.0f, sn_cu_f(node),
                             N, M * N, batch, NULL, NULL, "matmul");
    }
    case SN_OP_LINEAR: {
        const sn_tensor *x = node->src[0], *w = node->src[1];
        int64_t N = w->shape[0], K = w->shape[1];
        int64_t rows = sn_cu_nel(x) / K;
        SN_TRY(sn_cu_gemm(c, false, true, rows, N, K, 1.0f, sn_cu_f(x), K, sn_cu_f(w), K, 0.0f, sn_cu_f(node), N,
                          "linear"));
        const float *bias = node->nsrc > 2 && node->src[2] ? sn_cu_f(node->src[2]) : NULL;
        int act = node->ip[SN_IP_ACT];
        if (act != SN_ACT_NONE) /* activation epilogue: bias and activation in one pass */
            return sn_cu_bias_act(c, sn_cu_f(node), bias, rows, N, 1, act, node->fp[SN_FP_ACT],
                                  node->fp[SN_FP_ACT + 1], "linear");
        if (bias) SN_TRY(sn_cu_add_rowvec(c, sn_cu_f(node), bias, rows, N));
        return SN_OK;
    }
    case SN_OP_BIAS_GRAD: return bias_grad(c, node);
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA matmul: unexpected op %s", sn_op_name(node->op));
}
