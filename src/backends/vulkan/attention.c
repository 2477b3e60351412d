/* Vulkan kernels: ATTENTION (multi-head self-attention, nn.MultiheadAttention layout,
 * optionally causal) and its backward, composed as src/backends/cpu/attention.c does:
 * the projections as GEMMs over all B*T rows, the per-(batch, head) products as one
 * batched GEMM each (two-level batch strides read and write the heads' columns of the
 * [B*T, E] rows in place, no merge copies), the row softmax of norm.c. Saved state
 * (tensor.h): q, k, v [B,heads,T,d] (q unscaled), probs [B,heads,T,T], ctx [B,T,E]. */
#include <math.h>

#include "backends/vulkan/vk_gemm.h"

typedef struct {
    uint64_t src, dst;
    int32_t B, T, NH, d, ld, col;
} split_push;

static sn_status split(sn_vk *vk, uint64_t src, int64_t ld, int64_t col, uint64_t dst, int64_t B, int64_t T,
                       int64_t NH, int64_t d) {
    split_push p = {src, dst, (int32_t)B, (int32_t)T, (int32_t)NH, (int32_t)d, (int32_t)ld, (int32_t)col};
    return sn_vk_dispatch(vk, SN_VK_SH_ATTENTION_SPLIT, &p, sizeof p, sn_vk_groups(B * NH * T * d, 256), 1, 1);
}

/* a batched product over (b, h): z = b*NH + h */
static sn_vk_gemm_args heads_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, int64_t NH) {
    sn_vk_gemm_args g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = alpha, .binner = NH};
    return g;
}

static void set_op(uint64_t *p, int64_t *ld, int64_t *s, uint64_t addr, int64_t lda, int64_t s0, int64_t s1) {
    *p = addr;
    *ld = lda;
    s[0] = s0;
    s[1] = s1;
}

static uint64_t temp(sn_vk *vk, int64_t floats, const sn_tensor *node) {
    uint64_t a = sn_vk_temp(vk, (size_t)(floats > 0 ? floats : 1) * sizeof(float), NULL);
    if (!a)
        sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s': %.1f MB of workspace", sn_op_name(node->op), node->name,
                        floats * 4.0 / 1048576.0);
    return a;
}

