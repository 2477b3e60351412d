/* Elementwise activations and their backward ops. RELU/ELU/SIGMOID/TANH backward
 * read the forward output y (so x need not be kept); SOFTPLUS backward reads x. */
#include "sinter/tensor.h"
#include "core/core.h"

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
