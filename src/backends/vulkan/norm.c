/* Vulkan kernels: LAYERNORM, SOFTMAX and their backward ops, one workgroup per row
 * (src/backends/cpu/norm.c); the LayerNorm parameter gradients one invocation per
 * column over all rows in order. The row softmax passes are shared with attention.c. */
#include "backends/vulkan/vk_gemm.h"

typedef struct {
    uint64_t x, y;
    int32_t rows, E, causal_T;
} sm_push;

typedef struct {
    uint64_t dy, y, dx;
    int32_t rows, E;
} smb_push;

sn_status sn_vk_softmax_rows(sn_vk *vk, uint64_t x, uint64_t y, int64_t rows, int64_t E, int64_t causal_T) {
    sm_push p = {x, y, (int32_t)rows, (int32_t)E, (int32_t)causal_T};
    return sn_vk_dispatch(vk, SN_VK_SH_NORM_SOFTMAX, &p, sizeof p, sn_vk_groups(rows, 1), 1, 1);
}

sn_status sn_vk_softmax_bwd_rows(sn_vk *vk, uint64_t dy, uint64_t y, uint64_t dx, int64_t rows, int64_t E) {
    smb_push p = {dy, y, dx, (int32_t)rows, (int32_t)E};
    return sn_vk_dispatch(vk, SN_VK_SH_NORM_SOFTMAX_BWD, &p, sizeof p, sn_vk_groups(rows, 1), 1, 1);
}

typedef struct {
    uint64_t x, g, b, y, mean, rstd;
    int32_t M, E;
    float eps;
} ln_push;

typedef struct {
    uint64_t dy, x, g, mean, rstd, dx;
    int32_t M, E;
} lnb_push;

typedef struct {
    uint64_t dy, x, mean, rstd, dg, db;
    int32_t M, E;
} lnp_push;

sn_status sn_vk_norm(sn_vk *vk, sn_tensor *node) {
    bool bwd = node->op == SN_OP_LAYERNORM_BWD || node->op == SN_OP_SOFTMAX_BWD;
    const sn_tensor *x = bwd ? node->src[1] : node->src[0];
    int64_t E = x->shape[x->ndim - 1], M = E > 0 ? sn_nelem(x) / E : 0;
    SN_VK_TRY(sn_vk_check_elems(sn_nelem(x), node));
    if (M == 0) return SN_OK;
    switch (node->op) {
    case SN_OP_LAYERNORM: {
        uint64_t ex = sn_vk_extra(node);
        ln_push p = {sn_vk_addr(x), sn_vk_addr(node->src[1]), sn_vk_addr(node->src[2]), sn_vk_addr(node), ex,
                     sn_vk_at(ex, sn_align64(M)), (int32_t)M, (int32_t)E, node->fp[0]};
        return sn_vk_dispatch(vk, SN_VK_SH_NORM_LAYERNORM, &p, sizeof p, sn_vk_groups(M, 1), 1, 1);
    }
    case SN_OP_LAYERNORM_BWD: {
        uint64_t ex = sn_vk_extra(node->src[2]), out = sn_vk_addr(node);
        int64_t sizes[3] = {M * E, E, E};
        lnb_push p = {sn_vk_addr(node->src[0]), sn_vk_addr(x), sn_vk_addr(node->src[3]), ex,
                      sn_vk_at(ex, sn_align64(M)), out, (int32_t)M, (int32_t)E};
        SN_VK_TRY(sn_vk_dispatch(vk, SN_VK_SH_NORM_LAYERNORM_BWD, &p, sizeof p, sn_vk_groups(M, 1), 1, 1));
        lnp_push q = {sn_vk_addr(node->src[0]), sn_vk_addr(x), ex, sn_vk_at(ex, sn_align64(M)),
                      sn_vk_at(out, sn_packed_offset(sizes, 1)), sn_vk_at(out, sn_packed_offset(sizes, 2)),
                      (int32_t)M, (int32_t)E};
        return sn_vk_dispatch(vk, SN_VK_SH_NORM_LAYERNORM_PARAMS, &q, sizeof q, sn_vk_groups(E, 64), 1, 1);
    }
    case SN_OP_SOFTMAX: return sn_vk_softmax_rows(vk, sn_vk_addr(x), sn_vk_addr(node), M, E, 0);
    case SN_OP_SOFTMAX_BWD:
        return sn_vk_softmax_bwd_rows(vk, sn_vk_addr(node->src[0]), sn_vk_addr(x), sn_vk_addr(node), M, E);
    default: return sn_error(SN_ERR_INTERNAL, "Vulkan norm: unexpected op %s", sn_op_name(node->op));
    }
}
