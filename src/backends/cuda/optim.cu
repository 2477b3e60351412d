/* ADAM / ADAMW / SGD: over one tensor (a flat buffer when clipping) or, multi-tensor,
 * over up to SN_OPTIM_MT_MAX params in one launch. lr and the bias corrections come
 * from the hyper tensor and the clip scale from the sumsq tensor, both read on the
 * device: no host synchronisation inside a step (graph-safe). */
#include "backends/cuda/cuda_common.h"

__device__ __forceinline__ float clip_scale(const float *sumsq, float max_norm) {
    if (!sumsq || !(max_norm > 0.0f)) return 1.0f;
    float s = max_norm / (sqrtf(sumsq[0]) + 1e-6f);
    return s < 1.0f ? s : 1.0f;
}

typedef struct {
    float b1, b2, eps, wd, lr, clip, step, bc2_sqrt;
    int adamw;
} adam_k;

typedef struct {
    float mom, damp, wd, lr, clip;
    int nesterov, first;
} sgd_k;

__device__ __forceinline__ adam_k adam_consts(const float *fp, int adamw, const float *hyper, const float *sumsq) {
    adam_k k;
    k.b1 = fp[0];
    k.b2 = fp[1];
    k.eps = fp[2];
    k.wd = fp[3];
    k.adamw = adamw;
    k.lr = hyper[SN_HYPER_LR];
    k.clip = clip_scale(sumsq, fp[4]);
    /* as torch (and the CPU kernel): step_size = lr / bc1 in double, then f32 */
    k.step = (float)((double)k.lr / (double)hyper[SN_HYPER_BC1]);
    k.bc2_sqrt = (float)sqrt((double)hyper[SN_HYPER_BC2]);
    return k;
}

__device__ __forceinline__ sgd_k sgd_consts(const float *fp, int nesterov, const float *hyper, const float *sumsq) {
    sgd_k k;
    k.mom = fp[0];
    k.damp = fp[1];
    k.wd = fp[2];
    k.nesterov = nesterov;
    k.lr = hyper[SN_HYPER_LR];
    k.clip = clip_scale(sumsq, fp[3]);
    k.first = hyper[SN_HYPER_STEP] <= 1.0f; /* PyTorch: the first step starts the buffer at g */
    return k;
}

__device__ __forceinline__ void adam_elem(const adam_k &k, float *p, float g, float *m, float *v) {
    float w = *p;
    g *= k.clip;
    if (k.adamw) w *= 1.0f - k.lr * k.wd;
    else if (k.wd != 0.0f) g += k.wd * w;
    float mi = *m + (1.0f - k.b1) * (g - *m); /* exp_avg.lerp_(grad, 1-beta1) */
    float vi = k.b2 * *v + (1.0f - k.b2) * g * g;
    *m = mi;
    *v = vi;
    *p = w - k.step * (mi / (sqrtf(vi) / k.bc2_sqrt + k.eps));
}

__device__ __forceinline__ void sgd_elem(const sgd_k &k, float *p, float g, float *buf) {
    float w = *p;
    g *= k.clip;
    if (k.wd != 0.0f) g += k.wd * w;
    if (k.mom != 0.0f) {
        float bi = k.first ? g : k.mom * *buf + (1.0f - k.damp) * g;
        *buf = bi;
        g = k.nesterov ? g + k.mom * bi : bi;
    }
    *p = w - k.lr * g;
}

/* the float parameters of the node, by value (graph capture keeps them) */
typedef struct {
    float f[SN_MAX_FPARAMS];
} fparams;

__global__ void k_adam(float *p, const float *grad, float *m, float *v, const float *hyper, const float *sumsq,
                       int64_t n, fparams fp, int adamw, float *token) {
    adam_k k = adam_consts(fp.f, adamw, hyper, sumsq);
    SN_GRID_LOOP(i, n) adam_elem(k, p + i, grad[i], m + i, v + i);
    if (token && blockIdx.x == 0 && threadIdx.x == 0) token[0] = 0.0f;
}

__global__ void k_sgd(float *p, const float *grad, float *buf, const float *hyper, const float *sumsq, int64_t n,
                      fparams fp, int nesterov, float *token) {
    sgd_k k = sgd_consts(fp.f, nesterov, hyper, sumsq);
    SN_GRID_LOOP(i, n) sgd_elem(k, p + i, grad[i], buf ? buf + i : NULL);
    if (token && blockIdx.x == 0 && threadIdx.x == 0) token[0] = 0.0f;
}

