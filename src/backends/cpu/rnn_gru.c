/* CPU RNN kernels: the GRU forward and backward passes (rnn.c says how a pass runs). */
#include "backends/cpu/rnn_internal.h"

#include <stdlib.h>
#include <string.h>


typedef struct {
    float *g;           /* gates of step t: input projections in, activated r,z,n out */
    const float *gh;    /* [B,3H] h_{t-1} w_hh^T + b_hh */
    float *hn, *h;      /* hn, h of step t, row b at + b*hs */
    const float *hp;    /* h_{t-1} (NULL at t = 0) */
    int64_t H, gs, hs;
    int64_t ps;         /* row stride of hp */
} gru_fwd_job;

static void gru_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const gru_fwd_job *q = arg;
    int64_t H = q->H;
    SN_RNN_FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        const float *gh = q->gh + b * 3 * H;
        float r = sn_rnn_sigm(g[j] + gh[j]), z = sn_rnn_sigm(g[H + j] + gh[H + j]);
        float hn = gh[2 * H + j];
        float n = tanhf(g[2 * H + j] + r * hn);
        float hp = q->hp ? q->hp[b * q->ps + j] : 0.0f;
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = n;
        q->hn[b * q->hs + j] = hn;
        q->h[b * q->hs + j] = (1.0f - z) * n + z * hp;
    })
}

/* SN_GRU_REGION=0: one sn_pool_for per step instead of one region per layer */
static bool gru_region(sn_cpu *c, int64_t B) {
    static int on = -1;
#ifdef SN_SKINNY_X86
    return sn_cpu_switch_on(&on, "SN_GRU_REGION") && (c->bf16 ? sn_rnn_use_skinny(B) : sn_rnn_use_packed(B));
#else
    (void)on, (void)c, (void)B;
    return false;
#endif
}

#ifdef SN_SKINNY_X86
/* One layer's timesteps in one pool region, as the LSTM's: thread tid owns hidden units
 * [j0, j1) every step, computes their three gate columns of h_{t-1} w_hh^T + b_hh from
 * its slices of the packed w_hh (walked forward on even steps, backward on odd ones)
 * and their cells; one barrier a step (h_t complete before anyone reads it). */
typedef struct {
    float *gates, *hns, *hs, *gh;
    const float *h0, *b_hh;
    const float *wp;      /* f32: w_hh packed per gate (3 blocks of sn_rnn_packed_floats(H, H)) */
    const uint32_t *wp16; /* bf16: per gate (3 blocks of sn_rnn_packed16_words(H, H)) */
    uint32_t *a16;        /* bf16: per thread B*ceil(H/2) u32 */
    int64_t H, T, B;
    bool pp;
} gru_fwd_region;

static void gru_fwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const gru_fwd_region *r = arg;
    int64_t H = r->H, T = r->T, B = r->B, G = 3 * H, KP = (H + 1) / 2, j0, j1;
    int64_t blk = sn_rnn_packed_floats(H, H), blk16 = sn_rnn_packed16_words(H, H);
    sn_rnn_unit_range(H, tid, nth, &j0, &j1);
    uint32_t *a16 = r->a16 ? r->a16 + tid * B * KP : NULL;
    for (int64_t t = 0; t < T; t++) {
        const float *hp = t > 0 ? r->hs + (t - 1) * H : r->h0;
        int64_t ps = t > 0 ? T * H : H;
        bool rev = r->pp && (t & 1);
        if (j0 < j1) {
            for (int64_t b = 0; b < B; b++)
                for (int k = 0; k < 3; k++)
                    memcpy(r->gh + b * G + k * H + j0, r->b_hh + k * H + j0, (size_t)(j1 - j0) * sizeof *r->gh);
            if (hp && a16)
                for (int64_t b = 0; b < B; b++) sn_bf16_pairs(a16 + b * KP, hp + b * ps, H);
            for (int kk = 0; hp && kk < 3; kk++) {
                int k = rev ? 2 - kk : kk;
                if (a16)
                    sn_rnn_skinny_packed_bf16_dir(a16, KP, B, r->wp16 + k * blk16, KP, r->gh + k * H, G, j0, j1, true,
                                                  rev);
                else sn_rnn_skinny_packed_dir(hp, ps, B, r->wp + k * blk, H, r->gh + k * H, G, j0, j1, true, rev);
            }
            gru_fwd_job q = {r->gates + t * G, r->gh, r->hns + t * H, r->hs + t * H, hp, H, T * G, T * H, ps};
            for (int64_t b = 0; b < B; b++) gru_cell_fwd(&q, b * H + j0, b * H + j1, tid);
        }
        if (t + 1 < T) sn_barrier_wait(bar);
    }
}

