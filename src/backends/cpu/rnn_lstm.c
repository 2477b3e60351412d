/* CPU RNN kernels: the LSTM forward and backward passes (rnn.c says how a pass runs). */
#include "backends/cpu/rnn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "backends/cpu/vmath.h"

/* SN_LSTM_REGION=0: one sn_pool_for per timestep instead of one region per layer */
static bool use_region(void) {
    static int on = -1;
    return sn_cpu_switch_on(&on, "SN_LSTM_REGION");
}

typedef struct {
    float *g;           /* gates of step t: row b at g + b*gs */
    float *c, *h;       /* c, h of step t: row b at + b*hs */
    const float *cp;    /* c of step t-1 (NULL at t = 0) */
    int64_t H, gs, hs;
    const float *hp;    /* h of step t-1 (NULL at t = 0) */
    const float *w_hh;
    int64_t B;
    int64_t ps;         /* row stride of cp/hp (T*H inside the sequence, H for an initial state) */
    const float *wp;    /* w_hh packed per gate (4 blocks of sn_rnn_packed_floats(H, H)), or NULL */
    const uint32_t *wp16; /* bf16 mode: w_hh packed per gate (4 blocks of sn_rnn_packed16_words(H, H)) */
    uint32_t *a16;      /* bf16 mode: this task's k-pairs of h_{t-1} [B, ceil(H/2)] */
    bool rev;           /* walk the packed panels last first (sn_rnn_pingpong) */
} lstm_fwd_job;

static void lstm_cell_fwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_fwd_job *q = arg;
    int64_t H = q->H;
    SN_RNN_FOR_BJ(i0, i1, H, {
        float *g = q->g + b * q->gs;
        float i = sn_rnn_sigm(g[j]), f = sn_rnn_sigm(g[H + j]), gg = tanhf(g[2 * H + j]), o = sn_rnn_sigm(g[3 * H + j]);
        float cp = q->cp ? q->cp[b * q->ps + j] : 0.0f;
        float cn = f * cp + i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        q->c[b * q->hs + j] = cn;
        q->h[b * q->hs + j] = o * tanhf(cn);
    })
}

#ifdef SN_VM_X86
/* lstm_cell_fwd for row b, hidden units [j0, j1), 16 at a time */
__attribute__((target("avx512f"))) static void lstm_cell_fwd_avx512(const lstm_fwd_job *q, int64_t b, int64_t j0,
                                                                   int64_t j1) {
    int64_t H = q->H;
    float *g = q->g + b * q->gs, *c = q->c + b * q->hs, *h = q->h + b * q->hs;
    const float *cp = q->cp ? q->cp + b * q->ps : NULL;
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 i = sn_sigm512(_mm512_maskz_loadu_ps(m, g + j));
        __m512 f = sn_sigm512(_mm512_maskz_loadu_ps(m, g + H + j));
        __m512 gg = sn_tanh512(_mm512_maskz_loadu_ps(m, g + 2 * H + j));
        __m512 o = sn_sigm512(_mm512_maskz_loadu_ps(m, g + 3 * H + j));
        __m512 cn = _mm512_mul_ps(i, gg);
        if (cp) cn = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp + j), cn);
        _mm512_mask_storeu_ps(g + j, m, i);
        _mm512_mask_storeu_ps(g + H + j, m, f);
        _mm512_mask_storeu_ps(g + 2 * H + j, m, gg);
        _mm512_mask_storeu_ps(g + 3 * H + j, m, o);
        _mm512_mask_storeu_ps(c + j, m, cn);
        _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, sn_tanh512(cn)));
    }
}
#endif

static void lstm_step_fused(void *arg, int64_t j0, int64_t j1, int tid) {
    const lstm_fwd_job *q = arg;
    int64_t H = q->H;
#ifdef SN_SKINNY_X86
    if (q->hp && q->wp16) { /* bf16: h_{t-1} rounded to k-pairs by each thread (B*H values, cheap) */
        int64_t blk = sn_rnn_packed16_words(H, H), KP = (H + 1) / 2;
        for (int64_t b = 0; b < q->B; b++) sn_bf16_pairs(q->a16 + b * KP, q->hp + b * q->ps, H);
        for (int kk = 0; kk < 4; kk++) { /* rev: the gate blocks last first too */
            int k = q->rev ? 3 - kk : kk;
            sn_rnn_skinny_packed_bf16_dir(q->a16, KP, q->B, q->wp16 + k * blk, KP, q->g + k * H, q->gs, j0, j1, true,
                                          q->rev);
        }
    } else if (q->hp && q->wp) {
        int64_t blk = sn_rnn_packed_floats(H, H);
        for (int kk = 0; kk < 4; kk++) {
            int k = q->rev ? 3 - kk : kk;
            sn_rnn_skinny_packed_dir(q->hp, q->ps, q->B, q->wp + k * blk, H, q->g + k * H, q->gs, j0, j1, true,
                                     q->rev);
        }
    } else
#endif
    if (q->hp)
        for (int k = 0; k < 4; k++)
            sn_rnn_skinny_nt(q->hp, q->ps, q->B, q->w_hh, H, q->g, q->gs, k * H + j0, k * H + j1, true);
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        for (int64_t b = 0; b < q->B; b++) lstm_cell_fwd_avx512(q, b, j0, j1);
        return;
    }
