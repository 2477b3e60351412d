#version 450
// lstm step bwd, variant j4s16sg (rnn.c): 4 hidden units per workgroup, 64 slices, 256 invocations
#define JB 4u
#define S 64u
#define Q 8u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_SG
#include "rnn_lstm_step_bwd_body.glsl"