sn_status sn_vk_attention(sn_vk *vk, sn_tensor *node) {
    bool fwd = node->op == SN_OP_ATTENTION;
    if (!fwd && node->op != SN_OP_ATTENTION_BWD)
        return sn_error(SN_ERR_INTERNAL, "Vulkan attention: unexpected op %s", sn_op_name(node->op));
    const sn_tensor *x = fwd ? node->src[0] : node->src[1];
    const sn_tensor *f = fwd ? node : node->src[2];
    const sn_tensor *in_w = node->src[fwd ? 1 : 3], *in_b = node->src[fwd ? 2 : 4];
    const sn_tensor *out_w = node->src[fwd ? 3 : 5], *out_b = node->src[fwd ? 4 : 6];
    int64_t B = x->shape[0], T = x->shape[1], E = x->shape[2];
    int64_t NH = f->ip[0] > 0 ? f->ip[0] : 1, d = E / NH, BT = B * T, BH = B * NH;
    bool causal = f->ip[1] != 0;
    float scale = 1.0f / sqrtf((float)d);
    SN_VK_TRY(sn_vk_check_elems(sn_align64(BT * E) + sn_attention_extra_elems(B, T, E, (int)NH) + BT * 3 * E, node));
    uint64_t ex = sn_vk_extra(f);
    uint64_t q = sn_vk_at(ex, sn_attention_extra_offset(B, T, E, (int)NH, 0));
    uint64_t k = sn_vk_at(ex, sn_attention_extra_offset(B, T, E, (int)NH, 1));
    uint64_t v = sn_vk_at(ex, sn_attention_extra_offset(B, T, E, (int)NH, 2));
    uint64_t P = sn_vk_at(ex, sn_attention_extra_offset(B, T, E, (int)NH, 3));
    uint64_t ctx = sn_vk_at(ex, sn_attention_extra_offset(B, T, E, (int)NH, 4));
    const char *what = node->name;
    int64_t Td = T * d, TT = T * T;
    if (fwd) {
        uint64_t qkv = temp(vk, BT * 3 * E, node);
        if (!qkv) return SN_ERR_NOMEM;
        sn_vk_gemm_args g = {.tb = true, .M = BT, .N = 3 * E, .K = E, .alpha = 1.0f, .A = sn_vk_addr(x),
                             .B = sn_vk_addr(in_w), .C = qkv, .lda = E, .ldb = E, .ldc = 3 * E, .batch = 1,
                             .binner = 1, .bias = sn_vk_addr(in_b), .bias_mode = SN_VK_BIAS_COL};
        SN_VK_TRY(sn_vk_gemm(vk, &g, what));
        SN_VK_TRY(split(vk, qkv, 3 * E, 0, q, B, T, NH, d));
        SN_VK_TRY(split(vk, qkv, 3 * E, E, k, B, T, NH, d));
        SN_VK_TRY(split(vk, qkv, 3 * E, 2 * E, v, B, T, NH, d));
        /* P = scale q k^T, softmax (causal) */
        g = heads_gemm(false, true, T, T, d, scale, NH);
        g.batch = BH;
        set_op(&g.A, &g.lda, g.sA, q, d, NH * Td, Td);
        set_op(&g.B, &g.ldb, g.sB, k, d, NH * Td, Td);
        set_op(&g.C, &g.ldc, g.sC, P, T, NH * TT, TT);
        SN_VK_TRY(sn_vk_gemm(vk, &g, what));
        SN_VK_TRY(sn_vk_softmax_rows(vk, P, P, BH * T, T, causal ? T : 0));
        /* ctx[b, :, h*d..] = P v */
        g = heads_gemm(false, false, T, d, T, 1.0f, NH);
        g.batch = BH;
        set_op(&g.A, &g.lda, g.sA, P, T, NH * TT, TT);
        set_op(&g.B, &g.ldb, g.sB, v, d, NH * Td, Td);
        set_op(&g.C, &g.ldc, g.sC, ctx, E, T * E, d);
        SN_VK_TRY(sn_vk_gemm(vk, &g, what));
        g = (sn_vk_gemm_args){.tb = true, .M = BT, .N = E, .K = E, .alpha = 1.0f, .A = ctx, .B = sn_vk_addr(out_w),
                              .C = sn_vk_addr(node), .lda = E, .ldb = E, .ldc = E, .batch = 1, .binner = 1,
                              .bias = sn_vk_addr(out_b), .bias_mode = SN_VK_BIAS_COL};
        return sn_vk_gemm(vk, &g, what);
    }
    /* backward: packed [dx | d in_w | d in_b | d out_w | d out_b] */
    uint64_t dy = sn_vk_addr(node->src[0]), out = sn_vk_addr(node);
    int64_t sizes[5] = {BT * E, 3 * E * E, 3 * E, E * E, E};
    uint64_t dx = out, d_in_w = sn_vk_at(out, sn_packed_offset(sizes, 1)), d_in_b = sn_vk_at(out, sn_packed_offset(sizes, 2));
    uint64_t d_out_w = sn_vk_at(out, sn_packed_offset(sizes, 3)), d_out_b = sn_vk_at(out, sn_packed_offset(sizes, 4));
    int64_t o_dqkv = sn_align64(BT * E), o_dp = o_dqkv + sn_align64(BT * 3 * E);
    uint64_t ws = temp(vk, o_dp + BH * TT, node);
    if (!ws) return SN_ERR_NOMEM;
    uint64_t dctx = ws, dqkv = sn_vk_at(ws, o_dqkv), dP = sn_vk_at(ws, o_dp);
    SN_VK_TRY(sn_vk_gemm1(vk, true, false, E, E, BT, 1.0f, dy, E, ctx, E, 0.0f, d_out_w, E, what));
    SN_VK_TRY(sn_vk_chan_sum(vk, dy, BT, E, 1, d_out_b));
    SN_VK_TRY(sn_vk_gemm1(vk, false, false, BT, E, E, 1.0f, dy, E, sn_vk_addr(out_w), E, 0.0f, dctx, E, what));
    /* dP = dctx_h v^T; dv = P^T dctx_h (into dqkv's v columns) */
    sn_vk_gemm_args g = heads_gemm(false, true, T, T, d, 1.0f, NH);
    g.batch = BH;
    set_op(&g.A, &g.lda, g.sA, dctx, E, T * E, d);
    set_op(&g.B, &g.ldb, g.sB, v, d, NH * Td, Td);
    set_op(&g.C, &g.ldc, g.sC, dP, T, NH * TT, TT);
    SN_VK_TRY(sn_vk_gemm(vk, &g, what));
    g = heads_gemm(true, false, T, d, T, 1.0f, NH);
    g.batch = BH;
    set_op(&g.A, &g.lda, g.sA, P, T, NH * TT, TT);
    set_op(&g.B, &g.ldb, g.sB, dctx, E, T * E, d);
    set_op(&g.C, &g.ldc, g.sC, sn_vk_at(dqkv, 2 * E), 3 * E, T * 3 * E, d);
    SN_VK_TRY(sn_vk_gemm(vk, &g, what));
    /* dS = P (dP - sum(dP P)), in place */
    SN_VK_TRY(sn_vk_softmax_bwd_rows(vk, dP, P, dP, BH * T, T));
    /* dq = scale dS k; dk = scale dS^T q */
    g = heads_gemm(false, false, T, d, T, scale, NH);
    g.batch = BH;
    set_op(&g.A, &g.lda, g.sA, dP, T, NH * TT, TT);
    set_op(&g.B, &g.ldb, g.sB, k, d, NH * Td, Td);
    set_op(&g.C, &g.ldc, g.sC, dqkv, 3 * E, T * 3 * E, d);
    SN_VK_TRY(sn_vk_gemm(vk, &g, what));
    g = heads_gemm(true, false, T, d, T, scale, NH);
    g.batch = BH;
    set_op(&g.A, &g.lda, g.sA, dP, T, NH * TT, TT);
    set_op(&g.B, &g.ldb, g.sB, q, d, NH * Td, Td);
    set_op(&g.C, &g.ldc, g.sC, sn_vk_at(dqkv, E), 3 * E, T * 3 * E, d);
    SN_VK_TRY(sn_vk_gemm(vk, &g, what));
    SN_VK_TRY(sn_vk_gemm1(vk, true, false, 3 * E, E, BT, 1.0f, dqkv, 3 * E, sn_vk_addr(x), E, 0.0f, d_in_w, E, what));
    SN_VK_TRY(sn_vk_chan_sum(vk, dqkv, BT, 3 * E, 1, d_in_b));
    return sn_vk_gemm1(vk, false, false, BT, E, 3 * E, 1.0f, dqkv, 3 * E, sn_vk_addr(in_w), E, 0.0f, dx, E, what);
}
