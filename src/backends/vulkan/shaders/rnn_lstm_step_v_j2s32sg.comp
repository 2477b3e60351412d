#version 450
// lstm step, variant j2s32sg (rnn.c): 2 hidden units per workgroup, 32 slices, 256 invocations
#define JB 2u
#define S 32u
#define Q 4u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_SG
#include "rnn_lstm_step_body.glsl"
