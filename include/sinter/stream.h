/* Streaming inference of the CRN: the model run on chunks of Tc frames with its
 * recurrent and convolution state carried from one chunk to the next, so that a
 * long file needs constant memory and the output equals whole-sequence
 * inference (sn_infer) up to float rounding.
 *
 * What is carried (all [.., 1 frame, ..] or [layers,B,H], zeros at the start):
 *   - encoder conv i (kernel 2 in time, causal): the last input frame of the layer,
 *     which replaces the causal zero pad of the next chunk;
 *   - LSTM h, c / GRU h of every layer;
 *   - decoder conv-transpose i (kernel 2 in time, last frame dropped): the dropped
 *     frame minus the bias, which is what the next chunk's first frame misses.
 * BatchNorm (running statistics) and the activations are per frame: no state.
 * The attention variant has no exact chunked form (no KV cache): sn_stream_new
 * refuses it; process whole sequences with sn_infer.
 *
 * A described model (model_desc.h) streams when its layers allow it
 * (sn_model_streamable says which layer does not): a conv2d with k frames in time
 * after a zeropad2d of k-1 frames at the start carries its last k-1 input frames;
 * a conv_transpose2d with k frames whose output loses its last k-1 frames carries
 * them (less the bias); each LSTM/GRU layer carries h (and c); layers that work
 * frame by frame carry nothing. */
#ifndef SINTER_STREAM_H
#define SINTER_STREAM_H

#include "sinter/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_STREAM_MAX_STATE 64

typedef struct sn_stream {
    sn_model *m;
    int batch, frames;            /* B, Tc */
    sn_graph *g;
    sn_plan *plan;
    sn_tensor *x, *out;           /* [B,1,Tc,F] */
    int nstate;
    sn_tensor *state_in[SN_STREAM_MAX_STATE];   /* persistent inputs */
    sn_tensor *state_out[SN_STREAM_MAX_STATE];  /* the same states after the chunk */
    float *xbuf, *ybuf, *sbuf;    /* host scratch: padded chunk in/out, one state */
    int64_t chunks;               /* chunks run since the last reset */
} sn_stream;

/* Builds and plans the chunk graph for `frames` frames per chunk on backend b
 * (ops b lacks go to `fallback`; NULL = b). The model's tensors must live on b's
 * device (as for sn_infer_new). States start at zero. */
sn_status sn_stream_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames, sn_stream **out);
void sn_stream_free(sn_stream *s);
/* Zeros every state: the next chunk is the start of a new sequence. */
sn_status sn_stream_reset(sn_stream *s);
/* Runs one chunk: x [B,1,n,F] -> y [B,1,n,F] with 1 <= n <= Tc frames. A chunk
 * with n < Tc is padded with zeros after (causality: they do not change the n
 * frames returned) and must be the last of its sequence (reset before reuse). */
sn_status sn_stream_run(sn_stream *s, const float *x, int n, float *y);

#ifdef __cplusplus
}
#endif
#endif
