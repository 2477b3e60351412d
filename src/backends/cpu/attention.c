/* CPU kernels: causal multi-head self-attention forward and backward. The
 * projections are single GEMMs over all B*T rows; scores and context per
 * (batch, head) through sn_cpu_gemm; row softmax over the pool. */
#include "backends/cpu/cpu.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *p;          /* [rows, T] scores in, probabilities out (or dP in, dS out) */
    const float *pp;   /* probabilities (backward) */
    int64_t T;
    bool causal;
} rows_job;

/* row r is query position r % T */
static void softmax_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    const rows_job *j = arg;
    int64_t T = j->T;
    for (int64_t r = r0; r < r1; r++) {
        float *p = j->p + r * T;
        int64_t n = j->causal ? r % T + 1 : T;
        float mx = p[0];
        for (int64_t k = 1; k < n; k++) mx = p[k] > mx ? p[k] : mx;
        double s = 0;
        for (int64_t k = 0; k < n; k++) s += (p[k] = expf(p[k] - mx));
        float inv = (float)(1.0 / s);
        for (int64_t k = 0; k < n; k++) p[k] *= inv;
        for (int64_t k = n; k < T; k++) p[k] = 0.0f;
    }
}

/* dS = P * (dP - sum(dP * P)) */
static void softmax_bwd_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    const rows_job *j = arg;
    int64_t T = j->T;
    for (int64_t r = r0; r < r1; r++) {
        float *d = j->p + r * T;
        const float *p = j->pp + r * T;
        double s = 0;
        for (int64_t k = 0; k < T; k++) s += d[k] * p[k];
        for (int64_t k = 0; k < T; k++) d[k] = p[k] * (d[k] - (float)s);
    }
}

static void bias_rows(float *y, const float *b, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * n, b, (size_t)n * sizeof *y);
}

static void colsum(float *db, const float *g, int64_t rows, int64_t cols) {
    memset(db, 0, (size_t)cols * sizeof *db);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) db[c] += g[r * cols + c];
}

static sn_status attn_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    const float *in_w = node->src[1]->data, *in_b = node->src[2]->data;
    const float *out_w = node->src[3]->data, *out_b = node->src[4]->data;
    int heads = node->ip[0];
    bool causal = node->ip[1];
    int64_t B = x->shape[0], T = x->shape[1], E = x->shape[2], d = E / heads, BT = B * T;
    float *ex = sn_extra_ptr(node);
    float *q = ex + sn_attention_extra_offset(B, T, E, heads, 0), *k = ex + sn_attention_extra_offset(B, T, E, heads, 1);
    float *v = ex + sn_attention_extra_offset(B, T, E, heads, 2), *P = ex + sn_attention_extra_offset(B, T, E, heads, 3);
    float *ctxv = ex + sn_attention_extra_offset(B, T, E, heads, 4);
    float *qkv = sn_cpu_scratch(c, (size_t)(BT * 3 * E));
    if (!qkv) return SN_ERR_NOMEM;
    bias_rows(qkv, in_b, BT, 3 * E);
    sn_cpu_gemm(c, false, true, BT, 3 * E, E, 1.0f, x->data, E, in_w, E, 1.0f, qkv, 3 * E);
    /* [B,T,3E] -> q,k,v [B,heads,T,d] */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int h = 0; h < heads; h++) {
                const float *row = qkv + (b * T + t) * 3 * E + h * d;
                int64_t o = ((b * heads + h) * T + t) * d;
                memcpy(q + o, row, (size_t)d * sizeof(float));
                memcpy(k + o, row + E, (size_t)d * sizeof(float));
                memcpy(v + o, row + 2 * E, (size_t)d * sizeof(float));
            }
    float scale = 1.0f / sqrtf((float)d);
    for (int64_t bh = 0; bh < B * heads; bh++)
        sn_cpu_gemm(c, false, true, T, T, d, scale, q + bh * T * d, d, k + bh * T * d, d, 0.0f, P + bh * T * T, T);
    rows_job rj = {P, NULL, T, causal};
    sn_pool_for(c->pool, B * heads * T, 16, softmax_rows, &rj);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++) {
            int64_t bh = b * heads + h;
            sn_cpu_gemm(c, false, false, T, d, T, 1.0f, P + bh * T * T, T, v + bh * T * d, d, 0.0f,
                     ctxv + b * T * E + h * d, E);
        }
    float *y = node->data;
    bias_rows(y, out_b, BT, E);
    sn_cpu_gemm(c, false, true, BT, E, E, 1.0f, ctxv, E, out_w, E, 1.0f, y, E);
    return SN_OK;
}

