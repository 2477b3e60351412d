/* Optimizer update ops (torch.optim.Adam/AdamW/SGD semantics). They write the
 * parameter and its state in place; the [1] output is a token that orders them. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <stdint.h>

static const int64_t one[1] = {1};

_Static_assert(2 + SN_OPTIM_MT_MAX <= SN_MAX_IPARAMS, "multi-tensor offsets must fit the ip slots");

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

static bool adam_hparams_ok(const char *name, float beta1, float beta2, float eps, float weight_decay) {
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) || !(eps >= 0.0f) ||
        !(weight_decay >= 0.0f)) {
        sn_error(SN_ERR_INVALID_ARG, "%s: need 0 <= betas < 1, eps >= 0, weight_decay >= 0 (got %g %g %g %g)", name,
                 (double)beta1, (double)beta2, (double)eps, (double)weight_decay);
        return false;
    }
    return true;
}

static sn_tensor *set_adam(sn_tensor *t, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                           bool adamw) {
    if (!t) return NULL;
    t->ip[0] = adamw ? 1 : 0;
    t->fp[0] = beta1;
    t->fp[1] = beta2;
    t->fp[2] = eps;
    t->fp[3] = weight_decay;
    t->fp[4] = max_norm;
    return t;
}

static bool sgd_hparams_ok(const char *name, float momentum, float dampening, float weight_decay, bool nesterov) {
    if (!(momentum >= 0.0f) || !(weight_decay >= 0.0f) || dampening != dampening) {
        sn_error(SN_ERR_INVALID_ARG, "%s: need momentum >= 0 and weight_decay >= 0 (got %g, %g)", name,
                 (double)momentum, (double)weight_decay);
        return false;
    }
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f)) {
        sn_error(SN_ERR_INVALID_ARG, "%s: nesterov momentum requires a momentum > 0 and zero dampening", name);
        return false;
    }
    return true;
}

static sn_tensor *set_sgd(sn_tensor *t, float momentum, float dampening, float weight_decay, float max_norm,
                          bool nesterov) {
    if (!t) return NULL;
    t->ip[0] = nesterov ? 1 : 0;
    t->fp[0] = momentum;
    t->fp[1] = dampening;
    t->fp[2] = weight_decay;
    t->fp[3] = max_norm;
    return t;
}

sn_tensor *sn_adam(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *m, sn_tensor *v, sn_tensor *hyper,
                   sn_tensor *sumsq, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                   bool adamw) {
    SN_NONNULL(param, grad, m, v, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "adam: ctx is NULL"); return NULL; }
    if (!check_common("adam", param, grad, hyper, sumsq, max_norm)) return NULL;
    if (!sn_same_shape(param, m) || !sn_same_shape(param, v))
        return sn_shape_fail("adam", m, v, "the moment buffers m and v must have the parameter's shape");
    if (!adam_hparams_ok("adam", beta1, beta2, eps, weight_decay)) return NULL;
    sn_tensor *s[6] = {param, grad, m, v, hyper, sumsq};
    return set_adam(sn_new_op(ctx, SN_OP_ADAM, sumsq ? 6 : 5, s, 1, one), beta1, beta2, eps, weight_decay, max_norm,
                    adamw);
}

sn_tensor *sn_sgd(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *buf, sn_tensor *hyper, sn_tensor *sumsq,
                  float momentum, float dampening, float weight_decay, float max_norm, bool nesterov) {
    SN_NONNULL(param, grad, buf, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sgd: ctx is NULL"); return NULL; }
    if (!check_common("sgd", param, grad, hyper, sumsq, max_norm)) return NULL;
    if (!sn_same_shape(param, buf))
        return sn_shape_fail("sgd", param, buf, "the momentum buffer must have the parameter's shape");
    if (!sgd_hparams_ok("sgd", momentum, dampening, weight_decay, nesterov)) return NULL;
    sn_tensor *s[5] = {param, grad, buf, hyper, sumsq};
    return set_sgd(sn_new_op(ctx, SN_OP_SGD, sumsq ? 5 : 4, s, 1, one), momentum, dampening, weight_decay, max_norm,
                   nesterov);
}

/* params[0..n) views of one flat buffer, each with its gradient; state tensors cover the buffer */
static bool check_multi(const char *name, int n, sn_tensor **params, sn_tensor **grads, sn_tensor *hyper,
                        sn_tensor *sumsq, float max_norm, sn_tensor *s0, sn_tensor *s1) {
    if (n < 1 || n > SN_OPTIM_MT_MAX || !params || !grads) {
        sn_error(SN_ERR_INVALID_ARG, "%s: needs 1 to %d params with their gradients (got %d%s); split larger sets "
                 "into several ops", name, SN_OPTIM_MT_MAX, n, params && grads ? "" : ", or NULL arrays");
        return false;
    }
    sn_tensor *root = NULL;
    for (int i = 0; i < n; i++) {
        if (!params[i] || !grads[i]) {
            sn_error(SN_ERR_INVALID_ARG, "%s: param or gradient %d is NULL", name, i);
            return false;
        }
        if (!check_common(name, params[i], grads[i], hyper, sumsq, max_norm)) return false;
        sn_tensor *r = sn_root(params[i]);
        if (!params[i]->view_src || (root && r != root)) {
            sn_shape_fail(name, params[i], root, "every param must be a view of one flat parameter buffer");
            return false;
        }
        root = r;
    }
    int64_t total = sn_nelem(root);
    if (total > INT32_MAX) {
        sn_error(SN_ERR_INVALID_ARG, "%s: the flat parameter buffer has %lld elements, more than the %d an offset "
                 "holds; use the single-tensor update", name, (long long)total, INT32_MAX);
        return false;
    }
    if ((s0 && sn_nelem(s0) != total) || (s1 && sn_nelem(s1) != total)) {
        sn_shape_fail(name, s0, root, "the flat optimizer state must have the flat parameter buffer's %lld elements",
                      (long long)total);
        return false;
    }
    return true;
}

