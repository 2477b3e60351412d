#version 450
// gru step bwd, variant j4s32m (rnn.c): 4 hidden units per workgroup, 128 slices, 512 invocations,
// passes of 4 batch rows staged in shared memory (1408 vec4s; all shared memory <= 32 KB)
#define JB 4u
#define S 128u
#define Q 16u
#define LSX 512
#define BC 4u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1408u
#include "rnn_gru_step_bwd_body.glsl"
