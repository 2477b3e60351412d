#version 450
// gru step, the default (rnn.c): 4 hidden units per workgroup, 16 slices, 192 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 192
#include "rnn_gru_step_body.glsl"
