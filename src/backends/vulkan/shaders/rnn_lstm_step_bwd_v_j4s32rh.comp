#version 450
// f16 weights (train.mixed_precision f16, rnn.c) of: lstm step bwd, variant j4s32r (rnn.c): 4 hidden units per workgroup, 128 slices, 256 invocations, two rows per thread
#define JB 4u
#define S 128u
#define Q 16u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_R2
#define SN_RNN_W16
#include "rnn_lstm_step_bwd_body.glsl"
