#version 450
// LayerNorm over the last dim, one workgroup per row: mean, then the centred variance;
// y = (x - mean) rstd gamma + beta; mean/rstd saved (extra).
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 x, g, b, y, mean, rstd;
    int M, E;
    float eps;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, E = uint(pc.E);
    for (uint r = gl_WorkGroupID.x; r < uint(pc.M); r += gl_NumWorkGroups.x) {
        const uint o = r * E;
        float s = 0.0;
        for (uint e = lid; e < E; e += 256u) s += pc.x.v[o + e];
        float mu = sn_wg_sum(s) / float(E);
        float q = 0.0;
        for (uint e = lid; e < E; e += 256u) {
            float d = pc.x.v[o + e] - mu;
            q += d * d;
        }
        float rs = 1.0 / sqrt(sn_wg_sum(q) / float(E) + pc.eps);
        for (uint e = lid; e < E; e += 256u) pc.y.v[o + e] = (pc.x.v[o + e] - mu) * rs * pc.g.v[e] + pc.b.v[e];
        if (lid == 0u) {
            pc.mean.v[r] = mu;
            pc.rstd.v[r] = rs;
        }
    }
}
