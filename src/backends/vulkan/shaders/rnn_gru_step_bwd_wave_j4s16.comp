#version 450
// gru step bwd, the layer-wavefront form (rnn.c SN_VK_RNN_WAVE) of j4s16, the default (rnn.c): 4 hidden units per workgroup, 64 slices, 256 invocations
#define JB 4u
#define S 64u
#define Q 8u
#define LSX 256
#define SN_RNN_WAVE
#include "rnn_gru_step_bwd_body.glsl"
