/* LayerNorm and softmax over the last dim: shapes and gradients. */
#include "sinter/tensor.h"
#include "core/core.h"

sn_tensor *sn_layernorm(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, float eps) {
    SN_NONNULL(x, gamma, beta);
    if (x->ndim < 1) return sn_shape_fail("layernorm", x, gamma, "input needs at least 1 dim");
    int64_t E = x->shape[x->ndim - 1];
    if (gamma->ndim != 1 || gamma->shape[0] != E)
        return sn_shape_fail("layernorm", x, gamma, "weight must be [%lld] (the input's last dim)", (long long)E);
    if (beta->ndim != 1 || beta->shape[0] != E)
        return sn_shape_fail("layernorm", x, beta, "bias must be [%lld] (the input's last dim)", (long long)E);
    if (!(eps > 0)) {
        sn_error(SN_ERR_INVALID_ARG, "layernorm: eps %g must be positive (PyTorch's default is 1e-5)", eps);
        return NULL;
    }
    sn_tensor *src[3] = {x, gamma, beta};
    sn_tensor *t = sn_new_op(ctx, SN_OP_LAYERNORM, 3, src, x->ndim, x->shape);
    if (!t) return NULL;
    t->fp[0] = eps;
    int64_t M = sn_nelem(x) / E;
    t->extra = (size_t)(2 * sn_align64(M)) * sizeof(float); /* mean[M], rstd[M] at align64(M) */
    return t;
}

sn_tensor *sn_softmax(sn_ctx *ctx, sn_tensor *x) {
    SN_NONNULL(x);
    if (x->ndim < 1) return sn_shape_fail("softmax", x, NULL, "input needs at least 1 dim");
    return sn_new_op(ctx, SN_OP_SOFTMAX, 1, &x, x->ndim, x->shape);
}

sn_status sn_grad_norm(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    if (node->op == SN_OP_SOFTMAX) {
        if (!sn_needs_grad(node->src[0])) return SN_OK;
        sn_tensor *src[2] = {dy, node};
        dsrc[0] = sn_new_op(ctx, SN_OP_SOFTMAX_BWD, 2, src, node->ndim, node->shape);
        return dsrc[0] ? SN_OK : sn_error_prefix(SN_ERR_NOMEM, "softmax gradient");
    }
    if (node->op != SN_OP_LAYERNORM)
        return sn_error(SN_ERR_INTERNAL, "sn_grad_norm: op %s has no gradient here", sn_op_name(node->op));
    sn_tensor *x = node->src[0], *g = node->src[1], *b = node->src[2];
    if (!sn_needs_grad(x) && !sn_needs_grad(g) && !sn_needs_grad(b)) return SN_OK;
    int64_t E = g->shape[0], sizes[3] = {sn_nelem(x), E, E}, total = sn_packed_offset(sizes, 3);
    sn_tensor *src[4] = {dy, x, node, g};
    sn_tensor *bwd = sn_new_op(ctx, SN_OP_LAYERNORM_BWD, 4, src, 1, &total);
    if (!bwd) return sn_error_prefix(SN_ERR_NOMEM, "layernorm gradient");
    bwd->fp[0] = node->fp[0];
    for (int i = 0; i < 3; i++)
        if (sn_needs_grad(node->src[i]) &&
            !(dsrc[i] = sn_view(ctx, bwd, node->src[i]->ndim, node->src[i]->shape, sn_packed_offset(sizes, i))))
            return sn_error_prefix(SN_ERR_NOMEM, "layernorm gradient");
    return SN_OK;
}
