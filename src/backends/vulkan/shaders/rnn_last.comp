#version 450
// out[b, j] = src[(b*T + T-1)*H + j]: one layer's last-timestep h or c (RNN_STATE).
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 src, out_;
    int B, T, H;
} pc;

void main() {
    const uint H = uint(pc.H), BH = uint(pc.B) * H;
    for (uint i = gl_GlobalInvocationID.x; i < BH; i += gl_NumWorkGroups.x * 64u)
        pc.out_.v[i] = pc.src.v[((i / H) * uint(pc.T) + uint(pc.T) - 1u) * H + i % H];
}
