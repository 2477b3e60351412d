// One GRU timestep t of one layer (PyTorch equations, gates r,z,n). A workgroup owns JB
// hidden units (their 3*JB rows of W_hh [3H, H], row-major as given): the recurrent
// product h_{t-1} W_hh^T of those rows for every batch row, reduced over the workgroup
// (rnn_step.glsl), then hn = W_hn h_{t-1} + b_hn, the other rows and the gate math for
// its (b, j) pairs. gates[b,t] holds x W_ih^T on entry and the activated (r,z,n) on
// exit; hn and h of step t are written at (b*T + t)*H + j (saved state, tensor.h). The
// previous h is row b of hp at stride ps, none at has_prev = 0.
// Before the #include: JB (hidden units per workgroup), S, Q (rnn_step.glsl), LSX = R*S
// and optionally SN_RNN_U, SN_RNN_SG: the variants rnn_gru_step*.comp.
#include "ops_common.glsl"

#define G 3u
#define R (G * JB)     // gate rows per workgroup
#define BC 8u          // batch rows per pass
#include "rnn_step.glsl"

layout(local_size_x = LSX) in; // R * S

// the plain kernel's push constants, or with SN_RNN_WAVE one layer's block of a combined dispatch
#define SN_RNN_FIELDS F32 gates, hns, hs, hp, w_hh, b_ih, b_hh; int B, T, H, t, ps, has_prev, v4;
SN_RNN_PARAMS

void main() {
    SN_RNN_LOAD();
    const uint H = uint(pc.H), B = uint(pc.B), T = uint(pc.T), t = uint(pc.t), ps = uint(pc.ps);
    const uint tid = gl_LocalInvocationID.x, row = SN_RNN_TID / S, slice = SN_RNN_TID % S;
    bool again = false;
    const uint nblk = (H + JB - 1u) / JB;
    for (uint blk = SN_RNN_WG; blk < nblk; blk += SN_RNN_NWG) {
        const uint j0 = blk * JB, jr = j0 + row % JB;
        const bool live = pc.has_prev != 0 && jr < H;
        const uint wrow = ((row / JB) * H + jr) * H;
        // the thread's second row with SN_RNN_R2
        const uint row2 = row + R / 2u, jr2 = j0 + row2 % JB, wrow2 = ((row2 / JB) * H + jr2) * H;
        const bool live2 = pc.has_prev != 0 && jr2 < H;
        for (uint b0 = 0u; b0 < B; b0 += BC) {
            const uint bc = min(BC, B - b0);
            // gate math: thread (k, u) for batch row b0 + k, unit j0 + u; its inputs are
            // loaded before the product so their latency hides behind it
            const uint k = tid / JB, j = j0 + tid % JB, b = b0 + k;
            const bool mine = k < bc && j < H;
            const uint g0 = (b * T + t) * 3u * H, rr = k * R + tid % JB;
            float hprev, xr, xz, xn, hr, hz, hn; // h_{t-1}, the input parts with b_ih, b_hh
            if (mine) {
                hprev = pc.has_prev != 0 ? pc.hp.v[b * ps + j] : 0.0;
                xr = pc.gates.v[g0 + j] + pc.b_ih.v[j];
                xz = pc.gates.v[g0 + H + j] + pc.b_ih.v[H + j];
                xn = pc.gates.v[g0 + 2u * H + j] + pc.b_ih.v[2u * H + j];
                hr = pc.b_hh.v[j], hz = pc.b_hh.v[H + j], hn = pc.b_hh.v[2u * H + j];
            }
            float acc[BC];
            [[unroll]] for (uint q = 0u; q < BC; q++) acc[q] = 0.0;
            SN_RNN_PRODUCT(acc, live, live2, pc.w_hh, wrow, wrow2, pc.hp, b0 * ps, ps, H);
            again = true;
            if (mine) {
                hr += sn_rnn_sum(rr), hz += sn_rnn_sum(rr + JB);
                hn += sn_rnn_sum(rr + 2u * JB);
                float r = sn_sigmoid(xr + hr), z = sn_sigmoid(xz + hz), n = sn_tanh(xn + r * hn);
                pc.gates.v[g0 + j] = r;
                pc.gates.v[g0 + H + j] = z;
                pc.gates.v[g0 + 2u * H + j] = n;
                uint o1 = (b * T + t) * H + j;
                pc.hns.v[o1] = hn;
                pc.hs.v[o1] = (1.0 - z) * n + z * hprev;
            }
        }
    }
}
