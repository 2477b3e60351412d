// The recurrent product of the RNN step kernels (rnn_{lstm,gru}_step{,_bwd}_body.glsl),
// spread over a workgroup: R outputs per batch row (gate rows forward, hidden units
// backward), each a K-long dot product split into S interleaved slices. Thread
// (row, slice) = local id row*S + slice sums a[row, m] x[b, m] over m = slice + S*i for
// up to BC batch rows at a time (registers stay bounded at any batch), so a weight row
// is read once per step for the whole batch and neighbouring threads read neighbouring
// words. Then one reduction over the slices through shared memory, in two stages of Q
// slice groups each (Q = 1: one stage); no subgroup operations: any Vulkan 1.2 device.
// Variants (rnn.c picks one per device): SN_RNN_SG instead reduces each subgroup's slices with
// shuffles first (one barrier instead of two; the host checks shuffle support and that
// the subgroup size divides R*S); SN_RNN_U > 1 issues U independent weight loads of a
// thread before their FMAs (more loads in flight per thread); SN_RNN_R2 gives each thread
// two rows (row, row + R/2; local size R*S/2) from one load of the other operand
// (SN_RNN_PRODUCT_R2, sn_rnn_reduce2).
//
// SN_RNN_W16: the weight operand (W_hh forward, W_hh^T backward) is f16, two per 32-bit
// word (element 2i in the low half: rnn_w16.comp writes it), read with unpackHalf2x16
// (core GLSL, no 16-bit storage feature needed) and accumulated in f32 like the rest; the
// other operand, the sums and the gate math stay f32 (train.mixed_precision f16, rnn.c).
//
// Before the #include: R, S (a power of 2 with SN_RNN_SG), Q (divides S, BC*Q <= S), BC;
// local size R*S (R*S/2 with SN_RNN_R2, R even). Thread ids come from SN_RNN_TID (subgroup-contiguous with SN_RNN_SG).
#ifndef SN_RNN_STEP_GLSL
#define SN_RNN_STEP_GLSL
// [[unroll]]: the per-batch-row sums stay in registers (a dynamically indexed array
// would live in memory)
#extension GL_EXT_control_flow_attributes : require

#ifndef SN_RNN_U
#define SN_RNN_U 1u
#endif

#ifdef SN_RNN_SG
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
// the invocation's index with each subgroup's lanes consecutive, so a row's slices
// share subgroups whatever order the driver assigns them in
#define SN_RNN_TID (gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID)
#else
#define SN_RNN_TID gl_LocalInvocationID.x
#endif

// The layer wavefront (rnn.c, SN_VK_RNN_WAVE): with SN_RNN_WAVE one dispatch runs one
// timestep of up to n layers on gpl workgroups each; their parameter blocks (the plain
// kernel's push constants, SN_RNN_FIELDS, as a struct) sit in an array at wpc.args and a
// workgroup takes block gl_WorkGroupID.x / gpl (uniform over the workgroup: the barriers
// stay uniform). The body declares SN_RNN_FIELDS, then SN_RNN_PARAMS; main starts with
// SN_RNN_LOAD() and spreads its unit blocks over SN_RNN_WG step SN_RNN_NWG.
#ifdef SN_RNN_WAVE
#define SN_RNN_PARAMS                                                                        \
    struct SnRnnP { SN_RNN_FIELDS };                                                         \
    layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer SnRnnArgs { SnRnnP p[]; }; \
    layout(push_constant) uniform WPC { SnRnnArgs args; int gpl; } wpc;                      \
    SnRnnP pc;
#define SN_RNN_LOAD() pc = wpc.args.p[gl_WorkGroupID.x / uint(wpc.gpl)]
#define SN_RNN_WG (gl_WorkGroupID.x % uint(wpc.gpl))
#define SN_RNN_NWG uint(wpc.gpl)
#elif defined(SN_RNN_PERSIST)
// The persistent form (rnn_persist.glsl, SN_VK_RNN_PERSIST): one dispatch runs every step
// of a layer; its main calls the body's main (renamed sn_rnn_step_main) once per step
// with that step's block (SN_RNN_FIELDS, as in the wave form) in pc.
#define SN_RNN_PARAMS struct SnRnnP { SN_RNN_FIELDS }; SnRnnP pc;
#define SN_RNN_LOAD()
#define SN_RNN_WG gl_WorkGroupID.x
#define SN_RNN_NWG gl_NumWorkGroups.x
#else
#define SN_RNN_PARAMS layout(push_constant) uniform PC { SN_RNN_FIELDS } pc;
#define SN_RNN_LOAD()
#define SN_RNN_WG gl_WorkGroupID.x
#define SN_RNN_NWG gl_NumWorkGroups.x
#endif

