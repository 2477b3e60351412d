#version 450
// lstm step bwd, variant j8s16m (rnn.c): 8 hidden units per workgroup, 64 slices, 512 invocations,
// passes of 4 batch rows staged in shared memory (1408 vec4s; all shared memory <= 32 KB)
#define JB 8u
#define S 64u
#define Q 8u
#define LSX 512
#define BC 4u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1408u
#include "rnn_lstm_step_bwd_body.glsl"
