#version 450
// gru step, variant j1s64 (rnn.c): 1 hidden unit per workgroup, 64 slices, 192 invocations
#define JB 1u
#define S 64u
#define Q 8u
#define LSX 192
#define SN_RNN_U 4u
#include "rnn_gru_step_body.glsl"
