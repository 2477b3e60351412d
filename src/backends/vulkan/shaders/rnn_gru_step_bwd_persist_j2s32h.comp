#version 450
// the persistent form (rnn.c SN_VK_RNN_PERSIST, rnn_persist.glsl) of: f16 weights (train.mixed_precision f16, rnn.c) of: gru step bwd, variant j2s32: 2 hidden units per workgroup, 128 slices, 256 invocations
#define JB 2u
#define S 128u
#define Q 16u
#define LSX 256
#define SN_RNN_U 4u
#define SN_RNN_W16
#define SN_RNN_PERSIST
#define SN_BUF_COHERENT coherent
#define main sn_rnn_step_main
#include "rnn_gru_step_bwd_body.glsl"
#undef main
#include "rnn_persist.glsl"
