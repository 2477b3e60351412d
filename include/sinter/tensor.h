/* Tensors, the context that owns them, and the op constructors that build a graph.
 *
 * Every op constructor checks its inputs and infers the output shape. On error it
 * returns NULL and sets sn_last_error(); an op given a NULL input returns NULL
 * without touching the message, so a chain of ops reports the first failure. */
#ifndef SINTER_TENSOR_H
#define SINTER_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_MAX_DIMS 6
#define SN_MAX_SRC 36
#define SN_MAX_IPARAMS 20
#define SN_MAX_FPARAMS 8
#define SN_NAME_LEN 96

typedef enum sn_dtype { SN_F32 = 0, SN_BF16, SN_F16 } sn_dtype;

/* Forward ops, their gradient ops and the update ops. Semantics in docs/ops.md
 * and beside each constructor below; layouts are PyTorch's. */
typedef enum sn_op {
    SN_OP_NONE = 0,   /* leaf: parameter, input, state */
    SN_OP_VIEW,       /* reshape / sub-range: shares src0's memory at ip[0] elements offset */
    SN_OP_COPY,       /* y = src0 (also used for device transfers) */
    /* binary (numpy broadcasting of b onto a; out shape = a's shape) */
    SN_OP_ADD,        /* y = a + b */
    SN_OP_MUL,        /* y = a * b */
    SN_OP_SCALE,      /* y = a * fp[0] */
    SN_OP_REDUCE_TO,  /* y[shape] = sum of src0 over the broadcast dims (inverse of broadcasting) */
    SN_OP_EXPAND,     /* y[shape] = src0[0] * fp[0] (src0 has one element) */
    /* unary */
    SN_OP_RELU, SN_OP_ELU /* fp0 alpha */, SN_OP_SOFTPLUS /* fp0 beta, fp1 threshold */,
    SN_OP_SIGMOID, SN_OP_TANH,
    SN_OP_RELU_BWD,     /* (dy, y) */
    SN_OP_ELU_BWD,      /* (dy, y): y>0 ? dy : dy*(y+alpha) */
    SN_OP_SOFTPLUS_BWD, /* (dy, x); ip0 = 1: (dy, y), from the output: dy*-expm1(-beta*y) */
    SN_OP_SIGMOID_BWD,  /* (dy, y) */
    SN_OP_TANH_BWD,     /* (dy, y) */
    /* shape */
    SN_OP_CONCAT,     /* srcs concatenated along ip[0] */
    SN_OP_PAD,        /* zero pad: ip[2d] before, ip[2d+1] after, for dim d */
    SN_OP_SLICE,      /* y = src0[start_d : start_d + shape_d], start in ip[d] */
    SN_OP_PERMUTE,    /* y dim d = src dim ip[d] */
    /* matmul */
    SN_OP_MATMUL,     /* a[..,M,K] (ip0: a transposed) @ b[..,K,N] (ip1: b transposed); batch dims equal, or b 2-D */
    SN_OP_LINEAR,     /* x[..,K] @ W[N,K]^T + b[N] (b optional); act epilogue: SN_IP_ACT */
    SN_OP_BIAS_GRAD,  /* db[C] = sum of dy over all dims but ip[0] */
    /* conv */
    SN_OP_CONV2D,          /* x[N,C,H,W], w[K,C,kh,kw], b[K]?; ip: sh sw ph pw (padding before: top, left),
                              ip[6],ip[7] padding after (bottom, right; = ph, pw when symmetric);
                              act epilogue: SN_IP_ACT */
    SN_OP_CONV2D_BWD_DATA, /* (dy, w) -> dx; ip as fwd (0..3, 6, 7) + ip[4],ip[5] = H,W of x */
    SN_OP_CONV2D_BWD_W,    /* (dy, x) -> dw; ip as fwd (0..3, 6, 7) */
    SN_OP_CONVT2D,         /* x[N,C,H,W], w[C,K,kh,kw], b[K]?; ip: sh sw ph pw oph opw, ip[6],ip[7] rows/cols
                              cropped off the end of the output (after ph/pw/oph/opw); act epilogue: SN_IP_ACT */
    SN_OP_CONVT2D_BWD_DATA,/* (dy, w) -> dx; ip as fwd (0..7); dy has the cropped shape */
    SN_OP_CONVT2D_BWD_W,   /* (dy, x) -> dw; ip as fwd (0..7) */
    /* normalisation */
    SN_OP_BATCHNORM,  /* x[N,C,H,W], gamma, beta, running_mean, running_var; ip0 training;
                         fp0 eps, fp1 momentum. Training updates the running stats in place.
                         ip1 = 1: fused ELU epilogue, y = ELU(BN(x)) with alpha fp2.
                         extra: mean[C], invstd[C] of the statistics used. */
    SN_OP_BATCHNORM_BWD, /* (dy, x, y_fwd, gamma) -> packed [dx | dgamma | dbeta]; ip1/fp2 as fwd:
                            with ip1 = 1 dy is w.r.t. the ELU output and y_fwd's data is read */
    SN_OP_LAYERNORM,  /* x[..,E], gamma[E], beta[E]; fp0 eps. extra: mean[M], rstd[M] */
    SN_OP_LAYERNORM_BWD, /* (dy, x, y_fwd, gamma) -> packed [dx | dgamma | dbeta] */
    SN_OP_SOFTMAX,    /* over the last dim */
    SN_OP_SOFTMAX_BWD,/* (dy, y) */
    /* recurrent (batch-first, whole sequence, PyTorch layouts) */
    SN_OP_LSTM,       /* x[B,T,I], then per layer w_ih[4H,in], w_hh[4H,H], b_ih[4H], b_hh[4H];
                         ip0 layers, ip1 hidden. extra: see sn_lstm_extra_offset */
    SN_OP_LSTM_BWD,   /* (dy, x, y_fwd, weights...) -> packed [dx | per layer dw_ih, dw_hh, db_ih, db_hh];
                         extra: scratch, see sn_rnn_bwd_scratch_offset */
    SN_OP_GRU,        /* as LSTM with 3H gates (r,z,n) */
    SN_OP_GRU_BWD,
    SN_OP_RNN_STATE,  /* (rnn node) -> [layers,B,H] last-timestep h (ip0 = 0) or c (ip0 = 1, LSTM) */
    /* attention: causal multi-head self-attention, nn.MultiheadAttention layout */
    SN_OP_ATTENTION,  /* x[B,T,E], in_w[3E,E], in_b[3E], out_w[E,E], out_b[E]; ip0 heads, ip1 causal */
    SN_OP_ATTENTION_BWD, /* (dy, x, y_fwd, in_w, in_b, out_w, out_b) -> packed [dx | d in_w | d in_b | d out_w | d out_b] */
    /* losses and reductions (scalar outputs have shape [1]) */
    SN_OP_MSE,        /* mean((a-b)^2) */
    SN_OP_MSE_BWD,    /* (dl, a, b) -> da = dl*2(a-b)/n */
    SN_OP_L1,         /* mean(|a-b|) */
    SN_OP_L1_BWD,     /* (dl, a, b) -> da = dl*sign(a-b)/n */
    SN_OP_SUM,        /* sum of all elements */
    SN_OP_MEAN,       /* mean of all elements */
    SN_OP_SUMSQ,      /* sum of squares of all elements of all srcs */
    /* optimizer updates: modify src0 (param) and the state srcs in place; output is a [1] token */
    SN_OP_ADAM,       /* (param, grad, m, v, hyper, sumsq?) ip0: adamw; fp: b1 b2 eps wd max_norm */
    SN_OP_SGD,        /* (param, grad, buf, hyper, sumsq?) fp: momentum, dampening, wd, max_norm, ip0 nesterov */
    /* multi-tensor updates: up to SN_OPTIM_MT_MAX params, all views of one flat buffer;
     * the state tensors are flat over that buffer (a param's state at its offset) */
    SN_OP_ADAM_MT,    /* (hyper, m, v, sumsq?, p0, g0, p1, g1, ..); ip0 adamw, ip1 has sumsq, ip[2+i] param i's
                       * offset in the flat buffer (elements); fp as ADAM */
    SN_OP_SGD_MT,     /* (hyper, buf, sumsq?, p0, g0, ..); ip0 nesterov, ip1 has sumsq, ip[2+i] as ADAM_MT; fp as SGD */
    SN_OP_COUNT
} sn_op;

