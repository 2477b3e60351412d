/* Vulkan kernels: BatchNorm2d forward (batch statistics with the running-stat update,
 * or the running statistics) and backward into the packed [dx | dgamma | dbeta], as
 * src/backends/cpu/batchnorm.c. Each channel's N*HW elements are split into P chunks,
 * one workgroup per (chunk, channel): partial sums per chunk, then passes that reduce
 * the P partials by a fixed tree (deterministic, no atomics). One workgroup per channel
 * left an H100 at ~100 us per dispatch on 1-2M floats. ip[1] = 1: the fused ELU (alpha
 * fp[2]) epilogue, and a backward whose dy is w.r.t. the ELU output (the forward's y). */
#include "backends/vulkan/vk_gemm.h"

typedef struct {
    uint64_t x, ps, pq;
    int32_t N, C, HW, P, chunk, pass;
} bn_stats_push;

typedef struct {
    uint64_t x, y, gamma, beta, rm, rv, mean, invstd, ps, pq;
    int32_t N, C, HW, training, elu, P, chunk;
    float eps, mom, alpha;
} bn_fwd_push;

typedef struct {
    uint64_t dy, x, yf, mean, pg, pgx;
    int32_t N, C, HW, elu, P, chunk;
    float alpha;
} bn_bwd_stats_push;

typedef struct {
    uint64_t dy, x, yf, gamma, mean, invstd, dx, dg, db, pg, pgx;
    int32_t N, C, HW, training, elu, P, chunk;
    float alpha;
} bn_bwd_push;

/* chunk: a multiple of 256, at least 1024 elements (enough work per workgroup), and at
 * most 256 chunks (the final trees sum one partial per invocation) */
static int64_t bn_chunk(int64_t cnt, int64_t *P) {
    int64_t ch = (cnt + 255) / 256;
    if (ch < 1024) ch = 1024;
    ch = (ch + 255) / 256 * 256;
    *P = (cnt + ch - 1) / ch;
    if (*P < 1) *P = 1;
    return ch;
}

/* 2 x C*P floats of partials */
static uint64_t bn_parts(sn_vk *vk, const sn_tensor *node, int64_t CP, sn_status *st) {
    uint64_t a = sn_vk_temp(vk, (size_t)(2 * sn_align64(CP)) * sizeof(float), NULL);
    if (!a)
        *st = sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s': %lld floats of partial sums", sn_op_name(node->op),
                              node->name, (long long)(2 * CP));
    return a;
}

sn_status sn_vk_batchnorm(sn_vk *vk, sn_tensor *node) {
    sn_status st = SN_OK;
    if (node->op == SN_OP_BATCHNORM) {
        const sn_tensor *x = node->src[0];
        int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], P;
        SN_VK_TRY(sn_vk_check_elems(sn_nelem(x), node));
        int64_t ch = bn_chunk(N * HW, &P);
        bool training = node->ip[0] != 0;
        uint64_t ps = 0, pq = 0;
        uint32_t gy = C > 65535 ? 65535u : (uint32_t)(C < 1 ? 1 : C);
        if (training) {
            if (!(ps = bn_parts(vk, node, C * P, &st))) return st;
            pq = sn_vk_at(ps, sn_align64(C * P));
            for (int pass = 0; pass < 2; pass++) {
                bn_stats_push s = {sn_vk_addr(x), ps, pq, (int32_t)N, (int32_t)C, (int32_t)HW, (int32_t)P,
                                   (int32_t)ch, pass};
                SN_VK_TRY(sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_STATS, &s, sizeof s, (uint32_t)P, gy, 1));
            }
        }
        uint64_t ex = sn_vk_extra(node);
        bn_fwd_push p = {sn_vk_addr(x), sn_vk_addr(node), sn_vk_addr(node->src[1]), sn_vk_addr(node->src[2]),
                         sn_vk_addr(node->src[3]), sn_vk_addr(node->src[4]), ex, sn_vk_at(ex, sn_align64(C)), ps, pq,
                         (int32_t)N, (int32_t)C, (int32_t)HW, training, node->ip[1] != 0, (int32_t)P, (int32_t)ch,
                         node->fp[0], node->fp[1], node->fp[2]};
        return sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_FWD, &p, sizeof p, (uint32_t)P, gy, 1);
    }
    if (node->op == SN_OP_BATCHNORM_BWD) {
        const sn_tensor *x = node->src[1], *fwd = node->src[2];
        int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], P;
        SN_VK_TRY(sn_vk_check_elems(sn_nelem(x), node));
        int64_t ch = bn_chunk(N * HW, &P);
        uint32_t gy = C > 65535 ? 65535u : (uint32_t)(C < 1 ? 1 : C);
        uint64_t pg = bn_parts(vk, node, C * P, &st);
        if (!pg) return st;
        uint64_t pgx = sn_vk_at(pg, sn_align64(C * P));
        int64_t sizes[3] = {N * C * HW, C, C};
        uint64_t out = sn_vk_addr(node), ex = sn_vk_extra(fwd);
        bn_bwd_stats_push s = {sn_vk_addr(node->src[0]), sn_vk_addr(x), sn_vk_addr(fwd), ex, pg, pgx, (int32_t)N,
                               (int32_t)C, (int32_t)HW, node->ip[1] != 0, (int32_t)P, (int32_t)ch, node->fp[2]};
        SN_VK_TRY(sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_BWD_STATS, &s, sizeof s, (uint32_t)P, gy, 1));
        bn_bwd_push p = {sn_vk_addr(node->src[0]), sn_vk_addr(x), sn_vk_addr(fwd), sn_vk_addr(node->src[3]), ex,
                         sn_vk_at(ex, sn_align64(C)), sn_vk_at(out, sn_packed_offset(sizes, 0)),
                         sn_vk_at(out, sn_packed_offset(sizes, 1)), sn_vk_at(out, sn_packed_offset(sizes, 2)), pg, pgx,
                         (int32_t)N, (int32_t)C, (int32_t)HW, node->ip[0] != 0, node->ip[1] != 0, (int32_t)P,
                         (int32_t)ch, node->fp[2]};
        return sn_vk_dispatch(vk, SN_VK_SH_BATCHNORM_BWD, &p, sizeof p, (uint32_t)P, gy, 1);
    }
    return sn_error(SN_ERR_INTERNAL, "Vulkan batchnorm: op %s is not a batchnorm op", sn_op_name(node->op));
}
