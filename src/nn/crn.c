/* The prototype CRN (Tan & Wang 2018) as DESIGN.md and reference/crn_torch.py
 * define it, with PyTorch state_dict names, order and layouts. */
#include "sinter/nn.h"
#include "core/core.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sn_crn_config_default(sn_crn_config *c) {
    memset(c, 0, sizeof *c);
    c->rnn = SN_RNN_LSTM;
    c->hidden = 1024;
    c->layers = 2;
    int ch[5] = {16, 32, 64, 128, 256};
    memcpy(c->channels, ch, sizeof ch);
    c->freq_bins = 161;
}

const char *sn_rnn_kind_name(sn_rnn_kind k) {
    return k == SN_RNN_LSTM ? "lstm" : k == SN_RNN_GRU ? "gru" : k == SN_RNN_ATTENTION ? "attention" : "?";
}

int sn_crn_freq_out(int f, int level) {
    for (int i = 0; i < level; i++) f = (f - 3) / 2 + 1;
    return f;
}

/* ---- the parameter list ---- */

typedef sn_param_spec spec;

typedef struct specs { int n; spec s[SN_MAX_MODEL_TENSORS]; } specs;

static void add(specs *L, bool trainable, int ndim, int64_t a, int64_t b, int64_t c, int64_t d, const char *fmt, ...) {
    if (L->n >= SN_MAX_MODEL_TENSORS) return;
    spec *s = &L->s[L->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    int64_t sh[4] = {a, b, c, d};
    memcpy(s->shape, sh, sizeof sh);
    s->trainable = trainable;
}

static void add_bn(specs *L, const char *pre, int i, int64_t c) {
    add(L, true, 1, c, 0, 0, 0, "%s.%d.weight", pre, i);
    add(L, true, 1, c, 0, 0, 0, "%s.%d.bias", pre, i);
    add(L, false, 1, c, 0, 0, 0, "%s.%d.running_mean", pre, i);
    add(L, false, 1, c, 0, 0, 0, "%s.%d.running_var", pre, i);
    add(L, false, 0, 0, 0, 0, 0, "%s.%d.num_batches_tracked", pre, i);
}

static int middle_width(const sn_crn_config *c) { return c->channels[4] * sn_crn_freq_out(c->freq_bins, 5); }

/* PyTorch registers submodules in __init__ order: enc, ebn, rnn, proj, dec, dbn. */
static void list_specs(const sn_crn_config *c, specs *L) {
    int ch[6] = {1, c->channels[0], c->channels[1], c->channels[2], c->channels[3], c->channels[4]};
    for (int i = 0; i < 5; i++) {
        add(L, true, 4, ch[i + 1], ch[i], 2, 3, "enc.%d.weight", i);
        add(L, true, 1, ch[i + 1], 0, 0, 0, "enc.%d.bias", i);
    }
    for (int i = 0; i < 5; i++) add_bn(L, "ebn", i, ch[i + 1]);
    int64_t W = middle_width(c), H = c->hidden;
    if (c->rnn == SN_RNN_ATTENTION) {
        H = W;
        for (int l = 0; l < c->layers; l++) {
            add(L, true, 2, 3 * W, W, 0, 0, "rnn.layers.%d.self_attn.in_proj_weight", l);
            add(L, true, 1, 3 * W, 0, 0, 0, "rnn.layers.%d.self_attn.in_proj_bias", l);
            add(L, true, 2, W, W, 0, 0, "rnn.layers.%d.self_attn.out_proj.weight", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.self_attn.out_proj.bias", l);
            add(L, true, 2, 2 * W, W, 0, 0, "rnn.layers.%d.linear1.weight", l);
            add(L, true, 1, 2 * W, 0, 0, 0, "rnn.layers.%d.linear1.bias", l);
            add(L, true, 2, W, 2 * W, 0, 0, "rnn.layers.%d.linear2.weight", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.linear2.bias", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.norm1.weight", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.norm1.bias", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.norm2.weight", l);
            add(L, true, 1, W, 0, 0, 0, "rnn.layers.%d.norm2.bias", l);
        }
    } else {
        int64_t g = c->rnn == SN_RNN_LSTM ? 4 : 3;
        for (int l = 0; l < c->layers; l++) {
            add(L, true, 2, g * H, l ? H : W, 0, 0, "rnn.weight_ih_l%d", l);
            add(L, true, 2, g * H, H, 0, 0, "rnn.weight_hh_l%d", l);
            add(L, true, 1, g * H, 0, 0, 0, "rnn.bias_ih_l%d", l);
            add(L, true, 1, g * H, 0, 0, 0, "rnn.bias_hh_l%d", l);
        }
    }
    if (H != W) {
        add(L, true, 2, W, H, 0, 0, "proj.weight");
        add(L, true, 1, W, 0, 0, 0, "proj.bias");
    }
    int dch[6] = {ch[5], ch[4], ch[3], ch[2], ch[1], 1};
    for (int i = 0; i < 5; i++) {
        add(L, true, 4, dch[i] * 2, dch[i + 1], 2, 3, "dec.%d.weight", i);
        add(L, true, 1, dch[i + 1], 0, 0, 0, "dec.%d.bias", i);
    }
    for (int i = 0; i < 4; i++) add_bn(L, "dbn", i, dch[i + 1]);
}

static sn_status check_config(const sn_crn_config *c) {
    if (c->rnn < SN_RNN_LSTM || c->rnn > SN_RNN_ATTENTION)
        return sn_error(SN_ERR_CONFIG, "model.rnn: unknown kind %d (use lstm, gru or attention)", (int)c->rnn);
    if (c->hidden < 1 || c->hidden > 65536)
        return sn_error(SN_ERR_CONFIG, "model.hidden = %d is out of range (1..65536)", c->hidden);
    if (c->layers < 1 || c->layers > 8)
        return sn_error(SN_ERR_CONFIG, "model.layers = %d is out of range (1..8)", c->layers);
    for (int i = 0; i < 5; i++)
        if (c->channels[i] < 1 || c->channels[i] > 4096)
            return sn_error(SN_ERR_CONFIG, "model.channels[%d] = %d is out of range (1..4096)", i, c->channels[i]);
    if (sn_crn_freq_out(c->freq_bins, 5) < 1)
        return sn_error(SN_ERR_CONFIG, "the CRN needs at least 63 frequency bins, got %d", c->freq_bins);
    if (c->rnn == SN_RNN_ATTENTION && middle_width(c) % 8)
        return sn_error(SN_ERR_CONFIG, "attention needs a width divisible by its 8 heads, got %d", middle_width(c));
    return SN_OK;
}

sn_status sn_model_make_tensors(sn_model *m, const sn_param_spec *L, int n, sn_backend *b) {
    if (n > SN_MAX_MODEL_TENSORS)
        return sn_error(SN_ERR_CONFIG, "the model has %d state_dict entries; sinter supports up to %d", n,
                        SN_MAX_MODEL_TENSORS);
    m->backend = b;
    m->ctx = sn_ctx_new();
    if (!m->ctx) return sn_error(SN_ERR_NOMEM, "out of host memory");
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t k = 1;
        for (int d = 0; d < L[i].ndim; d++) k *= L[i].shape[d];
        if (L[i].trainable) { total += sn_align64(k); m->nparams += k; }
    }
    m->nflat = total;
    m->flat = sn_new_1d(m->ctx, total > 0 ? total : 64, SN_FLAG_PERSIST, "params");
    int64_t off = 0;
    for (int i = 0; i < n && m->flat; i++) {
        const spec *p = &L[i];
        sn_tensor *t = sn_new_tensor(m->ctx, SN_F32, p->ndim, p->shape,
                                     p->trainable ? SN_FLAG_PARAM : SN_FLAG_PERSIST, p->name);
        if (!t) break;
        if (p->trainable) {
            sn_alias(t, m->flat, off);
            off += sn_align64(sn_nelem(t));
        }
        m->t[m->n] = t;
        m->trainable[m->n] = p->trainable;
        m->n++;
    }
    sn_status s = SN_OK;
    if (m->n != n || !m->flat) s = sn_error(SN_ERR_NOMEM, "out of host memory creating the model's tensors");
    if (s == SN_OK) s = sn_ctx_alloc_persistent(m->ctx, b);
    /* running_var starts at 1 */
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        sn_tensor *t = m->t[i];
        size_t L2 = strlen(t->name);
        if (L2 > 12 && !strcmp(t->name + L2 - 12, ".running_var")) {
            int64_t k = sn_nelem(t);
            float *one = malloc((size_t)k * sizeof *one);
            if (!one) return sn_error(SN_ERR_NOMEM, "out of host memory");
            for (int64_t j = 0; j < k; j++) one[j] = 1.0f;
            s = sn_tensor_set(t, one, k);
            free(one);
        }
    }
    return s;
}