#endif
    for (int64_t b = 0; b < q->B; b++) lstm_cell_fwd(arg, b * H + j0, b * H + j1, tid);
}

/* Prefetch rows b*rs + [j0, j1) of p for b < B (the next timestep's slice of saved
 * state, which the input GEMM or the layer above left in memory long ago): issued
 * before a barrier, the misses overlap the wait instead of the next step. */
static inline void prefetch_rows(const float *p, int64_t B, int64_t rs, int64_t j0, int64_t j1) {
#if defined(__GNUC__) || defined(__clang__)
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = j0; j < j1; j += 16) __builtin_prefetch(p + b * rs + j, 1, 3);
#endif
}

typedef struct {
    float *gates, *cs, *hs;
    const float *c0, *h0, *w_hh;
    int64_t H, T, B;
    const float *wp;
    const uint32_t *wp16;
    uint32_t *a16;      /* per thread B*ceil(H/2) u32 */
    bool pp;            /* sn_rnn_pingpong(), read before the threads start */
} lstm_fwd_region;

static void lstm_fwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const lstm_fwd_region *r = arg;
    int64_t H = r->H, T = r->T, G = 4 * H, j0, j1;
    sn_rnn_unit_range(H, tid, nth, &j0, &j1); /* the same units every step: the ping-pong's L2 reuse needs it */
    bool pp = r->pp;
    double t0 = sn_rnn_prof_now();
    for (int64_t t = 0; t < T; t++) {
        lstm_fwd_job q = {r->gates + t * G, r->cs + t * H, r->hs + t * H, t > 0 ? r->cs + (t - 1) * H : r->c0,
                          H, T * G, T * H, t > 0 ? r->hs + (t - 1) * H : r->h0, r->w_hh, r->B, t > 0 ? T * H : H,
                          r->wp, r->wp16, r->a16 ? r->a16 + tid * r->B * ((H + 1) / 2) : NULL, pp && (t & 1)};
        if (j0 < j1) lstm_step_fused(&q, j0, j1, tid);
        if (t + 1 < T) {
            for (int k = 0; k < 4; k++) prefetch_rows(r->gates + (t + 1) * G + k * H, r->B, T * G, j0, j1);
            prefetch_rows(r->cs + (t + 1) * H, r->B, T * H, j0, j1);
            prefetch_rows(r->hs + (t + 1) * H, r->B, T * H, j0, j1);
            sn_rnn_prof_thread(tid, 0, &t0);
            sn_barrier_wait(bar); /* h_t complete before anyone reads it */
            sn_rnn_prof_thread(tid, 1, &t0);
        }
    }
}

/* The recurrence of one layer in bf16 mode: w_hh rounded to bf16 and packed once per
 * call, h_{t-1} rounded per step, products accumulated in f32, the cells in f32.
 * Batches up to sn_rnn_skinny_max_b() run as one region (as the f32 path); larger ones
 * one pool_for per step. */
