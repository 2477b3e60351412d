#version 450
// lstm step, variant j1s64 (rnn.c): 1 hidden unit per workgroup, 64 slices, 256 invocations
#define JB 1u
#define S 64u
#define Q 8u
#define LSX 256
#define SN_RNN_U 4u
#include "rnn_lstm_step_body.glsl"