/* multi-tensor: segment s covers elements [start[s], start[s+1]) of the concatenation */
typedef struct {
    float *p[SN_OPTIM_MT_MAX];
    const float *g[SN_OPTIM_MT_MAX];
    int64_t off[SN_OPTIM_MT_MAX]; /* the param's offset in the flat state */
    int64_t start[SN_OPTIM_MT_MAX + 1];
    int n;
} mt_list;

__global__ void k_optim_mt(mt_list L, int adam, float *s0, float *s1, const float *hyper, const float *sumsq,
                           fparams fp, int flag, float *token) {
    adam_k ka;
    sgd_k ks;
    if (adam) ka = adam_consts(fp.f, flag, hyper, sumsq);
    else ks = sgd_consts(fp.f, flag, hyper, sumsq);
    int s = 0;
    SN_GRID_LOOP(i, L.start[L.n]) {
        while (i >= L.start[s + 1]) s++; /* i only grows in this loop */
        int64_t j = i - L.start[s], o = L.off[s] + j;
        if (adam) adam_elem(ka, L.p[s] + j, L.g[s][j], s0 + o, s1 + o);
        else sgd_elem(ks, L.p[s] + j, L.g[s][j], s0 + o);
    }
    if (token && blockIdx.x == 0 && threadIdx.x == 0) token[0] = 0.0f;
}

static sn_status optim_multi(sn_cuda *c, sn_tensor *node, fparams fp) {
    bool adam = node->op == SN_OP_ADAM_MT;
    int first = (adam ? 3 : 2) + node->ip[1];
    const float *sumsq = node->ip[1] ? sn_cu_f(node->src[first - 1]) : NULL;
    mt_list L;
    memset(&L, 0, sizeof L);
    for (int k = first; k + 1 < node->nsrc && L.n < SN_OPTIM_MT_MAX; k += 2) {
        sn_tensor *p = node->src[k];
        L.p[L.n] = sn_cu_f(p);
        L.g[L.n] = sn_cu_f(node->src[k + 1]);
        L.off[L.n] = node->ip[2 + L.n];
        L.start[L.n + 1] = L.start[L.n] + sn_cu_nel(p);
        L.n++;
    }
    unsigned g = sn_cu_blocks(c, L.start[L.n]);
    k_optim_mt<<<g, SN_CU_THREADS, 0, c->stream>>>(L, adam, sn_cu_f(node->src[1]),
                                                   adam ? sn_cu_f(node->src[2]) : NULL, sn_cu_f(node->src[0]), sumsq,
                                                   fp, node->ip[0], (float *)node->data);
    CU_LAUNCHED(adam ? "adam_multi" : "sgd_multi");
    return SN_OK;
}

sn_status sn_cu_optim(sn_cuda *c, sn_tensor *node) {
    fparams fp;
    memcpy(fp.f, node->fp, sizeof fp.f);
    if (node->op == SN_OP_ADAM_MT || node->op == SN_OP_SGD_MT) return optim_multi(c, node, fp);
    sn_tensor *p = node->src[0];
    int64_t n = sn_cu_nel(p);
    unsigned g = sn_cu_blocks(c, n);
    float *token = (float *)node->data;
    if (node->op == SN_OP_ADAM) {
        const float *sumsq = node->nsrc > 5 && node->src[5] ? sn_cu_f(node->src[5]) : NULL;
        k_adam<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(p), sn_cu_f(node->src[1]), sn_cu_f(node->src[2]),
                                                   sn_cu_f(node->src[3]), sn_cu_f(node->src[4]), sumsq, n, fp,
                                                   node->ip[0], token);
        CU_LAUNCHED("adam");
        return SN_OK;
    }
    if (node->op == SN_OP_SGD) {
        const float *sumsq = node->nsrc > 4 && node->src[4] ? sn_cu_f(node->src[4]) : NULL;
        k_sgd<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(p), sn_cu_f(node->src[1]), sn_cu_f(node->src[2]),
                                                  sn_cu_f(node->src[3]), sumsq, n, fp, node->ip[0], token);
        CU_LAUNCHED("sgd");
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA optim: unexpected op %s", sn_op_name(node->op));
}