static sn_status lstm_fwd_bf16(sn_cpu *c, float *gates, float *cs, float *hs, const float *c0, const float *h0,
                               const float *w_hh, int64_t H, int64_t T, int64_t B) {
    int64_t G = 4 * H, blk = sn_rnn_packed16_words(H, H), KP = (H + 1) / 2;
    int nth = sn_pool_size(c->pool);
    bool huge = false;
    uint32_t *wp16 = (uint32_t *)sn_rnn_wpack_get(c, (size_t)(4 * blk), &huge); /* u32 and float are 4 bytes */
    uint32_t *a16 = malloc((size_t)(nth * B * KP) * sizeof *a16);
    if (!wp16 || !a16) {
        sn_rnn_wpack_put(huge);
        free(a16);
        return sn_error(SN_ERR_NOMEM, "CPU LSTM (bf16): out of host memory for the packed weights");
    }
    for (int k = 0; k < 4; k++) sn_rnn_pack_panels_bf16(c, wp16 + k * blk, w_hh + k * H * H, H, H, H, 1);
    if (sn_rnn_use_skinny(B) && use_region()) {
        lstm_fwd_region r = {gates, cs, hs, c0, h0, w_hh, H, T, B, NULL, wp16, a16, sn_rnn_pingpong()};
        sn_pool_region(c->pool, lstm_fwd_thread, &r);
    } else
        for (int64_t t = 0; t < T; t++) {
            const float *hp = t > 0 ? hs + (t - 1) * H : h0;
            int64_t ps = t > 0 ? T * H : H;
            if (hp)
                for (int k = 0; k < 4; k++)
                    sn_rnn_step_gemm_p16(c, B, H, H, hp, ps, wp16 + k * blk, gates + t * G + k * H, T * G, true, a16);
            lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : c0, H, T * G, T * H,
                              hp, w_hh, B, ps};
            sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, lstm_cell_fwd, &q);
        }
    sn_rnn_wpack_put(huge);
    free(a16);
    return SN_OK;
}

sn_status sn_rnn_lstm_forward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    int layers = node->ip[0];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H;
    float *ex = sn_extra_ptr(node);
    for (int l = 0; l < layers; l++) {
        const float *w_ih = node->src[1 + 4 * l]->data, *w_hh = node->src[2 + 4 * l]->data;
        const float *b_ih = node->src[3 + 4 * l]->data, *b_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(node, l - 1);
        float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        float *hs = sn_rnn_h(node, l); /* the last layer writes the output directly */
        double t0 = sn_rnn_prof_now();
        sn_rnn_input_proj(c, gates, xin, w_ih, b_ih, b_hh, B * T, in, G);
        sn_rnn_prof_lap(SN_RNN_P_INPROJ, &t0);
        /* initial state: [layers,B,H] srcs after the weights (streaming), else zeros */
        const float *h0 = node->ip[2] ? (const float *)node->src[1 + 4 * layers]->data + l * B * H : NULL;
        const float *c0 = node->ip[2] ? (const float *)node->src[2 + 4 * layers]->data + l * B * H : NULL;
        if (c->bf16) {
            sn_status st = lstm_fwd_bf16(c, gates, cs, hs, c0, h0, w_hh, H, T, B);
            if (st != SN_OK) return st;
            sn_rnn_prof_lap(SN_RNN_P_FWD_LOOP, &t0);
            continue;
        }
        if (sn_rnn_use_skinny(B)) {
            /* one parallel region for all timesteps: each thread owns a fixed range of
             * hidden units (its 4 gate slices of w_hh stay in its L2), barrier per step */
            if (use_region()) {
                lstm_fwd_region r = {gates, cs, hs, c0, h0, w_hh, H, T, B, NULL, NULL, NULL, sn_rnn_pingpong()};
                bool huge = false;
                if (sn_rnn_use_packed(B)) {
                    int64_t blk = sn_rnn_packed_floats(H, H);
                    float *wp = sn_rnn_wpack_get(c, (size_t)(4 * blk), &huge);
                    if (!wp) return SN_ERR_NOMEM;
                    for (int k = 0; k < 4; k++) sn_rnn_pack_panels(c, wp + k * blk, w_hh + k * H * H, H, H, H, 1);
                    r.wp = wp;
                }
                sn_pool_region(c->pool, lstm_fwd_thread, &r);
                sn_rnn_wpack_put(huge);
            } else
                for (int64_t t = 0; t < T; t++) {
                    lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : c0, H, T * G,
                                      T * H, t > 0 ? hs + (t - 1) * H : h0, w_hh, B, t > 0 ? T * H : H};
                    sn_pool_for(c->pool, H, 64, lstm_step_fused, &q);
                }
            sn_rnn_prof_lap(SN_RNN_P_FWD_LOOP, &t0);
            continue;
        }
        for (int64_t t = 0; t < T; t++) {
            lstm_fwd_job q = {gates + t * G, cs + t * H, hs + t * H, t > 0 ? cs + (t - 1) * H : c0, H, T * G, T * H,
                              t > 0 ? hs + (t - 1) * H : h0, w_hh, B, t > 0 ? T * H : H};
            if (q.hp) /* gates[:,t] += h[:,t-1] w_hh^T */
                sn_cpu_gemm(c, false, true, B, G, H, 1.0f, q.hp, q.ps, w_hh, H, 1.0f, gates + t * G, T * G);
            sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, lstm_cell_fwd, &q);
        }
    }
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
    /* fused step only: dhr = dG_{t+1} w_hh for the task's hidden units, then the cells */
    const float *dgn;   /* dG of step t+1 (NULL at T-1) */
    const float *wt;    /* w_hh^T [H, G] */
    float *dhw;         /* [B,H] written by the product (= dhr) */
    int64_t B;
    const float *wp;    /* w_hh as [H, G] panels (instead of wt), or NULL */
    const uint32_t *wp16; /* bf16 mode: w_hh as [H, G] bf16 panels */
    uint32_t *a16;      /* bf16 mode: this task's k-pairs of dG_{t+1} [B, 2H] */
    bool rev;           /* walk the packed panels last first (sn_rnn_pingpong) */
} lstm_bwd_job;

