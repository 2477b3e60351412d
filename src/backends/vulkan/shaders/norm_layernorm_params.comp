#version 450
// LayerNorm backward, parameter part: dgamma[e] = sum_r dy xhat, dbeta[e] = sum_r dy,
// one invocation per column summing the rows in order (deterministic).
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 dy, x, mean, rstd, dg, db;
    int M, E;
} pc;

void main() {
    const uint E = uint(pc.E);
    for (uint e = gl_GlobalInvocationID.x; e < E; e += gl_NumWorkGroups.x * 64u) {
        float sg = 0.0, sb = 0.0;
        for (uint r = 0u; r < uint(pc.M); r++) {
            float d = pc.dy.v[r * E + e];
            sg += d * (pc.x.v[r * E + e] - pc.mean.v[r]) * pc.rstd.v[r];
            sb += d;
        }
        pc.dg.v[e] = sg;
        pc.db.v[e] = sb;
    }
}
