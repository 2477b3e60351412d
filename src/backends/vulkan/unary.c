/* Vulkan: RELU ELU SOFTPLUS SIGMOID TANH and their backward ops (one shader, the
 * formulas of shaders/act.glsl, which follow src/backends/cpu/unary.c). */
#include "backends/vulkan/vk.h"

typedef struct {
    uint64_t x, d, y;
    uint32_t n, act, bwd, from_x;
    float p0, p1;
} act_pc;

static int act_of(sn_op op) {
    switch (op) {
    case SN_OP_RELU:
    case SN_OP_RELU_BWD: return SN_ACT_RELU;
    case SN_OP_ELU:
    case SN_OP_ELU_BWD: return SN_ACT_ELU;
    case SN_OP_SOFTPLUS:
    case SN_OP_SOFTPLUS_BWD: return SN_ACT_SOFTPLUS;
    case SN_OP_SIGMOID:
    case SN_OP_SIGMOID_BWD: return SN_ACT_SIGMOID;
    case SN_OP_TANH:
    case SN_OP_TANH_BWD: return SN_ACT_TANH;
    default: return -1;
    }
}

sn_status sn_vk_unary(sn_vk *vk, sn_tensor *node) {
    int act = act_of(node->op);
    if (act < 0) return sn_error(SN_ERR_UNSUPPORTED, "Vulkan unary: op %s is not a unary op", sn_op_name(node->op));
    uint32_t n = 0;
    SN_VK_TRY(sn_vk_u32(sn_nelem(node), sn_op_name(node->op), &n));
    bool bwd = node->op >= SN_OP_RELU_BWD;
    act_pc pc = {0};
    pc.y = sn_vk_addr(node);
    pc.n = n;
    pc.act = (uint32_t)act;
    pc.bwd = bwd;
    pc.p0 = node->fp[0];
    pc.p1 = node->fp[1];
    if (bwd) { /* (dy, y) or, SOFTPLUS_BWD with ip0 0, (dy, x) */
        pc.d = sn_vk_addr(node->src[0]);
        pc.x = sn_vk_addr(node->src[1]);
        pc.from_x = node->op == SN_OP_SOFTPLUS_BWD && node->ip[0] != 1;
    } else {
        pc.x = sn_vk_addr(node->src[0]);
        pc.d = pc.x;
    }
    return sn_vk_dispatch_n(vk, SN_VK_SH_UNARY_ACT, &pc, sizeof pc, n, 256);
}