static void lstm_cell_bwd(void *arg, int64_t i0, int64_t i1, int tid) {
    const lstm_bwd_job *q = arg;
    int64_t H = q->H;
    SN_RNN_FOR_BJ(i0, i1, H, {
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

#ifdef SN_VM_X86
__attribute__((target("avx512f"))) static void lstm_cell_bwd_avx512(const lstm_bwd_job *q, int64_t b, int64_t j0,
                                                                   int64_t j1) {
    int64_t H = q->H;
    const float *g = q->g + b * q->gs, *cc = q->cc + b * q->hs, *cpr = q->cp ? q->cp + b * q->hs : NULL;
    const float *dho = q->dho + b * q->hs, *dhr = q->dhr ? q->dhr + b * H : NULL;
    float *dg = q->dg + b * q->gs, *dcp = q->dc + b * H;
    __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 i = _mm512_maskz_loadu_ps(m, g + j), f = _mm512_maskz_loadu_ps(m, g + H + j);
        __m512 gg = _mm512_maskz_loadu_ps(m, g + 2 * H + j), o = _mm512_maskz_loadu_ps(m, g + 3 * H + j);
        __m512 dh = _mm512_maskz_loadu_ps(m, dho + j);
        if (dhr) dh = _mm512_add_ps(dh, _mm512_maskz_loadu_ps(m, dhr + j));
        __m512 tc = sn_tanh512(_mm512_maskz_loadu_ps(m, cc + j));
        __m512 cp = cpr ? _mm512_maskz_loadu_ps(m, cpr + j) : _mm512_setzero_ps();
        __m512 dho_ = _mm512_mul_ps(dh, o);
        __m512 dc = _mm512_fmadd_ps(dho_, _mm512_fnmadd_ps(tc, tc, one), _mm512_maskz_loadu_ps(m, dcp + j));
        _mm512_mask_storeu_ps(dg + j, m, _mm512_mul_ps(_mm512_mul_ps(dc, gg), _mm512_mul_ps(i, _mm512_sub_ps(one, i))));
        _mm512_mask_storeu_ps(dg + H + j, m,
                              _mm512_mul_ps(_mm512_mul_ps(dc, cp), _mm512_mul_ps(f, _mm512_sub_ps(one, f))));
        _mm512_mask_storeu_ps(dg + 2 * H + j, m, _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(gg, gg, one)));
        _mm512_mask_storeu_ps(dg + 3 * H + j, m,
                              _mm512_mul_ps(_mm512_mul_ps(dh, tc), _mm512_mul_ps(o, _mm512_sub_ps(one, o))));
        _mm512_mask_storeu_ps(dcp + j, m, _mm512_mul_ps(dc, f));
    }
}
#endif

/* one backward timestep for hidden units [j0, j1): dhr = dG_{t+1} w_hh (own columns
 * only, all of dG_{t+1} was written by the previous step), then the cells of step t */
static void lstm_bwd_step_fused(void *arg, int64_t j0, int64_t j1, int tid) {
    const lstm_bwd_job *q = arg;
    int64_t H = q->H;
#ifdef SN_SKINNY_X86
    if (q->dgn && q->wp16) {
        for (int64_t b = 0; b < q->B; b++) sn_bf16_pairs(q->a16 + b * 2 * H, q->dgn + b * q->gs, 4 * H);
        sn_rnn_skinny_packed_bf16_dir(q->a16, 2 * H, q->B, q->wp16, 2 * H, q->dhw, H, j0, j1, false, q->rev);
    } else if (q->dgn && q->wp)
        sn_rnn_skinny_packed_dir(q->dgn, q->gs, q->B, q->wp, 4 * H, q->dhw, H, j0, j1, false, q->rev);
    else
#endif
    if (q->dgn) sn_rnn_skinny_nt(q->dgn, q->gs, q->B, q->wt, 4 * H, q->dhw, H, j0, j1, false);
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        for (int64_t b = 0; b < q->B; b++) lstm_cell_bwd_avx512(q, b, j0, j1);
        return;
    }
#endif
    for (int64_t b = 0; b < q->B; b++) lstm_cell_bwd(arg, b * H + j0, b * H + j1, tid);
}

