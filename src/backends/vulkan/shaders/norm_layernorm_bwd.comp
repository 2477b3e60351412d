#version 450
// LayerNorm backward, dx part, one workgroup per row:
// dx = rstd (dy g - mean(dy g) - xhat mean(dy g xhat)).
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 dy, x, g, mean, rstd, dx;
    int M, E;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, E = uint(pc.E);
    for (uint r = gl_WorkGroupID.x; r < uint(pc.M); r += gl_NumWorkGroups.x) {
        const uint o = r * E;
        float m = pc.mean.v[r], rs = pc.rstd.v[r];
        vec2 s = vec2(0.0);
        for (uint e = lid; e < E; e += 256u) {
            float dg = pc.dy.v[o + e] * pc.g.v[e];
            s += vec2(dg, dg * (pc.x.v[o + e] - m) * rs);
        }
        s = sn_wg_sum2(s) / float(E);
        for (uint e = lid; e < E; e += 256u) {
            float xh = (pc.x.v[o + e] - m) * rs;
            pc.dx.v[o + e] = rs * (pc.dy.v[o + e] * pc.g.v[e] - s.x - xh * s.y);
        }
    }
}
