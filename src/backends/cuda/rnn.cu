/* LSTM and GRU as whole-sequence ops (batch-first, PyTorch gate order and equations,
 * zero initial state), forward and backward through time.
 *
 * Per layer: the input projection of all timesteps is one GEMM; then per step one
 * recurrent cuBLAS GEMM and one fused cell kernel. Backward: per step one fused
 * cell-backward kernel and one recurrent GEMM, then the weight gradients as GEMMs
 * over all timesteps. The step loop is isolated (lstm_fwd_steps / lstm_bwd_steps, ...)
 * so a persistent kernel can replace it later. Saved state layouts: tensor.h. */
#include "backends/cuda/cuda_common.h"

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---------------- LSTM ---------------- */

/* gates holds x@W_ih^T for step t on entry and the activated (i,f,g,o) on exit */
__global__ void k_lstm_cell(float *gates, float *cbuf, float *hbuf, float *y, __nv_bfloat16 *h16, const float *rec,
                            const float *b_ih, const float *b_hh, const float *c0, int64_t B, int64_t T, int64_t H,
                            int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        float *gt = gates + (b * T + t) * 4 * H;
        float pre[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float v = gt[k * H + j] + b_ih[k * H + j] + b_hh[k * H + j];
            if (rec) v += rec[b * 4 * H + k * H + j];
            pre[k] = v;
        }
        float i = sigm(pre[0]), f = sigm(pre[1]), g = tanhf(pre[2]), o = sigm(pre[3]);
        float cp = t > 0 ? cbuf[(b * T + t - 1) * H + j] : (c0 ? c0[b * H + j] : 0.0f);
        float cn = f * cp + i * g, hn = o * tanhf(cn);
        gt[j] = i;
        gt[H + j] = f;
        gt[2 * H + j] = g;
        gt[3 * H + j] = o;
        int64_t o1 = (b * T + t) * H + j;
        cbuf[o1] = cn;
        hbuf[o1] = hn;
        if (y) y[o1] = hn;
        if (h16) h16[b * H + j] = __float2bfloat16(hn);
    }
}

/* dG (pre-activation gradients) of step t; dc carries dL/dc_t backwards */
__global__ void k_lstm_cell_bwd(const float *dh_out, const float *dhrec, float *dc, const float *gates,
                                const float *cbuf, float *dG, __nv_bfloat16 *dg16, int64_t B, int64_t T, int64_t H,
                                int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        int64_t o1 = (b * T + t) * H + j;
        const float *gt = gates + (b * T + t) * 4 * H;
        float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        float dh = dh_out[o1] + (t < T - 1 ? dhrec[b * H + j] : 0.0f);
        float dcn = t < T - 1 ? dc[b * H + j] : 0.0f;
        float cn = cbuf[o1], cp = t > 0 ? cbuf[o1 - H] : 0.0f;
        float tc = tanhf(cn);
        float d_o = dh * tc;
        dcn += dh * o * (1.0f - tc * tc);
        float di = dcn * g, dg = dcn * i, df = dcn * cp;
        dc[b * H + j] = dcn * f;
        float a[4] = {di * i * (1.0f - i), df * f * (1.0f - f), dg * (1.0f - g * g), d_o * o * (1.0f - o)};
        float *d = dG + (b * T + t) * 4 * H;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            d[k * H + j] = a[k];
            if (dg16) dg16[b * 4 * H + k * H + j] = __float2bfloat16(a[k]);
        }
    }
}

/* hp[b,t] = h[b,t-1], 0 at t = 0 */
__global__ void k_shift_prev(const float *h, float *hp, int64_t B, int64_t T, int64_t H) {
    SN_GRID_LOOP(idx, B * T * H) {
        int64_t t = (idx / H) % T;
        hp[idx] = t > 0 ? h[idx - H] : 0.0f;
    }
}

/* ---------------- GRU ---------------- */

