/* Vulkan: MSE L1 (and backward), SUM MEAN SUMSQ. Reductions run in two fixed-order
 * passes (partials per workgroup, then one workgroup): deterministic, no atomics. */
#include "backends/vulkan/vk.h"

#include <math.h>

typedef struct {
    uint64_t a, b, part;
    uint32_t n, op, chunk;
} part_pc;

typedef struct {
    uint64_t part, y;
    uint32_t np;
    float scale;
} final_pc;

typedef struct {
    uint64_t dl, a, b, y;
    uint32_t n, op;
} bwd_pc;

/* elements per workgroup of pass 1: at most 1024 partials, at least 4096 elements each */
static uint32_t chunk_of(uint32_t n) {
    uint64_t c = ((uint64_t)n + 1023) / 1024;
    if (c < 4096) c = 4096;
    return (uint32_t)c;
}

static uint32_t groups_of(uint32_t n) { return n == 0 ? 0 : (uint32_t)(((uint64_t)n + chunk_of(n) - 1) / chunk_of(n)); }

/* pass 1 of one source into part[at..] */
static sn_status partials(sn_vk *vk, const sn_tensor *a, const sn_tensor *b, uint32_t op, uint64_t part, uint32_t at) {
    uint32_t n = 0;
    SN_VK_TRY(sn_vk_u32(sn_nelem(a), "reduction", &n));
    uint32_t g = groups_of(n);
    if (g == 0) return SN_OK;
    part_pc pc = {sn_vk_addr(a), b ? sn_vk_addr(b) : sn_vk_addr(a), part + (uint64_t)at * 8, n, op, chunk_of(n)};
    uint32_t gx, gy;
    sn_vk_grid(vk, g, &gx, &gy);
    return sn_vk_dispatch(vk, SN_VK_SH_LOSS_PARTIAL, &pc, sizeof pc, gx, gy, 1);
}

static sn_status reduce(sn_vk *vk, sn_tensor *node) {
    uint32_t op, np = 0;
    switch (node->op) {
    case SN_OP_MSE: op = 1; break;
    case SN_OP_L1: op = 2; break;
    case SN_OP_SUMSQ: op = 3; break;
    default: op = 0; break;
    }
    int nsrc = node->op == SN_OP_SUMSQ ? node->nsrc : 1;
    for (int i = 0; i < nsrc; i++) {
        uint32_t n = 0;
        SN_VK_TRY(sn_vk_u32(sn_nelem(node->src[i]), sn_op_name(node->op), &n));
        np += groups_of(n);
    }
    uint64_t part = sn_vk_temp(vk, (size_t)(np ? np : 1) * 2 * sizeof(float), NULL); /* (sum, error) pairs */
    if (!part) return sn_error_prefix(SN_ERR_NOMEM, "%s partial sums", sn_op_name(node->op));
    uint32_t at = 0;
    for (int i = 0; i < nsrc; i++) {
        const sn_tensor *a = node->src[i];
        SN_VK_TRY(partials(vk, a, node->op == SN_OP_MSE || node->op == SN_OP_L1 ? node->src[1] : NULL, op, part, at));
        at += groups_of((uint32_t)sn_nelem(a));
    }
    float scale = 1.0f;
    if (node->op == SN_OP_MEAN || node->op == SN_OP_MSE || node->op == SN_OP_L1) {
        int64_t n = sn_nelem(node->src[0]);
        scale = (float)(1.0 / (double)(n > 0 ? n : 1));
        if (n == 0) scale = NAN; /* the mean of nothing, as the CPU's 0/0 */
    }
    final_pc pc = {part, sn_vk_addr(node), np, scale};
    return sn_vk_dispatch(vk, SN_VK_SH_LOSS_FINAL, &pc, sizeof pc, 1, 1, 1);
}

sn_status sn_vk_loss(sn_vk *vk, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_MSE:
    case SN_OP_L1:
    case SN_OP_SUM:
    case SN_OP_MEAN:
    case SN_OP_SUMSQ: return reduce(vk, node);
    case SN_OP_MSE_BWD:
    case SN_OP_L1_BWD: {
        uint32_t n = 0;
        SN_VK_TRY(sn_vk_u32(sn_nelem(node), sn_op_name(node->op), &n));
        bwd_pc pc = {sn_vk_addr(node->src[0]), sn_vk_addr(node->src[1]), sn_vk_addr(node->src[2]), sn_vk_addr(node), n,
                     node->op == SN_OP_L1_BWD};
        return sn_vk_dispatch_n(vk, SN_VK_SH_LOSS_BWD, &pc, sizeof pc, n, 256);
    }
    default: break;
    }
    return sn_error(SN_ERR_UNSUPPORTED, "Vulkan loss: op %s is not a loss op", sn_op_name(node->op));
}