typedef struct {
    float *dgs;
    const float *gates, *cs, *dho;
    float *dhr, *dc;
    const float *wt;
    int64_t H, T, B;
    const float *wp;
    const uint32_t *wp16;
    uint32_t *a16;      /* per thread B*2H u32 */
    bool pp;            /* sn_rnn_pingpong(), read before the threads start */
} lstm_bwd_region;

/* all backward timesteps of one layer on thread tid: its hidden units' columns of
 * dh/dc and gate columns of dG; one barrier per step (dG_t complete before step t-1
 * reads all of it) */
static void lstm_bwd_thread(void *arg, int tid, int nth, sn_barrier *bar) {
    const lstm_bwd_region *r = arg;
    int64_t H = r->H, T = r->T, G = 4 * H, j0, j1;
    sn_rnn_unit_range(H, tid, nth, &j0, &j1);
    bool pp = r->pp;
    double t0 = sn_rnn_prof_now();
    for (int64_t t = T - 1; t >= 0; t--) {
        lstm_bwd_job q = {r->dgs + t * G, r->gates + t * G, r->cs + t * H, t > 0 ? r->cs + (t - 1) * H : NULL,
                          r->dho + t * H, t < T - 1 ? r->dhr : NULL, r->dc, H, T * G, T * H,
                          t < T - 1 ? r->dgs + (t + 1) * G : NULL, r->wt, r->dhr, r->B, r->wp, r->wp16,
                          r->a16 ? r->a16 + tid * r->B * 2 * H : NULL, pp && (t & 1)};
        if (j0 < j1) lstm_bwd_step_fused(&q, j0, j1, tid);
        if (t > 0) {
            for (int k = 0; k < 4; k++) {
                prefetch_rows(r->gates + (t - 1) * G + k * H, r->B, T * G, j0, j1);
                prefetch_rows(r->dgs + (t - 1) * G + k * H, r->B, T * G, j0, j1);
            }
            prefetch_rows(r->dho + (t - 1) * H, r->B, T * H, j0, j1);
            if (t > 1) prefetch_rows(r->cs + (t - 2) * H, r->B, T * H, j0, j1);
            sn_rnn_prof_thread(tid, 2, &t0);
            sn_barrier_wait(bar);
            sn_rnn_prof_thread(tid, 3, &t0);
        }
    }
}

