#version 450
// BatchNorm2d forward statistics, partial sums per (chunk k = workgroup x, channel c =
// workgroup y) of the N*HW elements of a channel: pass 0 ps[c*P + k] = sum x; pass 1 the
// centred pq[c*P + k] = sum (x - mean)^2, the mean from the P partials of pass 0 summed by
// a fixed tree in every workgroup. Many workgroups per channel; deterministic.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 x, ps, pq;
    int N, C, HW, P, chunk, pass_;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, HW = uint(pc.HW), C = uint(pc.C), P = uint(pc.P);
    const uint cnt = uint(pc.N) * HW, k = gl_WorkGroupID.x;
    const uint e0 = k * uint(pc.chunk), e1 = min(cnt, e0 + uint(pc.chunk));
    for (uint c = gl_WorkGroupID.y; c < C; c += gl_NumWorkGroups.y) {
        if (pc.pass_ == 0) {
            float s = 0.0;
            for (uint e = e0 + lid; e < e1; e += 256u) s += pc.x.v[((e / HW) * C + c) * HW + e % HW];
            s = sn_wg_sum(s);
            if (lid == 0u) pc.ps.v[c * P + k] = s;
        } else {
            float mu = sn_wg_sum(lid < P ? pc.ps.v[c * P + lid] : 0.0) / float(cnt);
            float q = 0.0;
            for (uint e = e0 + lid; e < e1; e += 256u) {
                float d = pc.x.v[((e / HW) * C + c) * HW + e % HW] - mu;
                q += d * d;
            }
            q = sn_wg_sum(q);
            if (lid == 0u) pc.pq.v[c * P + k] = q;
        }
    }
}
