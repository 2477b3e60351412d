/* ATTENTION (causal multi-head self-attention, nn.MultiheadAttention layout) and its
 * backward: projections and per-head products through cuBLAS (strided-batched over
 * batch x heads), the softmax through the shared row kernel. extra: q, k, v
 * [B,heads,T,d] (q unscaled), probs [B,heads,T,T], ctx [B,T,E] (tensor.h). */
#include "backends/cuda/cuda_common.h"

/* dst[b,h,t,:] = src[(b*T+t)*ld + col + h*d + :] */
__global__ void k_heads_split(const float *src, int64_t ld, int64_t col, float *dst, int64_t B, int64_t T, int64_t NH,
                              int64_t d) {
    SN_GRID_LOOP(i, B * NH * T * d) {
        int64_t dd = i % d, t = (i / d) % T, h = (i / (d * T)) % NH, b = i / (d * T * NH);
        dst[i] = src[(b * T + t) * ld + col + h * d + dd];
    }
}
/* dst[(b*T+t)*ld + col + h*d + :] = src[b,h,t,:] */
__global__ void k_heads_merge(const float *src, float *dst, int64_t ld, int64_t col, int64_t B, int64_t T, int64_t NH,
                              int64_t d) {
    SN_GRID_LOOP(i, B * NH * T * d) {
        int64_t dd = i % d, t = (i / d) % T, h = (i / (d * T)) % NH, b = i / (d * T * NH);
        dst[(b * T + t) * ld + col + h * d + dd] = src[i];
    }
}

static sn_status split(sn_cuda *c, const float *src, int64_t ld, int64_t col, float *dst, int64_t B, int64_t T,
                       int64_t NH, int64_t d) {
    k_heads_split<<<sn_cu_blocks(c, B * T * NH * d), SN_CU_THREADS, 0, c->stream>>>(src, ld, col, dst, B, T, NH, d);
    CU_LAUNCHED("attention (split heads)");
    return SN_OK;
}
static sn_status merge(sn_cuda *c, const float *src, float *dst, int64_t ld, int64_t col, int64_t B, int64_t T,
                       int64_t NH, int64_t d) {
    k_heads_merge<<<sn_cu_blocks(c, B * T * NH * d), SN_CU_THREADS, 0, c->stream>>>(src, dst, ld, col, B, T, NH, d);
    CU_LAUNCHED("attention (merge heads)");
    return SN_OK;
}

static size_t al(size_t floats) { return (floats + 63) & ~(size_t)63; }

