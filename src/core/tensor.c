/* The context that owns tensors, leaf constructors and shape helpers. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sn_ctx *sn_ctx_new(void) { return calloc(1, sizeof(sn_ctx)); }

void sn_ctx_free(sn_ctx *ctx) {
    if (!ctx) return;
    sn_ctx_release_persistent(ctx);
    for (int i = 0; i < ctx->n; i++) free(ctx->t[i]);
    free(ctx->t);
    free(ctx);
}

int sn_ctx_count(const sn_ctx *ctx) { return ctx ? ctx->n : 0; }
sn_tensor *sn_ctx_tensor(const sn_ctx *ctx, int id) { return (ctx && id >= 0 && id < ctx->n) ? ctx->t[id] : NULL; }

static sn_tensor *ctx_push(sn_ctx *ctx) {
    if (ctx->n == ctx->cap) {
        int cap = ctx->cap ? ctx->cap * 2 : 256;
        sn_tensor **t = realloc(ctx->t, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        ctx->t = t;
        ctx->cap = cap;
    }
    sn_tensor *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->id = ctx->n;
    x->node = -1;
    ctx->t[ctx->n++] = x;
    return x;
}

size_t sn_dtype_size(sn_dtype dt) { return dt == SN_F32 ? 4 : 2; }

int64_t sn_nelem(const sn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t sn_nbytes(const sn_tensor *t) { return (size_t)sn_nelem(t) * sn_dtype_size(t->dtype); }

size_t sn_alloc_bytes(const sn_tensor *t) {
    size_t b = (size_t)sn_align64(sn_nelem(t)) * sn_dtype_size(t->dtype);
    return b + ((t->extra + 255) & ~(size_t)255);
}

bool sn_same_shape(const sn_tensor *a, const sn_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *sn_shape_str(const sn_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void sn_set_name(sn_tensor *t, const char *fmt, ...) {
    if (!t) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
}

static bool shape_ok(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > SN_MAX_DIMS) return false;
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return false;
    return true;
}

sn_tensor *sn_new_tensor(sn_ctx *ctx, sn_dtype dt, int ndim, const int64_t *shape, uint32_t flags, const char *name) {
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "sn_new_tensor: ctx is NULL"); return NULL; }
    if (!shape_ok(ndim, shape)) {
        sn_error(SN_ERR_SHAPE, "sn_new_tensor '%s': invalid shape (ndim %d; dims must be positive, at most %d of them)",
                 name ? name : "", ndim, SN_MAX_DIMS);
        return NULL;
    }
    sn_tensor *t = ctx_push(ctx);
    if (!t) { sn_error(SN_ERR_NOMEM, "sn_new_tensor: out of host memory"); return NULL; }
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->flags = flags;
    if (flags & SN_FLAG_PARAM) t->flags |= SN_FLAG_PERSIST;
    if (name) snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

sn_tensor *sn_new_1d(sn_ctx *ctx, int64_t n0, uint32_t flags, const char *name) {
    int64_t s[1] = {n0};
    return sn_new_tensor(ctx, SN_F32, 1, s, flags, name);
}
sn_tensor *sn_new_2d(sn_ctx *ctx, int64_t n0, int64_t n1, uint32_t flags, const char *name) {
    int64_t s[2] = {n0, n1};
    return sn_new_tensor(ctx, SN_F32, 2, s, flags, name);
}
sn_tensor *sn_new_4d(sn_ctx *ctx, int64_t n0, int64_t n1, int64_t n2, int64_t n3, uint32_t flags, const char *name) {
    int64_t s[4] = {n0, n1, n2, n3};
    return sn_new_tensor(ctx, SN_F32, 4, s, flags, name);
}

sn_tensor *sn_new_op(sn_ctx *ctx, sn_op op, int nsrc, sn_tensor **src, int ndim, const int64_t *shape) {
    sn_tensor *t = ctx_push(ctx);
    if (!t) { sn_error(SN_ERR_NOMEM, "%s: out of host memory", sn_op_name(op)); return NULL; }
    t->op = op;
    t->dtype = SN_F32;
    t->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++) t->src[i] = src[i];
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    snprintf(t->name, sizeof t->name, "%s#%d", sn_op_name(op), t->id);
    return t;
}

void sn_alias(sn_tensor *t, sn_tensor *into, int64_t elem_offset) {
    t->view_src = into;
    t->view_offs = (size_t)elem_offset * sn_dtype_size(into->dtype);
}

const char *sn_op_name(sn_op op) {
    static const char *names[SN_OP_COUNT] = {
        [SN_OP_NONE] = "leaf", [SN_OP_VIEW] = "view", [SN_OP_COPY] = "copy",
        [SN_OP_ADD] = "add", [SN_OP_MUL] = "mul", [SN_OP_SCALE] = "scale",
        [SN_OP_REDUCE_TO] = "reduce_to", [SN_OP_EXPAND] = "expand",
        [SN_OP_RELU] = "relu", [SN_OP_ELU] = "elu", [SN_OP_SOFTPLUS] = "softplus",
        [SN_OP_SIGMOID] = "sigmoid", [SN_OP_TANH] = "tanh", [SN_OP_RELU_BWD] = "relu_bwd",
        [SN_OP_ELU_BWD] = "elu_bwd", [SN_OP_SOFTPLUS_BWD] = "softplus_bwd",
        [SN_OP_SIGMOID_BWD] = "sigmoid_bwd", [SN_OP_TANH_BWD] = "tanh_bwd",
        [SN_OP_CONCAT] = "concat", [SN_OP_PAD] = "pad", [SN_OP_SLICE] = "slice", [SN_OP_PERMUTE] = "permute",
        [SN_OP_MATMUL] = "matmul", [SN_OP_LINEAR] = "linear", [SN_OP_BIAS_GRAD] = "bias_grad",
        [SN_OP_CONV2D] = "conv2d", [SN_OP_CONV2D_BWD_DATA] = "conv2d_bwd_data",
        [SN_OP_CONV2D_BWD_W] = "conv2d_bwd_w", [SN_OP_CONVT2D] = "conv_transpose2d",
        [SN_OP_CONVT2D_BWD_DATA] = "conv_transpose2d_bwd_data", [SN_OP_CONVT2D_BWD_W] = "conv_transpose2d_bwd_w",
        [SN_OP_BATCHNORM] = "batchnorm2d", [SN_OP_BATCHNORM_BWD] = "batchnorm2d_bwd",
        [SN_OP_LAYERNORM] = "layernorm", [SN_OP_LAYERNORM_BWD] = "layernorm_bwd",
        [SN_OP_SOFTMAX] = "softmax", [SN_OP_SOFTMAX_BWD] = "softmax_bwd",
        [SN_OP_LSTM] = "lstm", [SN_OP_LSTM_BWD] = "lstm_bwd", [SN_OP_GRU] = "gru", [SN_OP_GRU_BWD] = "gru_bwd", [SN_OP_RNN_STATE] = "rnn_state",
        [SN_OP_ATTENTION] = "attention", [SN_OP_ATTENTION_BWD] = "attention_bwd",
        [SN_OP_MSE] = "mse_loss", [SN_OP_MSE_BWD] = "mse_loss_bwd", [SN_OP_L1] = "l1_loss",
        [SN_OP_L1_BWD] = "l1_loss_bwd", [SN_OP_SUM] = "sum", [SN_OP_MEAN] = "mean", [SN_OP_SUMSQ] = "sumsq",
        [SN_OP_ADAM] = "adam", [SN_OP_SGD] = "sgd", [SN_OP_ADAM_MT] = "adam_multi", [SN_OP_SGD_MT] = "sgd_multi",
    };
    if ((int)op < 0 || op >= SN_OP_COUNT || !names[op]) return "unknown_op";
    return names[op];
}

sn_op_family sn_op_family_of(sn_op op) {
    switch (op) {
    case SN_OP_COPY: case SN_OP_CONCAT: case SN_OP_PAD: case SN_OP_SLICE: case SN_OP_PERMUTE:
        return SN_FAM_SHAPE;
    case SN_OP_ADD: case SN_OP_MUL: case SN_OP_SCALE: case SN_OP_REDUCE_TO: case SN_OP_EXPAND:
        return SN_FAM_BINARY;
    case SN_OP_RELU: case SN_OP_ELU: case SN_OP_SOFTPLUS: case SN_OP_SIGMOID: case SN_OP_TANH:
    case SN_OP_RELU_BWD: case SN_OP_ELU_BWD: case SN_OP_SOFTPLUS_BWD: case SN_OP_SIGMOID_BWD: case SN_OP_TANH_BWD:
        return SN_FAM_UNARY;
    case SN_OP_MATMUL: case SN_OP_LINEAR: case SN_OP_BIAS_GRAD:
        return SN_FAM_MATMUL;
    case SN_OP_CONV2D: case SN_OP_CONV2D_BWD_DATA: case SN_OP_CONV2D_BWD_W:
    case SN_OP_CONVT2D: case SN_OP_CONVT2D_BWD_DATA: case SN_OP_CONVT2D_BWD_W:
        return SN_FAM_CONV;
    case SN_OP_BATCHNORM: case SN_OP_BATCHNORM_BWD:
        return SN_FAM_BATCHNORM;
    case SN_OP_LAYERNORM: case SN_OP_LAYERNORM_BWD: case SN_OP_SOFTMAX: case SN_OP_SOFTMAX_BWD:
        return SN_FAM_NORM;
    case SN_OP_LSTM: case SN_OP_LSTM_BWD: case SN_OP_GRU: case SN_OP_GRU_BWD: case SN_OP_RNN_STATE:
        return SN_FAM_RNN;
    case SN_OP_ATTENTION: case SN_OP_ATTENTION_BWD:
        return SN_FAM_ATTENTION;
    case SN_OP_MSE: case SN_OP_MSE_BWD: case SN_OP_L1: case SN_OP_L1_BWD: case SN_OP_SUM: case SN_OP_MEAN:
    case SN_OP_SUMSQ:
        return SN_FAM_LOSS;
    case SN_OP_ADAM: case SN_OP_SGD: case SN_OP_ADAM_MT: case SN_OP_SGD_MT:
        return SN_FAM_OPTIM;
    default:
        return SN_FAM_NONE;
    }
}

bool sn_op_writes_src(const sn_tensor *node, int i) {
    switch (node->op) {
    case SN_OP_BATCHNORM: return node->ip[0] && (i == 3 || i == 4);
    case SN_OP_ADAM: return i == 0 || i == 2 || i == 3;
    case SN_OP_SGD: return i == 0 || i == 2;
    case SN_OP_ADAM_MT: return i == 1 || i == 2 || (i >= 3 + node->ip[1] && (i - 3 - node->ip[1]) % 2 == 0);
    case SN_OP_SGD_MT: return i == 1 || (i >= 2 + node->ip[1] && (i - 2 - node->ip[1]) % 2 == 0);
    default: return false;
    }
}

/* ---- saved-state layouts ---- */
int64_t sn_packed_offset(const int64_t *sizes, int i) {
    int64_t o = 0;
    for (int k = 0; k < i; k++) o += sn_align64(sizes[k]);
    return o;
}

