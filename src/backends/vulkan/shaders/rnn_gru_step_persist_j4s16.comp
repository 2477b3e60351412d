#version 450
// the persistent form (rnn.c SN_VK_RNN_PERSIST, rnn_persist.glsl) of: gru step, the default: 4 hidden units per workgroup, 16 slices, 192 invocations
#define JB 4u
#define S 16u
#define Q 1u
#define LSX 192
#define SN_RNN_PERSIST
#define SN_BUF_COHERENT coherent
#define main sn_rnn_step_main
#include "rnn_gru_step_body.glsl"
#undef main
#include "rnn_persist.glsl"
