#version 450
// The CPU-driver form of rnn_gru_step_bwd.comp, which rnn.c picks on lavapipe and
// SwiftShader (they run a workgroup's barriers as switches between its invocations):
// no shared memory, no barriers, each invocation does its dot products alone.
// One GRU backward timestep t of one layer, one invocation per (b, j): dh = dL/dh_t from
// above plus, below the last step, the direct part z*dh (dhz, from the step after) and
// dGh_{t+1} W_hh (column j against row b, written by the previous dispatch). dGx_t
// overwrites the activated gates of step t (tensor.h), dGh_t goes to its scratch block.
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 gates, hns, hs, dho, dgh, dhz, w_hh;
    int B, T, H, t;
} pc;

void main() {
    const uint H = uint(pc.H), BH = uint(pc.B) * H, T = uint(pc.T), t = uint(pc.t);
    const bool last = t + 1u == T;
    for (uint idx = gl_GlobalInvocationID.x; idx < BH; idx += gl_NumWorkGroups.x * 64u) {
        uint b = idx / H, j = idx % H;
        uint g0 = (b * T + t) * 3u * H, o1 = (b * T + t) * H + j;
        float dh = pc.dho.v[o1];
        if (!last) {
            uint n0 = g0 + 3u * H;
            float s = pc.dhz.v[b * H + j];
            for (uint g = 0u; g < 3u * H; g++) s = fma(pc.dgh.v[n0 + g], pc.w_hh.v[g * H + j], s);
            dh += s;
        }
        float r = pc.gates.v[g0 + j], z = pc.gates.v[g0 + H + j], n = pc.gates.v[g0 + 2u * H + j];
        float hn = pc.hns.v[o1], hp = t > 0u ? pc.hs.v[o1 - H] : 0.0;
        float dnp = dh * (1.0 - z) * (1.0 - n * n);
        float dzp = dh * (hp - n) * z * (1.0 - z);
        float drp = dnp * hn * r * (1.0 - r);
        pc.gates.v[g0 + j] = drp;
        pc.gates.v[g0 + H + j] = dzp;
        pc.gates.v[g0 + 2u * H + j] = dnp;
        pc.dgh.v[g0 + j] = drp;
        pc.dgh.v[g0 + H + j] = dzp;
        pc.dgh.v[g0 + 2u * H + j] = dnp * r;
        pc.dhz.v[b * H + j] = dh * z;
    }
}