/* Activation epilogue of LINEAR, CONV2D and CONVT2D: y = act(op(x) + b), with the bias
 * and the activation applied in one pass over the output. The act is ip[SN_IP_ACT] (a
 * slot none of these ops or their *_BWD ops uses; 0 = none), its parameters
 * fp[SN_FP_ACT] and fp[SN_FP_ACT + 1]: ELU alpha; softplus beta, threshold. The
 * backward applies act' from the output y (RELU/ELU/SIGMOID/TANH_BWD, SOFTPLUS_BWD ip0 1). */
typedef enum sn_act { SN_ACT_NONE = 0, SN_ACT_RELU, SN_ACT_ELU, SN_ACT_SOFTPLUS, SN_ACT_SIGMOID, SN_ACT_TANH,
                      SN_ACT_COUNT } sn_act;
#define SN_IP_ACT (SN_MAX_IPARAMS - 1)
#define SN_FP_ACT (SN_MAX_FPARAMS - 2)

/* Op families: one source file per family per layer (src/core/ops/<family>.c,
 * src/backends/<backend>/<family>.c|cu, tests/core/test_<family>.c); backends and
 * autodiff dispatch on it. SN_FAM_NONE: leaves and views (nothing to run). */
typedef enum sn_op_family {
    SN_FAM_NONE = 0, SN_FAM_SHAPE, SN_FAM_BINARY, SN_FAM_UNARY, SN_FAM_MATMUL, SN_FAM_CONV, SN_FAM_BATCHNORM,
    SN_FAM_NORM, SN_FAM_RNN, SN_FAM_ATTENTION, SN_FAM_LOSS, SN_FAM_OPTIM, SN_FAM_COUNT
} sn_op_family;
sn_op_family sn_op_family_of(sn_op op);

