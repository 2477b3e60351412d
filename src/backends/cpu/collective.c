/* CPU kernel of ALLREDUCE: packs the bucket's tensors into the output and calls
 * the host collective (MPI) on it in place, in graph order on the calling thread. */
#include "backends/cpu/cpu.h"

#include <string.h>

sn_status sn_cpu_collective(sn_cpu *c, sn_tensor *node) {
    if (node->op != SN_OP_ALLREDUCE)
        return sn_error(SN_ERR_INTERNAL, "sn_cpu_collective: op %s is not a collective", sn_op_name(node->op));
    if (!c->coll)
        return sn_error(SN_ERR_UNSUPPORTED, "allreduce: no host collective is attached to the CPU backend "
                        "(data-parallel runs attach one: src/dist)");
    float *out = node->data;
    int64_t total = sn_nelem(node);
    for (int i = 0; i < node->nsrc; i++) {
        int64_t o = sn_allreduce_offset(node, i), n = sn_nelem(node->src[i]);
        if (out + o != node->src[i]->data) memcpy(out + o, node->src[i]->data, (size_t)n * sizeof(float));
        int64_t end = i + 1 < node->nsrc ? sn_allreduce_offset(node, i + 1) : total;
        if (end > o + n) memset(out + o + n, 0, (size_t)(end - o - n) * sizeof(float)); /* alignment gaps */
    }
    sn_status st = c->coll->allreduce(c->coll->user, out, out, (size_t)total, false, NULL);
    if (st != SN_OK) return st;
    float s = node->fp[0];
    if (s != 1.0f)
        for (int64_t i = 0; i < total; i++) out[i] *= s;
    return SN_OK;
}
