/* Optimizer update ops (torch.optim.Adam/AdamW/SGD semantics). They write the
 * parameter and its state in place; the [1] output is a token that orders them. */
#include "sinter/tensor.h"
#include "core/core.h"

static const int64_t one[1] = {1};

static bool check_common(const char *name, sn_tensor *param, sn_tensor *grad, sn_tensor *hyper, sn_tensor *sumsq,
                         float max_norm) {
    if (!sn_same_shape(param, grad)) {
        sn_shape_fail(name, param, grad, "the gradient must have the parameter's shape");
        return false;
    }
    if (sn_nelem(hyper) < SN_HYPER_N) {
        sn_shape_fail(name, hyper, NULL, "the hyper tensor needs %d elements [lr, bc1, bc2, step]", SN_HYPER_N);
        return false;
    }
    if (sumsq && sn_nelem(sumsq) != 1) {
        sn_shape_fail(name, sumsq, NULL, "sumsq (the squared gradient norm) must have one element");
        return false;
    }
    if (max_norm != max_norm) {
        sn_error(SN_ERR_INVALID_ARG, "%s: max_norm is NaN", name);
        return false;
    }
    return true;
}

sn_tensor *sn_adam(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *m, sn_tensor *v, sn_tensor *hyper,
                   sn_tensor *sumsq, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                   bool adamw) {
    SN_NONNULL(param, grad, m, v, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "adam: ctx is NULL"); return NULL; }
    if (!check_common("adam", param, grad, hyper, sumsq, max_norm)) return NULL;
    if (!sn_same_shape(param, m) || !sn_same_shape(param, v))
        return sn_shape_fail("adam", m, v, "the moment buffers m and v must have the parameter's shape");
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) || !(eps >= 0.0f) ||
        !(weight_decay >= 0.0f)) {
        sn_error(SN_ERR_INVALID_ARG, "adam: need 0 <= betas < 1, eps >= 0, weight_decay >= 0 (got %g %g %g %g)",
                 (double)beta1, (double)beta2, (double)eps, (double)weight_decay);
        return NULL;
    }
    sn_tensor *s[6] = {param, grad, m, v, hyper, sumsq};
    sn_tensor *t = sn_new_op(ctx, SN_OP_ADAM, sumsq ? 6 : 5, s, 1, one);
    if (!t) return NULL;
    t->ip[0] = adamw ? 1 : 0;
    t->fp[0] = beta1;
    t->fp[1] = beta2;
    t->fp[2] = eps;
    t->fp[3] = weight_decay;
    t->fp[4] = max_norm;
    return t;
}

sn_tensor *sn_sgd(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *buf, sn_tensor *hyper, sn_tensor *sumsq,
                  float momentum, float dampening, float weight_decay, float max_norm, bool nesterov) {
    SN_NONNULL(param, grad, buf, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sgd: ctx is NULL"); return NULL; }
    if (!check_common("sgd", param, grad, hyper, sumsq, max_norm)) return NULL;
    if (!sn_same_shape(param, buf))
        return sn_shape_fail("sgd", param, buf, "the momentum buffer must have the parameter's shape");
    if (!(momentum >= 0.0f) || !(weight_decay >= 0.0f) || dampening != dampening) {
        sn_error(SN_ERR_INVALID_ARG, "sgd: need momentum >= 0 and weight_decay >= 0 (got %g, %g)", (double)momentum,
                 (double)weight_decay);
        return NULL;
    }
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f)) {
        sn_error(SN_ERR_INVALID_ARG, "sgd: nesterov momentum requires a momentum > 0 and zero dampening");
        return NULL;
    }
    sn_tensor *s[5] = {param, grad, buf, hyper, sumsq};
    sn_tensor *t = sn_new_op(ctx, SN_OP_SGD, sumsq ? 5 : 4, s, 1, one);
    if (!t) return NULL;
    t->ip[0] = nesterov ? 1 : 0;
    t->fp[0] = momentum;
    t->fp[1] = dampening;
    t->fp[2] = weight_decay;
    t->fp[3] = max_norm;
    return t;
}