/* The hyper tensor of an optimizer op holds [lr, bias_correction1, bias_correction2, step]
 * and is written by the host before each step. */
#define SN_HYPER_LR 0
#define SN_HYPER_BC1 1
#define SN_HYPER_BC2 2
#define SN_HYPER_STEP 3
#define SN_HYPER_N 4

enum {
    SN_FLAG_PARAM = 1 << 0,      /* trainable: gets a gradient */
    SN_FLAG_PERSIST = 1 << 1,    /* lives across steps (params, optimizer state, BN stats, inputs) */
    SN_FLAG_INPUT = 1 << 2,      /* uploaded by the host each step */
    SN_FLAG_OUTPUT = 1 << 3,     /* read back by the host: kept alive to the end */
    SN_FLAG_GRAD = 1 << 4,       /* a gradient */
};

typedef struct sn_backend sn_backend;

typedef struct sn_tensor {
    int id;
    sn_dtype dtype;
    int ndim;
    int64_t shape[SN_MAX_DIMS];
    sn_op op;
    int nsrc;
    struct sn_tensor *src[SN_MAX_SRC];
    int32_t ip[SN_MAX_IPARAMS];
    float fp[SN_MAX_FPARAMS];
    uint32_t flags;
    size_t extra;                 /* bytes saved for the backward pass, after the data (aligned) */
    struct sn_tensor *view_src;   /* SN_OP_VIEW: the tensor whose memory this one shares */
    size_t view_offs;             /* bytes into view_src */
    struct sn_tensor *grad;       /* set by sn_backward for params and the tensors it reaches */
    char name[SN_NAME_LEN];
    /* placement, filled by the planner */
    sn_backend *backend;
    void *data;                   /* host or device address of element 0 */
    int node;                     /* position in the executed order, -1 if none */
} sn_tensor;

typedef struct sn_ctx sn_ctx;

sn_ctx *sn_ctx_new(void);
void sn_ctx_free(sn_ctx *ctx);
int sn_ctx_count(const sn_ctx *ctx);
sn_tensor *sn_ctx_tensor(const sn_ctx *ctx, int id);

/* A leaf tensor (a parameter, an input, state). */
sn_tensor *sn_new_tensor(sn_ctx *ctx, sn_dtype dt, int ndim, const int64_t *shape, uint32_t flags, const char *name);
sn_tensor *sn_new_1d(sn_ctx *ctx, int64_t n0, uint32_t flags, const char *name);
sn_tensor *sn_new_2d(sn_ctx *ctx, int64_t n0, int64_t n1, uint32_t flags, const char *name);
sn_tensor *sn_new_4d(sn_ctx *ctx, int64_t n0, int64_t n1, int64_t n2, int64_t n3, uint32_t flags, const char *name);
void sn_set_name(sn_tensor *t, const char *fmt, ...);

