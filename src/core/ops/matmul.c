/* Matrix products: MATMUL, LINEAR (optionally with an activation epilogue), BIAS_GRAD;
 * their shapes and gradients. */
#include "sinter/tensor.h"
#include "core/core.h"

/* ops/unary.c (these belong in core/core.h, a shared file) */

sn_tensor *sn_matmul(sn_ctx *ctx, sn_tensor *a, sn_tensor *b, bool trans_a, bool trans_b) {
    SN_NONNULL(a, b);
    if (a->ndim < 2 || b->ndim < 2)
        return sn_shape_fail("matmul", a, b, "both operands need at least 2 dims (got %d and %d)", a->ndim, b->ndim);
    if (b->ndim != 2) {
        if (a->ndim != b->ndim)
            return sn_shape_fail("matmul", a, b, "batched b needs the same number of dims as a (%d vs %d); "
                                 "or pass a 2-D b shared across the batch", b->ndim, a->ndim);
        for (int d = 0; d < a->ndim - 2; d++)
            if (a->shape[d] != b->shape[d])
                return sn_shape_fail("matmul", a, b, "batch dim %d differs (%lld vs %lld)", d,
                                     (long long)a->shape[d], (long long)b->shape[d]);
    }
    int na = a->ndim, nb = b->ndim;
    int64_t M = trans_a ? a->shape[na - 1] : a->shape[na - 2];
    int64_t Ka = trans_a ? a->shape[na - 2] : a->shape[na - 1];
    int64_t Kb = trans_b ? b->shape[nb - 1] : b->shape[nb - 2];
    int64_t N = trans_b ? b->shape[nb - 2] : b->shape[nb - 1];
    if (Ka != Kb)
        return sn_shape_fail("matmul", a, b, "inner dims differ: a gives K=%lld, b gives K=%lld (trans_a %d, trans_b %d)",
                             (long long)Ka, (long long)Kb, trans_a, trans_b);
    int64_t shape[SN_MAX_DIMS];
    for (int d = 0; d < na - 2; d++) shape[d] = a->shape[d];
    shape[na - 2] = M;
    shape[na - 1] = N;
    sn_tensor *src[2] = {a, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_MATMUL, 2, src, na, shape);
    if (!t) return NULL;
    t->ip[0] = trans_a;
    t->ip[1] = trans_b;
    return t;
}

sn_tensor *sn_linear(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b) {
    return sn_linear_act(ctx, x, w, b, SN_ACT_NONE, 0.0f, 0.0f);
}

