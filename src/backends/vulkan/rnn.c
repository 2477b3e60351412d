/* Vulkan kernels: LSTM and GRU over whole sequences (batch-first, PyTorch layouts and
 * gate orders), forward and backward through time, and RNN_STATE, with the saved-state
 * and scratch layouts of tensor.h (byte-identical to src/backends/cpu/rnn.c).
 *
 * Forward per layer: the input projection of all timesteps is one GEMM into the gates
 * block; then one dispatch per timestep of a fused kernel: a workgroup owns JB hidden
 * units, reads their gate rows of W_hh once for the whole batch with the reduction spread
 * over its threads (shaders/rnn_step.glsl), adds the biases and does the gate math.
 * Backward per layer, from the top: one dispatch per timestep the same way (the recurrent
 * product dG_{t+1} W_hh from W_hh^T, transposed once per layer, then the cell backward),
 * then the weight gradients over all timesteps as GEMMs and the input gradient dG W_ih
 * for the layer below.
 *
 * CPU drivers (lavapipe, SwiftShader) run a workgroup's barriers as switches between its
 * invocations: there the step kernels are the barrier-free *_serial shaders, one
 * invocation per (b, j) doing its dot products alone (the forward from W_hh^T, the
 * backward from W_hh), 1-4x faster on lavapipe. SN_VK_RNN=wg|serial forces one (read on
 * every call, for tests).
 *
 * train.mixed_precision f16: the input projections and weight gradients are GEMMs, f16 on
 * cooperative matrices (matmul.c); the step kernels of the variants in rnn_w16_forms read
 * the recurrent weights as f16 (converted once per layer and call) with f32 accumulation. */
#include "backends/vulkan/vk_gemm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Variants of the workgroup step kernels (shaders/rnn_*_step*_v_<name>.comp): hidden
 * units per workgroup (JB: H/JB workgroups), the forward's slices (the backward has 4x),
 * 4 weight loads issued before their FMAs (all but j4s16), "sg": the slice reduction
 * through subgroup shuffles, and "r": two output rows per thread from one load of the
 * other operand (h forward, dG backward: half its traffic through L1, which bounds these
 * kernels on an H100 as much as W_hh's from L2). SN_VK_RNN_VARIANT=<name> picks one (read
 * on every call: tests, bench/run_vk_rnn_sweep.sh); pick_variant has the defaults. Adding one:
 * its four shaders, a row here, and the lists in tests/vulkan/test_vulkan_ops.c and
 * bench/run_vk_rnn_sweep.sh. */
typedef struct {
    const char *name;
    uint32_t jb;
    bool sg;
    int sh[4];         /* LSTM forward, LSTM backward, GRU forward, GRU backward */
    uint32_t local[4]; /* their workgroup sizes (the subgroup size must divide them for sg) */
    int wave[4];       /* their layer-wavefront forms (SN_VK_RNN_WAVE), -1: none */
} rnn_variant;

