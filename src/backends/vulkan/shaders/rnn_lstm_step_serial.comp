#version 450
// The CPU-driver form of rnn_lstm_step.comp, which rnn.c picks on lavapipe and
// SwiftShader (they run a workgroup's barriers as switches between its invocations):
// no shared memory, no barriers, each invocation does its dot products alone.
// One LSTM timestep t of one layer, one invocation per (batch b, hidden unit j): the
// recurrent product h_{t-1} W_hh^T for j's four gate rows, the biases, the gate math.
// gates[b,t] holds x W_ih^T on entry and the activated (i,f,g,o) on exit (saved state,
// tensor.h); c and h of step t are written at (b*T + t)*H + j. The previous state is
// row b of hp/cp at stride ps (inside the sequence, or the initial state), none at
// has_prev = 0. w_t is W_hh^T [H, 4H] (the host transposes it once per layer), so the
// invocations of neighbouring units read neighbouring words.
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 gates, cs, hs, hp, cp, w_t, b_ih, b_hh;
    int B, T, H, t, ps, has_prev;
} pc;

void main() {
    const uint H = uint(pc.H), BH = uint(pc.B) * H;
    for (uint idx = gl_GlobalInvocationID.x; idx < BH; idx += gl_NumWorkGroups.x * 64u) {
        uint b = idx / H, j = idx % H;
        uint g0 = (b * uint(pc.T) + uint(pc.t)) * 4u * H;
        float pre[4];
        for (uint k = 0u; k < 4u; k++) pre[k] = pc.gates.v[g0 + k * H + j] + pc.b_ih.v[k * H + j] + pc.b_hh.v[k * H + j];
        float cprev = 0.0;
        if (pc.has_prev != 0) {
            uint hrow = b * uint(pc.ps);
            float s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
            for (uint m = 0u; m < H; m++) {
                float h = pc.hp.v[hrow + m];
                uint w = m * 4u * H + j;
                s0 = fma(h, pc.w_t.v[w], s0);
                s1 = fma(h, pc.w_t.v[w + H], s1);
                s2 = fma(h, pc.w_t.v[w + 2u * H], s2);
                s3 = fma(h, pc.w_t.v[w + 3u * H], s3);
            }
            pre[0] += s0;
            pre[1] += s1;
            pre[2] += s2;
            pre[3] += s3;
            cprev = pc.cp.v[hrow + j];
        }
        float i = sn_sigmoid(pre[0]), f = sn_sigmoid(pre[1]), g = sn_tanh(pre[2]), o = sn_sigmoid(pre[3]);
        float c = f * cprev + i * g;
        pc.gates.v[g0 + j] = i;
        pc.gates.v[g0 + H + j] = f;
        pc.gates.v[g0 + 2u * H + j] = g;
        pc.gates.v[g0 + 3u * H + j] = o;
        uint o1 = (b * uint(pc.T) + uint(pc.t)) * H + j;
        pc.cs.v[o1] = c;
        pc.hs.v[o1] = o * sn_tanh(c);
    }
}
