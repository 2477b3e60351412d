#version 450
// BatchNorm2d backward, one workgroup per channel, into the packed [dx | dgamma | dbeta]:
// dbeta = sum dz, dgamma = invstd * sum dz (x - mean); training: dx = gamma invstd
// (dz - mean(dz) - (x - mean) invstd mean(dz xhat)), eval: dx = gamma invstd dz. With
// the fused ELU dz = dy * (y > 0 ? 1 : y + alpha) from the forward's output y.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 dy, x, yf, gamma, mean, invstd, dx, dg, db;
    int N, C, HW, training, elu;
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
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C);
    const uint cnt = uint(pc.N) * HW;
    for (uint c = gl_WorkGroupID.x; c < C; c += gl_NumWorkGroups.x) {
        float m = pc.mean.v[c], is = pc.invstd.v[c];
        vec2 s = vec2(0.0);
        for (uint e = lid; e < cnt; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float g = dz_at(i);
            s += vec2(g, g * (pc.x.v[i] - m));
        }
        s = sn_wg_sum2(s);
        float dgamma = s.y * is;
        if (lid == 0u) {
            pc.db.v[c] = s.x;
            pc.dg.v[c] = dgamma;
        }
        float k = pc.gamma.v[c] * is;
        float mdy = s.x / float(cnt), mdx = dgamma / float(cnt) * is;
        for (uint e = lid; e < cnt; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float g = dz_at(i);
            pc.dx.v[i] = pc.training != 0 ? k * (g - mdy - (pc.x.v[i] - m) * mdx) : k * g;
        }
    }
}
