/* MSE L1 (+ backward), SUM MEAN SUMSQ. Reductions are two fixed-shape passes (block
 * partials, then one block over the partials): no atomics, so a replayed graph gives
 * bit-identical results. */
#include "backends/cuda/cuda_common.h"

enum { R_SUM, R_SQ, R_DIFF_SQ, R_DIFF_ABS };
#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

template <int MODE>
__global__ void k_red_part(const float *a, const float *b, int64_t n, float *part) {
    float s = 0.0f;
    SN_GRID_LOOP(i, n) {
        float v = a[i];
        if (MODE == R_SQ) v = v * v;
        else if (MODE == R_DIFF_SQ) { v -= b[i]; v = v * v; }
        else if (MODE == R_DIFF_ABS) v = fabsf(v - b[i]);
        s += v;
    }
    s = sn_block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void k_red_final(const float *part, int np, float scale, float *out) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += part[i];
    s = sn_block_sum(s);
    if (threadIdx.x == 0) out[0] = s * scale;
}

static int red_blocks(int64_t n) {
    int64_t g = (n + RED_THREADS * 8 - 1) / (RED_THREADS * 8);
    if (g > RED_MAX_BLOCKS) g = RED_MAX_BLOCKS;
    if (g < 1) g = 1;
    return (int)g;
}

static sn_status red_part(sn_cuda *c, int mode, const float *a, const float *b, int64_t n, float *part, int g) {
    switch (mode) {
    case R_SUM: k_red_part<R_SUM><<<g, RED_THREADS, 0, c->stream>>>(a, b, n, part); break;
    case R_SQ: k_red_part<R_SQ><<<g, RED_THREADS, 0, c->stream>>>(a, b, n, part); break;
    case R_DIFF_SQ: k_red_part<R_DIFF_SQ><<<g, RED_THREADS, 0, c->stream>>>(a, b, n, part); break;
    default: k_red_part<R_DIFF_ABS><<<g, RED_THREADS, 0, c->stream>>>(a, b, n, part); break;
    }
    CU_LAUNCHED("reduction (partials)");
    return SN_OK;
}

__global__ void k_mse_bwd(const float *dl, const float *a, const float *b, float *da, int64_t n, float k) {
    float s = dl[0] * k;
    SN_GRID_LOOP(i, n) da[i] = s * (a[i] - b[i]);
}
__global__ void k_l1_bwd(const float *dl, const float *a, const float *b, float *da, int64_t n, float k) {
    float s = dl[0] * k;
    SN_GRID_LOOP(i, n) {
        float d = a[i] - b[i];
        da[i] = d > 0.0f ? s : (d < 0.0f ? -s : 0.0f);
    }
}

sn_status sn_cu_loss(sn_cuda *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_MSE_BWD:
    case SN_OP_L1_BWD: {
        const sn_tensor *dl = node->src[0], *a = node->src[1], *b = node->src[2];
        int64_t n = sn_cu_nel(a);
        unsigned g = sn_cu_blocks(c, n);
        if (node->op == SN_OP_MSE_BWD)
            k_mse_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(dl), sn_cu_f(a), sn_cu_f(b), sn_cu_f(node), n,
                                                          2.0f / (float)n);
        else
            k_l1_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(dl), sn_cu_f(a), sn_cu_f(b), sn_cu_f(node), n,
                                                         1.0f / (float)n);
        CU_LAUNCHED(sn_op_name(node->op));
        return SN_OK;
    }
    case SN_OP_MSE:
    case SN_OP_L1:
    case SN_OP_SUM:
    case SN_OP_MEAN:
    case SN_OP_SUMSQ: {
        int nsrc = node->op == SN_OP_SUMSQ ? node->nsrc : 1;
        int total = 0;
        for (int i = 0; i < nsrc; i++) total += red_blocks(sn_cu_nel(node->src[i]));
        float *part = (float *)sn_cu_ws(c, SN_WS_RED, (size_t)total * sizeof(float));
        if (!part) return sn_error_prefix(SN_ERR_NOMEM, "%s", sn_op_name(node->op));
        int64_t n0 = sn_cu_nel(node->src[0]);
        int at = 0;
        for (int i = 0; i < nsrc; i++) {
            const sn_tensor *s = node->src[i];
            int64_t n = sn_cu_nel(s);
            int g = red_blocks(n);
            int mode = node->op == SN_OP_MSE ? R_DIFF_SQ
                       : node->op == SN_OP_L1 ? R_DIFF_ABS
                       : node->op == SN_OP_SUMSQ ? R_SQ
                                                 : R_SUM;
            const float *b = (mode == R_DIFF_SQ || mode == R_DIFF_ABS) ? sn_cu_f(node->src[1]) : NULL;
            SN_TRY(red_part(c, mode, sn_cu_f(s), b, n, part + at, g));
            at += g;
        }
        float scale = (node->op == SN_OP_SUM || node->op == SN_OP_SUMSQ) ? 1.0f : 1.0f / (float)n0;
        k_red_final<<<1, 1024, 0, c->stream>>>(part, total, scale, sn_cu_f(node));
        CU_LAUNCHED(sn_op_name(node->op));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA loss: unexpected op %s", sn_op_name(node->op));
}
