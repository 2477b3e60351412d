#version 450
// dst[b, h, t, :] = src[(b*T + t)*ld + col + h*d + :]: one of q, k, v [B,heads,T,d] out
// of the projected rows [B*T, 3E] (the saved state of tensor.h).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 src, dst;
    int B, T, NH, d, ld, col;
} pc;

void main() {
    const uint d = uint(pc.d), T = uint(pc.T), NH = uint(pc.NH);
    const uint total = uint(pc.B) * NH * T * d;
    for (uint i = gl_GlobalInvocationID.x; i < total; i += gl_NumWorkGroups.x * 256u) {
        uint dd = i % d, t = (i / d) % T, h = (i / (d * T)) % NH, b = i / (d * T * NH);
        pc.dst.v[i] = pc.src.v[(b * T + t) * uint(pc.ld) + uint(pc.col) + h * d + dd];
    }
}
