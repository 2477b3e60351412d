/* CPU kernels: Adam/AdamW and SGD updates (single- and multi-tensor), written to follow torch.optim's
 * single-tensor (non-foreach) code path operation by operation in f32. */
#include "backends/cpu/cpu.h"

#include <math.h>

#include "backends/cpu/vmath.h"

#define GRAIN 16384

typedef struct {
    float *p, *m, *v, *buf;
    const float *g;
    int64_t n;
} oseg;

typedef struct {
    float clip, lr, wd, b1, b2, eps, step_size, bc2_sqrt, mom, damp;
    bool adamw, nesterov, first;
    /* the tensors of one update, laid end to end: one sn_pool_for over all of them */
    int nseg;
    oseg seg[SN_OPTIM_MT_MAX];
    int64_t start[SN_OPTIM_MT_MAX + 1];
} ojob;

/* One Adam element loop, branch-free inside so the compiler vectorises it; built once
 * per ISA below. optim.c compiles with -ffp-contract=off (CMakeLists.txt): every
 * vector lane rounds as the scalar code does (sqrt and div are IEEE in both), so the
 * paths agree to the bit. l2 and adamw are constants at each call site. */
static inline __attribute__((always_inline)) void adam_loop(const ojob *j, float *restrict P, float *restrict M,
                                                             float *restrict V, const float *restrict G, int64_t n,
                                                             bool l2, bool adamw) {
    const float clip = j->clip, wd = j->wd, c1 = 1.0f - j->b1, b2 = j->b2, c2 = 1.0f - j->b2, bc2 = j->bc2_sqrt,
                eps = j->eps, ss = j->step_size, decay = 1.0f - j->lr * j->wd;
    for (int64_t i = 0; i < n; i++) {
        float g = G[i] * clip; /* clip is 1 without clipping: g * 1 is g */
        float p = P[i];
        if (adamw) p *= decay;
        if (l2) g += wd * p;
        /* exp_avg.lerp_(grad, 1-beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1-beta2) */
        float m = M[i] + c1 * (g - M[i]);
        float v = V[i] * b2 + c2 * g * g;
        float denom = sqrtf(v) / bc2 + eps;
        M[i] = m;
        V[i] = v;
        P[i] = p - ss * (m / denom);
    }
}

#define ADAM_VARIANTS(j, p, m, v, g, n)                                                  \
    do {                                                                               \
        if ((j)->adamw) adam_loop(j, p, m, v, g, n, false, true);                      \
        else if ((j)->wd != 0.0f) adam_loop(j, p, m, v, g, n, true, false);            \
        else adam_loop(j, p, m, v, g, n, false, false);                                \
    } while (0)

#ifdef SN_VM_X86
__attribute__((target("avx512f"))) static void adam512(const ojob *j, float *p, float *m, float *v, const float *g,
                                                       int64_t n) {
    ADAM_VARIANTS(j, p, m, v, g, n);
}
__attribute__((target("avx2,fma"))) static void adam256(const ojob *j, float *p, float *m, float *v, const float *g,
                                                        int64_t n) {
    ADAM_VARIANTS(j, p, m, v, g, n);
}
#endif
static void adam_any(const ojob *j, float *p, float *m, float *v, const float *g, int64_t n) {
    ADAM_VARIANTS(j, p, m, v, g, n);
}

static void adam_seg(const ojob *j, float *p, float *m, float *v, const float *g, int64_t n) {
#ifdef SN_VM_X86
    int l = sn_vm_level();
    if (l == 2) { adam512(j, p, m, v, g, n); return; }
    if (l == 1) { adam256(j, p, m, v, g, n); return; }
#endif
    adam_any(j, p, m, v, g, n);
}

static void sgd_seg(const ojob *j, float *restrict P, float *restrict B, const float *restrict G, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = G[i];
        if (j->clip != 1.0f) g *= j->clip;
        float p = P[i];
        if (j->wd != 0.0f) g += j->wd * p;
        if (j->mom != 0.0f) {
            float bf = j->first ? g : B[i] * j->mom + (1.0f - j->damp) * g;
            B[i] = bf;
            g = j->nesterov ? g + j->mom * bf : bf;
        }
        P[i] = p - j->lr * g;
    }
}

/* elements [b, e) of the segments laid end to end */
static void optim_range(void *arg, int64_t b, int64_t e, int tid, bool adam) {
    ojob *j = arg;
    int k = 0;
    while (k + 1 < j->nseg && j->start[k + 1] <= b) k++;
    for (; k < j->nseg && j->start[k] < e; k++) {
        const oseg *s = &j->seg[k];
        int64_t lo = b > j->start[k] ? b - j->start[k] : 0, hi = (e < j->start[k + 1] ? e : j->start[k + 1]) - j->start[k];
        if (adam) adam_seg(j, s->p + lo, s->m + lo, s->v + lo, s->g + lo, hi - lo);
        else sgd_seg(j, s->p + lo, s->buf + lo, s->g + lo, hi - lo);
    }
}

static void adam_elems(void *arg, int64_t b, int64_t e, int tid) { optim_range(arg, b, e, tid, true); }
static void sgd_elems(void *arg, int64_t b, int64_t e, int tid) { optim_range(arg, b, e, tid, false); }