#define SP (S + 1u) // padded slice stride: the first stage reads shared memory without bank conflicts

shared float sn_part[BC * R * SP]; // [k][row][slice] partial sums of batch row b0 + k
#ifndef SN_RNN_SG
shared float sn_red[BC * R * Q];   // [k*R + row][q] after the first stage
#endif

// The same data 4 floats at a time (pc.v4: rows of a multiple of 4 floats at 16-byte
// aligned addresses, the host checks): a quarter of the load instructions.
layout(buffer_reference, std430, buffer_reference_align = 16) SN_BUF_COHERENT buffer SnV4 { vec4 v[]; };

// The weight operand: element i (SN_RNN_W1), 4 of them at 4*i (SN_RNN_W4, through a pointer
// of type SnW4, made from the F32 address).
#ifdef SN_RNN_W16
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer SnH2 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer SnW4 { uvec2 v[]; };
float sn_rnn_half(SnH2 a, uint i) {
    vec2 p = unpackHalf2x16(a.v[i >> 1]);
    return (i & 1u) != 0u ? p.y : p.x;
}
#define SN_RNN_W1(a, i) sn_rnn_half(SnH2(a), (i))
#define SN_RNN_W4(a4, i) sn_rnn_quad((a4).v[i])
vec4 sn_rnn_quad(uvec2 u) { return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
#else
#define SnW4 SnV4
#define SN_RNN_W1(a, i) (a).v[i]
#define SN_RNN_W4(a4, i) (a4).v[i]
#endif

// acc[k] = sum over m = slice + S*i < K of a[arow + m] * x[xrow + k*xs + m], k < bc
#define SN_RNN_DOT(acc, a, arow, x, xrow, xs, K, slice, bc)                       \
    for (uint m_ = (slice); m_ < (K); m_ += S) {                                  \
        float w_ = SN_RNN_W1(a, (arow) + m_);                                      \
        [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                         \
            if (k_ < (bc)) acc[k_] = fma(w_, (x).v[(xrow) + k_ * (xs) + m_], acc[k_]); \
    }

// SN_RNN_DOT with vec4 loads (the weights: 4 halves with SN_RNN_W16): arow, xrow, xs and
// K multiples of 4
#define SN_RNN_DOT4(acc, A_, arow, X_, xrow, xs, K, slice, bc)                                \
    {                                                                                       \
        SnW4 a4_ = SnW4(A_);                                                                \
        SnV4 x4_ = SnV4(X_);                                                                \
        uint ar_ = (arow) >> 2, xr_ = (xrow) >> 2, xs_ = (xs) >> 2;                         \
        uint q_ = (slice);                                                                  \
        /* SN_RNN_U weight vectors loaded before any FMA: independent loads in flight */    \
        for (; SN_RNN_U > 1u && q_ + (SN_RNN_U - 1u) * S < ((K) >> 2); q_ += SN_RNN_U * S) {\
            vec4 wu_[SN_RNN_U];                                                             \
            [[unroll]] for (uint u_ = 0u; u_ < SN_RNN_U; u_++) wu_[u_] = SN_RNN_W4(a4_, ar_ + q_ + u_ * S); \
            [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                    \
                if (k_ < (bc)) {                                                            \
                    [[unroll]] for (uint u_ = 0u; u_ < SN_RNN_U; u_++) {                    \
                        vec4 h_ = x4_.v[xr_ + k_ * xs_ + q_ + u_ * S], w_ = wu_[u_];        \
                        acc[k_] = fma(w_.w, h_.w, fma(w_.z, h_.z, fma(w_.y, h_.y, fma(w_.x, h_.x, acc[k_])))); \
                    }                                                                       \
                }                                                                           \
        }                                                                                   \
        for (; q_ < ((K) >> 2); q_ += S) {                                                  \
            vec4 w_ = SN_RNN_W4(a4_, ar_ + q_);                                             \
            [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                    \
                if (k_ < (bc)) {                                                            \
                    vec4 h_ = x4_.v[xr_ + k_ * xs_ + q_];                                   \
                    acc[k_] = fma(w_.w, h_.w, fma(w_.z, h_.z, fma(w_.y, h_.y, fma(w_.x, h_.x, acc[k_])))); \
                }                                                                           \
        }                                                                                   \
    }

#ifdef SN_RNN_R2
// SN_RNN_R2: a thread sums two outputs, rows row and row + R/2 (local size R*S/2), from one
// load of the x operand: half the x traffic through L1 (arow2: the second row's start)
#define SN_RNN_DOT4_R2(acc, acc2, A_, arow, arow2, X_, xrow, xs, K, slice, bc)                \
    {                                                                                       \
        SnW4 a4_ = SnW4(A_);                                                                \
        SnV4 x4_ = SnV4(X_);                                                                \
        uint ar_ = (arow) >> 2, ar2_ = (arow2) >> 2, xr_ = (xrow) >> 2, xs_ = (xs) >> 2;    \
        uint q_ = (slice);                                                                  \
        for (; SN_RNN_U > 1u && q_ + (SN_RNN_U - 1u) * S < ((K) >> 2); q_ += SN_RNN_U * S) {\
            vec4 wu_[SN_RNN_U], wv_[SN_RNN_U];                                              \
            [[unroll]] for (uint u_ = 0u; u_ < SN_RNN_U; u_++) {                            \
                wu_[u_] = SN_RNN_W4(a4_, ar_ + q_ + u_ * S);                                \
                wv_[u_] = SN_RNN_W4(a4_, ar2_ + q_ + u_ * S);                               \
            }                                                                               \
            [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                    \
                if (k_ < (bc)) {                                                            \
                    [[unroll]] for (uint u_ = 0u; u_ < SN_RNN_U; u_++) {                    \
                        vec4 h_ = x4_.v[xr_ + k_ * xs_ + q_ + u_ * S], w_ = wu_[u_], v_ = wv_[u_]; \
                        acc[k_] = fma(w_.w, h_.w, fma(w_.z, h_.z, fma(w_.y, h_.y, fma(w_.x, h_.x, acc[k_])))); \
                        acc2[k_] = fma(v_.w, h_.w, fma(v_.z, h_.z, fma(v_.y, h_.y, fma(v_.x, h_.x, acc2[k_])))); \
                    }                                                                       \
                }                                                                           \
        }                                                                                   \
        for (; q_ < ((K) >> 2); q_ += S) {                                                  \
            vec4 w_ = SN_RNN_W4(a4_, ar_ + q_), v_ = SN_RNN_W4(a4_, ar2_ + q_);             \
            [[unroll]] for (uint k_ = 0u; k_ < BC; k_++)                                    \
                if (k_ < (bc)) {                                                            \
                    vec4 h_ = x4_.v[xr_ + k_ * xs_ + q_];                                   \
                    acc[k_] = fma(w_.w, h_.w, fma(w_.z, h_.z, fma(w_.y, h_.y, fma(w_.x, h_.x, acc[k_])))); \
                    acc2[k_] = fma(v_.w, h_.w, fma(v_.z, h_.z, fma(v_.y, h_.y, fma(v_.x, h_.x, acc2[k_])))); \
                }                                                                           \
        }                                                                                   \
    }

// The product of both rows; a row past H (live = false) loads the other row's weights and
// its sums are never read
#define SN_RNN_PRODUCT_R2(acc, acc2, live, live2, A_, arow, arow2, X_, xrow, xs, K, slice, bc)   \
    if ((live) || (live2)) {                                                                \
        const uint r1_ = (live) ? (arow) : (arow2), r2_ = (live2) ? (arow2) : (arow);       \
        if (pc.v4 != 0) SN_RNN_DOT4_R2(acc, acc2, A_, r1_, r2_, X_, xrow, xs, K, slice, bc) \
        else {                                                                              \
            SN_RNN_DOT(acc, A_, r1_, X_, xrow, xs, K, slice, bc);                           \
            SN_RNN_DOT(acc2, A_, r2_, X_, xrow, xs, K, slice, bc);                          \
        }                                                                                   \
    }

// sn_rnn_reduce for two rows per thread (no subgroup form)
void sn_rnn_reduce2(float acc[BC], float acc2[BC], uint row, uint slice, uint bc) {
    [[unroll]] for (uint k = 0u; k < BC; k++) {
        sn_part[(k * R + row) * SP + slice] = acc[k];
        sn_part[(k * R + row + R / 2u) * SP + slice] = acc2[k];
    }
    barrier();
    for (uint n = gl_LocalInvocationID.x; n < R * bc * Q; n += LSX) {
        uint o = n / Q, q = n % Q;
        float s = 0.0;
        for (uint i = q; i < S; i += Q) s += sn_part[o * SP + i];
        sn_red[n] = s;
    }
    barrier();
}
#endif

#ifndef SN_RNN_SG
// Stores acc (every thread, uniform control flow), reduces over the slices: on return
// sn_red[(k*R + row)*Q + q] holds the sum of slices q, q+Q, ... of output (k, row), k < bc.
// The caller reads the sums (sn_rnn_sum) before its next call (whose first barrier
// orders the reuse; `again` is for the subgroup form).
void sn_rnn_reduce(float acc[BC], uint row, uint slice, uint bc, bool again) {
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

// the reduced sum of output n = k*R + row after sn_rnn_reduce
float sn_rnn_sum(uint n) {
    float s = 0.0;
    [[unroll]] for (uint q = 0u; q < Q; q++) s += sn_red[n * Q + q];
    return s;
}
#else
// The subgroup form: a butterfly over each aligned group of C = min(S, subgroup size)
// lanes (the same row's consecutive slices) leaves its sum in the group's first lane,
// which stores it in slot slice/C; sn_rnn_sum adds the S/C slots. again: not the first
// call of this invocation (a barrier first: the last call's sums may still be read).
void sn_rnn_reduce(float acc[BC], uint row, uint slice, uint bc, bool again) {
    const uint C = min(S, gl_SubgroupSize);
    [[unroll]] for (uint k = 0u; k < BC; k++)
        for (uint o = C >> 1; o > 0u; o >>= 1) acc[k] += subgroupShuffleXor(acc[k], o);
    if (again) barrier();
    if (slice % C == 0u) [[unroll]] for (uint k = 0u; k < BC; k++) sn_part[(k * R + row) * SP + slice / C] = acc[k];
    barrier();
}

float sn_rnn_sum(uint n) {
    const uint P = S / min(S, gl_SubgroupSize);
    float s = 0.0;
    for (uint i = 0u; i < P; i++) s += sn_part[n * SP + i];
    return s;
}
#endif

// The recurrent product of the thread's row(s) into acc, reduced over the slices (the
// caller's row, slice, bc, again in scope): with SN_RNN_R2 rows arow and arow2 (the
// second row's live2), else row arow alone (arow2, live2 unused); vec4 loads where the
// host allows (pc.v4).
#ifdef SN_RNN_R2
#define SN_RNN_PRODUCT(acc, live, live2, A_, arow, arow2, X_, xrow, xs, K)                   \
    {                                                                                       \
        float acc2_[BC];                                                                    \
        [[unroll]] for (uint q_ = 0u; q_ < BC; q_++) acc2_[q_] = 0.0;                       \
        SN_RNN_PRODUCT_R2(acc, acc2_, live, live2, A_, arow, arow2, X_, xrow, xs, K, slice, bc) \
        sn_rnn_reduce2(acc, acc2_, row, slice, bc);                                         \
    }
#else
#define SN_RNN_PRODUCT(acc, live, live2, A_, arow, arow2, X_, xrow, xs, K)                   \
    {                                                                                       \
        if (live) {                                                                         \
            if (pc.v4 != 0) SN_RNN_DOT4(acc, A_, arow, X_, xrow, xs, K, slice, bc)          \
            else SN_RNN_DOT(acc, A_, arow, X_, xrow, xs, K, slice, bc);                     \
        }                                                                                   \
        sn_rnn_reduce(acc, row, slice, bc, again);                                          \
    }
#endif

#endif
