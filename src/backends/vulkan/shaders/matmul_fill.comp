#version 450
// dst[i] = src ? src[i] : value over n elements (copies and zero fills the heavy
// families need between their GEMMs).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 dst;
    F32 src;   // 0: fill with value
    uint n;
    int has_src;
    float value;
} pc;

void main() {
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += gl_NumWorkGroups.x * 256u)
        pc.dst.v[i] = pc.has_src != 0 ? pc.src.v[i] : pc.value;
}