/* gates holds x@W_ih^T on entry, the activated (r,z,n) on exit; hn = W_hn h + b_hn */
__global__ void k_gru_cell(float *gates, float *hnbuf, float *hbuf, float *y, __nv_bfloat16 *h16, const float *rec,
                           const float *b_ih, const float *b_hh, const float *h0, int64_t B, int64_t T, int64_t H,
                           int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        float *gt = gates + (b * T + t) * 3 * H;
        const float *rc = rec ? rec + b * 3 * H : NULL;
        float xr = gt[j] + b_ih[j], xz = gt[H + j] + b_ih[H + j], xn = gt[2 * H + j] + b_ih[2 * H + j];
        float hr = b_hh[j] + (rc ? rc[j] : 0.0f), hz = b_hh[H + j] + (rc ? rc[H + j] : 0.0f);
        float hnv = b_hh[2 * H + j] + (rc ? rc[2 * H + j] : 0.0f);
        float r = sigm(xr + hr), z = sigm(xz + hz), n = tanhf(xn + r * hnv);
        int64_t o1 = (b * T + t) * H + j;
        float hp = t > 0 ? hbuf[o1 - H] : (h0 ? h0[b * H + j] : 0.0f);
        float h = (1.0f - z) * n + z * hp;
        gt[j] = r;
        gt[H + j] = z;
        gt[2 * H + j] = n;
        hnbuf[o1] = hnv;
        hbuf[o1] = h;
        if (y) y[o1] = h;
        if (h16) h16[b * H + j] = __float2bfloat16(h);
    }
}

/* dhc holds dL/dh_{t} from later steps on entry and dL/dh_{t-1} (direct path) on exit */
__global__ void k_gru_cell_bwd(const float *dh_out, float *dhc, const float *gates, const float *hnbuf,
                               const float *hbuf, float *dGx, float *dGh, __nv_bfloat16 *dg16, int64_t B, int64_t T,
                               int64_t H, int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        int64_t o1 = (b * T + t) * H + j;
        const float *gt = gates + (b * T + t) * 3 * H;
        float r = gt[j], z = gt[H + j], n = gt[2 * H + j];
        float hnv = hnbuf[o1], hp = t > 0 ? hbuf[o1 - H] : 0.0f;
        float dh = dh_out[o1] + (t < T - 1 ? dhc[b * H + j] : 0.0f);
        float dn = dh * (1.0f - z), dz = dh * (hp - n);
        float dan = dn * (1.0f - n * n);
        float dar = dan * hnv * r * (1.0f - r);
        float daz = dz * z * (1.0f - z);
        dhc[b * H + j] = dh * z;
        float *gx = dGx + (b * T + t) * 3 * H, *gh = dGh + (b * T + t) * 3 * H;
        gx[j] = dar;
        gx[H + j] = daz;
        gx[2 * H + j] = dan;
        gh[j] = dar;
        gh[H + j] = daz;
        gh[2 * H + j] = dan * r;
        if (dg16) {
            __nv_bfloat16 *d = dg16 + b * 3 * H;
            d[j] = __float2bfloat16(dar);
            d[H + j] = __float2bfloat16(daz);
            d[2 * H + j] = __float2bfloat16(dan * r);
        }
    }
}

/* ---------------- drivers ---------------- */

typedef struct {
    int64_t B, T, I, H, G; /* G = gates per unit: 4 (LSTM) or 3 (GRU) */
    int L;
    bool lstm, stream;
} rnn_dims;

static size_t al(size_t floats) { return (floats + 63) & ~(size_t)63; }

/* Recurrent GEMM of one step: C[B,N] = beta C + A[B,K] op(W). In bf16 mode A comes
 * from the contiguous bf16 copy a16 (lda K) and W from its bf16 copy. */
static sn_status step_gemm(sn_cuda *c, bool tw, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const __nv_bfloat16 *a16, const float *W, const __nv_bfloat16 *w16, float beta, float *C,
                           const char *what) {
    int64_t ldb = tw ? K : N;
    if (c->bf16)
        return sn_cu_gemm_ex(c, false, tw, M, N, K, 1.0f, A, K, 0, W, ldb, 0, beta, C, N, 0, 1, a16, w16, what);
    return sn_cu_gemm_ex(c, false, tw, M, N, K, 1.0f, A, lda, 0, W, ldb, 0, beta, C, N, 0, 1, NULL, NULL, what);
}