#define RNN_V(name, n, jb, s, sg)                                                                    \
    {name, jb, sg,                                                                                   \
     {SN_VK_SH_RNN_LSTM_STEP_V_##n, SN_VK_SH_RNN_LSTM_STEP_BWD_V_##n, SN_VK_SH_RNN_GRU_STEP_V_##n,      \
      SN_VK_SH_RNN_GRU_STEP_BWD_V_##n},                                                               \
     {4 * jb * s, 4 * jb * s, 3 * jb * s, 4 * jb * s}, {-1, -1, -1, -1}}

static const rnn_variant rnn_variants[] = {
    {"j4s16", 4, false, {SN_VK_SH_RNN_LSTM_STEP, SN_VK_SH_RNN_LSTM_STEP_BWD, SN_VK_SH_RNN_GRU_STEP,
                         SN_VK_SH_RNN_GRU_STEP_BWD}, {256, 256, 192, 256},
     {SN_VK_SH_RNN_LSTM_STEP_WAVE_J4S16, SN_VK_SH_RNN_LSTM_STEP_BWD_WAVE_J4S16, SN_VK_SH_RNN_GRU_STEP_WAVE_J4S16,
      SN_VK_SH_RNN_GRU_STEP_BWD_WAVE_J4S16}},
    RNN_V("j4s16u", J4S16U, 4, 16, false),   RNN_V("j4s16sg", J4S16SG, 4, 16, true),
    RNN_V("j2s16", J2S16, 2, 16, false),      RNN_V("j2s16sg", J2S16SG, 2, 16, true),
    {"j2s32", 2, false, {SN_VK_SH_RNN_LSTM_STEP_V_J2S32, SN_VK_SH_RNN_LSTM_STEP_BWD_V_J2S32,
                         SN_VK_SH_RNN_GRU_STEP_V_J2S32, SN_VK_SH_RNN_GRU_STEP_BWD_V_J2S32},
     {256, 256, 192, 256},
     {SN_VK_SH_RNN_LSTM_STEP_WAVE_J2S32, SN_VK_SH_RNN_LSTM_STEP_BWD_WAVE_J2S32, SN_VK_SH_RNN_GRU_STEP_WAVE_J2S32,
      SN_VK_SH_RNN_GRU_STEP_BWD_WAVE_J2S32}},
         RNN_V("j2s32sg", J2S32SG, 2, 32, true),
    RNN_V("j1s64", J1S64, 1, 64, false),      RNN_V("j1s64sg", J1S64SG, 1, 64, true),
    {"j4s32r", 4, false, {SN_VK_SH_RNN_LSTM_STEP_V_J4S32R, SN_VK_SH_RNN_LSTM_STEP_BWD_V_J4S32R,
                          SN_VK_SH_RNN_GRU_STEP_V_J4S32R, SN_VK_SH_RNN_GRU_STEP_BWD_V_J4S32R},
     {256, 256, 192, 256}, {-1, -1, -1, -1}},
};
#define RNN_NV ((int)(sizeof rnn_variants / sizeof rnn_variants[0]))

/* train.mixed_precision f16: the recurrent product reads W_hh (forward) and W_hh^T
 * (backward) as f16, converted once per layer and call (to_w16): each step streams half
 * the bytes; h, c, the gates and every sum stay f32 (shaders/rnn_step.glsl SN_RNN_W16).
 * The variants with such a form (shaders/rnn_*_j2s32h.comp, plain and wavefront) are
 * listed here; the others and the *_serial kernels read f32 W_hh in f16 mode too.
 * SN_VK_RNN_F16W=0 keeps f32 weights in f16 mode, =1 takes f16 ones in f32 mode too
 * (read on every call: tests, timing); unset, f32 mode is untouched. Adding a form: the
 * variant's wrappers with #define SN_RNN_W16 (the four kernels, and the four wave ones if
 * it has them) and a row here; tests/vulkan/test_vulkan_rnn_f16.c checks j2s32's. */
typedef struct {
    const char *variant;
    int sh[4], wave[4]; /* as rnn_variant's */
} rnn_w16_form;

static const rnn_w16_form rnn_w16_forms[] = {
    {"j4s32r",
     {SN_VK_SH_RNN_LSTM_STEP_V_J4S32RH, SN_VK_SH_RNN_LSTM_STEP_BWD_V_J4S32RH, SN_VK_SH_RNN_GRU_STEP_V_J4S32RH,
      SN_VK_SH_RNN_GRU_STEP_BWD_V_J4S32RH},
     {-1, -1, -1, -1}},
    {"j2s32",
     {SN_VK_SH_RNN_LSTM_STEP_V_J2S32H, SN_VK_SH_RNN_LSTM_STEP_BWD_V_J2S32H, SN_VK_SH_RNN_GRU_STEP_V_J2S32H,
      SN_VK_SH_RNN_GRU_STEP_BWD_V_J2S32H},
     {SN_VK_SH_RNN_LSTM_STEP_WAVE_J2S32H, SN_VK_SH_RNN_LSTM_STEP_BWD_WAVE_J2S32H, SN_VK_SH_RNN_GRU_STEP_WAVE_J2S32H,
      SN_VK_SH_RNN_GRU_STEP_BWD_WAVE_J2S32H}},
};

/* the f16-weight form of workgroup variant v (NULL: serial) to run, NULL for f32 weights */
static const rnn_w16_form *w16_form(sn_vk *vk, const rnn_variant *v) {
    const char *e = getenv("SN_VK_RNN_F16W");
    bool on = e && !strcmp(e, "1") ? true : e && !strcmp(e, "0") ? false : sn_vk_f16_gemm_shader(vk) >= 0;
    for (size_t i = 0; on && v && i < sizeof rnn_w16_forms / sizeof rnn_w16_forms[0]; i++)
        if (!strcmp(rnn_w16_forms[i].variant, v->name)) return &rnn_w16_forms[i];
    return NULL;
}

/* bytes of n f16 weights, two per word, padded so the next layer's start at 16 bytes */
static int64_t w16_bytes(int64_t n) { return ((n + 1) / 2 * 4 + 15) / 16 * 16; }

typedef struct {
    uint64_t src, dst;
    int32_t R, C, tr;
} w16_push;

/* dst = f16(src), or f16(src^T) at tr, of an [R, C] f32 matrix (shaders/rnn_w16.comp) */
static sn_status to_w16(sn_vk *vk, uint64_t src, int64_t R, int64_t C, bool tr, uint64_t dst) {
    w16_push p = {src, dst, (int32_t)R, (int32_t)C, tr};
    return sn_vk_dispatch(vk, SN_VK_SH_RNN_W16, &p, sizeof p, sn_vk_groups((R * C + 1) / 2, 256), 1, 1);
}

static bool use_wave(void);
static bool use_persist(void);

/* not inlined: GCC 12 folds the default names into each strcmp and warns (-Wstring-compare) */
__attribute__((noinline)) static const rnn_variant *find_variant(const char *name) {
    for (int i = 0; i < RNN_NV; i++)
        if (!strcmp(name, rnn_variants[i].name)) return &rnn_variants[i];
    return NULL;
}

/* *out: the variant to run, SN_VK_RNN_VARIANT's, else the device's default */
static sn_status pick_variant(sn_vk *vk, const sn_tensor *node, const rnn_variant **out) {
    const char *e = getenv("SN_VK_RNN_VARIANT");
    /* GPUs: j4s32r, the fastest on an H100 (NVIDIA 580.159.04, 2026-12-07: prototype step
     * 24.50 ms against j2s32's 26.12-26.43, bench/RESULTS.md); with the opt-in wavefront or
     * persistent kernels j2s32, which has those forms. CPU drivers (which take these only
     * when forced) keep j4s16. */
    const char *name = sn_vk_limits_of(vk)->cpu_driver ? "j4s16" : use_wave() || use_persist() ? "j2s32" : "j4s32r";
    const rnn_variant *v = find_variant(name);
    if (e && *e) {
        v = find_variant(e);
        if (!v) {
            char names[256] = "";
            for (int i = 0; i < RNN_NV; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? " " : "", rnn_variants[i].name);
            return sn_error(SN_ERR_INVALID_ARG, "Vulkan %s '%s': SN_VK_RNN_VARIANT=%s is not one of: %s",
                            sn_op_name(node->op), node->name, e, names);
        }
    }
    if (v->sg) { /* shuffles in compute shaders (VkSubgroupFeatureFlags BASIC 0x1 | SHUFFLE 0x10)
                  * and subgroups that tile each workgroup */
        const sn_vk_limits *lim = sn_vk_limits_of(vk);
        uint32_t need = 0x1u | 0x10u, sgs = lim->subgroup_size;
        bool ok = (lim->subgroup_ops & need) == need && sgs > 0;
        for (int i = 0; ok && i < 4; i++) ok = v->local[i] % sgs == 0;
        if (!ok)
            return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s '%s': RNN variant %s needs subgroup shuffles in compute "
                            "shaders and a subgroup size dividing its workgroups (this device: subgroup %u); pick "
                            "another with SN_VK_RNN_VARIANT", sn_op_name(node->op), node->name, v->name, sgs);
    }
    *out = v;
    return SN_OK;
}

static bool use_serial(sn_vk *vk) {
    const char *e = getenv("SN_VK_RNN"), *v = getenv("SN_VK_RNN_VARIANT");
    if (e && !strcmp(e, "serial")) return true;
    if ((e && !strcmp(e, "wg")) || (v && *v)) return false; /* a named variant is a workgroup kernel */
    return sn_vk_limits_of(vk)->cpu_driver;
}

typedef struct {
    int64_t B, T, I, H, G;
    int L;
    bool lstm;
} rnn_dims;

static int64_t extra_offset(const rnn_dims *d, int layer, int part) {
    return d->lstm ? sn_lstm_extra_offset(d->B, d->T, d->H, layer, part)
                   : sn_gru_extra_offset(d->B, d->T, d->H, layer, part);
}

/* device address of h [B,T,H] of layer l of forward node f (sn_rnn_h) */
static uint64_t rnn_h(const sn_tensor *f, const rnn_dims *d, int l) {
    return l >= d->L - 1 ? sn_vk_addr(f) : sn_vk_at(sn_vk_extra(f), extra_offset(d, l, 2));
}

