// One GRU backward timestep t of one layer. A workgroup owns JB hidden units: dh[b,j] =
// dL/dh_t from above plus, below the last step, the direct part z*dh (dhz, from the step
// after) and dGh_{t+1}[b,:] W_hh[:,j] (dGh_{t+1} written by the previous dispatch),
// reduced over the workgroup from w_t = W_hh^T [H, 3H] (transposed once per layer by the
// host; rnn_step.glsl); then the cell backward of its (b, j) pairs. dGx_t overwrites the
// activated gates of step t (tensor.h), dGh_t goes to its scratch block.
// Before the #include: JB (hidden units per workgroup), S, Q (rnn_step.glsl), LSX = R*S
// and optionally SN_RNN_U, SN_RNN_SG: the variants rnn_gru_step_bwd*.comp.
#include "ops_common.glsl"

#define R JB
#define BC 8u          // batch rows per pass
#include "rnn_step.glsl"

layout(local_size_x = LSX) in; // R * S

// the plain kernel's push constants, or with SN_RNN_WAVE one layer's block of a combined dispatch
#define SN_RNN_FIELDS F32 gates, hns, hs, dho, dgh, dhz, w_t; int B, T, H, t, v4;
SN_RNN_PARAMS

void main() {
    SN_RNN_LOAD();
    const uint H = uint(pc.H), B = uint(pc.B), T = uint(pc.T), t = uint(pc.t), GH = 3u * H;
    const bool last = t + 1u == T;
    const uint tid = gl_LocalInvocationID.x, row = SN_RNN_TID / S, slice = SN_RNN_TID % S;
    bool again = false;
    const uint nblk = (H + JB - 1u) / JB;
    for (uint blk = SN_RNN_WG; blk < nblk; blk += SN_RNN_NWG) {
        const uint j0 = blk * JB, jr = j0 + row;
        const bool live = !last && jr < H;
        // the thread's second row with SN_RNN_R2: unit jr + JB/2
        const uint jr2 = jr + R / 2u;
        const bool live2 = !last && jr2 < H;
        for (uint b0 = 0u; b0 < B; b0 += BC) {
            const uint bc = min(BC, B - b0), nrow = (b0 * T + t + 1u) * GH; // row b0 of step t+1
            // cell backward: thread (k, u) for batch row b0 + k, unit j0 + u; its inputs are
            // loaded before the product so their latency hides behind it
            const uint k = tid / JB, j = j0 + tid % JB, b = b0 + k;
            const bool mine = k < bc && j < H;
            const uint g0 = (b * T + t) * GH, o1 = (b * T + t) * H + j, n = k * R + tid % JB;
            // dL/dh_t from above, dL/dh_t through z of step t+1, the saved gates, h_{t-1}
            float dh, dz, r, z, nn, hn, hp;
            if (mine) {
                dh = pc.dho.v[o1];
                dz = last ? 0.0 : pc.dhz.v[b * H + j];
                r = pc.gates.v[g0 + j], z = pc.gates.v[g0 + H + j], nn = pc.gates.v[g0 + 2u * H + j];
                hn = pc.hns.v[o1], hp = t > 0u ? pc.hs.v[o1 - H] : 0.0;
            }
            float acc[BC];
            [[unroll]] for (uint q = 0u; q < BC; q++) acc[q] = 0.0;
            SN_RNN_PRODUCT(acc, live, live2, pc.w_t, jr * GH, jr2 * GH, pc.dgh, nrow, T * GH, GH);
            again = true;
            if (mine) {
                if (!last) {
                    float s = dz;
                    s += sn_rnn_sum(n);
                    dh += s;
                }
                float dnp = dh * (1.0 - z) * (1.0 - nn * nn);
                float dzp = dh * (hp - nn) * z * (1.0 - z);
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
    }
}