static sn_status rnn_forward(sn_cuda *c, sn_tensor *node, const rnn_dims *d) {
    const char *what = d->lstm ? "lstm" : "gru";
    int64_t B = d->B, T = d->T, H = d->H, G = d->G, BT = B * T;
    float *ex = sn_cu_extra(node);
    size_t need = al((size_t)(B * G * H)) * 4;
    if (c->bf16) need += al((size_t)(G * H * H)) * 2 + al((size_t)(B * H)) * 2;
    char *ws = (char *)sn_cu_ws(c, SN_WS_OP, need);
    if (!ws) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    float *rec = (float *)ws;
    __nv_bfloat16 *w16 = NULL, *h16 = NULL;
    if (c->bf16) {
        w16 = (__nv_bfloat16 *)(ws + al((size_t)(B * G * H)) * 4);
        h16 = w16 + al((size_t)(G * H * H));
    }
    for (int l = 0; l < d->L; l++) {
        const float *in = l == 0 ? sn_cu_f(node->src[0])
                                 : ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l - 1, 2) : sn_gru_extra_offset(B, T, H, l - 1, 2));
        int64_t in_dim = l == 0 ? d->I : H;
        const float *w_ih = sn_cu_f(node->src[1 + 4 * l]), *w_hh = sn_cu_f(node->src[2 + 4 * l]);
        const float *b_ih = sn_cu_f(node->src[3 + 4 * l]), *b_hh = sn_cu_f(node->src[4 + 4 * l]);
        float *gates = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 0) : sn_gru_extra_offset(B, T, H, l, 0));
        float *mid = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 1) : sn_gru_extra_offset(B, T, H, l, 1));
        float *hbuf = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 2) : sn_gru_extra_offset(B, T, H, l, 2));
        float *y = l == d->L - 1 ? sn_cu_f(node) : NULL;
        /* streaming variant: initial state [layers,B,H] after the weights */
        const float *h0 = d->stream ? sn_cu_f(node->src[1 + 4 * d->L]) + l * B * H : NULL;
        const float *c0 = d->stream && d->lstm ? sn_cu_f(node->src[2 + 4 * d->L]) + l * B * H : NULL;
        /* input projection of every timestep */
        SN_TRY(sn_cu_gemm(c, false, true, BT, G * H, in_dim, 1.0f, in, in_dim, w_ih, in_dim, 0.0f, gates, G * H, what));
        if (w16) SN_TRY(sn_cu_to_bf16(c, w16, w_hh, G * H * H));
        unsigned g = sn_cu_blocks(c, B * H);
        if (h0 && h16) SN_TRY(sn_cu_to_bf16(c, h16, h0, B * H));
        for (int64_t t = 0; t < T; t++) {
            if (t > 0)
                SN_TRY(step_gemm(c, true, B, G * H, H, hbuf + (t - 1) * H, T * H, h16, w_hh, w16, 0.0f, rec, what));
            else if (h0)
                SN_TRY(step_gemm(c, true, B, G * H, H, h0, H, h16, w_hh, w16, 0.0f, rec, what));
            const float *r = t > 0 || h0 ? rec : NULL;
            if (d->lstm)
                k_lstm_cell<<<g, SN_CU_THREADS, 0, c->stream>>>(gates, mid, hbuf, y, h16, r, b_ih, b_hh, c0, B, T, H, t);
            else
                k_gru_cell<<<g, SN_CU_THREADS, 0, c->stream>>>(gates, mid, hbuf, y, h16, r, b_ih, b_hh, h0, B, T, H, t);
            CU_LAUNCHED(d->lstm ? "lstm cell" : "gru cell");
        }
    }
    return SN_OK;
}

