#version 450
// gru step bwd, variant j2s32m (rnn.c): 2 hidden units per workgroup, 128 slices, 256 invocations,
// passes of 4 batch rows staged in shared memory (1728 vec4s; all shared memory <= 32 KB)
#define JB 2u
#define S 128u
#define Q 16u
#define LSX 256
#define BC 4u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1728u
#include "rnn_gru_step_bwd_body.glsl"
