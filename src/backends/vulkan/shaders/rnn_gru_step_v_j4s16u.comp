#version 450
// gru step, variant j4s16u (rnn.c): 4 hidden units per workgroup, 16 slices, 192 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 192
#define SN_RNN_U 4u
#include "rnn_gru_step_body.glsl"
