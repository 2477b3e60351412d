/* Vulkan: COPY CONCAT PAD SLICE PERMUTE (a strided copy per concat source, one gather
 * kernel for the rest). */
#include "backends/vulkan/vk.h"

#include <string.h>

typedef struct {
    uint64_t x, y;
    uint32_t n, w, drow, at;
} copy_pc;

typedef struct {
    uint64_t x, y;
    uint32_t n, nd, bounds;
    int32_t dim[6], off[6], sdim[6], st[6];
} gather_pc;

static void strides(const sn_tensor *t, int64_t *st) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->shape[d];
    }
}

/* rows x w elements: x contiguous, y at `at` with row pitch drow */
static sn_status copy2d(sn_vk *vk, uint64_t x, uint64_t y, int64_t rows, int64_t w, int64_t drow, int64_t at) {
    uint32_t n = 0;
    SN_VK_TRY(sn_vk_u32(rows * w, "copy", &n));
    if (n == 0) return SN_OK;
    if (drow * rows > (int64_t)UINT32_MAX || at > (int64_t)UINT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan concat: output beyond the 2^32 elements the shaders index");
    copy_pc pc = {x, y, n, (uint32_t)w, (uint32_t)drow, (uint32_t)at};
    return sn_vk_dispatch_n(vk, SN_VK_SH_SHAPE_COPY, &pc, sizeof pc, n, 256);
}

sn_status sn_vk_shape(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    uint32_t n = 0;
    SN_VK_TRY(sn_vk_u32(sn_nelem(node), sn_op_name(node->op), &n));
    switch (node->op) {
    case SN_OP_COPY:
        if (node->data == x->data) return SN_OK;
        return copy2d(vk, sn_vk_addr(x), sn_vk_addr(node), 1, n, n, 0);
    case SN_OP_CONCAT: {
        int ax = node->ip[0] < 0 ? node->ip[0] + node->ndim : node->ip[0];
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < ax; d++) outer *= node->shape[d];
        for (int d = ax + 1; d < node->ndim; d++) inner *= node->shape[d];
        int64_t at = 0, drow = node->shape[ax] * inner;
        for (int i = 0; i < node->nsrc; i++) {
            const sn_tensor *s = node->src[i];
            int64_t w = s->shape[ax] * inner;
            SN_VK_TRY(copy2d(vk, sn_vk_addr(s), sn_vk_addr(node), outer, w, drow, at));
            at += w;
        }
        return SN_OK;
    }
    case SN_OP_PAD:
    case SN_OP_SLICE:
    case SN_OP_PERMUTE: {
        uint32_t nx = 0;
        SN_VK_TRY(sn_vk_u32(sn_nelem(x), sn_op_name(node->op), &nx));
        if (n > (uint32_t)INT32_MAX || nx > (uint32_t)INT32_MAX)
            return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s: more than 2^31 elements", sn_op_name(node->op));
        gather_pc pc;
        memset(&pc, 0, sizeof pc);
        pc.x = sn_vk_addr(x);
        pc.y = sn_vk_addr(node);
        pc.n = n;
        pc.nd = (uint32_t)node->ndim;
        pc.bounds = node->op == SN_OP_PAD;
        int64_t xst[SN_MAX_DIMS];
        strides(x, xst);
        for (int d = 0; d < node->ndim; d++) {
            pc.dim[d] = (int32_t)node->shape[d];
            if (node->op == SN_OP_PAD) {
                pc.off[d] = node->ip[2 * d];
                pc.sdim[d] = (int32_t)x->shape[d];
                pc.st[d] = (int32_t)xst[d];
            } else if (node->op == SN_OP_SLICE) {
                pc.off[d] = -node->ip[d];
                pc.st[d] = (int32_t)xst[d];
            } else {
                pc.st[d] = (int32_t)xst[node->ip[d]];
            }
        }
        return sn_vk_dispatch_n(vk, SN_VK_SH_SHAPE_GATHER, &pc, sizeof pc, n, 256);
    }
    default: break;
    }
    return sn_error(SN_ERR_UNSUPPORTED, "Vulkan shape: op %s is not a shape op", sn_op_name(node->op));
}
