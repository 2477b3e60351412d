// The recurrent product of the RNN step kernels (rnn_{lstm,gru}_step{,_bwd}.comp),
// spread over a workgroup: R outputs per batch row (gate rows forward, hidden units
// backward), each a K-long dot product split into S interleaved slices. Thread
// (row, slice) = local id row*S + slice sums a[row, m] x[b, m] over m = slice + S*i for
// up to BC batch rows at a time (registers stay bounded at any batch), so a weight row
// is read once per step for the whole batch and neighbouring threads read neighbouring
// words. Then one reduction over the slices through shared memory, in two stages of Q
// slice groups each (Q = 1: one stage). No subgroup operations: any Vulkan 1.2 device.
//
// Before the #include: R, S, Q (divides S, BC*Q <= S), BC; local size R*S.
#ifndef SN_RNN_STEP_GLSL
#define SN_RNN_STEP_GLSL
// [[unroll]]: the per-batch-row sums stay in registers (a dynamically indexed array
// would live in memory)
#extension GL_EXT_control_flow_attributes : require

#define SP (S + 1u) // padded slice stride: the first stage reads shared memory without bank conflicts

shared float sn_part[BC * R * SP]; // [k][row][slice] partial sums of batch row b0 + k
shared float sn_red[BC * R * Q];   // [k*R + row][q] after the first stage

// acc[k] = sum over m = slice + S*i < K of a[arow + m] * x[xrow + k*xs + m], k < bc
#define SN_RNN_DOT(acc, a, arow, x, xrow, xs, K, slice, bc)                       \
    for (uint m_ = (slice); m_ < (K); m_ += S) {                                  \
        float w_ = (a).v[(arow) + m_];                                            \
        [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                         \
            if (k_ < (bc)) acc[k_] = fma(w_, (x).v[(xrow) + k_ * (xs) + m_], acc[k_]); \
    }

// Stores acc (every thread, uniform control flow), reduces over the slices: on return
// sn_red[(k*R + row)*Q + q] holds the sum of slices q, q+Q, ... of output (k, row), k < bc.
// The caller reads sn_red before its next call (whose first barrier orders the reuse).
void sn_rnn_reduce(float acc[BC], uint row, uint slice, uint bc) {
    [[unroll]] for (uint k = 0u; k < BC; k++) sn_part[(k * R + row) * SP + slice] = acc[k];
    barrier();
    uint tid = gl_LocalInvocationID.x;
    if (tid < R * bc * Q) {
        uint n = tid / Q, q = tid % Q;
        float s = 0.0;
        for (uint i = q; i < S; i += Q) s += sn_part[n * SP + i];
        sn_red[tid] = s;
    }
    barrier();
}

#endif
