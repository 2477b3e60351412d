/* Vulkan: ADAM/ADAMW and SGD, single- and multi-tensor (shaders/optim_update.comp). The
 * (param, grad) list and the state offsets go in an argument block written when the
 * segment is recorded; lr, the bias corrections and the clip scale are read on the device,
 * so the recorded update replays every step unchanged. */
#include "backends/vulkan/vk.h"

#include <string.h>

typedef struct {
    uint64_t p[SN_OPTIM_MT_MAX], g[SN_OPTIM_MT_MAX];
    uint32_t off[SN_OPTIM_MT_MAX], start[SN_OPTIM_MT_MAX + 1], nseg;
} optim_args; /* std430 layout of Args in the shader */

typedef struct {
    uint64_t args, s0, s1, hyper, sumsq, token;
    uint32_t adam, flag, has_sumsq;
    float f[5];
} optim_pc;

_Static_assert(SN_OPTIM_MT_MAX == 16, "optim_update.comp holds 16 (param, grad) pairs");

static sn_status add_pair(optim_args *a, const sn_tensor *p, const sn_tensor *g, int64_t off) {
    int64_t end = (int64_t)a->start[a->nseg] + sn_nelem(p);
    if (end > (int64_t)UINT32_MAX || off + sn_nelem(p) > (int64_t)UINT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan optimizer: more than 2^32 parameters in one update");
    a->p[a->nseg] = sn_vk_addr(p);
    a->g[a->nseg] = sn_vk_addr(g);
    a->off[a->nseg] = (uint32_t)off;
    a->start[a->nseg + 1] = (uint32_t)end;
    a->nseg++;
    return SN_OK;
}

sn_status sn_vk_optim(sn_vk *vk, sn_tensor *node) {
    optim_args a;
    memset(&a, 0, sizeof a);
    optim_pc pc;
    memset(&pc, 0, sizeof pc);
    const sn_tensor *hyper, *sumsq = NULL;
    bool adam = node->op == SN_OP_ADAM || node->op == SN_OP_ADAM_MT;
    switch (node->op) {
    case SN_OP_ADAM: /* (param, grad, m, v, hyper, sumsq?) */
        SN_VK_TRY(add_pair(&a, node->src[0], node->src[1], 0));
        pc.s0 = sn_vk_addr(node->src[2]);
        pc.s1 = sn_vk_addr(node->src[3]);
        hyper = node->src[4];
        sumsq = node->nsrc > 5 ? node->src[5] : NULL;
        break;
    case SN_OP_SGD: /* (param, grad, buf, hyper, sumsq?) */
        SN_VK_TRY(add_pair(&a, node->src[0], node->src[1], 0));
        pc.s0 = sn_vk_addr(node->src[2]);
        hyper = node->src[3];
        sumsq = node->nsrc > 4 ? node->src[4] : NULL;
        break;
    case SN_OP_ADAM_MT: /* (hyper, m, v, sumsq?, p0, g0, ..) */
    case SN_OP_SGD_MT: { /* (hyper, buf, sumsq?, p0, g0, ..) */
        int first = (adam ? 3 : 2) + (node->ip[1] ? 1 : 0);
        hyper = node->src[0];
        pc.s0 = sn_vk_addr(node->src[1]);
        if (adam) pc.s1 = sn_vk_addr(node->src[2]);
        sumsq = node->ip[1] ? node->src[first - 1] : NULL;
        for (int k = first, i = 0; k + 1 < node->nsrc && i < SN_OPTIM_MT_MAX; k += 2, i++)
            SN_VK_TRY(add_pair(&a, node->src[k], node->src[k + 1], node->ip[2 + i]));
        break;
    }
    default: return sn_error(SN_ERR_UNSUPPORTED, "Vulkan optim: op %s is not an optimizer op", sn_op_name(node->op));
    }
    if (!pc.s1) pc.s1 = pc.s0;
    pc.hyper = sn_vk_addr(hyper);
    pc.sumsq = sumsq ? sn_vk_addr(sumsq) : pc.hyper;
    pc.has_sumsq = sumsq != NULL;
    pc.token = sn_vk_addr(node);
    pc.adam = adam;
    pc.flag = node->ip[0] != 0; /* adamw / nesterov */
    for (int i = 0; i < 5; i++) pc.f[i] = node->fp[i];
    pc.args = sn_vk_temp(vk, sizeof a, &a);
    if (!pc.args) return sn_error_prefix(SN_ERR_NOMEM, "%s argument block", sn_op_name(node->op));
    /* at least one thread: it writes the token */
    uint64_t n = a.start[a.nseg] ? a.start[a.nseg] : 1;
    return sn_vk_dispatch_n(vk, SN_VK_SH_OPTIM_UPDATE, &pc, sizeof pc, n, 256);
}