static sn_status attn_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dyt = node->src[0], *x = node->src[1], *fwd = node->src[2];
    const float *dy = dyt->data, *in_w = node->src[3]->data, *out_w = node->src[5]->data;
    int heads = node->ip[0];
    int64_t B = x->shape[0], T = x->shape[1], E = x->shape[2], d = E / heads, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    const float *q = ex + sn_attention_extra_offset(B, T, E, heads, 0), *k = ex + sn_attention_extra_offset(B, T, E, heads, 1);
    const float *v = ex + sn_attention_extra_offset(B, T, E, heads, 2), *P = ex + sn_attention_extra_offset(B, T, E, heads, 3);
    const float *ctxv = ex + sn_attention_extra_offset(B, T, E, heads, 4);
    int64_t sizes[5] = {BT * E, 3 * E * E, 3 * E, E * E, E};
    float *out = node->data;
    float *dx = out, *din_w = out + sn_packed_offset(sizes, 1), *din_b = out + sn_packed_offset(sizes, 2);
    float *dout_w = out + sn_packed_offset(sizes, 3), *dout_b = out + sn_packed_offset(sizes, 4);
    int64_t o_dqkv = sn_align64(BT * E), o_dp = o_dqkv + sn_align64(BT * 3 * E);
    float *s = sn_cpu_scratch(c, (size_t)(o_dp + B * heads * T * T));
    if (!s) return SN_ERR_NOMEM;
    float *dctx = s, *dqkv = s + o_dqkv, *dP = s + o_dp;
    sn_cpu_gemm(c, true, false, E, E, BT, 1.0f, dy, E, ctxv, E, 0.0f, dout_w, E);
    colsum(dout_b, dy, BT, E);
    sn_cpu_gemm(c, false, false, BT, E, E, 1.0f, dy, E, out_w, E, 0.0f, dctx, E);
    float scale = 1.0f / sqrtf((float)d);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++) {
            int64_t bh = b * heads + h;
            const float *dc = dctx + b * T * E + h * d;
            /* dP = dctx v^T; dv = P^T dctx */
            sn_cpu_gemm(c, false, true, T, T, d, 1.0f, dc, E, v + bh * T * d, d, 0.0f, dP + bh * T * T, T);
            sn_cpu_gemm(c, true, false, T, d, T, 1.0f, P + bh * T * T, T, dc, E, 0.0f,
                     dqkv + b * T * 3 * E + 2 * E + h * d, 3 * E);
        }
    rows_job rj = {dP, P, T, false};
    sn_pool_for(c->pool, B * heads * T, 16, softmax_bwd_rows, &rj);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++) {
            int64_t bh = b * heads + h;
            /* dq = dS k * scale; dk = dS^T q * scale */
            sn_cpu_gemm(c, false, false, T, d, T, scale, dP + bh * T * T, T, k + bh * T * d, d, 0.0f,
                     dqkv + b * T * 3 * E + h * d, 3 * E);
            sn_cpu_gemm(c, true, false, T, d, T, scale, dP + bh * T * T, T, q + bh * T * d, d, 0.0f,
                     dqkv + b * T * 3 * E + E + h * d, 3 * E);
        }
    sn_cpu_gemm(c, true, false, 3 * E, E, BT, 1.0f, dqkv, 3 * E, x->data, E, 0.0f, din_w, E);
    colsum(din_b, dqkv, BT, 3 * E);
    sn_cpu_gemm(c, false, false, BT, E, 3 * E, 1.0f, dqkv, 3 * E, in_w, E, 0.0f, dx, E);
    return SN_OK;
}

sn_status sn_cpu_attention(sn_cpu *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_ATTENTION: return attn_forward(c, node);
    case SN_OP_ATTENTION_BWD: return attn_backward(c, node);
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_attention: unexpected op %s", sn_op_name(node->op));
    }
}
