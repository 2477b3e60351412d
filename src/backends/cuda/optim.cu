/* ADAM / ADAMW / SGD over one flat parameter buffer, one launch each. lr and the bias
 * corrections come from the hyper tensor and the clip scale from the sumsq tensor,
 * both read on the device: no host synchronisation inside a step (graph-safe). */
#include "backends/cuda/cuda_common.h"

__device__ __forceinline__ float clip_scale(const float *sumsq, float max_norm) {
    if (!sumsq || !(max_norm > 0.0f)) return 1.0f;
    float s = max_norm / (sqrtf(sumsq[0]) + 1e-6f);
    return s < 1.0f ? s : 1.0f;
}

__global__ void k_adam(float *p, const float *grad, float *m, float *v, const float *hyper, const float *sumsq,
                       int64_t n, float b1, float b2, float eps, float wd, float max_norm, int adamw, float *token) {
    float lr = hyper[SN_HYPER_LR], bc1 = hyper[SN_HYPER_BC1], bc2 = hyper[SN_HYPER_BC2];
    float clip = clip_scale(sumsq, max_norm);
    /* as torch (and the CPU kernel): step_size = lr / bc1 in double, then f32 */
    float step = (float)((double)lr / (double)bc1), bc2_sqrt = (float)sqrt((double)bc2);
    SN_GRID_LOOP(i, n) {
        float g = grad[i] * clip, w = p[i];
        if (adamw) w *= 1.0f - lr * wd;
        else if (wd != 0.0f) g += wd * w;
        float mi = m[i] + (1.0f - b1) * (g - m[i]); /* exp_avg.lerp_(grad, 1-beta1) */
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = w - step * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
    if (token && blockIdx.x == 0 && threadIdx.x == 0) token[0] = 0.0f;
}

__global__ void k_sgd(float *p, const float *grad, float *buf, const float *hyper, const float *sumsq, int64_t n,
                      float momentum, float dampening, float wd, float max_norm, int nesterov, float *token) {
    float lr = hyper[SN_HYPER_LR], stepno = hyper[SN_HYPER_STEP];
    float clip = clip_scale(sumsq, max_norm);
    SN_GRID_LOOP(i, n) {
        float w = p[i], g = grad[i] * clip;
        if (wd != 0.0f) g += wd * w;
        if (momentum != 0.0f) {
            /* PyTorch: the first step starts the buffer at g */
            float bi = stepno <= 1.0f ? g : momentum * buf[i] + (1.0f - dampening) * g;
            buf[i] = bi;
            g = nesterov ? g + momentum * bi : bi;
        }
        p[i] = w - lr * g;
    }
    if (token && blockIdx.x == 0 && threadIdx.x == 0) token[0] = 0.0f;
}

sn_status sn_cu_optim(sn_cuda *c, sn_tensor *node) {
    sn_tensor *p = node->src[0];
    int64_t n = sn_cu_nel(p);
    unsigned g = sn_cu_blocks(c, n);
    float *token = (float *)node->data;
    const float *fp = node->fp;
    if (node->op == SN_OP_ADAM) {
        const float *sumsq = node->nsrc > 5 && node->src[5] ? sn_cu_f(node->src[5]) : NULL;
        k_adam<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(p), sn_cu_f(node->src[1]), sn_cu_f(node->src[2]),
                                                   sn_cu_f(node->src[3]), sn_cu_f(node->src[4]), sumsq, n, fp[0], fp[1],
                                                   fp[2], fp[3], fp[4], node->ip[0], token);
        CU_LAUNCHED("adam");
        return SN_OK;
    }
    if (node->op == SN_OP_SGD) {
        const float *sumsq = node->nsrc > 4 && node->src[4] ? sn_cu_f(node->src[4]) : NULL;
        k_sgd<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(p), sn_cu_f(node->src[1]), sn_cu_f(node->src[2]),
                                                  sn_cu_f(node->src[3]), sumsq, n, fp[0], fp[1], fp[2], fp[3],
                                                  node->ip[0], token);
        CU_LAUNCHED("sgd");
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA optim: unexpected op %s", sn_op_name(node->op));
}
