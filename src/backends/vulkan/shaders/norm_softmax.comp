#version 450
// Softmax over rows of E, one workgroup per row, in place when x == y. causal_T > 0:
// row r is query position r % causal_T and sees only keys 0..r % causal_T (the rest 0),
// as the attention's scores.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 x, y;
    int rows, E, causal_T;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, E = uint(pc.E);
    for (uint r = gl_WorkGroupID.x; r < uint(pc.rows); r += gl_NumWorkGroups.x) {
        const uint o = r * E;
        uint n = pc.causal_T > 0 ? r % uint(pc.causal_T) + 1u : E;
        float mx = -3.402823466e38;
        for (uint e = lid; e < n; e += 256u) mx = max(mx, pc.x.v[o + e]);
        mx = sn_wg_max(mx);
        float s = 0.0;
        for (uint e = lid; e < n; e += 256u) {
            float v = exp(pc.x.v[o + e] - mx);
            pc.y.v[o + e] = v;
            s += v;
        }
        float inv = 1.0 / sn_wg_sum(s);
        for (uint e = lid; e < E; e += 256u) pc.y.v[o + e] = e < n ? pc.y.v[o + e] * inv : 0.0;
    }
}
