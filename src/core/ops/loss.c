/* Losses and whole-tensor reductions; every output has shape [1]. */
#include "sinter/tensor.h"
#include "core/core.h"

static const int64_t one[1] = {1};

static sn_tensor *pair_loss(sn_ctx *ctx, sn_op op, const char *name, sn_tensor *a, sn_tensor *b) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "%s: ctx is NULL", name); return NULL; }
    if (!sn_same_shape(a, b))
        return sn_shape_fail(name, a, b, "the prediction and the target must have the same shape");
    sn_tensor *s[2] = {a, b};
    return sn_new_op(ctx, op, 2, s, 1, one);
}

sn_tensor *sn_mse(sn_ctx *ctx, sn_tensor *a, sn_tensor *b) {
    SN_NONNULL(a, b);
    return pair_loss(ctx, SN_OP_MSE, "mse_loss", a, b);
}

sn_tensor *sn_l1(sn_ctx *ctx, sn_tensor *a, sn_tensor *b) {
    SN_NONNULL(a, b);
    return pair_loss(ctx, SN_OP_L1, "l1_loss", a, b);
}

sn_tensor *sn_sum(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sum: ctx is NULL"); return NULL; }
    return sn_new_op(ctx, SN_OP_SUM, 1, &a, 1, one);
}

sn_tensor *sn_mean(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "mean: ctx is NULL"); return NULL; }
    return sn_new_op(ctx, SN_OP_MEAN, 1, &a, 1, one);
}

sn_tensor *sn_sumsq(sn_ctx *ctx, int n, sn_tensor **srcs) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sumsq: ctx is NULL"); return NULL; }
    if (!srcs || n < 1 || n > SN_MAX_SRC) {
        sn_error(SN_ERR_INVALID_ARG, "sumsq: needs 1 to %d inputs (got %d); put many gradients in one flat buffer",
                 SN_MAX_SRC, n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!srcs[i]) {
            if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "sumsq: input %d is NULL", i);
            return NULL;
        }
    return sn_new_op(ctx, SN_OP_SUMSQ, n, srcs, 1, one);
}

sn_status sn_grad_loss(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *a = node->src[0];
    if (sn_nelem(dy) != 1 && (node->op == SN_OP_MSE || node->op == SN_OP_L1 || node->op == SN_OP_SUM ||
                              node->op == SN_OP_MEAN))
        return sn_error(SN_ERR_SHAPE, "gradient of %s '%s': dy must have one element", sn_op_name(node->op),
                        node->name);
    switch (node->op) {
    case SN_OP_MSE:
    case SN_OP_L1: {
        sn_tensor *b = node->src[1];
        if (!sn_needs_grad(a) && !sn_needs_grad(b)) return SN_OK;
        sn_tensor *s[3] = {dy, a, b};
        sn_tensor *da = sn_new_op(ctx, node->op == SN_OP_MSE ? SN_OP_MSE_BWD : SN_OP_L1_BWD, 3, s, a->ndim, a->shape);
        if (!da) return SN_ERR_NOMEM;
        if (sn_needs_grad(a)) dsrc[0] = da;
        if (sn_needs_grad(b)) dsrc[1] = sn_scale(ctx, da, -1.0f);  /* d/db = -d/da */
        break;
    }
    case SN_OP_SUM:
        if (sn_needs_grad(a)) dsrc[0] = sn_expand(ctx, dy, a->ndim, a->shape, 1.0f);
        break;
    case SN_OP_MEAN:
        if (sn_needs_grad(a)) dsrc[0] = sn_expand(ctx, dy, a->ndim, a->shape, (float)(1.0 / (double)sn_nelem(a)));
        break;
    default:
        for (int i = 0; i < node->nsrc; i++)
            if (sn_needs_grad(node->src[i]))
                return sn_error(SN_ERR_UNSUPPORTED, "%s '%s': no gradient (%s)", sn_op_name(node->op), node->name,
                                node->op == SN_OP_SUMSQ ? "sumsq serves gradient clipping only"
                                                        : "second-order gradients are not supported");
        return SN_OK;
    }
    for (int i = 0; i < node->nsrc; i++)
        if (sn_needs_grad(node->src[i]) && !dsrc[i]) return SN_ERR_NOMEM;
    return SN_OK;
}