sn_status sn_crn_new(const sn_crn_config *cfg, sn_backend *b, sn_model **out) {
    if (!cfg || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_crn_new: config, backend and out are required");
    *out = NULL;
    sn_status s = check_config(cfg);
    if (s != SN_OK) return s;
    specs *L = calloc(1, sizeof *L);
    sn_model *m = calloc(1, sizeof *m);
    if (!L || !m) { free(L); free(m); return sn_error(SN_ERR_NOMEM, "sn_crn_new: out of host memory"); }
    list_specs(cfg, L);
    m->cfg = *cfg;
    s = sn_model_make_tensors(m, L->s, L->n, b);
    free(L);
    if (s != SN_OK) { sn_model_free(m); return s; }
    *out = m;
    return SN_OK;
}

void sn_model_free(sn_model *m) {
    if (!m) return;
    sn_gmodel_free(m->graph);
    sn_ctx_free(m->ctx);
    free(m);
}

sn_tensor *sn_model_find(const sn_model *m, const char *name) {
    for (int i = 0; m && i < m->n; i++)
        if (!strcmp(m->t[i]->name, name)) return m->t[i];
    return NULL;
}

/* ---- initialisation (PyTorch's defaults) ---- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

sn_status sn_model_init(sn_model *m, uint64_t seed) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_init: model is NULL");
    uint64_t st = seed * 0x2545F4914F6CDD1Dull + 1;
    sn_status s = SN_OK;
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        sn_tensor *t = m->t[i];
        int64_t n = sn_nelem(t);
        float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v) return sn_error(SN_ERR_NOMEM, "sn_model_init: out of host memory");
        const char *nm = t->name;
        double bound = 0, fill = 0;
        bool uniform = true;
        if (m->graph) {
            /* a described model: its layers' PyTorch rules, worked out when it was built */
            double v = 0;
            sn_gmodel_init_rule(m, i, &uniform, &v);
            if (uniform) bound = v;
            else fill = v;
        } else if (!strncmp(nm, "ebn.", 4) || !strncmp(nm, "dbn.", 4) || strstr(nm, ".norm")) {
            uniform = false;
            fill = (ends_with(nm, ".weight") || ends_with(nm, ".running_var")) ? 1.0 : 0.0;
        } else if (!strncmp(nm, "rnn.weight", 10) || !strncmp(nm, "rnn.bias", 8)) {
            bound = 1.0 / sqrt((double)m->cfg.hidden);
        } else if (strstr(nm, "in_proj_weight")) {
            bound = sqrt(6.0 / (double)(t->shape[0] + t->shape[1])); /* xavier_uniform */
        } else if (strstr(nm, "in_proj_bias") || strstr(nm, "out_proj.bias")) {
            uniform = false;
        } else {
            /* conv, conv-transpose, linear: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in)), bias the same */
            sn_tensor *w = t;
            if (ends_with(nm, ".bias")) {
                char wn[SN_NAME_LEN];
                snprintf(wn, sizeof wn, "%.*s.weight", (int)(strlen(nm) - 5), nm);
                w = sn_model_find(m, wn);
                if (!w) w = t;
            }
            int64_t fan_in = w->ndim > 1 ? w->shape[1] : w->shape[0];
            for (int d = 2; d < w->ndim; d++) fan_in *= w->shape[d];
            bound = 1.0 / sqrt((double)fan_in);
        }
        for (int64_t k = 0; k < n; k++)
            v[k] = uniform ? (float)((2.0 * ((rng_next(&st) >> 11) * (1.0 / 9007199254740992.0)) - 1.0) * bound)
                           : (float)fill;
        s = sn_tensor_set(t, v, n);
        free(v);
    }
    return s;
}