/* w: W_hh (workgroup forward, serial backward) or W_hh^T (the other two) */
typedef struct {
    uint64_t gates, cs, hs, hp, cp, w, b_ih, b_hh;
    int32_t B, T, H, t, ps, has_prev, v4; /* v4: the workgroup kernels' vec4 loads */
} lstm_push;

typedef struct {
    uint64_t gates, hns, hs, hp, w, b_ih, b_hh;
    int32_t B, T, H, t, ps, has_prev, v4;
} gru_push;

typedef struct {
    uint64_t gates, cs, dho, dc, w;
    int32_t B, T, H, t, v4;
} lstm_bwd_push;

typedef struct {
    uint64_t gates, hns, hs, dho, dgh, dhz, w;
    int32_t B, T, H, t, v4;
} gru_bwd_push;

/* the workgroup kernels read rows of n floats at these addresses as vec4s when they can */
static int32_t vec4_ok(int64_t n, uint64_t a, uint64_t b) { return n % 4 == 0 && (a | b) % 16 == 0; }

/* one layer's forward addresses: w is W_hh (workgroup kernels) or W_hh^T (serial) */
typedef struct {
    uint64_t gates, mid, hs, h0, c0, w, b_ih, b_hh;
} layer_ptrs;

typedef union {
    lstm_push l;
    gru_push g;
} step_push;

/* the step kernel's parameters for timestep t of a layer; returns their size */
static uint32_t fill_step(const rnn_dims *d, const layer_ptrs *p, int64_t t, step_push *out) {
    int64_t T = d->T, H = d->H;
    uint64_t hp = t > 0 ? sn_vk_at(p->hs, (t - 1) * H) : p->h0;
    int32_t ps = (int32_t)(t > 0 ? T * H : H);
    memset(out, 0, sizeof *out);
    if (d->lstm) {
        uint64_t cp = t > 0 ? sn_vk_at(p->mid, (t - 1) * H) : p->c0;
        out->l = (lstm_push){p->gates, p->mid, p->hs, hp, cp, p->w, p->b_ih, p->b_hh, (int32_t)d->B, (int32_t)T,
                             (int32_t)H, (int32_t)t, ps, hp != 0, vec4_ok(H, p->w, hp)};
        return sizeof out->l;
    }
    out->g = (gru_push){p->gates, p->mid, p->hs, hp, p->w, p->b_ih, p->b_hh, (int32_t)d->B, (int32_t)T, (int32_t)H,
                        (int32_t)t, ps, hp != 0, vec4_ok(H, p->w, hp)};
    return sizeof out->g;
}

/* SN_VK_RNN_WAVE=1 (read on every call): the layer wavefront below for the workgroup
 * kernels of 2+ layers; off by default until measured on a GPU */
static bool use_wave(void) {
    const char *e = getenv("SN_VK_RNN_WAVE");
    return e && !strcmp(e, "1");
}

/* The wavefront's chunk of timesteps. Its sequential dispatches are about
 * T + (L-1)(C + T/C) (fill and drain of the diagonal, one input-projection GEMM per chunk
 * and layer above the first), against L*T per layer: C = 32 is near the minimum at the
 * prototype's T = 400 (sqrt(T) = 20 gives 440, 32 gives 445, 64 gives 471) while each
 * GEMM keeps B*32 rows. SN_VK_RNN_WAVE_CHUNK=<n> overrides it (tests: small T). */
static int64_t wave_chunk(void) {
    const char *e = getenv("SN_VK_RNN_WAVE_CHUNK");
    long c = e && *e ? strtol(e, NULL, 10) : 32;
    return c >= 1 ? c : 32;
}

typedef struct {
    uint64_t args; /* the layers' step_push blocks, one per gpl workgroups */
    int32_t gpl, pad;
} wave_push;

/* One direction's part of a wavefront: a layer's step parameters at timestep t (also what
 * the persistent kernel reads), and the GEMM that feeds the next layer in the wave (rank
 * + 1) the chunk [t0, t0 + c) a layer just finished. */
typedef struct {
    bool bwd;    /* backward: the top layer first (rank 0), timesteps descending */
    size_t size; /* bytes of one step's parameter block */
    uint32_t (*fill)(const void *ctx, int l, int64_t t, void *block);
    sn_status (*feed)(sn_vk *vk, const void *ctx, int l, int64_t t0, int64_t c);
    const void *ctx;
} wave_dir;

/* A multi-layer pass as a wavefront over (layer, chunk of C timesteps): wave step s runs
 * chunk s - r of the layer of rank r (forward: r = l, timesteps ascending; backward:
 * r = L-1-l, chunks and timesteps descending), step i of those chunks as ONE dispatch whose
 * workgroups split between the layers (gpl each: the plain kernel's grid); after each wave
 * step, `feed` for every layer but the last rank. Every step reads exactly what the
 * per-layer order gives it, so the results and the saved state are the same. Two passes:
 * the parameter blocks first (one argument block for the whole pass), then the recording. */
static sn_status wave_record(sn_vk *vk, sn_tensor *node, const rnn_dims *d, const wave_dir *w, int sh, uint32_t gpl,
                             int64_t C) {
    int64_t T = d->T, nch = (T + C - 1) / C, ns = nch + d->L - 1;
    unsigned char *host = malloc((size_t)(ns * C * d->L) * w->size);
    if (!host) return sn_error(SN_ERR_NOMEM, "Vulkan %s '%s': out of host memory", sn_op_name(node->op), node->name);
    uint64_t args = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t used = 0;
        for (int64_t s = 0; s < ns; s++) {
            for (int64_t i = 0; i < C; i++) {
                size_t at = used;
                uint32_t n = 0;
                for (int r = 0; r < d->L; r++) {
                    int l = w->bwd ? d->L - 1 - r : r;
                    int64_t k = w->bwd ? nch - 1 - (s - r) : s - r;
                    if (k < 0 || k >= nch) continue;
                    int64_t lo = k * C, hi = lo + C < T ? lo + C : T, t = w->bwd ? hi - 1 - i : lo + i;
                    if (t < lo || t >= hi) continue;
                    if (pass == 0) w->fill(w->ctx, l, t, host + used);
                    used += w->size;
                    n++;
                }
                if (n == 0 || pass == 0) continue;
                wave_push wp = {args + at, (int32_t)gpl, 0};
                SN_VK_TRY(sn_vk_dispatch(vk, sh, &wp, sizeof wp, gpl * n, 1, 1));
            }
            for (int r = 0; pass == 1 && r + 1 < d->L; r++) {
                int64_t k = w->bwd ? nch - 1 - (s - r) : s - r, t0 = k * C;
                if (k < 0 || k >= nch) continue;
                SN_VK_TRY(w->feed(vk, w->ctx, w->bwd ? d->L - 1 - r : r, t0, T - t0 < C ? T - t0 : C));
            }
        }
        if (pass == 0) {
            args = sn_vk_temp(vk, used, host);
            free(host);
            if (!args) return sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s'", sn_op_name(node->op), node->name);
        }
    }
    return SN_OK;
}

