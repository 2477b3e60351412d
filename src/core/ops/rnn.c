/* Recurrent ops: LSTM and GRU over a whole batch-first sequence (PyTorch layouts),
 * their shape checks and gradients (one fused *_BWD op with a packed output). */
#include "sinter/tensor.h"
#include "core/core.h"

#include <string.h>

/* Checks x[B,T,I] and the per-layer weights; gates = 4 (LSTM) or 3 (GRU). */
static sn_tensor *rnn_new(sn_ctx *ctx, sn_op op, const char *name, int gates, sn_tensor *x, int layers, int hidden,
                          sn_tensor **w) {
    if (!x) {
        if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "%s: input is NULL", name);
        return NULL;
    }
    if (x->ndim != 3)
        return sn_shape_fail(name, x, NULL, "input must be [batch, time, features] (batch_first), it has %d dims",
                             x->ndim);
    if (layers < 1 || 3 + 4 * layers > SN_MAX_SRC) {
        sn_error(SN_ERR_INVALID_ARG, "%s: %d layers; one op holds 1 to %d layers (stack ops for more)", name, layers,
                 (SN_MAX_SRC - 3) / 4);
        return NULL;
    }
    if (hidden < 1) {
        sn_error(SN_ERR_INVALID_ARG, "%s: hidden size %d must be positive", name, hidden);
        return NULL;
    }
    if (!w) {
        sn_error(SN_ERR_INVALID_ARG, "%s: weight array is NULL (need %d tensors)", name, 4 * layers);
        return NULL;
    }
    int64_t G = (int64_t)gates * hidden;
    static const char *wn[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int l = 0; l < layers; l++) {
        int64_t in = l == 0 ? x->shape[2] : hidden;
        for (int k = 0; k < 4; k++) {
            sn_tensor *t = w[4 * l + k];
            if (!t) {
                if (!sn_last_error()[0])
                    sn_error(SN_ERR_INVALID_ARG, "%s: %s_l%d (weight %d of %d) is NULL", name, wn[k], l, 4 * l + k,
                             4 * layers);
                return NULL;
            }
            int64_t r0 = G, r1 = k == 0 ? in : hidden;
            bool ok = k < 2 ? (t->ndim == 2 && t->shape[0] == r0 && t->shape[1] == r1)
                            : (t->ndim == 1 && t->shape[0] == r0);
            if (!ok) {
                if (k < 2)
                    return sn_shape_fail(name, x, t, "%s_l%d must be [%lld,%lld] (%d*hidden, %s)", wn[k], l,
                                         (long long)r0, (long long)r1, gates, k == 0 ? "layer input" : "hidden");
                return sn_shape_fail(name, x, t, "%s_l%d must be [%lld] (%d*hidden)", wn[k], l, (long long)r0, gates);
            }
        }
    }
    sn_tensor *src[SN_MAX_SRC];
    src[0] = x;
    for (int i = 0; i < 4 * layers; i++) src[1 + i] = w[i];
    int64_t shape[3] = {x->shape[0], x->shape[1], hidden};
    sn_tensor *t = sn_new_op(ctx, op, 1 + 4 * layers, src, 3, shape);
    if (!t) return NULL;
    t->ip[0] = layers;
    t->ip[1] = hidden;
    int64_t B = x->shape[0], T = x->shape[1];
    int64_t e = op == SN_OP_LSTM ? sn_lstm_extra_elems(B, T, hidden, layers) : sn_gru_extra_elems(B, T, hidden, layers);
    t->extra = (size_t)e * sizeof(float);
    return t;
}

/* Appends the initial state srcs ([layers,B,H] each) to a fresh LSTM/GRU node. */
static sn_tensor *with_state(sn_tensor *t, const char *name, int n, sn_tensor **st) {
    if (!t) return NULL;
    int64_t want[3] = {t->ip[0], t->shape[0], t->ip[1]};
    for (int k = 0; k < n; k++) {
        sn_tensor *s = st[k];
        if (!s) {
            if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "%s: initial state %d is NULL", name, k);
            return NULL;
        }
        if (s->ndim != 3 || s->shape[0] != want[0] || s->shape[1] != want[1] || s->shape[2] != want[2])
            return sn_shape_fail(name, t->src[0], s, "initial state must be [layers=%lld, batch=%lld, hidden=%lld]",
                                 (long long)want[0], (long long)want[1], (long long)want[2]);
        t->src[t->nsrc++] = s;
    }
    t->ip[2] = 1;
    return t;
}

