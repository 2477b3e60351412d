#version 450
// BatchNorm2d backward, partial sums per (chunk k = workgroup x, channel c = workgroup y):
// pg[c*P + k] = sum dz, pgx[c*P + k] = sum dz (x - mean), dz = dy or, with the fused ELU,
// dy * (y > 0 ? 1 : y + alpha) from the forward's output y. Deterministic.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 dy, x, yf, mean, pg, pgx;
    int N, C, HW, elu, P, chunk;
    float alpha;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C), P = uint(pc.P);
    const uint cnt = uint(pc.N) * HW, k = gl_WorkGroupID.x;
    const uint e0 = k * uint(pc.chunk), e1 = min(cnt, e0 + uint(pc.chunk));
    for (uint c = gl_WorkGroupID.y; c < C; c += gl_NumWorkGroups.y) {
        float m = pc.mean.v[c];
        vec2 s = vec2(0.0);
        for (uint e = e0 + lid; e < e1; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float g = pc.dy.v[i];
            if (pc.elu != 0) {
                float y = pc.yf.v[i];
                g = y > 0.0 ? g : g * (y + pc.alpha);
            }
            s += vec2(g, g * (pc.x.v[i] - m));
        }
        s = sn_wg_sum2(s);
        if (lid == 0u) {
            pc.pg.v[c * P + k] = s.x;
            pc.pgx.v[c * P + k] = s.y;
        }
    }
}
