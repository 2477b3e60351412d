/* Data-parallel ops: the gradient all-reduce (a bucket of tensors, one collective
 * call) and the flag that makes a BatchNorm synchronised. The collective itself is
 * the backend's (sn_collective, attached by src/dist); these only describe the op. */
#include "sinter/tensor.h"
#include "core/core.h"

/* ip[0] = n; segment i starts at the 64-aligned sum of the sizes before it; the
 * output ends with the last segment (no trailing padding) */
int64_t sn_allreduce_offset(const sn_tensor *node, int i) {
    int64_t o = 0;
    for (int k = 0; k < i && k < node->nsrc; k++) o += sn_align64(sn_nelem(node->src[k]));
    return o;
}

sn_tensor *sn_allreduce(sn_ctx *ctx, int n, sn_tensor **srcs, float scale) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "allreduce: ctx is NULL"); return NULL; }
    if (!srcs || n < 1 || n > SN_MAX_SRC) {
        sn_error(SN_ERR_INVALID_ARG, "allreduce: needs 1 to %d inputs (got %d)", SN_MAX_SRC, n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!srcs[i]) {
            if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "allreduce: input %d is NULL", i);
            return NULL;
        }
        if (srcs[i]->dtype != SN_F32) return sn_shape_fail("allreduce", srcs[i], NULL, "inputs must be f32");
    }
    if (!(scale > 0.0f) || scale != scale) {
        sn_error(SN_ERR_INVALID_ARG, "allreduce: scale must be > 0 (1/world for the mean), got %g", (double)scale);
        return NULL;
    }
    int64_t total = 0;
    for (int i = 0; i < n - 1; i++) total += sn_align64(sn_nelem(srcs[i]));
    total += sn_nelem(srcs[n - 1]);
    sn_tensor *t = sn_new_op(ctx, SN_OP_ALLREDUCE, n, srcs, 1, &total);
    if (!t) return NULL;
    t->ip[0] = n;
    t->fp[0] = scale;
    return t;
}

sn_status sn_batchnorm_sync(sn_tensor *node) {
    if (!node || (node->op != SN_OP_BATCHNORM && node->op != SN_OP_BATCHNORM_BWD))
        return sn_error(SN_ERR_INVALID_ARG, "sn_batchnorm_sync: not a batchnorm node");
    const sn_tensor *fwd = node->op == SN_OP_BATCHNORM ? node : node->src[2];
    if (!fwd->ip[0])
        return sn_error(SN_ERR_INVALID_ARG, "sn_batchnorm_sync: '%s' is in eval mode (running statistics): nothing "
                        "to synchronise", node->name);
    node->ip[2] = 1;
    return SN_OK;
}