/* w_hh packed per gate (bf16 in mixed precision), then the region over the layer */
static sn_status gru_fwd_region_run(sn_cpu *c, float *gates, float *hns, float *hs, const float *h0,
                                    const float *w_hh, const float *b_hh, int64_t H, int64_t T, int64_t B) {
    int64_t G = 3 * H, KP = (H + 1) / 2, nth = sn_pool_size(c->pool);
    int64_t n = c->bf16 ? 3 * sn_rnn_packed16_words(H, H) : 3 * sn_rnn_packed_floats(H, H);
    bool huge = false;
    float *wp = sn_rnn_wpack_get(c, (size_t)n, &huge); /* u32 and float are 4 bytes */
    float *gh = NULL;
    uint32_t *a16 = c->bf16 ? malloc((size_t)(nth * B * KP) * sizeof *a16) : NULL;
    if (!wp || posix_memalign((void **)&gh, 64, (size_t)(B * G) * sizeof *gh) != 0 || (c->bf16 && !a16)) {
        sn_rnn_wpack_put(huge);
        free(gh);
        free(a16);
        return sn_error(SN_ERR_NOMEM, "CPU GRU: out of host memory for the packed weights");
    }
    gru_fwd_region r = {gates, hns, hs, gh, h0, b_hh, NULL, NULL, a16, H, T, B, sn_rnn_pingpong()};
    if (c->bf16) {
        int64_t blk16 = sn_rnn_packed16_words(H, H);
        for (int k = 0; k < 3; k++) sn_rnn_pack_panels_bf16(c, (uint32_t *)wp + k * blk16, w_hh + k * H * H, H, H, H, 1);
        r.wp16 = (const uint32_t *)wp;
    } else {
        int64_t blk = sn_rnn_packed_floats(H, H);
        for (int k = 0; k < 3; k++) sn_rnn_pack_panels(c, wp + k * blk, w_hh + k * H * H, H, H, H, 1);
        r.wp = wp;
    }
    sn_pool_region(c->pool, gru_fwd_thread, &r);
    sn_rnn_wpack_put(huge);
    free(gh);
    free(a16);
    return SN_OK;
}
#endif

sn_status sn_rnn_gru_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H;
    float *ex = sn_extra_ptr(node);
    /* the per-step path's buffers (a region packs and allocates its own) */
    bool region = gru_region(c, B);
    float *gh = region ? NULL : sn_cpu_scratch(c, (size_t)(B * G));
    if (!region && !gh) return SN_ERR_NOMEM;
    /* bf16 mode: w_hh rounded and packed once per layer, h_{t-1} rounded per step */
    int64_t w16n = sn_rnn_packed16_words(G, H);
    uint32_t *w16 = NULL; /* 64-byte aligned: the kernel loads whole cache lines of panels */
    if (c->bf16 && !region &&
        posix_memalign((void **)&w16, 64, (size_t)(w16n + B * ((H + 1) / 2)) * sizeof *w16) != 0)
        return sn_error(SN_ERR_NOMEM, "CPU GRU (bf16): out of host memory for the packed weights");
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(node, l - 1);
        float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        float *hs = sn_rnn_h(node, l); /* the last layer writes the output directly */
        sn_rnn_input_proj(c, gates, xin, w_ih, b_ih, NULL, B * T, in, G);
        const float *h0 = node->ip[2] ? (const float *)node->src[1 + 4 * layers]->data + l * B * H : NULL;
#ifdef SN_SKINNY_X86
        if (region) {
            sn_status st = gru_fwd_region_run(c, gates, hns, hs, h0, w_hh, b_hh, H, T, B);
            if (st != SN_OK) return st;
            continue;
        }
