/* Views (reshape, sub-ranges of packed buffers) and the materialising shape ops:
 * copy, concat, pad, slice, permute. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <stdio.h>

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

#define CTX_CHECK(name)                                                              \
    do {                                                                             \
        if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "%s: ctx is NULL", name); return NULL; } \
    } while (0)

sn_tensor *sn_view(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape, int64_t elem_offset) {
    SN_NONNULL(a);
    CTX_CHECK("view");
    char buf[96];
    if (!shape_valid(ndim, shape))
        return sn_shape_fail("view", a, NULL, "invalid view shape (ndim %d, dims must be positive, at most %d)", ndim,
                             SN_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (elem_offset < 0 || elem_offset + n > sn_nelem(a))
        return sn_shape_fail("view", a, NULL,
                             "a view of shape %s at element offset %lld needs %lld elements, the input has %lld",
                             dims_str(ndim, shape, buf, sizeof buf), (long long)elem_offset,
                             (long long)(elem_offset + n), (long long)sn_nelem(a));
    sn_tensor *t = sn_new_op(ctx, SN_OP_VIEW, 1, &a, ndim, shape);
    if (!t) return NULL;
    t->dtype = a->dtype;
    t->ip[0] = (int32_t)(elem_offset & 0x7fffffff); /* offset in elements, 31 bits each */
    t->ip[1] = (int32_t)(elem_offset >> 31);
    /* point at the root owner of the memory so that chains of views resolve in one step */
    size_t offs = (size_t)elem_offset * sn_dtype_size(a->dtype);
    if (a->view_src) {
        t->view_src = a->view_src;
        t->view_offs = a->view_offs + offs;
    } else {
        t->view_src = a;
        t->view_offs = offs;
    }
    return t;
}

sn_tensor *sn_reshape(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape) {
    SN_NONNULL(a);
    CTX_CHECK("reshape");
    char buf[96];
    if (!shape_valid(ndim, shape))
        return sn_shape_fail("reshape", a, NULL, "invalid target shape (ndim %d, dims must be positive, at most %d)",
                             ndim, SN_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n != sn_nelem(a))
        return sn_shape_fail("reshape", a, NULL, "cannot reshape to %s: %lld elements, the input has %lld",
                             dims_str(ndim, shape, buf, sizeof buf), (long long)n, (long long)sn_nelem(a));
    return sn_view(ctx, a, ndim, shape, 0);
}

sn_tensor *sn_copy(sn_ctx *ctx, sn_tensor *a) {
    SN_NONNULL(a);
    CTX_CHECK("copy");
    return sn_new_op(ctx, SN_OP_COPY, 1, &a, a->ndim, a->shape);
}

sn_tensor *sn_concat(sn_ctx *ctx, int n, sn_tensor **srcs, int axis) {
    CTX_CHECK("concat");
    if (!srcs || n < 1 || n > SN_MAX_SRC) {
        sn_error(SN_ERR_INVALID_ARG, "concat: needs 1 to %d inputs (got %d)", SN_MAX_SRC, n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!srcs[i]) {
            if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "concat: input %d is NULL", i);
            return NULL;
        }
    sn_tensor *a = srcs[0];
    if (axis < 0) axis += a->ndim;
    if (axis < 0 || axis >= a->ndim)
        return sn_shape_fail("concat", a, NULL, "axis %d is out of range for %d dims", axis, a->ndim);
    int64_t shape[SN_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    for (int i = 1; i < n; i++) {
        sn_tensor *b = srcs[i];
        if (b->ndim != a->ndim)
            return sn_shape_fail("concat", a, b, "input %d has %d dims, input 0 has %d", i, b->ndim, a->ndim);
        for (int d = 0; d < a->ndim; d++)
            if (d != axis && b->shape[d] != a->shape[d])
                return sn_shape_fail("concat", a, b, "input %d differs from input 0 in dim %d (%lld vs %lld); only "
                                     "the concat axis %d may differ", i, d, (long long)b->shape[d],
                                     (long long)a->shape[d], axis);
        shape[axis] += b->shape[axis];
    }
    sn_tensor *t = sn_new_op(ctx, SN_OP_CONCAT, n, srcs, a->ndim, shape);
    if (t) t->ip[0] = axis;
    return t;
}

sn_tensor *sn_pad(sn_ctx *ctx, sn_tensor *a, const int *pads) {
    SN_NONNULL(a);
    CTX_CHECK("pad");
    if (!pads) {
        sn_error(SN_ERR_INVALID_ARG, "pad: pads is NULL (needs 2 values per dim: before, after)");
        return NULL;
    }
    int64_t shape[SN_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        if (pads[2 * d] < 0 || pads[2 * d + 1] < 0)
            return sn_shape_fail("pad", a, NULL, "padding of dim %d is negative (%d before, %d after)", d,
                                 pads[2 * d], pads[2 * d + 1]);
        shape[d] = a->shape[d] + pads[2 * d] + pads[2 * d + 1];
    }
    sn_tensor *t = sn_new_op(ctx, SN_OP_PAD, 1, &a, a->ndim, shape);
    if (t)
        for (int i = 0; i < 2 * a->ndim; i++) t->ip[i] = pads[i];
    return t;
}

sn_tensor *sn_slice(sn_ctx *ctx, sn_tensor *a, const int64_t *start, const int64_t *shape) {
    SN_NONNULL(a);
    CTX_CHECK("slice");
    if (!start || !shape) {
        sn_error(SN_ERR_INVALID_ARG, "slice: start and shape must be given (one value per dim)");
        return NULL;
    }
    for (int d = 0; d < a->ndim; d++)
        if (start[d] < 0 || shape[d] <= 0 || start[d] + shape[d] > a->shape[d])
            return sn_shape_fail("slice", a, NULL, "dim %d: range [%lld, %lld) is outside [0, %lld) or empty", d,
                                 (long long)start[d], (long long)(start[d] + shape[d]), (long long)a->shape[d]);
    sn_tensor *t = sn_new_op(ctx, SN_OP_SLICE, 1, &a, a->ndim, shape);
    if (t)
        for (int d = 0; d < a->ndim; d++) t->ip[d] = (int32_t)start[d];
    return t;
}

sn_tensor *sn_permute(sn_ctx *ctx, sn_tensor *a, const int *perm) {
    SN_NONNULL(a);
    CTX_CHECK("permute");
    if (!perm) {
        sn_error(SN_ERR_INVALID_ARG, "permute: perm is NULL");
        return NULL;
    }
    bool seen[SN_MAX_DIMS] = {false};
    int64_t shape[SN_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= a->ndim || seen[perm[d]])
            return sn_shape_fail("permute", a, NULL, "perm is not a permutation of 0..%d (entry %d is %d)",
                                 a->ndim - 1, d, perm[d]);
        seen[perm[d]] = true;
        shape[d] = a->shape[perm[d]];
    }
    sn_tensor *t = sn_new_op(ctx, SN_OP_PERMUTE, 1, &a, a->ndim, shape);
    if (t)
        for (int d = 0; d < a->ndim; d++) t->ip[d] = perm[d];
    return t;
}

