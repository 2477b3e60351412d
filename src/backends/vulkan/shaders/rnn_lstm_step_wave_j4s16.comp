#version 450
// lstm step, the layer-wavefront form (rnn.c SN_VK_RNN_WAVE) of j4s16, the default (rnn.c): 4 hidden units per workgroup, 16 slices, 256 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 256
#define SN_RNN_WAVE
#include "rnn_lstm_step_body.glsl"
