#version 450
// gru step, variant j2s32m (rnn.c): 2 hidden units per workgroup, 32 slices, 192 invocations,
// passes of 8 batch rows staged in shared memory (1024 vec4s; all shared memory <= 32 KB)
#define JB 2u
#define S 32u
#define Q 4u
#define LSX 192
#define BC 8u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1024u
#include "rnn_gru_step_body.glsl"
