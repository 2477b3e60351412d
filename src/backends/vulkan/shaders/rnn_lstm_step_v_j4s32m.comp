#version 450
// lstm step, variant j4s32m (rnn.c): 4 hidden units per workgroup, 32 slices, 512 invocations,
// passes of 4 batch rows staged in shared memory (1024 vec4s; all shared memory <= 32 KB)
#define JB 4u
#define S 32u
#define Q 4u
#define LSX 512
#define BC 4u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1024u
#include "rnn_lstm_step_body.glsl"
