#version 450
// lstm step bwd, variant j2s32sg (rnn.c): 2 hidden units per workgroup, 128 slices, 256 invocations
#define JB 2u
#define S 128u
#define Q 16u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_SG
#include "rnn_lstm_step_bwd_body.glsl"