static void add_seg(ojob *j, float *p, const float *g, float *m, float *v, float *buf, int64_t n) {
    j->seg[j->nseg] = (oseg){.p = p, .g = g, .m = m, .v = v, .buf = buf, .n = n};
    j->start[j->nseg + 1] = j->start[j->nseg] + n;
    j->nseg++;
}

static float clip_scale(const sn_tensor *sumsq, float max_norm) {
    if (!sumsq || !(max_norm > 0.0f)) return 1.0f;
    double norm = sqrt((double)((const float *)sumsq->data)[0]);
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 (f32 math) */
    float coef = max_norm / ((float)norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

/* scalars of an Adam/AdamW update (node: ADAM or ADAM_MT, same fp/ip0 layout) */
static sn_status adam_setup(ojob *j, const sn_tensor *node, const float *hyper, const sn_tensor *sumsq) {
    j->clip = clip_scale(sumsq, node->fp[4]);
    j->b1 = node->fp[0];
    j->b2 = node->fp[1];
    j->eps = node->fp[2];
    j->wd = node->fp[3];
    j->adamw = node->ip[0] != 0;
    j->lr = hyper[SN_HYPER_LR];
    /* python floats in torch: step_size = lr / bc1, bc2_sqrt = sqrt(bc2), then f32 */
    j->step_size = (float)((double)hyper[SN_HYPER_LR] / (double)hyper[SN_HYPER_BC1]);
    j->bc2_sqrt = (float)sqrt((double)hyper[SN_HYPER_BC2]);
    if (!(hyper[SN_HYPER_BC1] > 0.0f) || !(hyper[SN_HYPER_BC2] > 0.0f))
        return sn_error(SN_ERR_INVALID_ARG,
                        "%s: bias corrections in the hyper tensor must be > 0 (got %g, %g); the host writes "
                        "1-beta^step before each step", sn_op_name(node->op), (double)hyper[SN_HYPER_BC1],
                        (double)hyper[SN_HYPER_BC2]);
    return SN_OK;
}

static void sgd_setup(ojob *j, const sn_tensor *node, const float *hyper, const sn_tensor *sumsq) {
    j->clip = clip_scale(sumsq, node->fp[3]);
    j->mom = node->fp[0];
    j->damp = node->fp[1];
    j->wd = node->fp[2];
    j->nesterov = node->ip[0] != 0;
    j->lr = hyper[SN_HYPER_LR];
    j->first = hyper[SN_HYPER_STEP] <= 1.0f; /* torch: the first step sets buf = grad */
}

/* ADAM_MT / SGD_MT: the single-tensor element loop over every (param, grad) pair, state at the param's
 * offset; one parallel loop over all of them (one wake-up, and the small tensors spread too) */
static sn_status optim_multi(sn_cpu *c, sn_tensor *node) {
    bool adam = node->op == SN_OP_ADAM_MT;
    int first = (adam ? 3 : 2) + node->ip[1];
    const sn_tensor *sumsq = node->ip[1] ? node->src[first - 1] : NULL;
    const float *hyper = node->src[0]->data;
    ojob j = {0};
    if (adam) {
        sn_status st = adam_setup(&j, node, hyper, sumsq);
        if (st != SN_OK) return st;
    } else {
        sgd_setup(&j, node, hyper, sumsq);
    }
    float *s0 = node->src[1]->data, *s1 = adam ? node->src[2]->data : NULL;
    for (int k = first, i = 0; k + 1 < node->nsrc; k += 2, i++) {
        sn_tensor *p = node->src[k];
        int64_t off = node->ip[2 + i];
        add_seg(&j, p->data, node->src[k + 1]->data, adam ? s0 + off : NULL, adam ? s1 + off : NULL,
                adam ? NULL : s0 + off, sn_nelem(p));
    }
    sn_pool_for(c->pool, j.start[j.nseg], GRAIN, adam ? adam_elems : sgd_elems, &j);
    return SN_OK;
}

sn_status sn_cpu_optim(sn_cpu *c, sn_tensor *node) {
    ojob j = {0};
    if (node->op == SN_OP_ADAM_MT || node->op == SN_OP_SGD_MT) return optim_multi(c, node);
    if (node->op == SN_OP_ADAM) {
        sn_status st = adam_setup(&j, node, node->src[4]->data, node->nsrc > 5 ? node->src[5] : NULL);
        if (st != SN_OK) return st;
        add_seg(&j, node->src[0]->data, node->src[1]->data, node->src[2]->data, node->src[3]->data, NULL,
                sn_nelem(node->src[0]));
        sn_pool_for(c->pool, j.start[1], GRAIN, adam_elems, &j);
        return SN_OK;
    }
    if (node->op == SN_OP_SGD) {
        sgd_setup(&j, node, node->src[3]->data, node->nsrc > 4 ? node->src[4] : NULL);
        add_seg(&j, node->src[0]->data, node->src[1]->data, NULL, NULL, node->src[2]->data, sn_nelem(node->src[0]));
        sn_pool_for(c->pool, j.start[1], GRAIN, sgd_elems, &j);
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_optim: op %s is not an optimizer op", sn_op_name(node->op));
}
