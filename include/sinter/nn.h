/* Models and the training step: the CRN prototype with PyTorch state_dict names,
 * a step graph (forward, MSE, backward, clip, optimizer) built and planned once,
 * and an inference graph. */
#ifndef SINTER_NN_H
#define SINTER_NN_H

#include "sinter/graph.h"
#include "sinter/model_desc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sn_rnn_kind { SN_RNN_LSTM = 0, SN_RNN_GRU, SN_RNN_ATTENTION } sn_rnn_kind;

typedef struct sn_crn_config {
    sn_rnn_kind rnn;
    int hidden;        /* LSTM/GRU hidden size; != 1024 adds proj.{weight,bias} */
    int layers;        /* recurrent layers or Transformer blocks */
    int channels[5];   /* encoder channels, default 16 32 64 128 256 */
    int freq_bins;     /* 161 */
} sn_crn_config;

void sn_crn_config_default(sn_crn_config *c);
const char *sn_rnn_kind_name(sn_rnn_kind k);

#define SN_MAX_MODEL_TENSORS 512

/* The training loss between the estimated and the clean magnitude. */
typedef enum sn_loss_kind { SN_LOSS_MSE = 0, SN_LOSS_L1 } sn_loss_kind;

struct sn_graph_model;

typedef struct sn_model {
    sn_ctx *ctx;
    sn_backend *backend;          /* where its persistent tensors live */
    sn_crn_config cfg;
    int n;                        /* state_dict entries, in PyTorch's order */
    sn_tensor *t[SN_MAX_MODEL_TENSORS];
    bool trainable[SN_MAX_MODEL_TENSORS];
    sn_tensor *flat;              /* all trainable parameters, contiguous */
    sn_tensor *flat_grad;         /* their gradients, when a step keeps them (clipping, keep_grads) */
    int64_t nflat;                /* elements of flat (with alignment padding) */
    int64_t nparams;              /* trainable parameter count */
    sn_loss_kind loss;            /* what the training step minimises (MSE by default) */
    struct sn_graph_model *graph; /* a model built from a description (sn_graph_model_new); NULL: the CRN */
} sn_model;

/* Creates the model with its tensors allocated on backend b (zeros; call
 * sn_model_init or load weights). */
sn_status sn_crn_new(const sn_crn_config *cfg, sn_backend *b, sn_model **out);
void sn_model_free(sn_model *m);
/* PyTorch's default initialisation of each layer, from a seed. */
sn_status sn_model_init(sn_model *m, uint64_t seed);
sn_tensor *sn_model_find(const sn_model *m, const char *name);
/* Builds the forward graph on x [B,1,T,F]; returns the estimated magnitude [B,1,T,F].
 * sn_model_forward does it for any model; sn_crn_forward is the same call. */
sn_tensor *sn_model_forward(sn_model *m, sn_tensor *x, bool training);
sn_tensor *sn_crn_forward(sn_model *m, sn_tensor *x, bool training);
/* One line naming the model: "crn (lstm, hidden 1024, 2 layers, channels [...])" or
 * "graph (31 layers)". */
const char *sn_model_describe(const sn_model *m, char *buf, int n);
const char *sn_loss_name(sn_loss_kind k);

/* ---- models described as data (model_desc.h) ---- */

/* Checks the description and builds its model on b (zeros; sn_model_init or load
 * weights). Errors name the layer (index and name), the argument and the shapes
 * that do not fit, e.g. "layer 7 'dec.2' (concat): shapes [4,64,99,19] and
 * [4,64,99,20] differ in dim 3". The model keeps its own copy of d. */
sn_status sn_graph_model_new(const sn_model_desc *d, sn_backend *b, sn_model **out);
/* The description a graph model was built from (NULL for the CRN). */
const sn_model_desc *sn_model_get_desc(const sn_model *m);