int64_t sn_nelem(const sn_tensor *t);
size_t sn_nbytes(const sn_tensor *t);          /* data only */
size_t sn_alloc_bytes(const sn_tensor *t);     /* data + extra, aligned */
size_t sn_dtype_size(sn_dtype dt);
bool sn_same_shape(const sn_tensor *a, const sn_tensor *b);
/* "[4,1,400,161]" into buf */
const char *sn_shape_str(const sn_tensor *t, char *buf, size_t n);
const char *sn_op_name(sn_op op);

/* Element offsets inside packed outputs and extras are aligned to 64 elements. */
static inline int64_t sn_align64(int64_t n) { return (n + 63) & ~(int64_t)63; }
/* Pointer to the saved region of a forward node (f32 elements). */
static inline float *sn_extra_ptr(const sn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return (float *)t->data + sn_align64(n);
}

/* ---- op constructors ---- */
sn_tensor *sn_view(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape, int64_t elem_offset);
sn_tensor *sn_reshape(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape);
sn_tensor *sn_copy(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_add(sn_ctx *ctx, sn_tensor *a, sn_tensor *b);
sn_tensor *sn_mul(sn_ctx *ctx, sn_tensor *a, sn_tensor *b);
sn_tensor *sn_scale(sn_ctx *ctx, sn_tensor *a, float s);
sn_tensor *sn_reduce_to(sn_ctx *ctx, sn_tensor *a, int ndim, const int64_t *shape);
sn_tensor *sn_expand(sn_ctx *ctx, sn_tensor *scalar, int ndim, const int64_t *shape, float s);
sn_tensor *sn_relu(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_elu(sn_ctx *ctx, sn_tensor *a, float alpha);
sn_tensor *sn_softplus(sn_ctx *ctx, sn_tensor *a, float beta, float threshold);
sn_tensor *sn_sigmoid(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_tanh(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_concat(sn_ctx *ctx, int n, sn_tensor **srcs, int axis);
/* pads[2d], pads[2d+1]: zeros before/after dim d (ndim*2 values) */
sn_tensor *sn_pad(sn_ctx *ctx, sn_tensor *a, const int *pads);
sn_tensor *sn_slice(sn_ctx *ctx, sn_tensor *a, const int64_t *start, const int64_t *shape);
sn_tensor *sn_permute(sn_ctx *ctx, sn_tensor *a, const int *perm);
sn_tensor *sn_matmul(sn_ctx *ctx, sn_tensor *a, sn_tensor *b, bool trans_a, bool trans_b);
sn_tensor *sn_linear(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b /* may be NULL */);
sn_tensor *sn_conv2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw);
sn_tensor *sn_conv_transpose2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw,
                               int ph, int pw, int oph, int opw);
/* The same with a fused activation epilogue, act(y) (see sn_act): p0/p1 are ELU's alpha
 * or softplus's beta/threshold, as sn_elu/sn_softplus take them (ignored otherwise).
 * The backward reads only y, so a fused softplus has a gradient only for threshold >= 17
 * (below, y near the threshold does not tell its two sides apart). */
sn_tensor *sn_linear_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, sn_act act, float p0, float p1);
sn_tensor *sn_conv2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw,
                         sn_act act, float p0, float p1);
sn_tensor *sn_conv_transpose2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph,
                                   int pw, int oph, int opw, sn_act act, float p0, float p1);
/* conv2d with asymmetric zero padding: pad_top/pad_bottom rows before/after in height,
 * pad_left/pad_right columns before/after in width (sn_pad then sn_conv2d, as one op);
 * output height (H + pad_top + pad_bottom - kh)/sh + 1, width likewise. */
sn_tensor *sn_conv2d_pad(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int pad_top,
                         int pad_bottom, int pad_left, int pad_right, sn_act act, float p0, float p1);
/* conv_transpose2d whose output loses its last crop_bottom rows and crop_right columns
 * (sn_conv_transpose2d_act then sn_slice, as one op; the activation applies to what is kept). */
sn_tensor *sn_conv_transpose2d_crop(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph,
                                    int pw, int oph, int opw, int crop_bottom, int crop_right, sn_act act, float p0,
                                    float p1);
