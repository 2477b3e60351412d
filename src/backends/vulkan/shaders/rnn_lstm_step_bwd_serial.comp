#version 450
// The CPU-driver form of rnn_lstm_step_bwd.comp, which rnn.c picks on lavapipe and
// SwiftShader (they run a workgroup's barriers as switches between its invocations):
// no shared memory, no barriers, each invocation does its dot products alone.
// One LSTM backward timestep t of one layer, one invocation per (b, j): dh = dL/dh_t
// from above plus, below the last step, the recurrent part dG_{t+1} W_hh (column j of
// W_hh against the whole row b of dG_{t+1}, written by the previous dispatch); then the
// cell backward. The pre-activation gradients dG_t overwrite the activated gates of
// step t (each element read before written, by the same invocation; tensor.h); dc
// carries dL/dc between steps in [B,H].
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 gates, cs, dho, dc, w_hh;
    int B, T, H, t;
} pc;

void main() {
    const uint H = uint(pc.H), BH = uint(pc.B) * H, T = uint(pc.T), t = uint(pc.t);
    const bool last = t + 1u == T;
    for (uint idx = gl_GlobalInvocationID.x; idx < BH; idx += gl_NumWorkGroups.x * 64u) {
        uint b = idx / H, j = idx % H;
        uint g0 = (b * T + t) * 4u * H, o1 = (b * T + t) * H + j;
        float dh = pc.dho.v[o1];
        if (!last) {
            uint n0 = g0 + 4u * H; // dG of step t+1, same row b
            float s = 0.0;
            for (uint g = 0u; g < 4u * H; g++) s = fma(pc.gates.v[n0 + g], pc.w_hh.v[g * H + j], s);
            dh += s;
        }
        float i = pc.gates.v[g0 + j], f = pc.gates.v[g0 + H + j], gg = pc.gates.v[g0 + 2u * H + j];
        float o = pc.gates.v[g0 + 3u * H + j];
        float tc = sn_tanh(pc.cs.v[o1]);
        float cp = t > 0u ? pc.cs.v[o1 - H] : 0.0;
        float dc = (last ? 0.0 : pc.dc.v[b * H + j]) + dh * o * (1.0 - tc * tc);
        pc.gates.v[g0 + j] = dc * gg * i * (1.0 - i);
        pc.gates.v[g0 + H + j] = dc * cp * f * (1.0 - f);
        pc.gates.v[g0 + 2u * H + j] = dc * i * (1.0 - gg * gg);
        pc.gates.v[g0 + 3u * H + j] = dh * tc * o * (1.0 - o);
        pc.dc.v[b * H + j] = dc * f;
    }
}
