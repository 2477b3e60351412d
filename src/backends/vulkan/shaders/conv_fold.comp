#version 450
// dst[(r*N + n)*L + l] = src[(n*R + r)*L + l]: images [N,R,L] to the batch-folded rows
// [R, N*L] a weight-gradient GEMM reduces over.
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 src;
    F32 dst;
    int N, R, L;
} pc;

void main() {
    const uint L = uint(pc.L), RL = uint(pc.R) * L, total = uint(pc.N) * RL;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint n = e / RL, r = (e % RL) / L, l = e % L;
        pc.dst.v[(r * uint(pc.N) + n) * L + l] = pc.src.v[e];
    }
}