sn_tensor *sn_batchnorm2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, sn_tensor *rmean,
                          sn_tensor *rvar, bool training, float eps, float momentum);
/* ELU(batchnorm2d(x)) as one op (alpha > 0) */
sn_tensor *sn_batchnorm2d_elu(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, sn_tensor *rmean,
                              sn_tensor *rvar, bool training, float eps, float momentum, float alpha);
sn_tensor *sn_layernorm(sn_ctx *ctx, sn_tensor *x, sn_tensor *gamma, sn_tensor *beta, float eps);
sn_tensor *sn_softmax(sn_ctx *ctx, sn_tensor *x);
/* w: layers*4 tensors in order w_ih, w_hh, b_ih, b_hh per layer */
sn_tensor *sn_lstm(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w);
sn_tensor *sn_gru(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w);
/* Streaming variants: the initial state h0 (and c0 for the LSTM), [layers,B,H], is
 * appended to the srcs after the weights and ip[2] = 1. No gradient (inference). */
sn_tensor *sn_lstm_state(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w, sn_tensor *h0,
                         sn_tensor *c0);
sn_tensor *sn_gru_state(sn_ctx *ctx, sn_tensor *x, int layers, int hidden, sn_tensor **w, sn_tensor *h0);
/* The state after the last timestep of an LSTM/GRU node: which 0 = h, 1 = c (LSTM). */
sn_tensor *sn_rnn_final_state(sn_ctx *ctx, sn_tensor *rnn, int which);
sn_tensor *sn_attention(sn_ctx *ctx, sn_tensor *x, sn_tensor *in_w, sn_tensor *in_b, sn_tensor *out_w,
                        sn_tensor *out_b, int heads, bool causal);
