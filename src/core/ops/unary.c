/* Elementwise activations and their backward ops. RELU/ELU/SIGMOID/TANH backward
 * read the forward output y (so x need not be kept); SOFTPLUS backward reads x, or y
 * with ip0 = 1 (the fused activation epilogues of linear and the convolutions, whose
 * pre-activation never exists). Also the checks and gradient of those epilogues. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <math.h>

#define SN_SOFTPLUS_FUSED_MIN_THRESHOLD 17.0f


static sn_tensor *unary(sn_ctx *ctx, sn_op op, sn_tensor *a) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "%s: ctx is NULL", sn_op_name(op)); return NULL; }
    return sn_new_op(ctx, op, 1, &a, a->ndim, a->shape);
}

sn_tensor *sn_relu(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    return unary(ctx, SN_OP_RELU, a);
}

sn_tensor *sn_elu(sn_ctx *ctx, sn_tensor *a, float alpha) {
    SN_NONNULL(a);
    if (!(alpha >= 0.0f)) {  /* the backward recovers exp(x) from y+alpha, so alpha must be >= 0 */
        sn_error(SN_ERR_INVALID_ARG, "elu: alpha must be >= 0 (got %g)", (double)alpha);
        return NULL;
    }
    sn_tensor *t = unary(ctx, SN_OP_ELU, a);
    if (t) t->fp[0] = alpha;
    return t;
}

sn_tensor *sn_softplus(sn_ctx *ctx, sn_tensor *a, float beta, float threshold) {
    SN_NONNULL(a);
    if (!(beta > 0.0f) || threshold != threshold) {
        sn_error(SN_ERR_INVALID_ARG, "softplus: beta must be > 0 and threshold a number (got beta %g, threshold %g)",
                 (double)beta, (double)threshold);
        return NULL;
    }
    sn_tensor *t = unary(ctx, SN_OP_SOFTPLUS, a);
    if (t) {
        t->fp[0] = beta;
        t->fp[1] = threshold;
    }
    return t;
}

sn_tensor *sn_sigmoid(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    return unary(ctx, SN_OP_SIGMOID, a);
}

sn_tensor *sn_tanh(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    return unary(ctx, SN_OP_TANH, a);
}

static sn_tensor *bwd(sn_ctx *ctx, sn_op op, sn_tensor *dy, sn_tensor *saved, const sn_tensor *fwd) {
    sn_tensor *s[2] = {dy, saved};
    sn_tensor *t = sn_new_op(ctx, op, 2, s, saved->ndim, saved->shape);
    if (t) {
        t->fp[0] = fwd->fp[0];
        t->fp[1] = fwd->fp[1];
    }
    return t;
}

sn_status sn_grad_unary(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *x = node->src[0];
    if (!sn_needs_grad(x)) return SN_OK;
    if (!sn_same_shape(dy, node))
        return sn_error(SN_ERR_SHAPE, "gradient of %s '%s': dy shape differs from the output", sn_op_name(node->op),
                        node->name);
    switch (node->op) {
    case SN_OP_RELU: dsrc[0] = bwd(ctx, SN_OP_RELU_BWD, dy, node, node); break;
    case SN_OP_ELU: dsrc[0] = bwd(ctx, SN_OP_ELU_BWD, dy, node, node); break;
    case SN_OP_SIGMOID: dsrc[0] = bwd(ctx, SN_OP_SIGMOID_BWD, dy, node, node); break;
    case SN_OP_TANH: dsrc[0] = bwd(ctx, SN_OP_TANH_BWD, dy, node, node); break;
    case SN_OP_SOFTPLUS: dsrc[0] = bwd(ctx, SN_OP_SOFTPLUS_BWD, dy, x, node); break;
    default:
        return sn_error(SN_ERR_UNSUPPORTED, "%s '%s': no gradient (second-order gradients are not supported)",
                        sn_op_name(node->op), node->name);
    }
    return dsrc[0] ? SN_OK : SN_ERR_NOMEM;
}

