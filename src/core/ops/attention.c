/* Multi-head self-attention (nn.MultiheadAttention layout, q = k = v = x): shapes
 * and gradient (one fused ATTENTION_BWD op with a packed output). */
#include "sinter/tensor.h"
#include "core/core.h"

sn_tensor *sn_attention(sn_ctx *ctx, sn_tensor *x, sn_tensor *in_w, sn_tensor *in_b, sn_tensor *out_w,
                        sn_tensor *out_b, int heads, bool causal) {
    SN_NONNULL(x, in_w, in_b, out_w, out_b);
    if (x->ndim != 3)
        return sn_shape_fail("attention", x, in_w, "input must be [batch, time, embed] (batch_first), it has %d dims",
                             x->ndim);
    int64_t E = x->shape[2];
    if (in_w->ndim != 2 || in_w->shape[0] != 3 * E || in_w->shape[1] != E)
        return sn_shape_fail("attention", x, in_w, "in_proj_weight must be [%lld,%lld] (3*embed, embed)",
                             (long long)(3 * E), (long long)E);
    if (in_b->ndim != 1 || in_b->shape[0] != 3 * E)
        return sn_shape_fail("attention", x, in_b, "in_proj_bias must be [%lld] (3*embed)", (long long)(3 * E));
    if (out_w->ndim != 2 || out_w->shape[0] != E || out_w->shape[1] != E)
        return sn_shape_fail("attention", x, out_w, "out_proj.weight must be [%lld,%lld]", (long long)E, (long long)E);
    if (out_b->ndim != 1 || out_b->shape[0] != E)
        return sn_shape_fail("attention", x, out_b, "out_proj.bias must be [%lld]", (long long)E);
    if (heads < 1 || E % heads != 0) {
        sn_error(SN_ERR_INVALID_ARG, "attention: %d heads do not divide the embed dim %lld; pick a divisor of it",
                 heads, (long long)E);
        return NULL;
    }
    sn_tensor *src[5] = {x, in_w, in_b, out_w, out_b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_ATTENTION, 5, src, 3, x->shape);
    if (!t) return NULL;
    t->ip[0] = heads;
    t->ip[1] = causal;
    t->extra = (size_t)sn_attention_extra_elems(x->shape[0], x->shape[1], E, heads) * sizeof(float);
    return t;
}

sn_status sn_grad_attention(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    if (node->op != SN_OP_ATTENTION)
        return sn_error(SN_ERR_INTERNAL, "sn_grad_attention: op %s has no gradient here", sn_op_name(node->op));
    bool any = false;
    for (int i = 0; i < 5; i++) any |= sn_needs_grad(node->src[i]);
    if (!any) return SN_OK;
    int64_t sizes[5];
    for (int i = 0; i < 5; i++) sizes[i] = sn_nelem(node->src[i]);
    int64_t total = sn_packed_offset(sizes, 5);
    sn_tensor *src[7] = {dy, node->src[0], node, node->src[1], node->src[2], node->src[3], node->src[4]};
    sn_tensor *bwd = sn_new_op(ctx, SN_OP_ATTENTION_BWD, 7, src, 1, &total);
    if (!bwd) return sn_error_prefix(SN_ERR_NOMEM, "attention gradient");
    bwd->ip[0] = node->ip[0];
    bwd->ip[1] = node->ip[1];
    for (int i = 0; i < 5; i++)
        if (sn_needs_grad(node->src[i]) &&
            !(dsrc[i] = sn_view(ctx, bwd, node->src[i]->ndim, node->src[i]->shape, sn_packed_offset(sizes, i))))
            return sn_error_prefix(SN_ERR_NOMEM, "attention gradient");
    return SN_OK;
}