sn_tensor *sn_mse(sn_ctx *ctx, sn_tensor *a, sn_tensor *b);
sn_tensor *sn_l1(sn_ctx *ctx, sn_tensor *a, sn_tensor *b);
sn_tensor *sn_sum(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_mean(sn_ctx *ctx, sn_tensor *a);
sn_tensor *sn_sumsq(sn_ctx *ctx, int n, sn_tensor **srcs);
/* Optimizer updates (PyTorch semantics), in place on param and state; hyper is a
 * persistent [SN_HYPER_N] tensor the host writes each step; sumsq (may be NULL) is
 * the squared global gradient norm: when max_norm > 0 the gradient is scaled by
 * min(1, max_norm / (sqrt(sumsq) + 1e-6)) first, as torch.nn.utils.clip_grad_norm_. */
sn_tensor *sn_adam(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *m, sn_tensor *v, sn_tensor *hyper,
                   sn_tensor *sumsq, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                   bool adamw);
sn_tensor *sn_sgd(sn_ctx *ctx, sn_tensor *param, sn_tensor *grad, sn_tensor *buf, sn_tensor *hyper,
                  sn_tensor *sumsq, float momentum, float dampening, float weight_decay, float max_norm,
                  bool nesterov);
/* Multi-tensor forms: one op updates n <= SN_OPTIM_MT_MAX params. Each params[i] is a
 * view of the same flat buffer; m, v and buf are flat state of that buffer's size. */
#define SN_OPTIM_MT_MAX 16 /* ip[2 + i] holds param i's offset */
sn_tensor *sn_adam_multi(sn_ctx *ctx, int n, sn_tensor **params, sn_tensor **grads, sn_tensor *m, sn_tensor *v,
                         sn_tensor *hyper, sn_tensor *sumsq, float beta1, float beta2, float eps, float weight_decay,
                         float max_norm, bool adamw);
sn_tensor *sn_sgd_multi(sn_ctx *ctx, int n, sn_tensor **params, sn_tensor **grads, sn_tensor *buf, sn_tensor *hyper,
                        sn_tensor *sumsq, float momentum, float dampening, float weight_decay, float max_norm,
                        bool nesterov);
/* Does node write src i in place (optimizer state, BN running stats)? */
bool sn_op_writes_src(const sn_tensor *node, int i);

/* Low-level: a node with the given op, srcs and output shape (no checks). Used by
 * autodiff and the scheduler; ops use the checked constructors above. */
sn_tensor *sn_new_op(sn_ctx *ctx, sn_op op, int nsrc, sn_tensor **src, int ndim, const int64_t *shape);

/* ---- saved-state layouts shared by every backend (f32 element offsets) ---- */
/* LSTM extra, per layer l (each block aligned): gates [B,T,4H] (activated i,f,g,o),
 * c [B,T,H], h [B,T,H], except that the last layer has no h block: its h is the
 * node's output. Use sn_rnn_h for any layer's h. */
int64_t sn_lstm_extra_elems(int64_t B, int64_t T, int64_t H, int layers);
int64_t sn_lstm_extra_offset(int64_t B, int64_t T, int64_t H, int layer, int part /*0 gates 1 c 2 h (not last layer)*/);
/* GRU extra, per layer: gates [B,T,3H] (activated r, z, n), hn [B,T,H] (W_hn h + b_hn), h [B,T,H]
 * (no h block for the last layer, as the LSTM). */
int64_t sn_gru_extra_elems(int64_t B, int64_t T, int64_t H, int layers);
int64_t sn_gru_extra_offset(int64_t B, int64_t T, int64_t H, int layer, int part /*0 gates 1 hn 2 h (not last layer)*/);
/* h [B,T,H] of layer l of an LSTM/GRU node: in its extra, or its data for the last layer. */
float *sn_rnn_h(const sn_tensor *rnn, int layer);
/* LSTM_BWD/GRU_BWD: the pre-activation gradients dG [B,T,G] of layer l (for the GRU, of
 * the input projection) overwrite that layer's gates block in the forward's extra (the
 * backward is its last reader; each element is read before it is written). The rest
 * is scratch in the bwd node's extra (planner-allocated with its output; contents
 * undefined on entry): 0 dGh [B,T,3H] (GRU only), 1 dh [B,T,H] between layers
 * (layers > 1 only), 2 dh carried between steps [B,H], 3 dc [B,H] (LSTM only). */
int64_t sn_rnn_bwd_scratch_elems(bool lstm, int64_t B, int64_t T, int64_t H, int layers);
int64_t sn_rnn_bwd_scratch_offset(bool lstm, int64_t B, int64_t T, int64_t H, int layers, int part);
/* The geometry of any of the six conv ops, decoded once for every backend. The image side
 * is conv2d's input and conv_transpose2d's output; the column grid (one column per kernel
 * placement) is conv2d's output and conv_transpose2d's input. x, w, y are the forward's
 * input, weight and output roles: for *_BWD_DATA x is the node (dx) and y its dy, for
 * *_BWD_W w is the node (dw). */
typedef struct sn_conv_geom {
    const struct sn_tensor *x, *w, *y, *bias;   /* bias: the forward ops' optional bias */
    bool transposed;
    int64_t N;
    int64_t C, Hs, Ws;      /* image side: channels, rows, columns */
    int64_t R, Hc, Wc;      /* column grid: channels, rows, columns */
    int64_t kh, kw, sh, sw, ph, pw;
    int act;                /* the forward ops' epilogue (sn_act); SN_ACT_NONE for the backward ops */
    float p0, p1;
} sn_conv_geom;
sn_status sn_conv_geom_of(const struct sn_tensor *node, sn_conv_geom *g);
/* LSTM_BWD/GRU_BWD packed output: dx [B,T,I], then per layer dw_ih, dw_hh, db_ih, db_hh
 * (each aligned, as sn_packed_offset). Offset of segment seg; seg = 1 + 4*layers is the
 * total. gates: 4 (LSTM) or 3 (GRU). */
int64_t sn_rnn_grad_offset(int gates, int64_t B, int64_t T, int64_t I, int64_t H, int layers, int seg);
/* Attention extra: q,k,v [B,heads,T,d] (q unscaled), probs [B,heads,T,T], ctx [B,T,E] (before out proj). */
int64_t sn_attention_extra_elems(int64_t B, int64_t T, int64_t E, int heads);
int64_t sn_attention_extra_offset(int64_t B, int64_t T, int64_t E, int heads, int part /*0 q 1 k 2 v 3 probs 4 ctx*/);
/* Packed gradient outputs: offset of segment i (each aligned) given the segment sizes. */
int64_t sn_packed_offset(const int64_t *sizes, int i);

#ifdef __cplusplus
}
#endif
#endif