static sn_status rnn_backward(sn_cuda *c, sn_tensor *node, const rnn_dims *d) {
    const char *what = d->lstm ? "lstm_bwd" : "gru_bwd";
    int64_t B = d->B, T = d->T, H = d->H, G = d->G, BT = B * T, GH = G * H;
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    float *ex = sn_cu_extra(fwd);
    /* packed output: dx | per layer dw_ih, dw_hh, db_ih, db_hh */
    int64_t sizes[1 + 4 * 16];
    if (d->L > 16) return sn_error(SN_ERR_UNSUPPORTED, "%s: more than 16 layers", what);
    sizes[0] = BT * d->I;
    for (int l = 0; l < d->L; l++) {
        int64_t in_dim = l == 0 ? d->I : H;
        sizes[1 + 4 * l] = GH * in_dim;
        sizes[2 + 4 * l] = GH * H;
        sizes[3 + 4 * l] = GH;
        sizes[4 + 4 * l] = GH;
    }
    float *out = sn_cu_f(node);
    /* workspace: dG (LSTM) or dGx+dGh (GRU), two dh buffers, per-step vectors, shifted h */
    size_t o_dG = 0, o_dGh = al((size_t)(BT * GH));
    size_t o_dhA = o_dGh + (d->lstm ? 0 : al((size_t)(BT * GH)));
    size_t o_dhB = o_dhA + al((size_t)(BT * H));
    size_t o_vec = o_dhB + al((size_t)(BT * H));   /* dhrec (LSTM) / dhc (GRU) [B,H] */
    size_t o_dc = o_vec + al((size_t)(B * H));     /* LSTM dc [B,H] */
    size_t o_hp = o_dc + al((size_t)(B * H));
    size_t nf = o_hp + al((size_t)(BT * H));
    size_t need = nf * 4;
    if (c->bf16) need += al((size_t)(GH * H)) * 2 + al((size_t)(B * GH)) * 2;
    float *ws = (float *)sn_cu_ws(c, SN_WS_OP, need);
    if (!ws) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    float *dG = ws + o_dG, *dGh = d->lstm ? dG : ws + o_dGh;
    float *dhbuf[2] = {ws + o_dhA, ws + o_dhB};
    float *vec = ws + o_vec, *dc = ws + o_dc, *hp = ws + o_hp;
    __nv_bfloat16 *w16 = NULL, *dg16 = NULL;
    if (c->bf16) {
        w16 = (__nv_bfloat16 *)(ws + nf);
        dg16 = w16 + al((size_t)(GH * H));
    }
    const float *dh_out = sn_cu_f(dy);
    int cur = 0;
    unsigned g = sn_cu_blocks(c, B * H);
    for (int l = d->L - 1; l >= 0; l--) {
        int64_t in_dim = l == 0 ? d->I : H;
        const float *in = l == 0 ? sn_cu_f(x)
                                 : ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l - 1, 2) : sn_gru_extra_offset(B, T, H, l - 1, 2));
        const float *w_ih = sn_cu_f(node->src[3 + 4 * l]), *w_hh = sn_cu_f(node->src[4 + 4 * l]);
        const float *gates = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 0) : sn_gru_extra_offset(B, T, H, l, 0));
        const float *mid = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 1) : sn_gru_extra_offset(B, T, H, l, 1));
        const float *hbuf = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 2) : sn_gru_extra_offset(B, T, H, l, 2));
        float *dw_ih = out + sn_packed_offset(sizes, 1 + 4 * l), *dw_hh = out + sn_packed_offset(sizes, 2 + 4 * l);
        float *db_ih = out + sn_packed_offset(sizes, 3 + 4 * l), *db_hh = out + sn_packed_offset(sizes, 4 + 4 * l);
        if (w16) SN_TRY(sn_cu_to_bf16(c, w16, w_hh, GH * H));
        for (int64_t t = T - 1; t >= 0; t--) {
            if (d->lstm) {
                if (t < T - 1)
                    SN_TRY(step_gemm(c, false, B, H, GH, dG + (t + 1) * GH, T * GH, dg16, w_hh, w16, 0.0f, vec, what));
                k_lstm_cell_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(dh_out, vec, dc, gates, mid, dG, dg16, B, T, H, t);
            } else {
                if (t < T - 1)
                    SN_TRY(step_gemm(c, false, B, H, GH, dGh + (t + 1) * GH, T * GH, dg16, w_hh, w16, 1.0f, vec, what));
                k_gru_cell_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(dh_out, vec, gates, mid, hbuf, dG, dGh, dg16, B, T,
                                                                   H, t);
            }
            CU_LAUNCHED(d->lstm ? "lstm cell backward" : "gru cell backward");
        }
        /* weight and bias gradients over all timesteps */
        SN_TRY(sn_cu_gemm(c, true, false, GH, in_dim, BT, 1.0f, dG, GH, in, in_dim, 0.0f, dw_ih, in_dim, what));
        k_shift_prev<<<sn_cu_blocks(c, BT * H), SN_CU_THREADS, 0, c->stream>>>(hbuf, hp, B, T, H);
        CU_LAUNCHED("rnn shift");
        SN_TRY(sn_cu_gemm(c, true, false, GH, H, BT, 1.0f, dGh, GH, hp, H, 0.0f, dw_hh, H, what));
        SN_TRY(sn_cu_colsum(c, dG, BT, GH, db_ih, false));
        if (d->lstm)
            CU_TRY(cudaMemcpyAsync(db_hh, db_ih, (size_t)GH * 4, cudaMemcpyDeviceToDevice, c->stream), what);
        else
            SN_TRY(sn_cu_colsum(c, dGh, BT, GH, db_hh, false));
        /* gradient of this layer's input */
        float *din = l == 0 ? out : dhbuf[cur];
        SN_TRY(sn_cu_gemm(c, false, false, BT, in_dim, GH, 1.0f, dG, GH, w_ih, in_dim, 0.0f, din, in_dim, what));
        dh_out = din;
        cur ^= 1;
    }
    return SN_OK;
}

