/* Private to src/nn: what the CRN, the described (graph) models and streaming share. */
#ifndef SN_NN_INTERNAL_H
#define SN_NN_INTERNAL_H

#include "sinter/nn.h"
#include "sinter/stream.h"

/* One state_dict entry of a model before it exists. */
typedef struct sn_param_spec {
    char name[SN_NAME_LEN];
    int ndim;
    int64_t shape[4];
    bool trainable;
} sn_param_spec;

/* Creates m->ctx, the state_dict tensors in the given order (trainable ones as
 * 64-aligned views of one flat buffer), allocates them on b, running_var = 1. */
sn_status sn_model_make_tensors(sn_model *m, const sn_param_spec *s, int n, sn_backend *b);

/* graph_model.c */
void sn_gmodel_free(struct sn_graph_model *g);
sn_tensor *sn_gmodel_forward(sn_model *m, sn_tensor *x, bool training);
/* PyTorch's default initialisation of state_dict entry i: U(-v, v) when *uniform, else the constant v. */
void sn_gmodel_init_rule(const sn_model *m, int i, bool *uniform, double *v);
/* The chunk graph of a described model for sn_stream_new: registers its states in s. */
sn_tensor *sn_gmodel_stream_forward(sn_model *m, sn_stream *s, sn_tensor *x);

#endif
