/* Vulkan kernels: BatchNorm2d forward (batch statistics with the running-stat update,
 * or the running statistics) and backward into the packed [dx | dgamma | dbeta], one
 * workgroup per channel with fixed reduction trees (deterministic, no atomics), as
 * src/backends/cpu/batchnorm.c. ip[1] = 1: the fused ELU (alpha fp[2]) epilogue, and a
 * backward whose dy is w.r.t. the ELU output (read from the forward's y). */
#include "backends/vulkan/vk_gemm.h"

typedef struct {
    uint64_t x, y, gamma, beta, rm, rv, mean, invstd;
    int32_t N, C, HW, training, elu;
    float eps, mom, alpha;
} bn_fwd_push;

typedef struct {
    uint64_t dy, x, yf, gamma, mean, invstd, dx, dg, db;
    int32_t N, C, HW, training, elu;
    float alpha;
} bn_bwd_push;

sn_status sn_vk_batchnorm(sn_vk *vk, sn_tensor *node) {
    if (node->op == SN_OP_BATCHNORM) {
        const sn_tensor *x = node->src[0];
        int64_t C = x->shape[1];
        SN_VK_TRY(sn_vk_check_elems(sn_nelem(x), node));
        uint64_t ex = sn_vk_extra(node);
        bn_fwd_push p = {sn_vk_addr(x), sn_vk_addr(node), sn_vk_addr(node->src[1]), sn_vk_addr(node->src[2]),
                         sn_vk_addr(node->src[3]), sn_vk_addr(node->src[4]), ex, sn_vk_at(ex, sn_align64(C)),
                         (int32_t)x->shape[0], (int32_t)C, (int32_t)(x->shape[2] * x->shape[3]), node->ip[0] != 0,
                         node->ip[1] != 0, node->fp[0], node->fp[1], node->fp[2]};
        return sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_FWD, &p, sizeof p, sn_vk_groups(C, 1), 1, 1);
    }
    if (node->op == SN_OP_BATCHNORM_BWD) {
        const sn_tensor *x = node->src[1], *fwd = node->src[2];
        int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
        SN_VK_TRY(sn_vk_check_elems(sn_nelem(x), node));
        int64_t sizes[3] = {N * C * HW, C, C};
        uint64_t out = sn_vk_addr(node), ex = sn_vk_extra(fwd);
        bn_bwd_push p = {sn_vk_addr(node->src[0]), sn_vk_addr(x), sn_vk_addr(fwd), sn_vk_addr(node->src[3]), ex,
                         sn_vk_at(ex, sn_align64(C)), sn_vk_at(out, sn_packed_offset(sizes, 0)),
                         sn_vk_at(out, sn_packed_offset(sizes, 1)), sn_vk_at(out, sn_packed_offset(sizes, 2)),
                         (int32_t)N, (int32_t)C, (int32_t)HW, node->ip[0] != 0, node->ip[1] != 0, node->fp[2]};
        return sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_BWD, &p, sizeof p, sn_vk_groups(C, 1), 1, 1);
    }
    return sn_error(SN_ERR_INTERNAL, "Vulkan batchnorm: op %s is not a batchnorm op", sn_op_name(node->op));
}
