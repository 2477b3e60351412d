#version 450
// lstm step, variant j4s16u (rnn.c): 4 hidden units per workgroup, 16 slices, 256 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 256
#define SN_RNN_U 4u
#include "rnn_lstm_step_body.glsl"