typedef struct {
    const rnn_dims *d;
    const layer_ptrs *lp;
    const uint64_t *w_ih;
    const char *name;
} fwd_wave_ctx;

static uint32_t fwd_wave_fill(const void *ctx, int l, int64_t t, void *block) {
    const fwd_wave_ctx *c = ctx;
    step_push p;
    uint32_t n = fill_step(c->d, &c->lp[l], t, &p);
    memcpy(block, &p, n);
    return n;
}

/* gates_{l+1}[b, t0..t0+c) = h_l[b, t0..t0+c) W_ih^T for every sequence b */
static sn_status fwd_wave_feed(sn_vk *vk, const void *ctx, int l, int64_t t0, int64_t c) {
    const fwd_wave_ctx *x = ctx;
    int64_t T = x->d->T, H = x->d->H, G = x->d->G * H;
    sn_vk_gemm_args g = {.ta = false, .tb = true, .M = c, .N = G, .K = H, .alpha = 1.0f, .beta = 0.0f,
                         .A = sn_vk_at(x->lp[l].hs, t0 * H), .B = x->w_ih[l + 1],
                         .C = sn_vk_at(x->lp[l + 1].gates, t0 * G), .lda = H, .ldb = H, .ldc = G,
                         .batch = x->d->B, .binner = 0, .sA = {T * H, 0}, .sB = {0, 0}, .sC = {T * G, 0}};
    return sn_vk_gemm(vk, &g, x->name);
}

/* SN_VK_RNN_PERSIST (the section before rnn_state) */
static sn_status persist_shader(const sn_tensor *node, const rnn_variant *v, const rnn_w16_form *hf, int k,
                                int *sh);
static sn_status persist_run(sn_vk *vk, sn_tensor *node, const rnn_dims *d, int sh, uint32_t jb, const wave_dir *w,
                             int l);

static sn_status rnn_forward(sn_vk *vk, sn_tensor *node, const rnn_dims *d) {
    int64_t B = d->B, T = d->T, H = d->H, G = d->G * H, BT = B * T;
    bool stream = node->ip[2] == 1;
    uint64_t ex = sn_vk_extra(node);
    bool serial = use_serial(vk);
    const rnn_variant *v = NULL;
    if (!serial) SN_VK_TRY(pick_variant(vk, node, &v));
    uint32_t groups = serial ? sn_vk_groups(B * H, 64) : sn_vk_groups(H, v->jb);
    const rnn_w16_form *hf = w16_form(vk, v);
    int sh = serial ? (d->lstm ? SN_VK_SH_RNN_LSTM_STEP_SERIAL : SN_VK_SH_RNN_GRU_STEP_SERIAL)
             : hf   ? hf->sh[d->lstm ? 0 : 2]
                    : v->sh[d->lstm ? 0 : 2];
    int psh; /* SN_VK_RNN_PERSIST: the layers' persistent kernel, -1 off */
    SN_VK_TRY(persist_shader(node, v, hf, d->lstm ? 0 : 2, &psh));
    layer_ptrs lp[16];
    uint64_t w_ih[16];
    for (int l = 0; l < d->L; l++) {
        w_ih[l] = sn_vk_addr(node->src[1 + 4 * l]);
        lp[l] = (layer_ptrs){sn_vk_at(ex, extra_offset(d, l, 0)), sn_vk_at(ex, extra_offset(d, l, 1)),
                             rnn_h(node, d, l), /* the last layer writes the output directly */
                             /* initial state: [layers,B,H] srcs after the weights (streaming), else zeros */
                             stream ? sn_vk_at(sn_vk_addr(node->src[1 + 4 * d->L]), l * B * H) : 0,
                             stream && d->lstm ? sn_vk_at(sn_vk_addr(node->src[2 + 4 * d->L]), l * B * H) : 0,
                             sn_vk_addr(node->src[2 + 4 * l]), sn_vk_addr(node->src[3 + 4 * l]),
                             sn_vk_addr(node->src[4 + 4 * l])};
    }
    /* the wavefront: workgroup kernels with a wave form, every layer's grid in one dispatch */
    int wsh = serial ? -1 : hf ? hf->wave[d->lstm ? 0 : 2] : v->wave[d->lstm ? 0 : 2];
    uint32_t exact = serial ? 0 : (uint32_t)((H + v->jb - 1) / v->jb); /* the grid, uncapped */
    bool wave = wsh >= 0 && psh < 0 && d->L > 1 && use_wave() && H <= 65535 && (int64_t)exact * d->L <= 65535;
    /* f16 W_hh: every layer's before the wavefront (its layers run side by side), else one
     * layer's at a time in one buffer: node scratch (sn_vk_temp) of the size the backward
     * takes for its f16 W_hh^T, half what f32 mode's backward takes */
    int64_t wb = w16_bytes(G * H);
    uint64_t w16 = hf ? sn_vk_temp(vk, (size_t)((wave ? d->L : 1) * wb), NULL) : 0;
    if (hf && !w16) return sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s'", sn_op_name(node->op), node->name);
    /* the layers' step parameters for the wavefront and the persistent kernel */
    fwd_wave_ctx c = {d, lp, w_ih, node->name};
    wave_dir wd = {false, d->lstm ? sizeof(lstm_push) : sizeof(gru_push), fwd_wave_fill, fwd_wave_feed, &c};
    if (wave) {
        for (int l = 0; hf && l < d->L; l++) {
            SN_VK_TRY(to_w16(vk, lp[l].w, G, H, false, w16 + (uint64_t)(l * wb)));
            lp[l].w = w16 + (uint64_t)(l * wb);
        }
        SN_VK_TRY(sn_vk_gemm1(vk, false, true, BT, G, d->I, 1.0f, sn_vk_addr(node->src[0]), d->I, w_ih[0], d->I,
                              0.0f, lp[0].gates, G, node->name));
        return wave_record(vk, node, d, &wd, wsh, exact, wave_chunk());
    }
    /* the serial kernel reads W_hh^T of the layer at hand */
    uint64_t w_t = serial ? sn_vk_temp(vk, (size_t)(G * H) * sizeof(float), NULL) : 0;
    if (serial && !w_t) return sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s'", sn_op_name(node->op), node->name);
    for (int l = 0; l < d->L; l++) {
        int64_t in = l == 0 ? d->I : H;
        uint64_t xin = l == 0 ? sn_vk_addr(node->src[0]) : rnn_h(node, d, l - 1);
        SN_VK_TRY(sn_vk_gemm1(vk, false, true, BT, G, in, 1.0f, xin, in, w_ih[l], in, 0.0f, lp[l].gates, G,
                              node->name));
        if (serial) {
            SN_VK_TRY(sn_vk_transpose(vk, lp[l].w, G, H, w_t));
            lp[l].w = w_t;
        } else if (hf) {
            SN_VK_TRY(to_w16(vk, lp[l].w, G, H, false, w16));
            lp[l].w = w16;
        }
        if (psh >= 0) {
            SN_VK_TRY(persist_run(vk, node, d, psh, v->jb, &wd, l));
            continue;
        }
        for (int64_t t = 0; t < T; t++) {
            step_push p;
            uint32_t n = fill_step(d, &lp[l], t, &p);
            SN_VK_TRY(sn_vk_dispatch(vk, sh, &p, n, groups, 1, 1));
        }
    }
    return SN_OK;
}