/* ---- forward graph ---- */

static sn_tensor *P(sn_model *m, const char *fmt, int i) {
    char name[SN_NAME_LEN];
    snprintf(name, sizeof name, fmt, i);
    sn_tensor *t = sn_model_find(m, name);
    if (!t) sn_error(SN_ERR_INTERNAL, "CRN: parameter '%s' missing", name);
    return t;
}

/* ELU(BatchNorm2d(x)) as one fused op */
static sn_tensor *bn_elu(sn_model *m, sn_tensor *x, const char *pre, int i, bool training) {
    char nm[4][SN_NAME_LEN];
    const char *suf[4] = {"weight", "bias", "running_mean", "running_var"};
    sn_tensor *p[4];
    for (int k = 0; k < 4; k++) {
        snprintf(nm[k], sizeof nm[k], "%s.%d.%s", pre, i, suf[k]);
        p[k] = sn_model_find(m, nm[k]);
    }
    return sn_batchnorm2d_elu(m->ctx, x, p[0], p[1], p[2], p[3], training, 1e-5f, 0.1f, 1.0f);
}

static sn_tensor *transformer_block(sn_model *m, sn_tensor *x, int l) {
    sn_ctx *c = m->ctx;
    char pre[64];
    snprintf(pre, sizeof pre, "rnn.layers.%d.", l);
#define PP(s) sn_model_find(m, (snprintf(nm, sizeof nm, "%s%s", pre, s), nm))
    char nm[SN_NAME_LEN];
    sn_tensor *h = sn_layernorm(c, x, PP("norm1.weight"), PP("norm1.bias"), 1e-5f);
    h = sn_attention(c, h, PP("self_attn.in_proj_weight"), PP("self_attn.in_proj_bias"),
                     PP("self_attn.out_proj.weight"), PP("self_attn.out_proj.bias"), 8, true);
    x = sn_add(c, x, h);
    h = sn_layernorm(c, x, PP("norm2.weight"), PP("norm2.bias"), 1e-5f);
    h = sn_linear_act(c, h, PP("linear1.weight"), PP("linear1.bias"), SN_ACT_RELU, 0.0f, 0.0f);
    h = sn_linear(c, h, PP("linear2.weight"), PP("linear2.bias"));
#undef PP
    return sn_add(c, x, h);
}

