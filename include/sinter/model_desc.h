/* A network described as data: an ordered list of layers, each with a type, its
 * arguments named as PyTorch names them, an optional name and optional inputs
 * ("from"). The YAML config (model.name: graph, model.layers) is parsed into this
 * struct by the io layer; sn_graph_model_new (nn.h) builds the model from it; a C
 * program may fill it directly:
 *
 *   sn_model_desc d;
 *   sn_model_desc_init(&d);
 *   sn_layer_desc *l = sn_model_desc_add(&d, SN_LAYER_LINEAR, "fc1");   // PyTorch defaults
 *   l->in = 161; l->out = 256;
 *   sn_model_desc_add(&d, SN_LAYER_RELU, NULL);
 *   ...
 *
 * Parameter names follow the layer names as an nn.Module with those attribute
 * names would produce them: layer "enc.0" (conv2d) owns enc.0.weight and
 * enc.0.bias; an unnamed layer with parameters is named by its index, as in
 * nn.Sequential ("3.weight"). Plain data: no pointers, copyable with =. */
#ifndef SINTER_MODEL_DESC_H
#define SINTER_MODEL_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"
#include "sinter/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_DESC_MAX_LAYERS 128
#define SN_LAYER_NAME 64
#define SN_LAYER_MAX_FROM 4
#define SN_LAYER_MAX_LIST 6
#define SN_FROM_INPUT (-1)          /* "from: input": the model's input */
#define SN_SLICE_END INT64_MAX      /* slice end: to the end of the dimension */

typedef enum sn_layer_type {
    SN_LAYER_CONV2D = 0,            /* nn.Conv2d */
    SN_LAYER_CONV_TRANSPOSE2D,      /* nn.ConvTranspose2d */
    SN_LAYER_BATCHNORM2D,           /* nn.BatchNorm2d */
    SN_LAYER_LINEAR,                /* nn.Linear (last dim) */
    SN_LAYER_LSTM,                  /* nn.LSTM(batch_first=True), output sequence only */
    SN_LAYER_GRU,                   /* nn.GRU(batch_first=True) */
    SN_LAYER_TRANSFORMER,           /* nn.TransformerEncoderLayer(batch_first=True, relu, no dropout) */
    SN_LAYER_LAYERNORM,             /* nn.LayerNorm(int) */
    SN_LAYER_RELU,
    SN_LAYER_ELU,
    SN_LAYER_SOFTPLUS,
    SN_LAYER_SIGMOID,
    SN_LAYER_TANH,
    SN_LAYER_RESHAPE,               /* x.reshape(shape); -1 infers a dim, 0 keeps the input's */
    SN_LAYER_FLATTEN,               /* nn.Flatten(start_dim, end_dim) */
    SN_LAYER_UNFLATTEN,             /* nn.Unflatten(dim, unflattened_size) */
    SN_LAYER_PERMUTE,               /* x.permute(dims) */
    SN_LAYER_CONCAT,                /* torch.cat(from, dim) */
    SN_LAYER_ADD,                   /* sum of the inputs */
    SN_LAYER_MUL,                   /* product of the inputs */
    SN_LAYER_ZEROPAD2D,             /* nn.ZeroPad2d((left, right, top, bottom)) */
    SN_LAYER_SLICE,                 /* x.narrow-like crop: dim, start, end (Python slice, step 1) */
    SN_LAYER_TYPE_COUNT
} sn_layer_type;

typedef struct sn_layer_desc {
    sn_layer_type type;
    char name[SN_LAYER_NAME];       /* "" = the layer's index */
    int nfrom;                      /* 0: the previous layer's output (the model input for layer 0) */
    int from[SN_LAYER_MAX_FROM];    /* earlier layer indices or SN_FROM_INPUT */
    /* in: in_channels / in_features / input_size / num_features / normalized_shape / d_model;
     * out: out_channels / out_features / hidden_size */
    int in, out;
    int kernel[2], stride[2], padding[2], output_padding[2]; /* (height, width) = (time, frequency) */
    int num_layers, nhead, dim_feedforward;
    bool bias;                      /* conv, conv-transpose, linear */
    bool norm_first, causal;        /* transformer: pre-norm; causal self-attention mask */
    int dim, end_dim;               /* concat / slice / unflatten dim; flatten start_dim, end_dim */
    int64_t start, end;             /* slice */
    int nlist;
    int64_t list[SN_LAYER_MAX_LIST]; /* permute dims, reshape shape, unflatten sizes, zeropad2d l,r,t,b */
    float eps, momentum, alpha, beta, threshold;
    int line;                       /* line in the YAML source (messages; 0 = none) */
} sn_layer_desc;

typedef struct sn_model_desc {
    int n;
    sn_layer_desc layer[SN_DESC_MAX_LAYERS];
    int freq_bins;                  /* input and output [B,1,T,freq_bins]; 161 */
    bool mask;                      /* estimate = act(net(x)) * x (a mask) instead of act(net(x)) */
    sn_act output_act;              /* applied to the last layer's output */
} sn_model_desc;

void sn_model_desc_init(sn_model_desc *d);
/* Appends a layer with PyTorch's defaults for its type (name may be NULL); NULL
 * (and the error set) when the list is full or the type unknown. */
sn_layer_desc *sn_model_desc_add(sn_model_desc *d, sn_layer_type type, const char *name);
/* PyTorch's defaults for a type (arguments without a default are 0). */
void sn_layer_desc_defaults(sn_layer_desc *l, sn_layer_type type);
/* Index of the layer with that name (explicit, or its index as text), or -2. */
int sn_model_desc_find(const sn_model_desc *d, const char *name);
/* "conv2d", ... as in the YAML; NULL for an unknown type. */
const char *sn_layer_type_name(sn_layer_type t);
/* The type of a YAML type name (aliases: cat, crop, pad, transformer, ...), or -1. */
int sn_layer_type_from_name(const char *s);
/* The layer's display name: its name, or its index. */
const char *sn_layer_label(const sn_model_desc *d, int i, char *buf, int n);
/* Does the type own parameters (conv, batchnorm, linear, recurrent, norm)? */
bool sn_layer_has_params(sn_layer_type t);
/* Edit distance of two strings ((size_t)-1 when either is over 200 characters);
 * the config's and the layer parser's did-you-mean suggestions use it. */
size_t sn_levenshtein(const char *a, const char *b);
/* Nearest of the `n` names to s, or NULL when none is close. */
const char *sn_suggest_word(const char *s, const char *const *names, int n);

#ifdef __cplusplus
}
#endif
#endif
