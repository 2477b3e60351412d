/* CPU kernels: Adam/AdamW and SGD updates (single- and multi-tensor), written to follow torch.optim's
 * single-tensor (non-foreach) code path operation by operation in f32. */
#include "backends/cpu/cpu.h"

#include <math.h>

#define GRAIN 16384

typedef struct {
    float *p, *m, *v, *buf;
    const float *g;
    float clip, lr, wd, b1, b2, eps, step_size, bc2_sqrt, mom, damp;
    bool adamw, nesterov, first;
} ojob;

static void adam_elems(void *arg, int64_t b, int64_t e, int tid) {
    ojob *j = arg;
    for (int64_t i = b; i < e; i++) {
        float g = j->g[i];
        if (j->clip != 1.0f) g *= j->clip;
        float p = j->p[i];
        if (j->adamw) p *= 1.0f - j->lr * j->wd;
        else if (j->wd != 0.0f) g += j->wd * p;
        /* exp_avg.lerp_(grad, 1-beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1-beta2) */
        float m = j->m[i] + (1.0f - j->b1) * (g - j->m[i]);
        float v = j->v[i] * j->b2 + (1.0f - j->b2) * g * g;
        float denom = sqrtf(v) / j->bc2_sqrt + j->eps;
        j->m[i] = m;
        j->v[i] = v;
        j->p[i] = p - j->step_size * (m / denom);
    }
}

static void sgd_elems(void *arg, int64_t b, int64_t e, int tid) {
    ojob *j = arg;
    for (int64_t i = b; i < e; i++) {
        float g = j->g[i];
        if (j->clip != 1.0f) g *= j->clip;
        float p = j->p[i];
        if (j->wd != 0.0f) g += j->wd * p;
        if (j->mom != 0.0f) {
            float bf = j->first ? g : j->buf[i] * j->mom + (1.0f - j->damp) * g;
            j->buf[i] = bf;
            g = j->nesterov ? g + j->mom * bf : bf;
        }
        j->p[i] = p - j->lr * g;
    }
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

/* ADAM_MT / SGD_MT: the single-tensor kernel per (param, grad) pair, state at the param's offset */
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
        j.p = p->data;
        j.g = node->src[k + 1]->data;
        if (adam) {
            j.m = s0 + off;
            j.v = s1 + off;
        } else {
            j.buf = s0 + off;
        }
        sn_pool_for(c->pool, sn_nelem(p), GRAIN, adam ? adam_elems : sgd_elems, &j);
    }
    return SN_OK;
}

sn_status sn_cpu_optim(sn_cpu *c, sn_tensor *node) {
    ojob j = {0};
    if (node->op == SN_OP_ADAM_MT || node->op == SN_OP_SGD_MT) return optim_multi(c, node);
    if (node->op == SN_OP_ADAM) {
        j.p = node->src[0]->data;
        j.g = node->src[1]->data;
        j.m = node->src[2]->data;
        j.v = node->src[3]->data;
        sn_status st = adam_setup(&j, node, node->src[4]->data, node->nsrc > 5 ? node->src[5] : NULL);
        if (st != SN_OK) return st;
        sn_pool_for(c->pool, sn_nelem(node->src[0]), GRAIN, adam_elems, &j);
        return SN_OK;
    }
    if (node->op == SN_OP_SGD) {
        j.p = node->src[0]->data;
        j.g = node->src[1]->data;
        j.buf = node->src[2]->data;
        sgd_setup(&j, node, node->src[3]->data, node->nsrc > 4 ? node->src[4] : NULL);
        sn_pool_for(c->pool, sn_nelem(node->src[0]), GRAIN, sgd_elems, &j);
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_optim: op %s is not an optimizer op", sn_op_name(node->op));
}
