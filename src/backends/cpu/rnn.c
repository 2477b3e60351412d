/* CPU kernels: LSTM and GRU forward and backward over a whole sequence.
 *
 * Forward per layer: the input projection of all timesteps is one GEMM written into
 * the gates region of the saved state; then per timestep one recurrent GEMM
 * (h_{t-1}[B,H] x w_hh^T) accumulated into that step's gate rows (strided views,
 * no copies) and a fused cell loop parallel over (batch, hidden).
 * Backward per layer, from the top: per timestep the fused cell backward writes the
 * pre-activation gate gradients dG_t and one GEMM gives dh_{t-1} = dG_t w_hh; after
 * the loop the weight gradients are big GEMMs over all timesteps and dx_in = dG w_ih
 * feeds the layer below. */
#include "backends/cpu/cpu.h"

#include <math.h>
#include <string.h>

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Rows [b0*H + j) of a cell loop split into per-batch contiguous j ranges. */
#define FOR_BJ(i0, i1, H, ...)                                             \
    for (int64_t b = (i0) / (H); b * (H) < (i1); b++) {                    \
        int64_t j0 = (i0) - b * (H) > 0 ? (i0) - b * (H) : 0;              \
        int64_t j1 = (i1) - b * (H) < (H) ? (i1) - b * (H) : (H);          \
        for (int64_t j = j0; j < j1; j++) __VA_ARGS__                             \
    }

/* Grain of the cell loops: enough work per thread to beat the wake-up cost. */
#define CELL_GRAIN 1024

typedef struct {
    float *db;
    const float *g;
    int64_t rows, cols;
} colsum_job;

static void colsum_part(void *arg, int64_t c0, int64_t c1, int tid) {
    const colsum_job *j = arg;
    for (int64_t c = c0; c < c1; c++) j->db[c] = 0;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *p = j->g + r * j->cols;
        for (int64_t c = c0; c < c1; c++) j->db[c] += p[c];
    }
}

static void colsum(sn_cpu *c, float *db, const float *g, int64_t rows, int64_t cols) {
    colsum_job j = {db, g, rows, cols};
    sn_pool_for(c->pool, cols, 256, colsum_part, &j);
}

/* dw_hh[G,H] = sum_b sum_{t>=1} dG[b,t]^T h[b,t-1]: one GEMM per sequence, K = T-1 */
static void recurrent_wgrad(sn_cpu *c, float *dw, const float *dg, const float *h, int64_t B, int64_t T,
                            int64_t G, int64_t H) {
    if (T < 2) {
        memset(dw, 0, (size_t)(G * H) * sizeof *dw);
        return;
    }
    for (int64_t b = 0; b < B; b++)
        sn_sgemm(c->pool, true, false, G, H, T - 1, 1.0f, dg + (b * T + 1) * G, G, h + b * T * H, H,
                 b ? 1.0f : 0.0f, dw, H);
}

/* gates[B*T, G] = in[B*T, K] w_ih^T + b_ih (+ b_hh when given) */
static void input_proj(sn_cpu *c, float *gates, const float *in, const float *w_ih, const float *b_ih,
                       const float *b_hh, int64_t BT, int64_t K, int64_t G) {
    for (int64_t k = 0; k < G; k++) gates[k] = b_ih[k] + (b_hh ? b_hh[k] : 0.0f);
    for (int64_t r = 1; r < BT; r++) memcpy(gates + r * G, gates, (size_t)G * sizeof *gates);
    sn_sgemm(c->pool, false, true, BT, G, K, 1.0f, in, K, w_ih, K, 1.0f, gates, G);
}

/* ------------------------------------------------------------------ LSTM */

typedef struct {
    float *g;           /* gates of step t: row b at g + b*gs */
    float *c, *h;       /* c, h of step t: row b at + b*hs */
    const float *cp;    /* c of step t-1 (NULL at t = 0) */
    int64_t H, gs, hs;
} lstm_fwd_job;

