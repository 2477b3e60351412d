#version 450
// f16 weights (train.mixed_precision f16, rnn.c) of: lstm step bwd, the layer-wavefront form (rnn.c SN_VK_RNN_WAVE) of variant j2s32 (rnn.c): 2 hidden units per workgroup, 128 slices, 256 invocations
#define JB 2u
#define S 128u
#define Q 16u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_WAVE
#define SN_RNN_W16
#include "rnn_lstm_step_bwd_body.glsl"