sn_status sn_rnn_lstm_backward(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    int layers = node->ip[0];
    bool need_dx = node->ip[2];
    int64_t H = node->ip[1], B = x->shape[0], T = x->shape[1], I = x->shape[2], G = 4 * H, BT = B * T;
    const float *ex = sn_extra_ptr(fwd);
    float *out = node->data;
    /* the dh buffers: the node's planner-allocated scratch; dG overwrites the forward's
     * gates (each read before written, by the same thread): sn_rnn_bwd_scratch_offset */
    float *sc = sn_extra_ptr(node);
    float *dhbuf = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 1);
    float *dhr = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 2);
    float *dc = sc + sn_rnn_bwd_scratch_offset(true, B, T, H, layers, 3);
    bool skinny = sn_rnn_use_skinny(B), bf = c->bf16;
    bool packed = skinny && use_region() && sn_rnn_use_packed(B);
    float *wt = NULL;
    uint32_t *wt16 = NULL, *a16 = NULL;
    bool huge = false;
    if (bf) { /* bf16: dG_{t+1} w_hh from w_hh^T's bf16 panels, any batch size */
        wt16 = (uint32_t *)sn_rnn_wpack_get(c, (size_t)sn_rnn_packed16_words(H, G), &huge);
        a16 = malloc((size_t)(sn_pool_size(c->pool) * B * 2 * H) * sizeof *a16);
        if (!wt16 || !a16) {
            sn_rnn_wpack_put(huge);
            free(a16);
            return sn_error(SN_ERR_NOMEM, "CPU LSTM backward (bf16): out of host memory for the packed weights");
        }
    } else if (skinny) {
        wt = sn_rnn_wpack_get(c, (size_t)sn_rnn_packed_floats(H, G), &huge);
        if (!wt) return SN_ERR_NOMEM;
    }
    for (int l = layers - 1; l >= 0; l--) {
        const float *w_ih = node->src[3 + 4 * l]->data, *w_hh = node->src[4 + 4 * l]->data;
        int64_t in = l == 0 ? I : H;
        const float *xin = l == 0 ? (const float *)x->data : sn_rnn_h(fwd, l - 1);
        const float *gates = ex + sn_lstm_extra_offset(B, T, H, l, 0);
        float *dgs = (float *)gates; /* dG in place of the gates */
        const float *cs = ex + sn_lstm_extra_offset(B, T, H, l, 1);
        const float *hs = sn_rnn_h(fwd, l);
        const float *dho = l == layers - 1 ? (const float *)dy->data : dhbuf;
        double t0 = sn_rnn_prof_now();
        memset(dc, 0, (size_t)(B * H) * sizeof *dc);
        if (bf) sn_rnn_pack_panels_bf16(c, wt16, w_hh, H, G, 1, H);  /* op[n=j, k=g] = w_hh[g, j] */
        else if (packed) sn_rnn_pack_panels(c, wt, w_hh, H, G, 1, H); /* dG_t w_hh: op[n=j, k=g] = w_hh[g, j] */
        else if (skinny) sn_rnn_transpose(c, wt, w_hh, G, H); /* dG_t w_hh = dG_t (w_hh^T)^T: rows of w_hh^T stream */
        sn_rnn_prof_lap(SN_RNN_P_BWD_PACK, &t0);
        if (skinny && use_region()) {
            lstm_bwd_region r = {dgs, gates, cs, dho, dhr, dc, wt, H, T, B, packed ? wt : NULL, wt16, a16, sn_rnn_pingpong()};
            sn_pool_region(c->pool, lstm_bwd_thread, &r);
        } else if (bf) {
            for (int64_t t = T - 1; t >= 0; t--) {
                lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                                  dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H};
                sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, lstm_cell_bwd, &q);
                if (t == 0) break;
                sn_rnn_step_gemm_p16(c, B, H, G, dgs + t * G, T * G, wt16, dhr, H, false, a16);
            }
        } else if (skinny) {
            for (int64_t t = T - 1; t >= 0; t--) {
                lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                                  dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H,
                                  t < T - 1 ? dgs + (t + 1) * G : NULL, wt, dhr, B};
                sn_pool_for(c->pool, H, 64, lstm_bwd_step_fused, &q);
            }
        } else
        for (int64_t t = T - 1; t >= 0; t--) {
            lstm_bwd_job q = {dgs + t * G, gates + t * G, cs + t * H, t > 0 ? cs + (t - 1) * H : NULL,
                              dho + t * H, t < T - 1 ? dhr : NULL, dc, H, T * G, T * H};
            sn_pool_for(c->pool, B * H, SN_RNN_CELL_GRAIN, lstm_cell_bwd, &q);
            if (t == 0) break;
            /* dh_{t-1} = dG_t w_hh */
            if (skinny) sn_rnn_step_gemm_nt(c, B, H, G, dgs + t * G, T * G, wt, dhr, H, false);
            else sn_cpu_gemm(c, false, false, B, H, G, 1.0f, dgs + t * G, T * G, w_hh, H, 0.0f, dhr, H);
        }
        sn_rnn_prof_lap(SN_RNN_P_BWD_LOOP, &t0);
        sn_rnn_weight_grads(c, node, 4, l, dgs, dgs, xin, hs);
        sn_rnn_prof_lap(SN_RNN_P_BWD_WGRAD, &t0);
        if (l > 0) sn_cpu_gemm(c, false, false, BT, H, G, 1.0f, dgs, G, w_ih, in, 0.0f, dhbuf, H);
        else if (need_dx) sn_cpu_gemm(c, false, false, BT, I, G, 1.0f, dgs, G, w_ih, I, 0.0f, out, I);
        sn_rnn_prof_lap(SN_RNN_P_BWD_DX, &t0);
    }
    sn_rnn_wpack_put(huge);
    free(a16);
    return SN_OK;
}
