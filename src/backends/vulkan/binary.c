/* Vulkan: ADD MUL (numpy broadcasting of b onto a), SCALE, EXPAND, REDUCE_TO. */
#include "backends/vulkan/vk.h"

#include <string.h>

typedef struct {
    uint64_t a, b, y;
    uint32_t n, op, scalar;
} same_pc;

typedef struct {
    uint64_t a, b, y;
    uint32_t n, op, nd, dim[6], st[6];
} bcast_pc;

typedef struct {
    uint64_t a, y;
    uint32_t n, op;
    float s;
} scale_pc;

typedef struct {
    uint64_t x, y;
    uint32_t nout, R, nk, nr;
    uint32_t kdim[6], kst[6], rdim[6], rst[6];
} reduce_pc;

/* y's dims (size-1 dims dropped) with b's strides onto them (0 where b is broadcast) */
static void bcast_idx(const sn_tensor *y, const sn_tensor *b, bcast_pc *pc) {
    int64_t bst[SN_MAX_DIMS], st = 1;
    for (int d = b->ndim - 1; d >= 0; d--) {
        bst[d] = st;
        st *= b->shape[d];
    }
    pc->nd = 0;
    for (int d = 0; d < y->ndim; d++) {
        if (y->shape[d] == 1) continue;
        int bd = d - (y->ndim - b->ndim);
        pc->dim[pc->nd] = (uint32_t)y->shape[d];
        pc->st[pc->nd] = bd >= 0 && b->shape[bd] != 1 ? (uint32_t)bst[bd] : 0;
        pc->nd++;
    }
}

static sn_status reduce_to(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    reduce_pc pc;
    memset(&pc, 0, sizeof pc);
    uint32_t nout = 0, nin = 0;
    SN_VK_TRY(sn_vk_u32(sn_nelem(node), "reduce_to", &nout));
    SN_VK_TRY(sn_vk_u32(sn_nelem(x), "reduce_to", &nin));
    pc.x = sn_vk_addr(x);
    pc.y = sn_vk_addr(node);
    pc.nout = nout;
    if (nin == nout) { /* nothing reduced: a copy (exact: times 1) */
        if (x->data == node->data) return SN_OK;
        scale_pc sc = {pc.x, pc.y, nout, 0, 1.0f};
        return sn_vk_dispatch_n(vk, SN_VK_SH_BINARY_SCALE, &sc, sizeof sc, nout, 256);
    }
    int64_t xst[SN_MAX_DIMS], st = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        xst[d] = st;
        st *= x->shape[d];
    }
    int64_t R = 1;
    for (int d = 0; d < x->ndim; d++) {
        int yd = d - (x->ndim - node->ndim);
        int64_t ys = yd >= 0 ? node->shape[yd] : 1;
        if (x->shape[d] == 1) continue;
        if (ys == x->shape[d]) {
            pc.kdim[pc.nk] = (uint32_t)ys;
            pc.kst[pc.nk++] = (uint32_t)xst[d];
        } else {
            pc.rdim[pc.nr] = (uint32_t)x->shape[d];
            pc.rst[pc.nr++] = (uint32_t)xst[d];
            R *= x->shape[d];
        }
    }
    pc.R = (uint32_t)R;
    return sn_vk_dispatch_n(vk, SN_VK_SH_BINARY_REDUCE, &pc, sizeof pc, nout, 256);
}

sn_status sn_vk_binary(sn_vk *vk, sn_tensor *node) {
    uint32_t n = 0;
    SN_VK_TRY(sn_vk_u32(sn_nelem(node), sn_op_name(node->op), &n));
    switch (node->op) {
    case SN_OP_ADD:
    case SN_OP_MUL: {
        const sn_tensor *b = node->src[1];
        int64_t nb = sn_nelem(b);
        uint32_t op = node->op == SN_OP_ADD ? 0 : 1;
        if (nb == n || nb == 1) {
            same_pc pc = {sn_vk_addr(node->src[0]), sn_vk_addr(b), sn_vk_addr(node), n, op, nb == 1 && n != 1};
            return sn_vk_dispatch_n(vk, SN_VK_SH_BINARY_SAME, &pc, sizeof pc, n, 256);
        }
        bcast_pc pc;
        memset(&pc, 0, sizeof pc);
        pc.a = sn_vk_addr(node->src[0]);
        pc.b = sn_vk_addr(b);
        pc.y = sn_vk_addr(node);
        pc.n = n;
        pc.op = op;
        bcast_idx(node, b, &pc);
        return sn_vk_dispatch_n(vk, SN_VK_SH_BINARY_BCAST, &pc, sizeof pc, n, 256);
    }
    case SN_OP_SCALE:
    case SN_OP_EXPAND: {
        scale_pc pc = {sn_vk_addr(node->src[0]), sn_vk_addr(node), n, node->op == SN_OP_EXPAND, node->fp[0]};
        return sn_vk_dispatch_n(vk, SN_VK_SH_BINARY_SCALE, &pc, sizeof pc, n, 256);
    }
    case SN_OP_REDUCE_TO: return reduce_to(vk, node);
    default: break;
    }
    return sn_error(SN_ERR_UNSUPPORTED, "Vulkan binary: op %s is not a binary op", sn_op_name(node->op));
}