/* srcs: head..., sumsq?, then (param, grad) pairs */
static sn_tensor *multi_node(sn_ctx *ctx, sn_op op, int nhead, sn_tensor **head, sn_tensor *sumsq, int n,
                             sn_tensor **params, sn_tensor **grads) {
    sn_tensor *s[SN_MAX_SRC];
    int k = 0;
    for (int i = 0; i < nhead; i++) s[k++] = head[i];
    if (sumsq) s[k++] = sumsq;
    for (int i = 0; i < n; i++) {
        s[k++] = params[i];
        s[k++] = grads[i];
    }
    sn_tensor *t = sn_new_op(ctx, op, k, s, 1, one);
    if (!t) return NULL;
    t->ip[1] = sumsq ? 1 : 0;
    /* offsets recorded now: a scheduler's fallback copy of a param is no longer a view */
    for (int i = 0; i < n; i++) t->ip[2 + i] = (int32_t)(sn_root_offset(params[i]) / sizeof(float));
    return t;
}

sn_tensor *sn_adam_multi(sn_ctx *ctx, int n, sn_tensor **params, sn_tensor **grads, sn_tensor *m, sn_tensor *v,
                         sn_tensor *hyper, sn_tensor *sumsq, float beta1, float beta2, float eps, float weight_decay,
                         float max_norm, bool adamw) {
    SN_NONNULL(m, v, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "adam_multi: ctx is NULL"); return NULL; }
    if (!check_multi("adam_multi", n, params, grads, hyper, sumsq, max_norm, m, v) ||
        !adam_hparams_ok("adam_multi", beta1, beta2, eps, weight_decay))
        return NULL;
    sn_tensor *head[3] = {hyper, m, v};
    return set_adam(multi_node(ctx, SN_OP_ADAM_MT, 3, head, sumsq, n, params, grads), beta1, beta2, eps,
                    weight_decay, max_norm, adamw);
}

sn_tensor *sn_sgd_multi(sn_ctx *ctx, int n, sn_tensor **params, sn_tensor **grads, sn_tensor *buf, sn_tensor *hyper,
                        sn_tensor *sumsq, float momentum, float dampening, float weight_decay, float max_norm,
                        bool nesterov) {
    SN_NONNULL(buf, hyper);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sgd_multi: ctx is NULL"); return NULL; }
    if (!check_multi("sgd_multi", n, params, grads, hyper, sumsq, max_norm, buf, NULL) ||
        !sgd_hparams_ok("sgd_multi", momentum, dampening, weight_decay, nesterov))
        return NULL;
    sn_tensor *head[2] = {hyper, buf};
    return set_sgd(multi_node(ctx, SN_OP_SGD_MT, 2, head, sumsq, n, params, grads), momentum, dampening,
                   weight_decay, max_norm, nesterov);
}
