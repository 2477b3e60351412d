#version 450
// f16 weights (train.mixed_precision f16, rnn.c) of: gru step, variant j4s32r (rnn.c): 4 hidden units per workgroup, 32 slices, 192 invocations, two rows per thread
#define JB 4u
#define S 32u
#define Q 4u
#define LSX 192
#define SN_RNN_U 4u
#define SN_RNN_R2
#define SN_RNN_W16
#include "rnn_gru_step_body.glsl"
