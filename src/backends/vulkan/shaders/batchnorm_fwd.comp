#version 450
// BatchNorm2d forward, the normalisation pass over chunk k (workgroup x) of channel c
// (workgroup y): training takes the batch statistics from batchnorm_stats' P partials
// (fixed tree: every workgroup gets the same mean/var), chunk 0 updates the running
// stats; eval uses the running stats. mean/invstd saved (extra) by chunk 0; y = x*sc + sh,
// ELU(alpha) after it when fused.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 x, y, gamma, beta, rm, rv, mean, invstd, ps, pq;
    int N, C, HW, training, elu, P, chunk;
    float eps, mom, alpha;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C), P = uint(pc.P);
    const uint cnt = uint(pc.N) * HW, k = gl_WorkGroupID.x;
    const uint e0 = k * uint(pc.chunk), e1 = min(cnt, e0 + uint(pc.chunk));
    for (uint c = gl_WorkGroupID.y; c < C; c += gl_NumWorkGroups.y) {
        float m, is;
        if (pc.training != 0) {
            vec2 s = sn_wg_sum2(lid < P ? vec2(pc.ps.v[c * P + lid], pc.pq.v[c * P + lid]) : vec2(0.0));
            m = s.x / float(cnt);
            is = 1.0 / sqrt(s.y / float(cnt) + pc.eps);
            if (lid == 0u && k == 0u) {
                float unbiased = s.y / float(cnt - 1u);
                pc.rm.v[c] = (1.0 - pc.mom) * pc.rm.v[c] + pc.mom * m;
                pc.rv.v[c] = (1.0 - pc.mom) * pc.rv.v[c] + pc.mom * unbiased;
            }
        } else {
            m = pc.rm.v[c];
            is = 1.0 / sqrt(pc.rv.v[c] + pc.eps);
        }
        if (lid == 0u && k == 0u) {
            pc.mean.v[c] = m;
            pc.invstd.v[c] = is;
        }
        float sc = is * pc.gamma.v[c], sh = pc.beta.v[c] - m * sc;
        for (uint e = e0 + lid; e < e1; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float z = pc.x.v[i] * sc + sh;
            pc.y.v[i] = pc.elu != 0 ? (z > 0.0 ? z : pc.alpha * sn_expm1(z)) : z;
        }
    }
}
