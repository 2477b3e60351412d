/* Streaming CRN inference: the forward graph of sn_crn_forward (crn.c) rebuilt
 * for one chunk of Tc frames, with every piece of cross-frame state an explicit
 * persistent input and a graph output (stream.h says what is carried). After a
 * chunk the host copies each output state into its input. */
#include "sinter/stream.h"
#include "nn/nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    sn_stream *s;
    sn_ctx *c;
    sn_status st;
} builder;

static sn_tensor *param(sn_model *m, const char *fmt, int i) {
    char name[SN_NAME_LEN];
    snprintf(name, sizeof name, fmt, i);
    sn_tensor *t = sn_model_find(m, name);
    if (!t) sn_error(SN_ERR_INTERNAL, "stream: model parameter '%s' missing", name);
    return t;
}

static sn_tensor *bn_eval(sn_model *m, sn_tensor *x, const char *pre, int i) {
    char nm[SN_NAME_LEN];
    const char *suf[4] = {"weight", "bias", "running_mean", "running_var"};
    sn_tensor *p[4];
    for (int k = 0; k < 4; k++) {
        snprintf(nm, sizeof nm, "%s.%d.%s", pre, i, suf[k]);
        p[k] = sn_model_find(m, nm);
    }
    return sn_batchnorm2d(m->ctx, x, p[0], p[1], p[2], p[3], false, 1e-5f, 0.1f);
}

/* A persistent zero-initialised state input, paired later with its new value. */
static sn_tensor *state_new(builder *B, int ndim, const int64_t *shape, const char *name) {
    if (B->s->nstate >= SN_STREAM_MAX_STATE) {
        sn_error(SN_ERR_INTERNAL, "stream: more than %d state tensors", SN_STREAM_MAX_STATE);
        return NULL;
    }
    sn_tensor *t = sn_new_tensor(B->c, SN_F32, ndim, shape, SN_FLAG_PERSIST | SN_FLAG_INPUT, NULL);
    if (t) sn_set_name(t, "stream.%s", name);
    B->s->state_in[B->s->nstate] = t;
    return t;
}

static void state_out(builder *B, sn_tensor *t) {
    if (t) t->flags |= SN_FLAG_OUTPUT;
    B->s->state_out[B->s->nstate++] = t;
}

/* Frame k of x [N,C,T,F] as [N,C,1,F]. */
static sn_tensor *frame(sn_ctx *c, sn_tensor *x, int64_t k) {
    if (!x) return NULL;
    int64_t start[4] = {0, 0, k, 0}, shape[4] = {x->shape[0], x->shape[1], 1, x->shape[3]};
    return sn_slice(c, x, start, shape);
}

/* Encoder conv i: the previous chunk's last input frame stands in for the causal zero pad. */
static sn_tensor *enc_conv(builder *B, sn_tensor *x, int i) {
    sn_model *m = B->s->m;
    if (!x) return NULL;
    int64_t sh[4] = {x->shape[0], x->shape[1], 1, x->shape[3]};
    char nm[32];
    snprintf(nm, sizeof nm, "enc.%d", i);
    sn_tensor *prev = state_new(B, 4, sh, nm);
    state_out(B, frame(B->c, x, x->shape[2] - 1));
    sn_tensor *cat[2] = {prev, x};
    x = sn_concat(B->c, 2, cat, 2);
    return sn_conv2d(B->c, x, param(m, "enc.%d.weight", i), param(m, "enc.%d.bias", i), 1, 2, 0, 0);
}

/* Decoder conv-transpose i: output frame t = x[t]·w[row 0] + x[t-1]·w[row 1] + b. The
 * frame past the chunk, less the bias, is what the next chunk's frame 0 misses. */
static sn_tensor *dec_convt(builder *B, sn_tensor *x, int i, int outpad) {
    sn_model *m = B->s->m;
    sn_ctx *c = B->c;
    sn_tensor *bias = param(m, "dec.%d.bias", i);
    sn_tensor *y = sn_conv_transpose2d(c, x, param(m, "dec.%d.weight", i), bias, 1, 2, 0, 0, 0, outpad);
    if (!y) return NULL;
    int64_t N = y->shape[0], C = y->shape[1], T = y->shape[2] - 1, F = y->shape[3];
    int64_t sh[4] = {N, C, 1, F};
    char nm[32];
    snprintf(nm, sizeof nm, "dec.%d", i);
    sn_tensor *carry = state_new(B, 4, sh, nm);
    int64_t bs[4] = {1, C, 1, 1};
    sn_tensor *negb = sn_scale(c, sn_reshape(c, bias, 4, bs), -1.0f);
    state_out(B, sn_add(c, frame(c, y, T), negb));
    int64_t start[4] = {0, 0, 0, 0}, keep[4] = {N, C, T, F};
    y = sn_slice(c, y, start, keep); /* causal: drop the last frame */
    int pads[8] = {0, 0, 0, 0, 0, (int)T - 1, 0, 0};
    return sn_add(c, y, T > 1 ? sn_pad(c, carry, pads) : carry);
}