static void lstm_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_fwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        float i = sigm(g[j]), f = sigm(g[H + j]), gg = tanhf(g[2 * H + j]), o = sigm(g[3 * H + j]);
        float cp = q->cp ? q->cp[b * q->hs + j] : 0.0f;
        float cn = f * cp + i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        q->c[b * q->hs + j] = cn;
        q->h[b * q->hs + j] = o * tanhf(cn);
    })
}

static sn_status lstm_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H;
    float *ex = sn_extra_ptr(node);
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : ex + sn_lstm_extra_offset(B, T, H, l - 1, 2);
        float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        float *hs = ex + sn_lstm_extra_offset(B, T, H, l, 2);
        input_proj(c, gates, xin, w_ih, b_ih, b_hh, B * T, in, G);
        for (int64_t t = 0; t < T; t++) {
            if (t > 0) /* gates[:,t] += h[:,t-1] w_hh^T */
                sn_sgemm(c->pool, false, true, B, G, H, 1.0f, hs + (t - 1) * H, T * H, w_hh, H, 1.0f,
                         gates + t * G, T * G);
            lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : NULL, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, lstm_cell_fwd, &q);
        }
    }
    memcpy(node->data, ex + sn_lstm_extra_offset(B, T, H, layers - 1, 2), (size_t)(B * T * H) * sizeof(float));
    return SN_OK;
}

typedef struct {
    float *dg;          /* dG of step t (pre-activation), row b at + b*gs */
    const float *g;     /* activated gates of step t */
    const float *cc, *cp; /* c of steps t and t-1 (cp NULL at t = 0) */
    const float *dho;   /* dL/dh from above at step t, row b at + b*hs */
    const float *dhr;   /* dL/dh from step t+1 [B,H] (NULL at T-1) */
    float *dc;          /* [B,H]: dL/dc_t in, dL/dc_{t-1} out */
    int64_t H, gs, hs;
} lstm_bwd_job;

static void lstm_cell_bwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_bwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        const float *g = q->g + b * q->gs;
        float *dg = q->dg + b * q->gs;
        float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        float dh = q->dho[b * q->hs + j] + (q->dhr ? q->dhr[b * H + j] : 0.0f);
        float tc = tanhf(q->cc[b * q->hs + j]);
        float cp = q->cp ? q->cp[b * q->hs + j] : 0.0f;
        float dc = q->dc[b * H + j] + dh * o * (1.0f - tc * tc);
        dg[j] = dc * gg * i * (1.0f - i);
        dg[H + j] = dc * cp * f * (1.0f - f);
        dg[2 * H + j] = dc * i * (1.0f - gg * gg);
        dg[3 * H + j] = dh * tc * o * (1.0f - o);
        q->dc[b * H + j] = dc * f;
    })
}

static int64_t rnn_grad_offset(const sn_tensor *bwd, int gates, int seg) {
    const sn_tensor *x = bwd->src[1];
    int layers = bwd->ip[0];
    int64_t H = bwd->ip[1], G = gates * H, sizes[SN_MAX_SRC];
    sizes[0] = sn_nelem(x);
    for (int l = 0; l < layers; l++) {
        sizes[1 + 4 * l] = G * (l == 0 ? x->shape[2] : H);
        sizes[2 + 4 * l] = G * H;
        sizes[3 + 4 * l] = sizes[4 + 4 * l] = G;
    }
    return sn_packed_offset(sizes, seg);
}