int64_t sn_rnn_grad_offset(int gates, int64_t B, int64_t T, int64_t I, int64_t H, int layers, int seg) {
    int64_t G = gates * H, o = 0;
    for (int k = 0; k < seg; k++) {
        int l = (k - 1) / 4, part = (k - 1) % 4;
        int64_t n = k == 0 ? B * T * I : part == 0 ? G * (l == 0 ? I : H) : part == 1 ? G * H : G;
        o += sn_align64(n);
    }
    return o;
}

/* The last layer keeps no h block: its h is the node's output (sn_rnn_h). */
static int64_t rnn_extra_offset(int64_t G, int64_t B, int64_t T, int64_t H, int layer, int part) {
    int64_t per = sn_align64(B * T * G * H) + 2 * sn_align64(B * T * H);
    int64_t o = per * layer;
    if (part >= 1) o += sn_align64(B * T * G * H);
    if (part >= 2) o += sn_align64(B * T * H);
    return o;
}

int64_t sn_lstm_extra_offset(int64_t B, int64_t T, int64_t H, int layer, int part) {
    return rnn_extra_offset(4, B, T, H, layer, part);
}
int64_t sn_lstm_extra_elems(int64_t B, int64_t T, int64_t H, int layers) {
    return rnn_extra_offset(4, B, T, H, layers - 1, 2);
}