static sn_tensor *recurrent(builder *B, sn_tensor *y) {
    sn_model *m = B->s->m;
    sn_ctx *c = B->c;
    const sn_crn_config *cfg = &m->cfg;
    if (!y) return NULL;
    sn_tensor *w[32];
    for (int l = 0; l < cfg->layers; l++) {
        w[4 * l + 0] = param(m, "rnn.weight_ih_l%d", l);
        w[4 * l + 1] = param(m, "rnn.weight_hh_l%d", l);
        w[4 * l + 2] = param(m, "rnn.bias_ih_l%d", l);
        w[4 * l + 3] = param(m, "rnn.bias_hh_l%d", l);
    }
    int64_t sh[3] = {cfg->layers, y->shape[0], cfg->hidden};
    sn_tensor *h0 = state_new(B, 3, sh, "rnn.h"), *r;
    if (cfg->rnn == SN_RNN_LSTM) {
        state_out(B, NULL); /* filled below, once the node exists */
        sn_tensor *c0 = state_new(B, 3, sh, "rnn.c");
        state_out(B, NULL);
        r = sn_lstm_state(c, y, cfg->layers, cfg->hidden, w, h0, c0);
        B->s->state_out[B->s->nstate - 2] = sn_rnn_final_state(c, r, 0);
        B->s->state_out[B->s->nstate - 1] = sn_rnn_final_state(c, r, 1);
    } else {
        state_out(B, NULL);
        r = sn_gru_state(c, y, cfg->layers, cfg->hidden, w, h0);
        B->s->state_out[B->s->nstate - 1] = sn_rnn_final_state(c, r, 0);
    }
    for (int k = 0; k < B->s->nstate; k++)
        if (B->s->state_out[k]) B->s->state_out[k]->flags |= SN_FLAG_OUTPUT;
    return r;
}

static sn_tensor *forward(builder *B, sn_tensor *x) {
    sn_model *m = B->s->m;
    sn_ctx *c = B->c;
    int64_t N = x->shape[0], T = x->shape[2];
    sn_tensor *skip[5];
    for (int i = 0; i < 5; i++) {
        x = enc_conv(B, x, i);
        x = sn_elu(c, bn_eval(m, x, "ebn", i), 1.0f);
        skip[i] = x;
    }
    if (!x) return NULL;
    int64_t C = x->shape[1], F = x->shape[3];
    int perm[4] = {0, 2, 1, 3};
    int64_t s3[3] = {N, T, C * F};
    sn_tensor *y = recurrent(B, sn_reshape(c, sn_permute(c, x, perm), 3, s3));
    if (y && m->cfg.hidden != C * F) y = sn_linear(c, y, sn_model_find(m, "proj.weight"), sn_model_find(m, "proj.bias"));
    int64_t s4[4] = {N, T, C, F};
    x = sn_permute(c, sn_reshape(c, y, 4, s4), perm);
    int outpad[5] = {0, 0, 0, 1, 0};
    for (int i = 0; i < 5 && x; i++) {
        sn_tensor *cat[2] = {x, skip[4 - i]};
        x = dec_convt(B, sn_concat(c, 2, cat, 1), i, outpad[i]);
        x = i < 4 ? sn_elu(c, bn_eval(m, x, "dbn", i), 1.0f) : sn_softplus(c, x, 1.0f, 20.0f);
    }
    return x;
}

