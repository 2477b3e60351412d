// Shared by the heavy op families' shaders (matmul, conv, batchnorm, norm, rnn,
// attention): the backend's tensor pointers (common.glsl) and activations (act.glsl,
// the fused epilogues and the recurrent cells use the unary family's functions).
#ifndef SN_OPS_COMMON_GLSL
#define SN_OPS_COMMON_GLSL
#include "common.glsl"
#include "act.glsl"
#endif