const char *sn_loss_name(sn_loss_kind k) { return k == SN_LOSS_L1 ? "l1" : "mse"; }

const char *sn_model_describe(const sn_model *m, char *buf, int n) {
    if (!m) snprintf(buf, (size_t)n, "(no model)");
    else if (m->graph) snprintf(buf, (size_t)n, "graph (%d layers, loss %s)", sn_model_get_desc(m)->n, sn_loss_name(m->loss));
    else
        snprintf(buf, (size_t)n, "crn (%s, hidden %d, %d layers, channels [%d,%d,%d,%d,%d], loss %s)",
                 sn_rnn_kind_name(m->cfg.rnn), m->cfg.hidden, m->cfg.layers, m->cfg.channels[0], m->cfg.channels[1],
                 m->cfg.channels[2], m->cfg.channels[3], m->cfg.channels[4], sn_loss_name(m->loss));
    return buf;
}

sn_tensor *sn_model_forward(sn_model *m, sn_tensor *x, bool training) { return sn_crn_forward(m, x, training); }

sn_tensor *sn_crn_forward(sn_model *m, sn_tensor *x, bool training) {
    if (!m || !x) { sn_error(SN_ERR_INVALID_ARG, "sn_crn_forward: model or input is NULL"); return NULL; }
    if (m->graph) return sn_gmodel_forward(m, x, training);
    sn_ctx *c = m->ctx;
    if (x->ndim != 4 || x->shape[1] != 1 || x->shape[3] != m->cfg.freq_bins || x->shape[2] < 1) {
        char sh[64];
        sn_error(SN_ERR_SHAPE, "CRN: input '%s' has shape %s; expected [batch, 1, frames, %d]", x->name,
                 sn_shape_str(x, sh, sizeof sh), m->cfg.freq_bins);
        return NULL;
    }
    int64_t B = x->shape[0], T = x->shape[2];
    sn_tensor *skip[5];
    for (int i = 0; i < 5; i++) {
        /* causal: one zero frame before in time (padding top 1, bottom 0) */
        x = sn_conv2d_pad(c, x, P(m, "enc.%d.weight", i), P(m, "enc.%d.bias", i), 1, 2, 1, 0, 0, 0, SN_ACT_NONE,
                          0.0f, 0.0f);
        x = bn_elu(m, x, "ebn", i, training);
        skip[i] = x;
    }
    if (!x) return NULL;
    int64_t C = x->shape[1], F = x->shape[3];
    int perm[4] = {0, 2, 1, 3};
    int64_t s3[3] = {B, T, C * F};
    sn_tensor *y = sn_reshape(c, sn_permute(c, x, perm), 3, s3);
    if (m->cfg.rnn == SN_RNN_ATTENTION) {
        for (int l = 0; l < m->cfg.layers; l++) y = transformer_block(m, y, l);
    } else {
        /* one op per layer: each layer's saved state and weight gradients are freed
         * as soon as its backward is done, not when the whole stack's is; pairs of
         * layers in one op where the backend runs them side by side (faster, at the
         * cost of the upper layer's saved state living through the lower one's backward) */
        bool lstm = m->cfg.rnn == SN_RNN_LSTM;
        for (int l = 0; l < m->cfg.layers;) {
            int n = l + 1 < m->cfg.layers && sn_backend_rnn_fuses_layers(m->backend, lstm, B, m->cfg.hidden, 2) ? 2 : 1;
            sn_tensor *w[8];
            for (int k = 0; k < n; k++) {
                w[4 * k] = P(m, "rnn.weight_ih_l%d", l + k);
                w[4 * k + 1] = P(m, "rnn.weight_hh_l%d", l + k);
                w[4 * k + 2] = P(m, "rnn.bias_ih_l%d", l + k);
                w[4 * k + 3] = P(m, "rnn.bias_hh_l%d", l + k);
            }
            y = lstm ? sn_lstm(c, y, n, m->cfg.hidden, w) : sn_gru(c, y, n, m->cfg.hidden, w);
            l += n;
        }
        if (m->cfg.hidden != C * F) y = sn_linear(c, y, sn_model_find(m, "proj.weight"), sn_model_find(m, "proj.bias"));
    }
    int64_t s4[4] = {B, T, C, F};
    x = sn_permute(c, sn_reshape(c, y, 4, s4), perm);
    int outpad[5] = {0, 0, 0, 1, 0};
    for (int i = 0; i < 5; i++) {
        sn_tensor *cat[2] = {x, skip[4 - i]};
        x = sn_concat(c, 2, cat, 1);
        /* causal: the last frame is cropped off; the last layer's softplus is fused into it */
        x = sn_conv_transpose2d_crop(c, x, P(m, "dec.%d.weight", i), P(m, "dec.%d.bias", i), 1, 2, 0, 0, 0,
                                     outpad[i], 1, 0, i < 4 ? SN_ACT_NONE : SN_ACT_SOFTPLUS, 1.0f, 20.0f);
        if (!x) return NULL;
        if (i < 4) x = bn_elu(m, x, "dbn", i, training);
    }
    return x;
}
