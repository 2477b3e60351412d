#version 450
// gru step, the layer-wavefront form (rnn.c SN_VK_RNN_WAVE) of j4s16, the default (rnn.c): 4 hidden units per workgroup, 16 slices, 192 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 192
#define SN_RNN_WAVE
#include "rnn_gru_step_body.glsl"