#endif
        if (w16) sn_rnn_pack_panels_bf16(c, w16, w_hh, G, H, H, 1);
        for (int64_t t = 0; t < T; t++) {
            for (int64_t b = 0; b < B; b++) memcpy(gh + b * G, b_hh, (size_t)G * sizeof *gh);
            const float *hp = t > 0 ? hs + (t - 1) * H : h0;
            int64_t ps = t > 0 ? T * H : H;
            if (hp && w16) sn_rnn_step_gemm_p16(c, B, G, H, hp, ps, w16, gh, G, true, w16 + w16n);
            else if (hp) sn_rnn_step_gemm_nt(c, B, G, H, hp, ps, w_hh, gh, G, true);
            gru_fwd_job q = {gates + t * G, gh, hns + t * H, hs + t * H, hp, H, T * G, T * H, ps};
            sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, gru_cell_fwd, &q);
        }
    }
    free(w16);
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
    SN_RNN_FOR_BJ(i0, i1, H, {
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

#ifdef SN_SKINNY_X86
/* The backward's region: thread tid owns units [j0, j1); per step, from the top, its
 * columns of dh_{t-1} += dGh_{t+1} w_hh (all of dGh_{t+1}, written by every thread the
 * step before; the z*dh part is already there from its own cell), then its cells of
 * step t; one barrier a step. */
typedef struct {
    float *dgx, *dgh, *dhr;
    const float *gates, *hns, *hs, *dho;
    const float *wt;      /* f32: w_hh as [H, G] panels */
    const uint32_t *wt16; /* bf16: the same in bf16 */
    uint32_t *a16;        /* bf16: per thread B*ceil(G/2) u32 */
    int64_t H, T, B;
    bool pp;
} gru_bwd_region;

static void gru_bwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const gru_bwd_region *r = arg;
    int64_t H = r->H, T = r->T, B = r->B, G = 3 * H, KPG = (G + 1) / 2, j0, j1;
    sn_rnn_unit_range(H, tid, nth, &j0, &j1);
    uint32_t *a16 = r->a16 ? r->a16 + tid * B * KPG : NULL;
    for (int64_t t = T - 1; t >= 0; t--) {
        bool rev = r->pp && (t & 1);
        if (j0 < j1) {
            if (t < T - 1) {
                const float *dgn = r->dgh + (t + 1) * G;
                if (a16) {
                    for (int64_t b = 0; b < B; b++) sn_bf16_pairs(a16 + b * KPG, dgn + b * T * G, G);
                    sn_rnn_skinny_packed_bf16_dir(a16, KPG, B, r->wt16, KPG, r->dhr, H, j0, j1, true, rev);
                } else
                    sn_rnn_skinny_packed_dir(dgn, T * G, B, r->wt, G, r->dhr, H, j0, j1, true, rev);
            }
            gru_bwd_job q = {r->dgx + t * G, r->dgh + t * G, r->gates + t * G, r->hns + t * H,
                             t > 0 ? r->hs + (t - 1) * H : NULL, r->dho + t * H, r->dhr, t < T - 1, H, T * G, T * H};
            for (int64_t b = 0; b < B; b++) gru_cell_bwd(&q, b * H + j0, b * H + j1, tid);
        }
        if (t > 0) sn_barrier_wait(bar);
    }
}
#endif

sn_status sn_rnn_gru_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 3 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    /* planner-allocated scratch; dGx overwrites the forward's gates (sn_rnn_bwd_scratch_offset) */
    float *sc = sn_extra_ptr(node);
    float *dgh = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 0);
    float *dhbuf = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 1);
    float *dhr = sc + sn_rnn_bwd_scratch_offset(false, B, T, H, layers, 2);
    bool region = gru_region(c, B), skinny = sn_rnn_use_skinny(B) && !c->bf16;
    float *wt = NULL;
    int64_t w16n = sn_rnn_packed16_words(H, G), KPG = (G + 1) / 2;
    uint32_t *w16 = NULL; /* 64-byte aligned: the kernel loads whole cache lines of panels */
    /* bf16: the panels, then the k-pairs of dGh (one row set a thread in a region) */
    int64_t a16n = (region ? sn_pool_size(c->pool) : 1) * B * KPG;
    if (c->bf16 && posix_memalign((void **)&w16, 64, (size_t)(w16n + a16n) * sizeof *w16) != 0)
        return sn_error(SN_ERR_NOMEM, "CPU GRU backward (bf16): out of host memory for the packed weights");
    if (skinny) { /* w_hh^T, packed into panels for a region */
        wt = sn_cpu_scratch(c, (size_t)(region ? sn_rnn_packed_floats(H, G) : G * H));
        if (!wt) return SN_ERR_NOMEM;
    }
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(fwd, l - 1);
        const float *gates = ex + sn_gru_extra_offset(B, T, H, l, 0);
        float *dgx = (float *)gates; /* dGx in place of the gates */
        const float *hns = ex + sn_gru_extra_offset(B, T, H, l, 1);
        const float *hs = sn_rnn_h(fwd, l);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        if (skinny && region) sn_rnn_pack_panels(c, wt, w_hh, H, G, 1, H); /* op[n=j, k=g] = w_hh[g, j] */
        else if (skinny) sn_rnn_transpose(c, wt, w_hh, G, H);
        if (w16) sn_rnn_pack_panels_bf16(c, w16, w_hh, H, G, 1, H);
#ifdef SN_SKINNY_X86
        if (region) {
            gru_bwd_region r = {dgx, dgh, dhr, gates, hns, hs, dho, wt, w16, w16 ? w16 + w16n : NULL, H, T, B,
                                sn_rnn_pingpong()};
            sn_pool_region(c->pool, gru_bwd_thread, &r);
        } else
#endif
        for (int64_t t = T - 1; t >= 0; t--) {
            gru_bwd_job q = {dgx + t * G, dgh + t * G, gates + t * G, hns + t * H, t > 0 ? hs + (t - 1) * H : NULL,
                             dho + t * H, dhr, t < T - 1, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, gru_cell_bwd, &q);
            if (t == 0) break;
            /* dh_{t-1} = z*dh + dGh_t w_hh */
            if (w16) sn_rnn_step_gemm_p16(c, B, H, G, dgh + t * G, T * G, w16, dhr, H, true, w16 + w16n);
            else if (skinny) sn_rnn_step_gemm_nt(c, B, H, G, dgh + t * G, T * G, wt, dhr, H, true);
            else sn_cpu_gemm(c, false, false, B, H, G, 1.0f, dgh + t * G, T * G, w_hh, H, 1.0f, dhr, H);
        }
        sn_rnn_weight_grads(c, node, 3, l, dgx, dgh, xin, hs);
        if (l > 0) sn_cpu_gemm(c, false, false, BT, H, G, 1.0f, dgx, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_cpu_gemm(c, false, false, BT, I, G, 1.0f, dgx, G, w_ih, I, 0.0f, out, I);
    }
    free(w16);
    return SN_OK;
}