static sn_status lstm_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    int64_t o_dg = 0, o_dh = sn_align64(BT * G), o_dhr = o_dh + sn_align64(BT * H), o_dc = o_dhr + sn_align64(B * H);
    float *s = sn_cpu_scratch(c, (size_t)(o_dc + sn_align64(B * H)));
    if (!s) return SN_ERR_NOMEM;
    float *dgs = s + o_dg, *dhbuf = s + o_dh, *dhr = s + o_dhr, *dc = s + o_dc;
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : ex + sn_lstm_extra_offset(B, T, H, l - 1, 2);
        const float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        const float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        const float *hs = ex + sn_lstm_extra_offset(B, T, H, l, 2);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        memset(dc, 0, (size_t)(B * H) * sizeof *dc);
        for (int64_t t = T - 1; t >= 0; t--) {
            lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                              dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, lstm_cell_bwd, &q);
            if (t > 0) /* dh_{t-1} = dG_t w_hh */
                sn_sgemm(c->pool, false, false, B, H, G, 1.0f, dgs + t * G, T * G, w_hh, H, 0.0f, dhr, H);
        }
        float *dw_ih = out + rnn_grad_offset(node, 4, 1 + 4 * l), *dw_hh = out + rnn_grad_offset(node, 4, 2 + 4 * l);
        float *db_ih = out + rnn_grad_offset(node, 4, 3 + 4 * l), *db_hh = out + rnn_grad_offset(node, 4, 4 + 4 * l);
        recurrent_wgrad(c, dw_hh, dgs, hs, B, T, G, H);
        sn_sgemm(c->pool, true, false, G, in, BT, 1.0f, dgs, G, xin, in, 0.0f, dw_ih, in);
        colsum(c, db_ih, dgs, BT, G);
        memcpy(db_hh, db_ih, (size_t)G * sizeof *db_hh);
        if (l > 0) sn_sgemm(c->pool, false, false, BT, H, G, 1.0f, dgs, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_sgemm(c->pool, false, false, BT, I, G, 1.0f, dgs, G, w_ih, I, 0.0f, out, I);
    }
    return SN_OK;
}

/* ------------------------------------------------------------------ GRU */

typedef struct {
    float *g;           /* gates of step t: input projections in, activated r,z,n out */
    const float *gh;    /* [B,3H] h_{t-1} w_hh^T + b_hh */
    float *hn, *h;      /* hn, h of step t, row b at + b*hs */
    const float *hp;    /* h_{t-1} (NULL at t = 0) */
    int64_t H, gs, hs;
} gru_fwd_job;

static void gru_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const gru_fwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        const float *gh = q->gh + b * 3 * H;
        float r = sigm(g[j] + gh[j]), z = sigm(g[H + j] + gh[H + j]);
        float hn = gh[2 * H + j];
        float n = tanhf(g[2 * H + j] + r * hn);
        float hp = q->hp ? q->hp[b * q->hs + j] : 0.0f;
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = n;
        q->hn[b * q->hs + j] = hn;
        q->h[b * q->hs + j] = (1.0f - z) * n + z * hp;
    })
}

static sn_status gru_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H;
    float *ex = sn_extra_ptr(node);
    float *gh = sn_cpu_scratch(c, (size_t)(B * G));
    if (!gh) return SN_ERR_NOMEM;
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : ex + sn_gru_extra_offset(B, T, H, l - 1, 2);
        float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        float *hs = ex + sn_gru_extra_offset(B, T, H, l, 2);
        input_proj(c, gates, xin, w_ih, b_ih, NULL, B * T, in, G);
        for (int64_t t = 0; t < T; t++) {
            for (int64_t b = 0; b < B; b++) memcpy(gh + b * G, b_hh, (size_t)G * sizeof *gh);
            if (t > 0) sn_sgemm(c->pool, false, true, B, G, H, 1.0f, hs + (t - 1) * H, T * H, w_hh, H, 1.0f, gh, G);
            gru_fwd_job q = {gates + t * G, gh, hns + t * H, hs + t * H, t > 0 ? hs + (t - 1) * H : NULL, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, gru_cell_fwd, &q);
        }
    }
    memcpy(node->data, ex + sn_gru_extra_offset(B, T, H, layers - 1, 2), (size_t)(B * T * H) * sizeof(float));
    return SN_OK;
}

typedef struct {
    float *dgx, *dgh;   /* dL/d(input projection), dL/d(h w_hh^T + b_hh) of step t, row b at + b*gs */
    const float *g, *hn, *hp; /* saved r,z,n; hn; h_{t-1} (NULL at t = 0) */
    const float *dho;   /* dL/dh from above at step t */
    float *dhr;         /* [B,H]: dL/dh_t from step t+1 in (valid when has_dhr), the direct part z*dh out */
    int has_dhr;
    int64_t H, gs, hs;
} gru_bwd_job;