/* out[l,b,:] = state part (1 = c, 2 = h) of layer l at the last timestep */
__global__ void k_rnn_last(const float *ex, int64_t per_layer, int64_t part_off, float *out, int64_t L, int64_t B,
                           int64_t T, int64_t H) {
    SN_GRID_LOOP(i, L * B * H) {
        int64_t j = i % H, b = (i / H) % B, l = i / (B * H);
        out[i] = ex[l * per_layer + part_off + (b * T + T - 1) * H + j];
    }
}

sn_status sn_cu_rnn(sn_cuda *c, sn_tensor *node) {
    if (node->op == SN_OP_RNN_STATE) {
        const sn_tensor *r = node->src[0];
        bool lstm = r->op == SN_OP_LSTM;
        int which = node->ip[0];
        if (which == 1 && !lstm) return sn_error(SN_ERR_INVALID_ARG, "rnn_state: a GRU has no cell state (c)");
        int64_t B = r->shape[0], T = r->shape[1], H = r->shape[2], L = r->ip[0];
        int part = which == 1 ? 1 : 2;
        int64_t per = lstm ? sn_lstm_extra_offset(B, T, H, 1, 0) : sn_gru_extra_offset(B, T, H, 1, 0);
        int64_t off = lstm ? sn_lstm_extra_offset(B, T, H, 0, part) : sn_gru_extra_offset(B, T, H, 0, part);
        k_rnn_last<<<sn_cu_blocks(c, L * B * H), SN_CU_THREADS, 0, c->stream>>>(sn_cu_extra(r), per, off, sn_cu_f(node),
                                                                                 L, B, T, H);
        CU_LAUNCHED("rnn_state");
        return SN_OK;
    }
    rnn_dims d;
    bool fwd = node->op == SN_OP_LSTM || node->op == SN_OP_GRU;
    d.lstm = node->op == SN_OP_LSTM || node->op == SN_OP_LSTM_BWD;
    d.G = d.lstm ? 4 : 3;
    const sn_tensor *x = fwd ? node->src[0] : node->src[1];
    const sn_tensor *f = fwd ? node : node->src[2];
    d.B = x->shape[0];
    d.T = x->shape[1];
    d.I = x->shape[2];
    d.H = f->shape[2];
    d.L = f->ip[0] > 0 ? f->ip[0] : (node->nsrc - (fwd ? 1 : 3)) / 4;
    d.stream = fwd && node->ip[2] == 1;
    if (d.L < 1 || d.L > 16)
        return sn_error(SN_ERR_INVALID_ARG, "%s: %d layers (1 to 16 supported)", sn_op_name(node->op), d.L);
    return fwd ? rnn_forward(c, node, &d) : rnn_backward(c, node, &d);
}
