/* BatchNorm2d (PyTorch semantics): batch statistics over (N,H,W) in training, with
 * the running stats updated in place; running stats in eval. Optionally fused with
 * an ELU epilogue (ip[1] = 1, alpha fp[2]): y = ELU(BN(x)) in one pass, and its
 * backward applies the ELU derivative (from y) before the BN backward. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <math.h>

sn_tensor *sn_batchnorm2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, sn_tensor *rmean,
                          sn_tensor *rvar, bool training, float eps, float momentum) {
    SN_NONNULL(x, gamma, beta, rmean, rvar);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "batchnorm2d: ctx is NULL"); return NULL; }
    if (x->ndim != 4)
        return sn_shape_fail("batchnorm2d", x, NULL, "the input must be 4-D [N,C,H,W], it has %d dims", x->ndim);
    int64_t C = x->shape[1];
    sn_tensor *p[4] = {gamma, beta, rmean, rvar};
    static const char *pn[4] = {"weight (gamma)", "bias (beta)", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++)
        if (p[i]->ndim != 1 || p[i]->shape[0] != C)
            return sn_shape_fail("batchnorm2d", x, p[i], "the %s must be 1-D with %lld elements (the channels)", pn[i],
                                 (long long)C);
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
        sn_error(SN_ERR_INVALID_ARG, "batchnorm2d: eps must be > 0 and momentum in [0,1] (got eps %g, momentum %g)",
                 (double)eps, (double)momentum);
        return NULL;
    }
    if (training && x->shape[0] * x->shape[2] * x->shape[3] < 2)
        return sn_shape_fail("batchnorm2d", x, NULL,
                             "training needs more than one value per channel (N*H*W = 1) for the unbiased variance");
    sn_tensor *s[5] = {x, gamma, beta, rmean, rvar};
    sn_tensor *t = sn_new_op(ctx, SN_OP_BATCHNORM, 5, s, 4, x->shape);
    if (!t) return NULL;
    t->ip[0] = training ? 1 : 0;
    t->fp[0] = eps;
    t->fp[1] = momentum;
    t->extra = (size_t)(2 * sn_align64(C)) * sizeof(float);  /* mean[C] | invstd[C] */
    return t;
}

sn_tensor *sn_batchnorm2d_elu(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, sn_tensor *rmean,
                              sn_tensor *rvar, bool training, float eps, float momentum, float alpha) {
    if (!(alpha > 0.0f) || !isfinite(alpha)) {
        sn_error(SN_ERR_INVALID_ARG, "batchnorm2d_elu: alpha must be finite and > 0 (got %g)", (double)alpha);
        return NULL;
    }
    sn_tensor *t = sn_batchnorm2d(ctx, x, gamma, beta, rmean, rvar, training, eps, momentum);
    if (!t) return NULL;
    t->ip[1] = 1;
    t->fp[2] = alpha;
    return t;
}

sn_status sn_grad_batchnorm(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    if (node->op != SN_OP_BATCHNORM)
        return sn_error(SN_ERR_UNSUPPORTED, "%s '%s': no gradient (second-order gradients are not supported)",
                        sn_op_name(node->op), node->name);
    sn_tensor *x = node->src[0], *gamma = node->src[1], *beta = node->src[2];
    if (!sn_needs_grad(x) && !sn_needs_grad(gamma) && !sn_needs_grad(beta)) return SN_OK;
    if (!sn_same_shape(dy, node))
        return sn_error(SN_ERR_SHAPE, "gradient of batchnorm2d '%s': dy shape differs from the output", node->name);
    int64_t C = x->shape[1];
    int64_t sizes[3] = {sn_nelem(x), C, C};
    int64_t total = sn_packed_offset(sizes, 3);
    /* on GPUs the input is recomputed here rather than kept (DESIGN: memory planner) */
    sn_tensor *s[4] = {dy, sn_remat(ctx, x), node, gamma};
    sn_tensor *g = sn_new_op(ctx, SN_OP_BATCHNORM_BWD, 4, s, 1, &total);
    if (!g) return SN_ERR_NOMEM;
    g->ip[0] = node->ip[0];
    g->fp[0] = node->fp[0];
    g->ip[1] = node->ip[1]; /* fused ELU: dy is w.r.t. the ELU output, src 2's data is read */
    g->fp[2] = node->fp[2];
    if (sn_needs_grad(x)) dsrc[0] = sn_view(ctx, g, 4, x->shape, sn_packed_offset(sizes, 0));
    if (sn_needs_grad(gamma)) dsrc[1] = sn_view(ctx, g, 1, &C, sn_packed_offset(sizes, 1));
    if (sn_needs_grad(beta)) dsrc[2] = sn_view(ctx, g, 1, &C, sn_packed_offset(sizes, 2));
    for (int i = 0; i < 3; i++)
        if (sn_needs_grad(node->src[i]) && !dsrc[i]) return SN_ERR_NOMEM;
    return SN_OK;
}
