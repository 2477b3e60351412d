#version 450
// dst[c, r] = src[r, c] for a [R, C] matrix: operands re-laid out so that neighbouring
// invocations of a later kernel read neighbouring words (the recurrent weights).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 src, dst;
    int R, C;
} pc;

void main() {
    const uint R = uint(pc.R), C = uint(pc.C), n = R * C;
    for (uint e = gl_GlobalInvocationID.x; e < n; e += gl_NumWorkGroups.x * 256u)
        pc.dst.v[(e % C) * R + e / C] = pc.src.v[e];
}
