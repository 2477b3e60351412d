#version 450
// gru step bwd, variant j1s64sg (rnn.c): 1 hidden unit per workgroup, 256 slices, 256 invocations
#define JB 1u
#define S 256u
#define Q 32u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_SG
#include "rnn_gru_step_bwd_body.glsl"