int64_t sn_gru_extra_offset(int64_t B, int64_t T, int64_t H, int layer, int part) {
    return rnn_extra_offset(3, B, T, H, layer, part);
}
int64_t sn_gru_extra_elems(int64_t B, int64_t T, int64_t H, int layers) {
    return rnn_extra_offset(3, B, T, H, layers - 1, 2);
}

float *sn_rnn_h(const sn_tensor *rnn, int layer) {
    int64_t B = rnn->shape[0], T = rnn->shape[1], H = rnn->shape[2];
    if (layer >= rnn->ip[0] - 1) return (float *)rnn->data;
    return sn_extra_ptr(rnn) + rnn_extra_offset(rnn->op == SN_OP_GRU ? 3 : 4, B, T, H, layer, 2);
}

int64_t sn_rnn_bwd_scratch_offset(bool lstm, int64_t B, int64_t T, int64_t H, int layers, int part) {
    int64_t BT = B * T, G = (lstm ? 4 : 3) * H;
    int64_t sizes[4] = {lstm ? 0 : BT * G, layers > 1 ? BT * H : 0, B * H, lstm ? B * H : 0};
    return sn_packed_offset(sizes, part);
}
int64_t sn_rnn_bwd_scratch_elems(bool lstm, int64_t B, int64_t T, int64_t H, int layers) {
    return sn_rnn_bwd_scratch_offset(lstm, B, T, H, layers, 4);
}

int64_t sn_attention_extra_offset(int64_t B, int64_t T, int64_t E, int heads, int part) {
    int64_t sizes[5] = {B * T * E, B * T * E, B * T * E, B * heads * T * T, B * T * E};
    return sn_packed_offset(sizes, part);
}
int64_t sn_attention_extra_elems(int64_t B, int64_t T, int64_t E, int heads) {
    return sn_attention_extra_offset(B, T, E, heads, 5);
}
