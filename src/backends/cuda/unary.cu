/* RELU ELU SOFTPLUS SIGMOID TANH and their backward ops (PyTorch semantics). */
#include "backends/cuda/cuda_common.h"

enum { U_RELU, U_ELU, U_SOFTPLUS, U_SIGMOID, U_TANH, U_SOFTPLUS_Y };

template <int OP>
__global__ void k_unary(const float *x, float *y, int64_t n, float p0, float p1) {
    SN_GRID_LOOP(i, n) {
        float v = x[i], r;
        if (OP == U_RELU) r = v > 0.0f ? v : 0.0f;
        else if (OP == U_ELU) r = v > 0.0f ? v : p0 * expm1f(v);
        else if (OP == U_SOFTPLUS) r = v * p0 > p1 ? v : log1pf(expf(v * p0)) / p0;
        else if (OP == U_SIGMOID) r = 1.0f / (1.0f + expf(-v));
        else r = tanhf(v);
        y[i] = r;
    }
}

/* s is y (relu, elu, sigmoid, tanh, softplus from y) or x (softplus) */
template <int OP>
__global__ void k_unary_bwd(const float *dy, const float *s, float *dx, int64_t n, float p0, float p1) {
    SN_GRID_LOOP(i, n) {
        float g = dy[i], v = s[i], r;
        if (OP == U_RELU) r = v > 0.0f ? g : 0.0f;
        else if (OP == U_ELU) r = v > 0.0f ? g : g * (v + p0);
        else if (OP == U_SOFTPLUS) r = v * p0 > p1 ? g : g / (1.0f + expf(-v * p0));
        else if (OP == U_SOFTPLUS_Y) r = v * p0 > p1 ? g : g * -expm1f(-v * p0); /* sigmoid(bx) = 1 - e^-by */
        else if (OP == U_SIGMOID) r = g * v * (1.0f - v);
        else r = g * (1.0f - v * v);
        dx[i] = r;
    }
}

sn_status sn_cu_unary(sn_cuda *c, sn_tensor *node) {
    int64_t n = sn_cu_nel(node);
    float *y = sn_cu_f(node);
    const float *a = sn_cu_f(node->src[0]);
    const float *s = node->nsrc > 1 ? sn_cu_f(node->src[1]) : NULL;
    float p0 = node->fp[0], p1 = node->fp[1];
    unsigned g = sn_cu_blocks(c, n);
    cudaStream_t st = c->stream;
    switch (node->op) {
    case SN_OP_RELU: k_unary<U_RELU><<<g, SN_CU_THREADS, 0, st>>>(a, y, n, p0, p1); break;
    case SN_OP_ELU: k_unary<U_ELU><<<g, SN_CU_THREADS, 0, st>>>(a, y, n, p0, p1); break;
    case SN_OP_SOFTPLUS: k_unary<U_SOFTPLUS><<<g, SN_CU_THREADS, 0, st>>>(a, y, n, p0, p1); break;
    case SN_OP_SIGMOID: k_unary<U_SIGMOID><<<g, SN_CU_THREADS, 0, st>>>(a, y, n, p0, p1); break;
    case SN_OP_TANH: k_unary<U_TANH><<<g, SN_CU_THREADS, 0, st>>>(a, y, n, p0, p1); break;
    case SN_OP_RELU_BWD: k_unary_bwd<U_RELU><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1); break;
    case SN_OP_ELU_BWD: k_unary_bwd<U_ELU><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1); break;
    case SN_OP_SOFTPLUS_BWD:
        if (node->ip[0] == 1) k_unary_bwd<U_SOFTPLUS_Y><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1);
        else k_unary_bwd<U_SOFTPLUS><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1);
        break;
    case SN_OP_SIGMOID_BWD: k_unary_bwd<U_SIGMOID><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1); break;
    case SN_OP_TANH_BWD: k_unary_bwd<U_TANH><<<g, SN_CU_THREADS, 0, st>>>(a, s, y, n, p0, p1); break;
    default: return sn_error(SN_ERR_INTERNAL, "CUDA unary: unexpected op %s", sn_op_name(node->op));
    }
    CU_LAUNCHED(sn_op_name(node->op));
    return SN_OK;
}
