#version 450
// The CPU-driver form of rnn_gru_step.comp, which rnn.c picks on lavapipe and
// SwiftShader (they run a workgroup's barriers as switches between its invocations):
// no shared memory, no barriers, each invocation does its dot products alone.
// One GRU timestep t of one layer (PyTorch equations, gates r,z,n), one invocation per
// (b, j): hn = W_hn h_{t-1} + b_hn and the other two recurrent rows, the gate math.
// gates[b,t] holds x W_ih^T on entry and the activated (r,z,n) on exit; hn and h of
// step t are written at (b*T + t)*H + j (saved state, tensor.h). w_t is W_hh^T [H, 3H]
// (transposed once per layer by the host): neighbouring units read neighbouring words.
#include "ops_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    F32 gates, hns, hs, hp, w_t, b_ih, b_hh;
    int B, T, H, t, ps, has_prev;
} pc;

void main() {
    const uint H = uint(pc.H), BH = uint(pc.B) * H;
    for (uint idx = gl_GlobalInvocationID.x; idx < BH; idx += gl_NumWorkGroups.x * 64u) {
        uint b = idx / H, j = idx % H;
        uint g0 = (b * uint(pc.T) + uint(pc.t)) * 3u * H;
        float s0 = 0.0, s1 = 0.0, s2 = 0.0, hprev = 0.0;
        if (pc.has_prev != 0) {
            uint hrow = b * uint(pc.ps);
            for (uint m = 0u; m < H; m++) {
                float h = pc.hp.v[hrow + m];
                uint w = m * 3u * H + j;
                s0 = fma(h, pc.w_t.v[w], s0);
                s1 = fma(h, pc.w_t.v[w + H], s1);
                s2 = fma(h, pc.w_t.v[w + 2u * H], s2);
            }
            hprev = pc.hp.v[hrow + j];
        }
        float xr = pc.gates.v[g0 + j] + pc.b_ih.v[j];
        float xz = pc.gates.v[g0 + H + j] + pc.b_ih.v[H + j];
        float xn = pc.gates.v[g0 + 2u * H + j] + pc.b_ih.v[2u * H + j];
        float hr = pc.b_hh.v[j] + s0, hz = pc.b_hh.v[H + j] + s1, hn = pc.b_hh.v[2u * H + j] + s2;
        float r = sn_sigmoid(xr + hr), z = sn_sigmoid(xz + hz), n = sn_tanh(xn + r * hn);
        pc.gates.v[g0 + j] = r;
        pc.gates.v[g0 + H + j] = z;
        pc.gates.v[g0 + 2u * H + j] = n;
        uint o1 = (b * uint(pc.T) + uint(pc.t)) * H + j;
        pc.hns.v[o1] = hn;
        pc.hs.v[o1] = (1.0 - z) * n + z * hprev;
    }
}
