#version 450
// lstm step bwd, variant j2s16sg (rnn.c): 2 hidden units per workgroup, 64 slices, 128 invocations
#define JB 2u
#define S 64u
#define Q 8u
#define LSX 128
#define SN_RNN_U 4u
#define SN_RNN_SG
#include "rnn_lstm_step_bwd_body.glsl"