typedef struct sn_layer_info {
    char label[SN_LAYER_NAME];    /* name or index */
    const char *type;             /* "conv2d", ... */
    int ndim;
    int64_t shape[SN_MAX_DIMS];   /* output shape */
    int64_t params;               /* trainable parameters */
    int64_t buffers;              /* non-trainable state elements (BatchNorm running stats) */
    char from[64];                /* inputs, when not just the previous layer */
} sn_layer_info;

/* Output shape and parameter count of every layer of a graph model for input
 * [batch,1,frames,F] (training mode). info has room for the model's layer count;
 * builds an extra forward graph in the model's context. */
sn_status sn_graph_model_summary(sn_model *m, int batch, int frames, sn_layer_info *info);
/* Can the model run chunk by chunk with carried state (sn_stream_new)? When not,
 * why holds the reason (the layer that prevents it). */
bool sn_model_streamable(const sn_model *m, char *why, int n);
/* Frequency sizes of encoder outputs: 161 -> 80 -> 39 -> 19 -> 9 -> 4. */
int sn_crn_freq_out(int freq_bins, int level);

typedef enum sn_optim_kind { SN_OPTIM_ADAM = 0, SN_OPTIM_ADAMW, SN_OPTIM_SGD } sn_optim_kind;

typedef struct sn_optim_config {
    sn_optim_kind kind;
    float lr, beta1, beta2, eps, weight_decay, momentum, grad_clip;
    /* Keep every gradient in m->flat_grad (param->grad views) after the step. Off:
     * without clipping each parameter is updated as soon as its gradient is complete
     * and gradients live only briefly (less memory). */
    bool keep_grads;
} sn_optim_config;
void sn_optim_config_default(sn_optim_config *o);

typedef struct sn_step {
    sn_model *m;
    int batch, frames;
    sn_graph *g;
    sn_plan *plan;
    sn_tensor *x, *y, *out, *loss, *hyper, *sumsq;
    sn_tensor *opt_state[2];     /* Adam m, v (flat) / SGD momentum buffer */
    sn_optim_config opt;
    int64_t t;                   /* optimizer steps taken */
    bool have_batch, launched;   /* a prefetched batch waits; a launched step is unfinished */
} sn_step;

/* The training step for batches [B,1,T,F]: graph built and planned once on b
 * (ops b lacks run on `fallback`, normally the CPU backend). */
sn_status sn_step_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames,
                      const sn_optim_config *opt, sn_step **out);
void sn_step_free(sn_step *s);
/* Uploads the batch, replays the step with learning rate lr, returns the loss
 * (computed before the update). The same as prefetch + launch + finish. */
sn_status sn_step_run(sn_step *s, const float *x, const float *y, float lr, float *loss);
/* The step in three parts, so that the next batch uploads while a GPU runs this one:
 *   sn_step_prefetch(s, x0, y0);
 *   for each step k: sn_step_launch(s, lr); sn_step_prefetch(s, x[k+1], y[k+1]); sn_step_finish(s, &loss);
 * prefetch queues the batch the next launch uses (host buffers reusable on return);
 * launch starts the step and may return before the device is done; finish waits. */
sn_status sn_step_prefetch(sn_step *s, const float *x, const float *y);
sn_status sn_step_launch(sn_step *s, float lr);
sn_status sn_step_finish(sn_step *s, float *loss);
size_t sn_step_peak(const sn_step *s);
/* The memory a training step would need on b, without running or allocating it: the
 * planned working arena (transient tensors at their peak) and the persistent bytes
 * (parameters, gradients kept, optimizer state). Builds the step graph in the model's
 * context and plans it with nothing allocated but the persistent tensors. */
sn_status sn_step_plan_memory(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames,
                              const sn_optim_config *opt, size_t *arena, size_t *persistent);

typedef struct sn_infer {
    sn_model *m;
    int batch, frames;
    sn_graph *g;
    sn_plan *plan;
    sn_tensor *x, *out;
} sn_infer;

/* Inference graph (BatchNorm with running statistics). */
sn_status sn_infer_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames, sn_infer **out);
void sn_infer_free(sn_infer *f);
sn_status sn_infer_run(sn_infer *f, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif
