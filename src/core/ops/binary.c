/* Binary ops with numpy broadcasting of b onto a (output = a's shape), scale,
 * reduce_to (the inverse of broadcasting) and expand (a scalar filled out). */
#include "sinter/tensor.h"
#include "core/core.h"

#include <stdio.h>

/* Does a tensor of shape `small` broadcast onto `ndim`/`shape`? Dims right-aligned,
 * each 1 or equal. */
static bool broadcasts(int sndim, const int64_t *small, int ndim, const int64_t *shape) {
    if (sndim > ndim) return false;
    int off = ndim - sndim;
    for (int i = 0; i < sndim; i++)
        if (small[i] != 1 && small[i] != shape[off + i]) return false;
    return true;
}

static bool shape_valid(int ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > SN_MAX_DIMS || !shape) return false;
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return false;
    return true;
}

static const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && shape && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static sn_tensor *binary(sn_ctx *ctx, sn_op op, const char *name, sn_tensor *a, sn_tensor *b) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "%s: ctx is NULL", name); return NULL; }
    if (!broadcasts(b->ndim, b->shape, a->ndim, a->shape))
        return sn_shape_fail(name, a, b,
                             "the second input does not broadcast onto the first (right-aligned, each of its dims "
                             "must be 1 or equal to the first's; the output has the first's shape)");
    sn_tensor *srcs[2] = {a, b};
    return sn_new_op(ctx, op, 2, srcs, a->ndim, a->shape);
}

sn_tensor *sn_add(sn_ctx *ctx, sn_tensor *a, sn_tensor *b) {
    SN_NONNULL(a, b);
    return binary(ctx, SN_OP_ADD, "add", a, b);
}

sn_tensor *sn_mul(sn_ctx *ctx, sn_tensor *a, sn_tensor *b) {
    SN_NONNULL(a, b);
    return binary(ctx, SN_OP_MUL, "mul", a, b);
}

sn_tensor *sn_scale(sn_ctx *ctx, sn_tensor *a, float s) {
    SN_NONNULL(a);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "scale: ctx is NULL"); return NULL; }
    sn_tensor *t = sn_new_op(ctx, SN_OP_SCALE, 1, &a, a->ndim, a->shape);
    if (t) t->fp[0] = s;
    return t;
}

sn_tensor *sn_reduce_to(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape) {
    SN_NONNULL(a);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "reduce_to: ctx is NULL"); return NULL; }
    char buf[96];
    if (!shape_valid(ndim, shape))
        return sn_shape_fail("reduce_to", a, NULL, "invalid target shape (ndim %d, dims must be positive, at most %d)",
                             ndim, SN_MAX_DIMS);
    if (!broadcasts(ndim, shape, a->ndim, a->shape))
        return sn_shape_fail("reduce_to", a, NULL,
                             "target shape %s does not broadcast onto the input (right-aligned, each target dim "
                             "must be 1 or equal)", dims_str(ndim, shape, buf, sizeof buf));
    return sn_new_op(ctx, SN_OP_REDUCE_TO, 1, &a, ndim, shape);
}

sn_tensor *sn_expand(sn_ctx *ctx, sn_tensor *scalar, int ndim, const int64_t *shape, float s) {
    SN_NONNULL(scalar);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "expand: ctx is NULL"); return NULL; }
    if (sn_nelem(scalar) != 1)
        return sn_shape_fail("expand", scalar, NULL, "the input must have exactly one element, it has %lld",
                             (long long)sn_nelem(scalar));
    if (!shape_valid(ndim, shape))
        return sn_shape_fail("expand", scalar, NULL, "invalid target shape (ndim %d, dims must be positive, at most %d)",
                             ndim, SN_MAX_DIMS);
    sn_tensor *t = sn_new_op(ctx, SN_OP_EXPAND, 1, &scalar, ndim, shape);
    if (t) t->fp[0] = s;
    return t;
}

/* The gradient of a broadcast operand: sum dy back to the operand's shape. */
static sn_tensor *unbroadcast(sn_ctx *ctx, sn_tensor *g, const sn_tensor *to) {
    if (!g) return NULL;
    if (sn_same_shape(g, to)) return g;
    return sn_reduce_to(ctx, g, to->ndim, to->shape);
}

sn_status sn_grad_binary(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *a = node->src[0], *b = node->nsrc > 1 ? node->src[1] : NULL;
    switch (node->op) {
    case SN_OP_ADD:
        if (sn_needs_grad(a)) dsrc[0] = dy;
        if (sn_needs_grad(b)) dsrc[1] = unbroadcast(ctx, dy, b);
        break;
    case SN_OP_MUL:
        if (sn_needs_grad(a)) dsrc[0] = sn_mul(ctx, dy, b);
        if (sn_needs_grad(b)) dsrc[1] = unbroadcast(ctx, sn_mul(ctx, dy, a), b);
        break;
    case SN_OP_SCALE:
        if (sn_needs_grad(a)) dsrc[0] = sn_scale(ctx, dy, node->fp[0]);
        break;
    case SN_OP_EXPAND:
        if (sn_needs_grad(a)) {
            sn_tensor *s = sn_scale(ctx, sn_sum(ctx, dy), node->fp[0]);
            dsrc[0] = (s && !sn_same_shape(s, a)) ? sn_reshape(ctx, s, a->ndim, a->shape) : s;
        }
        break;
    case SN_OP_REDUCE_TO:
        if (sn_needs_grad(a))
            return sn_error(SN_ERR_UNSUPPORTED,
                            "reduce_to '%s': no gradient (reduce_to appears only in backward graphs; "
                            "second-order gradients are not supported)", node->name);
        break;
    default:
        return sn_error(SN_ERR_INTERNAL, "sn_grad_binary: op %s is not a binary op", sn_op_name(node->op));
    }
    for (int i = 0; i < node->nsrc; i++)
        if (sn_needs_grad(node->src[i]) && !dsrc[i])
            return sn_error_prefix(SN_ERR_SHAPE, "gradient of %s '%s'", sn_op_name(node->op), node->name);
    return SN_OK;
}
