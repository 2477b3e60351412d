#version 450
// lstm step, variant j8s16m (rnn.c): 8 hidden units per workgroup, 16 slices, 512 invocations,
// passes of 4 batch rows staged in shared memory (1024 vec4s; all shared memory <= 32 KB)
#define JB 8u
#define S 16u
#define Q 4u
#define LSX 512
#define BC 4u
#define SN_RNN_U 4u
#define SN_RNN_STAGE 1024u
#include "rnn_lstm_step_body.glsl"