/* one layer's backward addresses: dho its dL/dh from above (dy or the dh buffer), dgh
 * the GRU's dGh, carry the [B,H] state between steps (the LSTM's dc, the GRU's z*dh), w
 * W_hh^T (workgroup kernels) or W_hh (serial) */
typedef struct {
    uint64_t gates, mid, hs, dho, dgh, carry, w;
} layer_bptrs;

typedef union {
    lstm_bwd_push l;
    gru_bwd_push g;
} bwd_push;

static uint32_t fill_bwd(const rnn_dims *d, const layer_bptrs *p, int64_t t, bwd_push *out) {
    int64_t G = d->G * d->H;
    memset(out, 0, sizeof *out);
    if (d->lstm) {
        out->l = (lstm_bwd_push){p->gates, p->mid, p->dho, p->carry, p->w, (int32_t)d->B, (int32_t)d->T, (int32_t)d->H,
                                 (int32_t)t, vec4_ok(G, p->w, p->gates)};
        return sizeof out->l;
    }
    out->g = (gru_bwd_push){p->gates, p->mid, p->hs, p->dho, p->dgh, p->carry, p->w, (int32_t)d->B, (int32_t)d->T,
                            (int32_t)d->H, (int32_t)t, vec4_ok(G, p->w, p->dgh)};
    return sizeof out->g;
}

/* The backward's wavefront (wave_record, bwd): after layer l >= 1's chunk, the dh of the
 * layer below, dG_l W_ih_l into the dh buffer (that chunk of it has been read by layer l,
 * and layer l-1 reads it in the next wave step). Each layer has its own dGh, carry and
 * W_hh^T (bl). */
typedef struct {
    const rnn_dims *d;
    const layer_bptrs *bl;
    const sn_tensor *node;
    uint64_t dhbuf;
} bwd_wave_ctx;

static uint32_t bwd_wave_fill(const void *ctx, int l, int64_t t, void *block) {
    const bwd_wave_ctx *c = ctx;
    bwd_push p;
    uint32_t n = fill_bwd(c->d, &c->bl[l], t, &p);
    memcpy(block, &p, n);
    return n;
}

/* dh_{l-1}[b, t0..t0+c) = dG_l[b, t0..t0+c) W_ih_l for every sequence b */
static sn_status bwd_wave_feed(sn_vk *vk, const void *ctx, int l, int64_t t0, int64_t c) {
    const bwd_wave_ctx *x = ctx;
    int64_t T = x->d->T, H = x->d->H, G = x->d->G * H;
    sn_vk_gemm_args g = {.ta = false, .tb = false, .M = c, .N = H, .K = G, .alpha = 1.0f, .beta = 0.0f,
                         .A = sn_vk_at(x->bl[l].gates, t0 * G), .B = sn_vk_addr(x->node->src[3 + 4 * l]),
                         .C = sn_vk_at(x->dhbuf, t0 * H), .lda = G, .ldb = H, .ldc = H, .batch = x->d->B,
                         .binner = 0, .sA = {T * G, 0}, .sB = {0, 0}, .sC = {T * H, 0}};
    return sn_vk_gemm(vk, &g, x->node->name);
}

/* layer l's weight gradients over all timesteps (dG in place of its gates) */
static sn_status layer_wgrads(sn_vk *vk, sn_tensor *node, const rnn_dims *d, int l, const layer_bptrs *p,
                              const int64_t *sizes) {
    int64_t B = d->B, T = d->T, H = d->H, G = d->G * H, BT = B * T, in = l == 0 ? d->I : H;
    uint64_t out = sn_vk_addr(node);
    uint64_t xin = l == 0 ? sn_vk_addr(node->src[1]) : rnn_h(node->src[2], d, l - 1);
    uint64_t dG = p->gates, dGh = d->lstm ? p->gates : p->dgh, hs = p->hs;
    uint64_t dw_ih = sn_vk_at(out, sn_packed_offset(sizes, 1 + 4 * l));
    uint64_t dw_hh = sn_vk_at(out, sn_packed_offset(sizes, 2 + 4 * l));
    uint64_t db_ih = sn_vk_at(out, sn_packed_offset(sizes, 3 + 4 * l));
    uint64_t db_hh = sn_vk_at(out, sn_packed_offset(sizes, 4 + 4 * l));
    /* dw_hh = sum_b sum_{t>=1} dGh[b,t]^T h[b,t-1]: one GEMM pairs dGh row r with h row
     * r-1 over the whole batch, a rank-(B-1) GEMM takes the cross-sequence pairs back out */
    if (T < 2) SN_VK_TRY(sn_vk_fill(vk, dw_hh, 0, G * H, 0.0f));
    else {
        SN_VK_TRY(sn_vk_gemm1(vk, true, false, G, H, BT - 1, 1.0f, sn_vk_at(dGh, G), G, hs, H, 0.0f, dw_hh, H,
                              node->name));
        if (B > 1)
            SN_VK_TRY(sn_vk_gemm1(vk, true, false, G, H, B - 1, -1.0f, sn_vk_at(dGh, T * G), T * G,
                                  sn_vk_at(hs, (T - 1) * H), T * H, 1.0f, dw_hh, H, node->name));
    }
    SN_VK_TRY(sn_vk_gemm1(vk, true, false, G, in, BT, 1.0f, dG, G, xin, in, 0.0f, dw_ih, in, node->name));
    SN_VK_TRY(sn_vk_chan_sum(vk, dG, BT, G, 1, db_ih));
    if (d->lstm) SN_VK_TRY(sn_vk_fill(vk, db_hh, db_ih, G, 0.0f));
    else SN_VK_TRY(sn_vk_chan_sum(vk, dGh, BT, G, 1, db_hh));
    return SN_OK;
}

