#version 450
// out[ch] = sum over o < outer, i < inner of x[(o*C + ch)*inner + i]: the bias gradient
// (BIAS_GRAD) and the column sums of the other families. One workgroup per channel (a
// grid-stride loop over channels), a fixed per-invocation order and a fixed tree:
// deterministic, no atomics.
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 x;
    F32 out_;
    int outer, C, inner;
} pc;

shared float red[256];

void main() {
    const uint lid = gl_LocalInvocationID.x;
    const uint n = uint(pc.outer) * uint(pc.inner);
    for (uint ch = gl_WorkGroupID.x; ch < uint(pc.C); ch += gl_NumWorkGroups.x) {
        float s = 0.0;
        if (pc.inner == 1) {
            for (uint o = lid; o < n; o += 256u) s += pc.x.v[o * uint(pc.C) + ch];
        } else {
            for (uint k = lid; k < n; k += 256u) {
                uint o = k / uint(pc.inner), i = k % uint(pc.inner);
                s += pc.x.v[(o * uint(pc.C) + ch) * uint(pc.inner) + i];
            }
        }
        red[lid] = s;
        barrier();
        for (uint w = 128u; w > 0u; w >>= 1) {
            if (lid < w) red[lid] += red[lid + w];
            barrier();
        }
        if (lid == 0u) pc.out_.v[ch] = red[0];
        barrier();
    }
}