sn_tensor *sn_lstm_state(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w, sn_tensor *h0,
                         sn_tensor *c0) {
    sn_tensor *st[2] = {h0, c0};
    return with_state(rnn_new(ctx, SN_OP_LSTM, "lstm", 4, x, layers, hidden, w), "lstm", 2, st);
}

sn_tensor *sn_gru_state(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w, sn_tensor *h0) {
    return with_state(rnn_new(ctx, SN_OP_GRU, "gru", 3, x, layers, hidden, w), "gru", 1, &h0);
}

sn_tensor *sn_rnn_final_state(sn_ctx *ctx, sn_tensor *rnn, int which) {
    SN_NONNULL(rnn);
    if (rnn->op != SN_OP_LSTM && rnn->op != SN_OP_GRU)
        return sn_shape_fail("rnn_state", rnn, NULL, "needs an lstm or gru node, got %s", sn_op_name(rnn->op));
    if (which < 0 || which > (rnn->op == SN_OP_LSTM ? 1 : 0)) {
        sn_error(SN_ERR_INVALID_ARG, "rnn_state: which = %d (0 = h%s)", which, rnn->op == SN_OP_LSTM ? ", 1 = c" : "");
        return NULL;
    }
    int64_t shape[3] = {rnn->ip[0], rnn->shape[0], rnn->ip[1]};
    sn_tensor *t = sn_new_op(ctx, SN_OP_RNN_STATE, 1, &rnn, 3, shape);
    if (t) t->ip[0] = which;
    return t;
}

sn_tensor *sn_lstm(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w) {
    return rnn_new(ctx, SN_OP_LSTM, "lstm", 4, x, layers, hidden, w);
}

sn_tensor *sn_gru(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w) {
    return rnn_new(ctx, SN_OP_GRU, "gru", 3, x, layers, hidden, w);
}

/* segment seg of the node's packed gradient (sn_rnn_grad_offset) */
static int64_t grad_offset(const sn_tensor *node, int seg) {
    const sn_tensor *x = node->src[0];
    return sn_rnn_grad_offset(node->op == SN_OP_LSTM ? 4 : 3, x->shape[0], x->shape[1], x->shape[2], node->ip[1],
                              node->ip[0], seg);
}

sn_status sn_grad_rnn(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    if (node->op != SN_OP_LSTM && node->op != SN_OP_GRU)
        return sn_error(SN_ERR_INTERNAL, "sn_grad_rnn: op %s has no gradient here", sn_op_name(node->op));
    bool any = false;
    for (int i = 0; i < node->nsrc; i++) any |= sn_needs_grad(node->src[i]);
    if (!any) return SN_OK;
    if (node->ip[2])
        return sn_error(SN_ERR_UNSUPPORTED, "%s with an initial state (streaming) has no gradient; train with "
                        "whole sequences", sn_op_name(node->op));
    sn_tensor *src[SN_MAX_SRC];
    src[0] = dy;
    src[1] = node->src[0];
    src[2] = node;
    for (int i = 1; i < node->nsrc; i++) src[2 + i] = node->src[i];
    int64_t total = grad_offset(node, 1 + 4 * node->ip[0]);
    sn_tensor *bwd = sn_new_op(ctx, node->op == SN_OP_LSTM ? SN_OP_LSTM_BWD : SN_OP_GRU_BWD, 2 + node->nsrc, src, 1,
                               &total);
    if (!bwd) return sn_error_prefix(SN_ERR_NOMEM, "%s gradient", sn_op_name(node->op));
    bwd->ip[0] = node->ip[0];
    bwd->ip[1] = node->ip[1];
    bwd->ip[2] = sn_needs_grad(node->src[0]); /* 0: the kernel may skip dx */
    /* scratch from the planner (tensor.h: sn_rnn_bwd_scratch_offset) */
    bwd->extra = (size_t)sn_rnn_bwd_scratch_elems(node->op == SN_OP_LSTM, node->shape[0], node->shape[1],
                                                  node->ip[1], node->ip[0]) * sizeof(float);
    for (int i = 0; i < node->nsrc; i++) {
        if (!sn_needs_grad(node->src[i])) continue;
        const sn_tensor *s = node->src[i];
        dsrc[i] = sn_view(ctx, bwd, s->ndim, s->shape, grad_offset(node, i));
        if (!dsrc[i]) return sn_error_prefix(SN_ERR_NOMEM, "%s gradient", sn_op_name(node->op));
    }
    return SN_OK;
}