sn_tensor *sn_linear_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, sn_act act, float p0, float p1) {
    SN_NONNULL(x, w);
    if (!sn_act_check("linear", act, p0, p1)) return NULL;
    if (w->ndim != 2) return sn_shape_fail("linear", x, w, "weight must be 2-D [out,in], it has %d dims", w->ndim);
    if (x->ndim < 1) return sn_shape_fail("linear", x, w, "input needs at least 1 dim");
    int64_t K = x->shape[x->ndim - 1], N = w->shape[0];
    if (w->shape[1] != K)
        return sn_shape_fail("linear", x, w, "weight has %lld input features but the input's last dim is %lld",
                             (long long)w->shape[1], (long long)K);
    if (b && (b->ndim != 1 || b->shape[0] != N))
        return sn_shape_fail("linear", w, b, "bias must be [%lld] (the weight's out features)", (long long)N);
    int64_t shape[SN_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = N;
    sn_tensor *src[3] = {x, w, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_LINEAR, b ? 3 : 2, src, x->ndim, shape);
    if (t) {
        t->ip[SN_IP_ACT] = act;
        t->fp[SN_FP_ACT] = act != SN_ACT_NONE ? p0 : 0.0f;
        t->fp[SN_FP_ACT + 1] = act != SN_ACT_NONE ? p1 : 0.0f;
    }
    return t;
}

/* db[C] = sum of dy over every dim but `axis` (a bias gradient). Internal to autodiff. */
static sn_tensor *bias_grad(sn_ctx *ctx, sn_tensor *dy, int axis) {
    int64_t shape[1] = {dy->shape[axis]};
    sn_tensor *t = sn_new_op(ctx, SN_OP_BIAS_GRAD, 1, &dy, 1, shape);
    if (t) t->ip[0] = axis;
    return t;
}

/* [.., R, C] -> [prod(..)*R, C] */
static sn_tensor *flatten2(sn_ctx *ctx, sn_tensor *t) {
    int64_t s[2] = {sn_nelem(t) / t->shape[t->ndim - 1], t->shape[t->ndim - 1]};
    return t->ndim == 2 ? t : sn_reshape(ctx, t, 2, s);
}

static sn_tensor *swap_last2(sn_ctx *ctx, sn_tensor *t) {
    int perm[SN_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) perm[d] = d;
    perm[t->ndim - 2] = t->ndim - 1;
    perm[t->ndim - 1] = t->ndim - 2;
    return sn_permute(ctx, t, perm);
}

static sn_status grad_matmul(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *a = node->src[0], *b = node->src[1];
    bool ta = node->ip[0], tb = node->ip[1];
    bool shared_b = b->ndim == 2 && a->ndim > 2;
    if (sn_needs_grad(a)) {
        /* C = op(A) op(B): d op(A) = dC op(B)^T */
        if (!ta) dsrc[0] = sn_matmul(ctx, dy, b, false, !tb);
        else if (!shared_b) dsrc[0] = sn_matmul(ctx, b, dy, tb, true);
        else dsrc[0] = swap_last2(ctx, sn_matmul(ctx, dy, b, false, !tb));
        if (!dsrc[0]) return sn_error_prefix(SN_ERR_INTERNAL, "matmul gradient");
    }
    if (sn_needs_grad(b)) {
        /* d op(B) = op(A)^T dC */
        if (!shared_b) {
            dsrc[1] = tb ? sn_matmul(ctx, dy, a, true, ta) : sn_matmul(ctx, a, dy, !ta, false);
        } else if (!ta) {
            /* flatten the batch into rows: one GEMM */
            sn_tensor *a2 = flatten2(ctx, a), *d2 = flatten2(ctx, dy);
            dsrc[1] = tb ? sn_matmul(ctx, d2, a2, true, false) : sn_matmul(ctx, a2, d2, true, false);
        } else {
            sn_tensor *bb = tb ? sn_matmul(ctx, dy, a, true, true) : sn_matmul(ctx, a, dy, false, false);
            dsrc[1] = bb ? sn_reduce_to(ctx, bb, 2, b->shape) : NULL;
        }
        if (!dsrc[1]) return sn_error_prefix(SN_ERR_INTERNAL, "matmul gradient");
    }
    return SN_OK;
}

static sn_status grad_linear(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *x = node->src[0], *w = node->src[1], *b = node->nsrc > 2 ? node->src[2] : NULL;
    /* activation epilogue: its derivative from the output, then the plain linear's */
    if (node->ip[SN_IP_ACT] != SN_ACT_NONE) {
        sn_status s = sn_act_grad(ctx, node, &dy);
        if (s != SN_OK) return s;
    }
    if (sn_needs_grad(x) && !(dsrc[0] = sn_matmul(ctx, dy, w, false, false)))
        return sn_error_prefix(SN_ERR_INTERNAL, "linear gradient");
    if (sn_needs_grad(w)) {
        sn_tensor *x2 = x->ndim == 1 ? sn_reshape(ctx, x, 2, (int64_t[]){1, x->shape[0]}) : flatten2(ctx, x);
        sn_tensor *d2 = dy->ndim == 1 ? sn_reshape(ctx, dy, 2, (int64_t[]){1, dy->shape[0]}) : flatten2(ctx, dy);
        if (!x2 || !d2 || !(dsrc[1] = sn_matmul(ctx, d2, x2, true, false)))
            return sn_error_prefix(SN_ERR_INTERNAL, "linear gradient");
    }
    if (sn_needs_grad(b) && !(dsrc[2] = bias_grad(ctx, dy, dy->ndim - 1)))
        return sn_error_prefix(SN_ERR_INTERNAL, "linear gradient");
    return SN_OK;
}

sn_status sn_grad_matmul(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    switch (node->op) {
    case SN_OP_MATMUL: return grad_matmul(ctx, node, dy, dsrc);
    case SN_OP_LINEAR: return grad_linear(ctx, node, dy, dsrc);
    default:
        return sn_error(SN_ERR_INTERNAL, "sn_grad_matmul: op %s has no gradient here", sn_op_name(node->op));
    }
}
