#version 450
// BatchNorm2d forward, one workgroup per channel: batch statistics (two passes: mean,
// then the centred sum of squares) and the running-stat update in training, the
// running stats in eval; mean/invstd saved (extra); y = x*sc + sh, ELU(alpha) after it
// when fused. Fixed reduction trees: deterministic.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 x, y, gamma, beta, rm, rv, mean, invstd;
    int N, C, HW, training, elu;
    float eps, mom, alpha;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C);
    const uint cnt = uint(pc.N) * HW;
    for (uint c = gl_WorkGroupID.x; c < C; c += gl_NumWorkGroups.x) {
        float m, is;
        if (pc.training != 0) {
            float s = 0.0;
            for (uint e = lid; e < cnt; e += 256u) s += pc.x.v[((e / HW) * C + c) * HW + e % HW];
            float mu = sn_wg_sum(s) / float(cnt);
            float q = 0.0;
            for (uint e = lid; e < cnt; e += 256u) {
                float d = pc.x.v[((e / HW) * C + c) * HW + e % HW] - mu;
                q += d * d;
            }
            q = sn_wg_sum(q);
            m = mu;
            is = 1.0 / sqrt(q / float(cnt) + pc.eps);
            if (lid == 0u) {
                float unbiased = q / float(cnt - 1u);
                pc.rm.v[c] = (1.0 - pc.mom) * pc.rm.v[c] + pc.mom * mu;
                pc.rv.v[c] = (1.0 - pc.mom) * pc.rv.v[c] + pc.mom * unbiased;
            }
        } else {
            m = pc.rm.v[c];
            is = 1.0 / sqrt(pc.rv.v[c] + pc.eps);
        }
        if (lid == 0u) {
            pc.mean.v[c] = m;
            pc.invstd.v[c] = is;
        }
        float sc = is * pc.gamma.v[c], sh = pc.beta.v[c] - m * sc;
        for (uint e = lid; e < cnt; e += 256u) {
            uint i = ((e / HW) * C + c) * HW + e % HW;
            float z = pc.x.v[i] * sc + sh;
            pc.y.v[i] = pc.elu != 0 ? (z > 0.0 ? z : pc.alpha * sn_expm1(z)) : z;
        }
    }
}