sn_status sn_grad_shape(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *a = node->src[0];
    switch (node->op) {
    case SN_OP_VIEW:
        if (!sn_needs_grad(a)) return SN_OK;
        if (node->ip[0] != 0 || node->ip[1] != 0 || sn_nelem(node) != sn_nelem(a))
            return sn_error(SN_ERR_UNSUPPORTED,
                            "view '%s': no gradient for a sub-range view (offset %d, %lld of %lld elements); such "
                            "views read the segments of packed gradient outputs and are not differentiated",
                            node->name, node->ip[0], (long long)sn_nelem(node), (long long)sn_nelem(a));
        dsrc[0] = sn_reshape(ctx, dy, a->ndim, a->shape);
        break;
    case SN_OP_COPY:
        if (sn_needs_grad(a)) dsrc[0] = dy;
        break;
    case SN_OP_CONCAT: {
        int axis = node->ip[0];
        int64_t start[SN_MAX_DIMS] = {0};
        for (int i = 0; i < node->nsrc; i++) {
            sn_tensor *s = node->src[i];
            if (sn_needs_grad(s)) dsrc[i] = sn_slice(ctx, dy, start, s->shape);
            start[axis] += s->shape[axis];
        }
        break;
    }
    case SN_OP_PAD: {
        if (!sn_needs_grad(a)) return SN_OK;
        int64_t start[SN_MAX_DIMS];
        for (int d = 0; d < a->ndim; d++) start[d] = node->ip[2 * d];
        dsrc[0] = sn_slice(ctx, dy, start, a->shape);
        break;
    }
    case SN_OP_SLICE: {
        if (!sn_needs_grad(a)) return SN_OK;
        int pads[2 * SN_MAX_DIMS];
        for (int d = 0; d < a->ndim; d++) {
            pads[2 * d] = node->ip[d];
            pads[2 * d + 1] = (int)(a->shape[d] - node->ip[d] - node->shape[d]);
        }
        dsrc[0] = sn_pad(ctx, dy, pads);
        break;
    }
    case SN_OP_PERMUTE: {
        if (!sn_needs_grad(a)) return SN_OK;
        int inv[SN_MAX_DIMS];
        for (int d = 0; d < a->ndim; d++) inv[node->ip[d]] = d;
        dsrc[0] = sn_permute(ctx, dy, inv);
        break;
    }
    default:
        return sn_error(SN_ERR_INTERNAL, "sn_grad_shape: op %s is not a shape op", sn_op_name(node->op));
    }
    for (int i = 0; i < node->nsrc; i++)
        if (sn_needs_grad(node->src[i]) && !dsrc[i])
            return sn_error_prefix(SN_ERR_SHAPE, "gradient of %s '%s'", sn_op_name(node->op), node->name);
    return SN_OK;
}