/* W_hh^T [H, G] of W_hh [G, H] for the backward's workgroup kernels, f16 with hf */
static sn_status transpose_w(sn_vk *vk, const rnn_w16_form *hf, uint64_t src, int64_t G, int64_t H, uint64_t dst) {
    return hf ? to_w16(vk, src, G, H, true, dst) : sn_vk_transpose(vk, src, G, H, dst);
}

static sn_status rnn_backward(sn_vk *vk, sn_tensor *node, const rnn_dims *d) {
    int64_t B = d->B, T = d->T, H = d->H, G = d->G * H, BT = B * T;
    const sn_tensor *dy = node->src[0], *fwd = node->src[2];
    bool need_dx = node->ip[2] != 0;
    uint64_t ex = sn_vk_extra(fwd), out = sn_vk_addr(node), sc = sn_vk_extra(node);
    /* packed output: dx | per layer dw_ih, dw_hh, db_ih, db_hh */
    int64_t sizes[1 + 4 * 16];
    if (d->L > 16) return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s '%s': more than 16 layers", sn_op_name(node->op),
                                   node->name);
    sizes[0] = BT * d->I;
    for (int l = 0; l < d->L; l++) {
        sizes[1 + 4 * l] = G * (l == 0 ? d->I : H);
        sizes[2 + 4 * l] = G * H;
        sizes[3 + 4 * l] = sizes[4 + 4 * l] = G;
    }
    /* scratch (sn_rnn_bwd_scratch_offset): 0 dGh (GRU), 1 dh between layers, 2 the GRU's
     * direct z*dh between steps, 3 dc (LSTM) */
    uint64_t dgh_scr = sn_vk_at(sc, sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 0));
    uint64_t dhbuf = sn_vk_at(sc, sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 1));
    uint64_t vec = sn_vk_at(sc, sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 2));
    uint64_t dc = sn_vk_at(sc, sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 3));
    bool serial = use_serial(vk);
    const rnn_variant *v = NULL;
    if (!serial) SN_VK_TRY(pick_variant(vk, node, &v));
    uint32_t groups = serial ? sn_vk_groups(B * H, 64) : sn_vk_groups(H, v->jb);
    const rnn_w16_form *hf = w16_form(vk, v);
    int sh = serial ? (d->lstm ? SN_VK_SH_RNN_LSTM_STEP_BWD_SERIAL : SN_VK_SH_RNN_GRU_STEP_BWD_SERIAL)
             : hf   ? hf->sh[d->lstm ? 1 : 3]
                    : v->sh[d->lstm ? 1 : 3];
    int psh; /* SN_VK_RNN_PERSIST: the layers' persistent kernel, -1 off */
    SN_VK_TRY(persist_shader(node, v, hf, d->lstm ? 1 : 3, &psh));
    /* the wavefront runs layers side by side: each its own dGh (GRU), carry and W_hh^T
     * (the top layer's in the scratch, the others' in temporaries) */
    int wsh = serial ? -1 : hf ? hf->wave[d->lstm ? 1 : 3] : v->wave[d->lstm ? 1 : 3];
    uint32_t exact = serial ? 0 : (uint32_t)((H + v->jb - 1) / v->jb); /* the grid, uncapped */
    bool wave = wsh >= 0 && psh < 0 && d->L > 1 && use_wave() && H <= 65535 && (int64_t)exact * d->L <= 65535;
    int nsep = wave ? d->L : 1; /* layers with their own buffers */
    /* W_hh^T of the layer at hand: the workgroup kernel reads column j of W_hh contiguously
     * (f16 with hf: half the scratch, wper bytes a layer) */
    bool need_t = !serial && T > 1;
    int64_t wper = hf ? w16_bytes(G * H) : G * H * (int64_t)sizeof(float);
    uint64_t w_t = need_t ? sn_vk_temp(vk, (size_t)(nsep * wper), NULL) : 0;
    uint64_t own = nsep > 1 ? sn_vk_temp(vk, (size_t)((nsep - 1) * ((d->lstm ? 0 : BT * G) + B * H)) * sizeof(float),
                                         NULL)
                            : 0;
    if ((need_t && !w_t) || (nsep > 1 && !own))
        return sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s'", sn_op_name(node->op), node->name);
    layer_bptrs bl[16];
    for (int l = 0; l < d->L; l++) {
        bool top = l == d->L - 1 || nsep == 1; /* the scratch's buffers */
        int64_t per = (d->lstm ? 0 : BT * G) + B * H, o = (int64_t)l * per;
        bl[l] = (layer_bptrs){sn_vk_at(ex, extra_offset(d, l, 0)), sn_vk_at(ex, extra_offset(d, l, 1)),
                              rnn_h(fwd, d, l), l == d->L - 1 ? sn_vk_addr(dy) : dhbuf,
                              d->lstm ? 0 : top ? dgh_scr : sn_vk_at(own, o),
                              top ? (d->lstm ? dc : vec) : sn_vk_at(own, o + (d->lstm ? 0 : BT * G)),
                              serial ? sn_vk_addr(node->src[4 + 4 * l])
                                     : need_t ? w_t + (uint64_t)((nsep > 1 ? l : 0) * wper) : 0};
        if (need_t && nsep > 1) /* all before the wavefront (the per-layer order: in its loop) */
            SN_VK_TRY(transpose_w(vk, hf, sn_vk_addr(node->src[4 + 4 * l]), G, H, bl[l].w));
    }
    /* the layers' step parameters for the wavefront and the persistent kernel */
    bwd_wave_ctx c = {d, bl, node, dhbuf};
    wave_dir wd = {true, d->lstm ? sizeof(lstm_bwd_push) : sizeof(gru_bwd_push), bwd_wave_fill, bwd_wave_feed, &c};
    if (wave) {
        SN_VK_TRY(wave_record(vk, node, d, &wd, wsh, exact, wave_chunk()));
        for (int l = d->L - 1; l >= 0; l--) SN_VK_TRY(layer_wgrads(vk, node, d, l, &bl[l], sizes));
        if (need_dx)
            SN_VK_TRY(sn_vk_gemm1(vk, false, false, BT, d->I, G, 1.0f, bl[0].gates, G, sn_vk_addr(node->src[3]), d->I,
                                  0.0f, out, d->I, node->name));
        return SN_OK;
    }
    for (int l = d->L - 1; l >= 0; l--) {
        int64_t in = l == 0 ? d->I : H;
        uint64_t w_ih = sn_vk_addr(node->src[3 + 4 * l]);
        if (need_t) SN_VK_TRY(transpose_w(vk, hf, sn_vk_addr(node->src[4 + 4 * l]), G, H, bl[l].w));
        if (psh >= 0)
            SN_VK_TRY(persist_run(vk, node, d, psh, v->jb, &wd, l));
        for (int64_t t = T - 1; psh < 0 && t >= 0; t--) {
            bwd_push p;
            uint32_t n = fill_bwd(d, &bl[l], t, &p);
            SN_VK_TRY(sn_vk_dispatch(vk, sh, &p, n, groups, 1, 1));
        }
        SN_VK_TRY(layer_wgrads(vk, node, d, l, &bl[l], sizes));
        /* the input's gradient: dh of the layer below (its steps have all read dhbuf), or dx */
        if (l > 0)
            SN_VK_TRY(sn_vk_gemm1(vk, false, false, BT, H, G, 1.0f, bl[l].gates, G, w_ih, in, 0.0f, dhbuf, H,
                                  node->name));
        else if (need_dx)
            SN_VK_TRY(sn_vk_gemm1(vk, false, false, BT, d->I, G, 1.0f, bl[l].gates, G, w_ih, d->I, 0.0f, out, d->I,
                                  node->name));
    }
    return SN_OK;
}