/* Is (act, p0, p1) a valid epilogue for `op`? Sets the error naming op if not. The
 * parameter rules are sn_softplus's and sn_elu's (whose alpha must also be finite here). */
bool sn_act_check(const char *op, sn_act act, float p0, float p1) {
    if ((int)act < SN_ACT_NONE || (int)act >= SN_ACT_COUNT) {
        sn_error(SN_ERR_INVALID_ARG, "%s: unknown activation %d (use SN_ACT_NONE .. SN_ACT_TANH)", op, (int)act);
        return false;
    }
    if (act == SN_ACT_ELU && !(p0 >= 0.0f && isfinite(p0))) {
        sn_error(SN_ERR_INVALID_ARG, "%s: ELU alpha must be finite and >= 0 (got %g)", op, (double)p0);
        return false;
    }
    if (act == SN_ACT_SOFTPLUS && (!(p0 > 0.0f) || p1 != p1)) {
        sn_error(SN_ERR_INVALID_ARG, "%s: softplus beta must be > 0 and threshold a number (got beta %g, threshold %g)",
                 op, (double)p0, (double)p1);
        return false;
    }
    return true;
}

/* *dy = act'(y) * *dy for a node with an activation epilogue, from its output y (the
 * node itself): the gradient w.r.t. the pre-activation, which the op's own backward
 * then takes as its dy. */
sn_status sn_act_grad(sn_ctx *ctx, sn_tensor *node, sn_tensor **dy) {
    static const sn_op bwd_op[SN_ACT_COUNT] = {
        [SN_ACT_RELU] = SN_OP_RELU_BWD,       [SN_ACT_ELU] = SN_OP_ELU_BWD, [SN_ACT_SOFTPLUS] = SN_OP_SOFTPLUS_BWD,
        [SN_ACT_SIGMOID] = SN_OP_SIGMOID_BWD, [SN_ACT_TANH] = SN_OP_TANH_BWD,
    };
    int act = node->ip[SN_IP_ACT];
    if (act <= SN_ACT_NONE || act >= SN_ACT_COUNT)
        return sn_error(SN_ERR_INTERNAL, "%s '%s': no activation gradient for act %d", sn_op_name(node->op),
                        node->name, act);
    if (!sn_same_shape(*dy, node))
        return sn_error(SN_ERR_SHAPE, "gradient of %s '%s': dy shape differs from the output", sn_op_name(node->op),
                        node->name);
    /* Softplus jumps by log1p(e^-t)/beta at its threshold t, so an output just above t
     * may come from either side and the derivative read from y may be off by up to
     * e^-t: under 2^-24 (a float's spacing below 1) only for t >= 17. */
    if (act == SN_ACT_SOFTPLUS && !(node->fp[SN_FP_ACT + 1] >= SN_SOFTPLUS_FUSED_MIN_THRESHOLD))
        return sn_error(SN_ERR_UNSUPPORTED,
                        "gradient of %s '%s': a fused softplus needs threshold >= %g for its gradient (got %g): it is "
                        "computed from the output, which is ambiguous near a lower threshold; use sn_softplus instead",
                        sn_op_name(node->op), node->name, (double)SN_SOFTPLUS_FUSED_MIN_THRESHOLD,
                        (double)node->fp[SN_FP_ACT + 1]);
    sn_tensor *s[2] = {*dy, node};
    sn_tensor *t = sn_new_op(ctx, bwd_op[act], 2, s, node->ndim, node->shape);
    if (!t) return SN_ERR_NOMEM;
    t->fp[0] = node->fp[SN_FP_ACT];
    t->fp[1] = node->fp[SN_FP_ACT + 1];
    if (act == SN_ACT_SOFTPLUS) t->ip[0] = 1; /* src 1 is y */
    *dy = t;
    return SN_OK;
}