sn_status sn_stream_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames, sn_stream **out) {
    if (!m || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_stream_new: model, backend and out are required");
    *out = NULL;
    char why[400];
    if (!sn_model_streamable(m, why, sizeof why))
        return sn_error(SN_ERR_UNSUPPORTED, "streaming: %s; process whole sequences (sn_infer, or enhance "
                        "--chunk-seconds 0)", why);
    if (batch < 1 || frames < 1 || batch > 4096 || frames > 1000000)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stream_new: batch %d and frames %d must be >= 1", batch, frames);
    sn_stream *s = calloc(1, sizeof *s);
    if (!s) return sn_error(SN_ERR_NOMEM, "sn_stream_new: out of host memory");
    s->m = m;
    s->batch = batch;
    s->frames = frames;
    builder B = {s, m->ctx, SN_OK};
    sn_status st = SN_OK;
    s->x = sn_new_4d(m->ctx, batch, 1, frames, m->cfg.freq_bins, SN_FLAG_PERSIST | SN_FLAG_INPUT, "stream_in");
    if (s->x) s->out = m->graph ? sn_gmodel_stream_forward(m, s, s->x) : forward(&B, s->x);
    s->g = sn_graph_new(m->ctx);
    if (!s->out || !s->g) {
        st = s->g ? SN_ERR_SHAPE : SN_ERR_NOMEM;
        if (!*sn_last_error()) sn_error(st, "sn_stream_new: could not build the chunk graph");
        goto fail;
    }
    s->out->flags |= SN_FLAG_OUTPUT;
    st = sn_graph_add(s->g, s->out);
    size_t maxs = 0;
    for (int k = 0; k < s->nstate && st == SN_OK; k++) {
        if (!s->state_in[k] || !s->state_out[k]) { st = SN_ERR_SHAPE; break; }
        st = sn_graph_add(s->g, s->state_out[k]);
        if (sn_nelem(s->state_in[k]) != sn_nelem(s->state_out[k]))
            st = sn_error(SN_ERR_INTERNAL, "stream: state %s and its update differ in size", s->state_in[k]->name);
        if ((size_t)sn_nelem(s->state_in[k]) > maxs) maxs = (size_t)sn_nelem(s->state_in[k]);
    }
    if (st == SN_OK) st = sn_ctx_alloc_persistent(m->ctx, m->backend);
    sn_plan_opts po = {.backend = b, .fallback = fallback ? fallback : b};
    if (st == SN_OK) st = sn_plan_new(s->g, &po, &s->plan);
    if (st != SN_OK) goto fail;
    size_t nx = (size_t)sn_nelem(s->x);
    s->xbuf = malloc(nx * sizeof(float));
    s->ybuf = malloc(nx * sizeof(float));
    s->sbuf = malloc((maxs ? maxs : 1) * sizeof(float));
    if (!s->xbuf || !s->ybuf || !s->sbuf) { st = sn_error(SN_ERR_NOMEM, "sn_stream_new: out of host memory"); goto fail; }
    st = sn_stream_reset(s);
    if (st != SN_OK) goto fail;
    *out = s;
    return SN_OK;
fail:
    sn_stream_free(s);
    return st;
}

void sn_stream_free(sn_stream *s) {
    if (!s) return;
    sn_plan_free(s->plan);
    sn_graph_free(s->g);
    free(s->xbuf);
    free(s->ybuf);
    free(s->sbuf);
    free(s);
}

sn_status sn_stream_reset(sn_stream *s) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "sn_stream_reset: stream is NULL");
    for (int k = 0; k < s->nstate; k++) {
        sn_status st = sn_tensor_zero(s->state_in[k]);
        if (st != SN_OK) return st;
    }
    s->chunks = 0;
    return SN_OK;
}

sn_status sn_stream_run(sn_stream *s, const float *x, int n, float *y) {
    if (!s || !x || !y) return sn_error(SN_ERR_INVALID_ARG, "sn_stream_run: stream, x and y are required");
    if (n < 1 || n > s->frames)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stream_run: %d frames given; the chunk holds 1..%d", n, s->frames);
    int64_t F = s->m->cfg.freq_bins, Tc = s->frames;
    const float *in = x;
    if (n < Tc) {
        /* causal model: zero frames after the real ones leave those unchanged */
        memset(s->xbuf, 0, (size_t)(s->batch * Tc * F) * sizeof(float));
        for (int b = 0; b < s->batch; b++)
            memcpy(s->xbuf + b * Tc * F, x + (int64_t)b * n * F, (size_t)(n * F) * sizeof(float));
        in = s->xbuf;
    }
    sn_status st = sn_tensor_set(s->x, in, s->batch * Tc * F);
    if (st == SN_OK) st = sn_plan_run(s->plan);
    if (st != SN_OK) return st;
    if (n < Tc) {
        st = sn_tensor_get(s->out, s->ybuf, s->batch * Tc * F);
        for (int b = 0; b < s->batch && st == SN_OK; b++)
            memcpy(y + (int64_t)b * n * F, s->ybuf + b * Tc * F, (size_t)(n * F) * sizeof(float));
    } else {
        st = sn_tensor_get(s->out, y, s->batch * Tc * F);
    }
    for (int k = 0; k < s->nstate && st == SN_OK; k++) {
        int64_t ne = sn_nelem(s->state_in[k]);
        st = sn_tensor_get(s->state_out[k], s->sbuf, ne);
        if (st == SN_OK) st = sn_tensor_set(s->state_in[k], s->sbuf, ne);
    }
    if (st == SN_OK) s->chunks++;
    return st;
}
