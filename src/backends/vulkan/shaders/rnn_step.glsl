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

// The same data 4 floats at a time (pc.v4: rows of a multiple of 4 floats at 16-byte
// aligned addresses, the host checks): a quarter of the load instructions.
layout(buffer_reference, std430, buffer_reference_align = 16) buffer SnV4 { vec4 v[]; };

// SN_RNN_DOT with vec4 loads: arow, xrow, xs and K multiples of 4
#define SN_RNN_DOT4(acc, A_, arow, X_, xrow, xs, K, slice, bc)                                \
    {                                                                                       \
        SnV4 a4_ = SnV4(A_), x4_ = SnV4(X_);                                                  \
        uint ar_ = (arow) >> 2, xr_ = (xrow) >> 2, xs_ = (xs) >> 2;                         \
        for (uint q_ = (slice); q_ < ((K) >> 2); q_ += S) {                                 \
            vec4 w_ = a4_.v[ar_ + q_];                                                      \
            [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                    \
                if (k_ < (bc)) {                                                            \
                    vec4 h_ = x4_.v[xr_ + k_ * xs_ + q_];                                   \
                    acc[k_] = fma(w_.w, h_.w, fma(w_.z, h_.z, fma(w_.y, h_.y, fma(w_.x, h_.x, acc[k_])))); \
                }                                                                           \
        }                                                                                   \
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
