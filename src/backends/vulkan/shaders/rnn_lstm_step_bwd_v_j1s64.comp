#version 450
// lstm step bwd, variant j1s64 (rnn.c): 1 hidden unit per workgroup, 256 slices, 256 invocations
#define JB 1u
#define S 256u
#define Q 32u
#define LSX 256
#define SN_RNN_U 4u
#include "rnn_lstm_step_bwd_body.glsl"