/* ---- SN_VK_RNN_PERSIST=1: one dispatch per layer and direction (issue 14) ----
 * A persistent kernel (shaders/rnn_persist.glsl) runs all T steps of a layer, each step
 * the variant's step body unchanged (same math, reduction order and outputs), its
 * workgroups meeting at a grid barrier through device memory between steps, in place of
 * T dispatches with a pipeline barrier each (about 3-3.5 us of fixed cost per step on an
 * H100). That needs every workgroup resident at once, which Vulkan never promises: the
 * grid is kept small (SN_VK_RNN_PERSIST_WGS, default 128: Vulkan has no query for the
 * number of SMs/compute units, and 128 is below the 132 of an H100/H200 SXM, one
 * workgroup per SM; each loops over H/JB/wgs unit blocks per step), every wait in the
 * kernel is bounded (SN_VK_RNN_PERSIST_SPIN polls), and a wait that runs out aborts the
 * kernel and reports through sn_vk_fail_word: the run fails with a clear error, it never
 * hangs nor returns wrong numbers silently. Opt-in and read on every call, for timing:
 * bench/run_vk_rnn_sweep.sh PERSIST=1. The workgroup kernels of j2s32 and j4s16 only. */

typedef struct {
    const char *variant;
    int sh[4];  /* LSTM forward, LSTM backward, GRU forward, GRU backward */
    int h16[4]; /* the same with f16 weights (rnn_w16_forms), -1: none */
} rnn_persist_form;

static const rnn_persist_form rnn_persist_forms[] = {
    {"j2s32",
     {SN_VK_SH_RNN_LSTM_STEP_PERSIST_J2S32, SN_VK_SH_RNN_LSTM_STEP_BWD_PERSIST_J2S32,
      SN_VK_SH_RNN_GRU_STEP_PERSIST_J2S32, SN_VK_SH_RNN_GRU_STEP_BWD_PERSIST_J2S32},
     {SN_VK_SH_RNN_LSTM_STEP_PERSIST_J2S32H, SN_VK_SH_RNN_LSTM_STEP_BWD_PERSIST_J2S32H,
      SN_VK_SH_RNN_GRU_STEP_PERSIST_J2S32H, SN_VK_SH_RNN_GRU_STEP_BWD_PERSIST_J2S32H}},
    {"j4s16",
     {SN_VK_SH_RNN_LSTM_STEP_PERSIST_J4S16, SN_VK_SH_RNN_LSTM_STEP_BWD_PERSIST_J4S16,
      SN_VK_SH_RNN_GRU_STEP_PERSIST_J4S16, SN_VK_SH_RNN_GRU_STEP_BWD_PERSIST_J4S16},
     {-1, -1, -1, -1}},
};

static bool use_persist(void) {
    const char *e = getenv("SN_VK_RNN_PERSIST");
    return e && !strcmp(e, "1");
}

static long env_long(const char *name, long def, long lo) {
    const char *e = getenv(name);
    char *end = NULL;
    long v = e && *e ? strtol(e, &end, 10) : def;
    return e && *e && (*end || v < lo) ? -1 : v;
}

/* *sh: the persistent shader of variant v for kernel k (the rnn_variant sh index), or -1
 * when SN_VK_RNN_PERSIST is off or the kernels are the serial ones; an error when it is
 * on and v has no persistent form */
static sn_status persist_shader(const sn_tensor *node, const rnn_variant *v, const rnn_w16_form *hf, int k,
                                int *sh) {
    *sh = -1;
    if (!v || !use_persist()) return SN_OK;
    for (size_t i = 0; i < sizeof rnn_persist_forms / sizeof rnn_persist_forms[0]; i++)
        if (!strcmp(rnn_persist_forms[i].variant, v->name))
            *sh = hf ? rnn_persist_forms[i].h16[k] : rnn_persist_forms[i].sh[k];
    if (*sh < 0 && hf)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s '%s': SN_VK_RNN_PERSIST=1 has no f16-weight form of RNN "
                        "variant %s: set SN_VK_RNN_F16W=0 or unset SN_VK_RNN_PERSIST", sn_op_name(node->op),
                        node->name, v->name);
    if (*sh < 0)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s '%s': SN_VK_RNN_PERSIST=1 has persistent kernels for RNN "
                        "variants j2s32 and j4s16 only, not %s: pick one with SN_VK_RNN_VARIANT or unset "
                        "SN_VK_RNN_PERSIST", sn_op_name(node->op), node->name, v->name);
    return SN_OK;
}

typedef struct {
    uint64_t args, sync, fail;
    int32_t nsteps;
    uint32_t spin;
} persist_push;

/* Layer l's pass as one dispatch of persistent shader sh: the step parameter blocks
 * (w->fill, w->size bytes each) of all T steps in execution order (backward: t = T-1
 * down to 0). */
