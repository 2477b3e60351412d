// One LSTM timestep t of one layer. A workgroup owns JB hidden units j0..j0+JB-1 (their
// 4*JB gate rows of W_hh [4H, H], row-major as given): the recurrent product
// h_{t-1} W_hh^T of those rows for every batch row, reduced over the workgroup
// (rnn_step.glsl), then the biases and gate math for its (b, j) pairs. gates[b,t] holds
// x W_ih^T on entry and the activated (i,f,g,o) on exit (saved state, tensor.h); c and h
// of step t are written at (b*T + t)*H + j. The previous state is row b of hp/cp at
// stride ps (inside the sequence, or the initial state), none at has_prev = 0.
// Before the #include: JB (hidden units per workgroup), S, Q (rnn_step.glsl), LSX = R*S
// and optionally SN_RNN_U, SN_RNN_SG: the variants rnn_lstm_step*.comp.
#include "ops_common.glsl"

#define G 4u
#define R (G * JB)     // gate rows per workgroup
#define BC 8u          // batch rows per pass
#include "rnn_step.glsl"

layout(local_size_x = LSX) in; // R * S

// the plain kernel's push constants, or with SN_RNN_WAVE one layer's block of a combined dispatch
#define SN_RNN_FIELDS F32 gates, cs, hs, hp, cp, w_hh, b_ih, b_hh; int B, T, H, t, ps, has_prev, v4;
SN_RNN_PARAMS

void main() {
    SN_RNN_LOAD();
    const uint H = uint(pc.H), B = uint(pc.B), T = uint(pc.T), t = uint(pc.t), ps = uint(pc.ps);
    const uint tid = gl_LocalInvocationID.x, row = SN_RNN_TID / S, slice = SN_RNN_TID % S;
    bool again = false;
    const uint nblk = (H + JB - 1u) / JB;
    for (uint blk = SN_RNN_WG; blk < nblk; blk += SN_RNN_NWG) {
        const uint j0 = blk * JB, jr = j0 + row % JB; // this thread's row: gate row/JB of unit jr
        const bool live = pc.has_prev != 0 && jr < H;
        const uint wrow = ((row / JB) * H + jr) * H;
        // the thread's second row with SN_RNN_R2 (same unit, gate row/JB + 2)
        const uint row2 = row + R / 2u, jr2 = j0 + row2 % JB, wrow2 = ((row2 / JB) * H + jr2) * H;
        const bool live2 = pc.has_prev != 0 && jr2 < H;
        for (uint b0 = 0u; b0 < B; b0 += BC) {
            const uint bc = min(BC, B - b0);
            // gate math: thread (k, u) for batch row b0 + k, unit j0 + u; its inputs are
            // loaded before the product so their latency hides behind it
            const uint k = tid / JB, j = j0 + tid % JB, b = b0 + k;
            const bool mine = k < bc && j < H;
            const uint g0 = (b * T + t) * 4u * H, rr = k * R + tid % JB;
            float pre[4], cprev = 0.0; // the pre-activations without the recurrent sums, c_{t-1}
            if (mine) {
                [[unroll]] for (uint q = 0u; q < 4u; q++)
                    pre[q] = pc.gates.v[g0 + q * H + j] + pc.b_ih.v[q * H + j] + pc.b_hh.v[q * H + j];
                cprev = pc.has_prev != 0 ? pc.cp.v[b * ps + j] : 0.0;
            }
            float acc[BC];
            [[unroll]] for (uint q = 0u; q < BC; q++) acc[q] = 0.0;
            SN_RNN_PRODUCT(acc, live, live2, pc.w_hh, wrow, wrow2, pc.hp, b0 * ps, ps, H);
            again = true;
            if (mine) {
                [[unroll]] for (uint q = 0u; q < 4u; q++) pre[q] += sn_rnn_sum(rr + q * JB);
                float i = sn_sigmoid(pre[0]), f = sn_sigmoid(pre[1]), g = sn_tanh(pre[2]), o = sn_sigmoid(pre[3]);
                float c = f * cprev + i * g;
                pc.gates.v[g0 + j] = i;
                pc.gates.v[g0 + H + j] = f;
                pc.gates.v[g0 + 2u * H + j] = g;
                pc.gates.v[g0 + 3u * H + j] = o;
                uint o1 = (b * T + t) * H + j;
                pc.cs.v[o1] = c;
                pc.hs.v[o1] = o * sn_tanh(c);
            }
        }
    }
}