static void gru_cell_bwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const gru_bwd_job *q = arg;
    int64_t H = q->H;
    FOR_BJ(i0, i1, H, {
        const float *g = q->g + b * q->gs;
        float *dgx = q->dgx + b * q->gs, *dgh = q->dgh + b * q->gs;
        float r = g[j], z = g[H + j], n = g[2 * H + j];
        float hn = q->hn[b * q->hs + j];
        float hp = q->hp ? q->hp[b * q->hs + j] : 0.0f;
        float dh = q->dho[b * q->hs + j] + (q->has_dhr ? q->dhr[b * H + j] : 0.0f);
        float dnp = dh * (1.0f - z) * (1.0f - n * n);
        float dzp = dh * (hp - n) * z * (1.0f - z);
        float drp = dnp * hn * r * (1.0f - r);
        dgx[j] = drp;
        dgx[H + j] = dzp;
        dgx[2 * H + j] = dnp;
        dgh[j] = drp;
        dgh[H + j] = dzp;
        dgh[2 * H + j] = dnp * r;
        q->dhr[b * H + j] = dh * z;
    })
}

static sn_status gru_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    int64_t o_dgh = sn_align64(BT * G), o_dh = o_dgh + sn_align64(BT * G), o_dhr = o_dh + sn_align64(BT * H);
    float *s = sn_cpu_scratch(c, (size_t)(o_dhr + sn_align64(B * H)));
    if (!s) return SN_ERR_NOMEM;
    float *dgx = s, *dgh = s + o_dgh, *dhbuf = s + o_dh, *dhr = s + o_dhr;
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : ex + sn_gru_extra_offset(B, T, H, l - 1, 2);
        const float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        const float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        const float *hs = ex + sn_gru_extra_offset(B, T, H, l, 2);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        for (int64_t t = T - 1; t >= 0; t--) {
            gru_bwd_job q = {dgx + t * G, dgh + t * G, gates + t * G, hns + t * H, t > 0 ? hs + (t - 1) * H : NULL,
                             dho + t * H, dhr, t < T - 1, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, CELL_GRAIN, gru_cell_bwd, &q);
            if (t > 0) /* dh_{t-1} = z*dh + dGh_t w_hh */
                sn_sgemm(c->pool, false, false, B, H, G, 1.0f, dgh + t * G, T * G, w_hh, H, 1.0f, dhr, H);
        }
        float *dw_ih = out + rnn_grad_offset(node, 3, 1 + 4 * l), *dw_hh = out + rnn_grad_offset(node, 3, 2 + 4 * l);
        float *db_ih = out + rnn_grad_offset(node, 3, 3 + 4 * l), *db_hh = out + rnn_grad_offset(node, 3, 4 + 4 * l);
        recurrent_wgrad(c, dw_hh, dgh, hs, B, T, G, H);
        sn_sgemm(c->pool, true, false, G, in, BT, 1.0f, dgx, G, xin, in, 0.0f, dw_ih, in);
        colsum(c, db_ih, dgx, BT, G);
        colsum(c, db_hh, dgh, BT, G);
        if (l > 0) sn_sgemm(c->pool, false, false, BT, H, G, 1.0f, dgx, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_sgemm(c->pool, false, false, BT, I, G, 1.0f, dgx, G, w_ih, I, 0.0f, out, I);
    }
    return SN_OK;
}

sn_status sn_cpu_rnn(sn_cpu *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_LSTM: return lstm_forward(c, node);
    case SN_OP_LSTM_BWD: return lstm_backward(c, node);
    case SN_OP_GRU: return gru_forward(c, node);
    case SN_OP_GRU_BWD: return gru_backward(c, node);
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_rnn: unexpected op %s", sn_op_name(node->op));
    }
}
