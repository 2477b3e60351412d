#version 450
// lstm step, variant j4s32r (rnn.c): 4 hidden units per workgroup, 32 slices, 256 invocations, two rows per thread
#define JB 4u
#define S 32u
#define Q 4u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_R2
#include "rnn_lstm_step_body.glsl"
