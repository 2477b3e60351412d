#version 450
// BatchNorm2d backward into the packed [dx | dgamma | dbeta], the dx pass over chunk k
// (workgroup x) of channel c (workgroup y), the sums from batchnorm_bwd_stats' P partials
// (fixed tree): dbeta = sum dz, dgamma = invstd * sum dz (x - mean) (written by chunk 0);
// training: dx = gamma invstd (dz - mean(dz) - (x - mean) invstd mean(dz xhat)), eval:
// dx = gamma invstd dz. With the fused ELU dz = dy * (y > 0 ? 1 : y + alpha).
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 dy, x, yf, gamma, mean, invstd, dx, dg, db, pg, pgx;
    int N, C, HW, training, elu, P, chunk;
    float alpha;
} pc;

float dz_at(uint i) {
    float g = pc.dy.v[i];
    if (pc.elu != 0) {
        float y = pc.yf.v[i];
        g = y > 0.0 ? g : g * (y + pc.alpha);
    }
    return g;
}

void main() {
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C), P = uint(pc.P);
    const uint cnt = uint(pc.N) * HW, k = gl_WorkGroupID.x;
    const uint e0 = k * uint(pc.chunk), e1 = min(cnt, e0 + uint(pc.chunk));
    for (uint c = gl_WorkGroupID.y; c < C; c += gl_NumWorkGroups.y) {
        float m = pc.mean.v[c], is = pc.invstd.v[c];
        vec2 s = sn_wg_sum2(lid < P ? vec2(pc.pg.v[c * P + lid], pc.pgx.v[c * P + lid]) : vec2(0.0));
        float dgamma = s.y * is;
        if (lid == 0u && k == 0u) {
            pc.db.v[c] = s.x;
            pc.dg.v[c] = dgamma;
        }
        float kk = pc.gamma.v[c] * is;
        float mdy = s.x / float(cnt), mdx = dgamma / float(cnt) * is;
        for (uint e = e0 + lid; e < e1; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float g = dz_at(i);
            pc.dx.v[i] = pc.training != 0 ? kk * (g - mdy - (pc.x.v[i] - m) * mdx) : kk * g;
        }
    }
}