sn_status sn_cu_attention(sn_cuda *c, sn_tensor *node) {
    bool fwd = node->op == SN_OP_ATTENTION;
    const sn_tensor *x = fwd ? node->src[0] : node->src[1];
    const sn_tensor *f = fwd ? node : node->src[2];
    const sn_tensor *in_w = node->src[fwd ? 1 : 3], *in_b = node->src[fwd ? 2 : 4];
    const sn_tensor *out_w = node->src[fwd ? 3 : 5], *out_b = node->src[fwd ? 4 : 6];
    int64_t B = x->shape[0], T = x->shape[1], E = x->shape[2];
    int64_t NH = f->ip[0] > 0 ? f->ip[0] : 1, d = E / NH, BT = B * T, BH = B * NH;
    bool causal = f->ip[1] != 0;
    float scale = 1.0f / sqrtf((float)d);
    float *ex = sn_cu_extra(f);
    float *q = ex + sn_attention_extra_offset(B, T, E, (int)NH, 0), *k = ex + sn_attention_extra_offset(B, T, E, (int)NH, 1);
    float *v = ex + sn_attention_extra_offset(B, T, E, (int)NH, 2), *P = ex + sn_attention_extra_offset(B, T, E, (int)NH, 3);
    float *ctx = ex + sn_attention_extra_offset(B, T, E, (int)NH, 4);
    const char *what = sn_op_name(node->op);
    if (fwd) {
        float *ws = (float *)sn_cu_ws(c, SN_WS_OP, (al((size_t)(BT * 3 * E)) + al((size_t)(BT * E))) * 4);
        if (!ws) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        float *qkv = ws, *ctxh = ws + al((size_t)(BT * 3 * E));
        SN_TRY(sn_cu_gemm(c, false, true, BT, 3 * E, E, 1.0f, sn_cu_f(x), E, sn_cu_f(in_w), E, 0.0f, qkv, 3 * E, what));
        SN_TRY(sn_cu_add_rowvec(c, qkv, sn_cu_f(in_b), BT, 3 * E));
        SN_TRY(split(c, qkv, 3 * E, 0, q, B, T, NH, d));
        SN_TRY(split(c, qkv, 3 * E, E, k, B, T, NH, d));
        SN_TRY(split(c, qkv, 3 * E, 2 * E, v, B, T, NH, d));
        SN_TRY(sn_cu_gemm_ex(c, false, true, T, T, d, 1.0f, q, d, T * d, k, d, T * d, 0.0f, P, T, T * T, BH, NULL, NULL,
                             what));
        SN_TRY(sn_cu_softmax_rows(c, P, P, BH * T, T, causal, T, scale));
        SN_TRY(sn_cu_gemm_ex(c, false, false, T, d, T, 1.0f, P, T, T * T, v, d, T * d, 0.0f, ctxh, d, T * d, BH, NULL,
                             NULL, what));
        SN_TRY(merge(c, ctxh, ctx, E, 0, B, T, NH, d));
        SN_TRY(sn_cu_gemm(c, false, true, BT, E, E, 1.0f, ctx, E, sn_cu_f(out_w), E, 0.0f, sn_cu_f(node), E, what));
        return sn_cu_add_rowvec(c, sn_cu_f(node), sn_cu_f(out_b), BT, E);
    }
    /* backward */
    const float *dy = sn_cu_f(node->src[0]);
    int64_t sizes[5] = {BT * E, 3 * E * E, 3 * E, E * E, E};
    float *out = sn_cu_f(node);
    float *dx = out, *d_in_w = out + sn_packed_offset(sizes, 1), *d_in_b = out + sn_packed_offset(sizes, 2);
    float *d_out_w = out + sn_packed_offset(sizes, 3), *d_out_b = out + sn_packed_offset(sizes, 4);
    size_t o_dctx = 0, o_dctxh = al((size_t)(BT * E)), o_dP = o_dctxh + al((size_t)(BT * E));
    size_t o_dq = o_dP + al((size_t)(BH * T * T)), o_dk = o_dq + al((size_t)(BT * E)), o_dv = o_dk + al((size_t)(BT * E));
    size_t o_dqkv = o_dv + al((size_t)(BT * E)), nf = o_dqkv + al((size_t)(BT * 3 * E));
    float *ws = (float *)sn_cu_ws(c, SN_WS_OP, nf * 4);
    if (!ws) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    float *dctx = ws + o_dctx, *dctxh = ws + o_dctxh, *dP = ws + o_dP, *dq = ws + o_dq, *dk = ws + o_dk, *dv = ws + o_dv;
    float *dqkv = ws + o_dqkv;
    SN_TRY(sn_cu_gemm(c, true, false, E, E, BT, 1.0f, dy, E, ctx, E, 0.0f, d_out_w, E, what));
    SN_TRY(sn_cu_colsum(c, dy, BT, E, d_out_b, false));
    SN_TRY(sn_cu_gemm(c, false, false, BT, E, E, 1.0f, dy, E, sn_cu_f(out_w), E, 0.0f, dctx, E, what));
    SN_TRY(split(c, dctx, E, 0, dctxh, B, T, NH, d));
    SN_TRY(sn_cu_gemm_ex(c, false, true, T, T, d, 1.0f, dctxh, d, T * d, v, d, T * d, 0.0f, dP, T, T * T, BH, NULL, NULL,
                         what));
    SN_TRY(sn_cu_gemm_ex(c, true, false, T, d, T, 1.0f, P, T, T * T, dctxh, d, T * d, 0.0f, dv, d, T * d, BH, NULL,
                         NULL, what));
    /* gradient of the raw scores q k^T (the softmax saw them times scale) */
    SN_TRY(sn_cu_softmax_bwd_rows(c, dP, P, dP, BH * T, T, scale));
    SN_TRY(sn_cu_gemm_ex(c, false, false, T, d, T, 1.0f, dP, T, T * T, k, d, T * d, 0.0f, dq, d, T * d, BH, NULL, NULL,
                         what));
    SN_TRY(sn_cu_gemm_ex(c, true, false, T, d, T, 1.0f, dP, T, T * T, q, d, T * d, 0.0f, dk, d, T * d, BH, NULL, NULL,
                         what));
    SN_TRY(merge(c, dq, dqkv, 3 * E, 0, B, T, NH, d));
    SN_TRY(merge(c, dk, dqkv, 3 * E, E, B, T, NH, d));
    SN_TRY(merge(c, dv, dqkv, 3 * E, 2 * E, B, T, NH, d));
    SN_TRY(sn_cu_gemm(c, true, false, 3 * E, E, BT, 1.0f, dqkv, 3 * E, sn_cu_f(x), E, 0.0f, d_in_w, E, what));
    SN_TRY(sn_cu_colsum(c, dqkv, BT, 3 * E, d_in_b, false));
    return sn_cu_gemm(c, false, false, BT, E, 3 * E, 1.0f, dqkv, 3 * E, sn_cu_f(in_w), E, 0.0f, dx, E, what);
}
