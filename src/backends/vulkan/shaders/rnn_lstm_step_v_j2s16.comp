#version 450
// lstm step, variant j2s16 (rnn.c): 2 hidden units per workgroup, 16 slices, 128 invocations
#define JB 2u
#define S 16u
#define Q 1u
#define LSX 128
#define SN_RNN_U 4u
#include "rnn_lstm_step_body.glsl"