static sn_status persist_run(sn_vk *vk, sn_tensor *node, const rnn_dims *d, int sh, uint32_t jb, const wave_dir *w,
                             int l) {
    size_t size = w->size;
    long wgs = env_long("SN_VK_RNN_PERSIST_WGS", 128, 1);
    /* polls of the barrier counter before a wait gives up: each is an L2 round trip on a GPU
     * (about 0.5-1 us: 2^20 of them is about a second, against a step of microseconds) and a
     * few ns on a CPU driver, whose threads the OS may preempt for tens of ms: 2^26 there */
    long spin = env_long("SN_VK_RNN_PERSIST_SPIN", sn_vk_limits_of(vk)->cpu_driver ? 1L << 26 : 1L << 20, 1);
    if (wgs < 0 || spin < 0 || spin > (long)UINT32_MAX)
        return sn_error(SN_ERR_INVALID_ARG, "Vulkan %s '%s': SN_VK_RNN_PERSIST_WGS and SN_VK_RNN_PERSIST_SPIN must "
                        "be positive integers (SPIN below 2^32)", sn_op_name(node->op), node->name);
    uint32_t nblk = (uint32_t)((d->H + jb - 1) / jb), n = (uint32_t)(wgs < (long)nblk ? wgs : (long)nblk);
    if (n > sn_vk_limits_of(vk)->max_wg_count[0]) n = sn_vk_limits_of(vk)->max_wg_count[0];
    unsigned char *host = malloc((size_t)d->T * size);
    if (!host) return sn_error(SN_ERR_NOMEM, "Vulkan %s '%s': out of host memory", sn_op_name(node->op), node->name);
    for (int64_t i = 0; i < d->T; i++) w->fill(w->ctx, l, w->bwd ? d->T - 1 - i : i, host + (size_t)i * size);
    uint64_t args = sn_vk_temp(vk, (size_t)d->T * size, host);
    free(host);
    uint64_t sync = args ? sn_vk_temp(vk, 2 * sizeof(uint32_t), NULL) : 0;
    char msg[2][400];
    snprintf(msg[0], sizeof msg[0], "the persistent RNN kernel (SN_VK_RNN_PERSIST=1) of %s '%s' gave up waiting at a "
             "grid barrier: its %u workgroups were not all resident at once on this device (Vulkan does not promise "
             "it), so this run's results are invalid; unset SN_VK_RNN_PERSIST, or lower SN_VK_RNN_PERSIST_WGS",
             sn_op_name(node->op), node->name, n);
    snprintf(msg[1], sizeof msg[1], "the persistent RNN kernel (SN_VK_RNN_PERSIST=1) of %s '%s' ran past this "
             "driver's limit of loop iterations per shader invocation (llvmpipe: 65535), which cut its loops short, "
             "so this run's results are invalid; unset SN_VK_RNN_PERSIST (it is meant for GPUs) or raise "
             "SN_VK_RNN_PERSIST_WGS", sn_op_name(node->op), node->name);
    /* fail words 0 (the barrier gave up) and 1 (loops cut short), contiguous */
    uint64_t fail = sync ? sn_vk_fail_word(vk, 0, msg[0]) : 0;
    if (fail && !sn_vk_fail_word(vk, 1, msg[1])) fail = 0;
    if (!fail) return sn_error_prefix(SN_ERR_NOMEM, "Vulkan %s '%s'", sn_op_name(node->op), node->name);
    SN_VK_TRY(sn_vk_fill(vk, sync, 0, 2, 0.0f)); /* arrivals, abort: 0 on every replay */
    persist_push p = {args, sync, fail, (int32_t)d->T, (uint32_t)spin};
    return sn_vk_dispatch(vk, sh, &p, sizeof p, n, 1, 1);
}

typedef struct {
    uint64_t src, out;
    int32_t B, T, H;
} last_push;

/* last-timestep h (ip0 0) or c (ip0 1, LSTM) of every layer, from the forward's saved state */
static sn_status rnn_state(sn_vk *vk, sn_tensor *node) {
    const sn_tensor *r = node->src[0];
    bool lstm = r->op == SN_OP_LSTM;
    if (node->ip[0] == 1 && !lstm)
        return sn_error(SN_ERR_INVALID_ARG, "Vulkan rnn_state '%s': a GRU has no cell state (c)", node->name);
    rnn_dims d = {r->shape[0], r->shape[1], 0, r->shape[2], lstm ? 4 : 3, r->ip[0], lstm};
    for (int l = 0; l < d.L; l++) {
        uint64_t src = node->ip[0] == 1 ? sn_vk_at(sn_vk_extra(r), sn_lstm_extra_offset(d.B, d.T, d.H, l, 1))
                                        : rnn_h(r, &d, l);
        last_push p = {src, sn_vk_at(sn_vk_addr(node), l * d.B * d.H), (int32_t)d.B, (int32_t)d.T, (int32_t)d.H};
        SN_VK_TRY(sn_vk_dispatch(vk, SN_VK_SH_RNN_LAST, &p, sizeof p, sn_vk_groups(d.B * d.H, 64), 1, 1));
    }
    return SN_OK;
}

sn_status sn_vk_rnn(sn_vk *vk, sn_tensor *node) {
    if (node->op == SN_OP_RNN_STATE) return rnn_state(vk, node);
    bool fwd = node->op == SN_OP_LSTM || node->op == SN_OP_GRU;
    if (!fwd && node->op != SN_OP_LSTM_BWD && node->op != SN_OP_GRU_BWD)
        return sn_error(SN_ERR_INTERNAL, "Vulkan rnn: unexpected op %s", sn_op_name(node->op));
    const sn_tensor *x = fwd ? node->src[0] : node->src[1], *f = fwd ? node : node->src[2];
    rnn_dims d;
    d.lstm = node->op == SN_OP_LSTM || node->op == SN_OP_LSTM_BWD;
    d.B = x->shape[0];
    d.T = x->shape[1];
    d.I = x->shape[2];
    d.H = f->shape[2];
    d.G = d.lstm ? 4 : 3;
    d.L = f->ip[0];
    if (d.L < 1 || d.L > 16)
        return sn_error(SN_ERR_INVALID_ARG, "Vulkan %s '%s': %d layers (1 to 16 supported)", sn_op_name(node->op),
                        node->name, d.L);
    int64_t big = d.B * d.T * d.G * d.H;
    SN_VK_TRY(sn_vk_check_elems(sn_lstm_extra_elems(d.B, d.T, d.H, d.L) + big, node));
    return fwd ? rnn_forward(vk, node, &d) : rnn_backward(vk, node, &d);
}
