// The body of matmul_gemm_coop.comp, and of matmul_gemm_coop_emu.comp, which emulates the
// matrix operations per invocation (SN_COOP_EMULATE) to test the rest on drivers without
// cooperative matrices.
// train.mixed_precision on Vulkan: matmul_gemm.comp's GEMM (same push constants, epilogue,
// batching and split K) on cooperative matrices: A and B rounded to f16 while staged into
// shared memory, products summed in f32 accumulators.
// Written with GL_NV_cooperative_matrix because Debian 12's glslang predates
// GL_KHR_cooperative_matrix; the build rewrites the module to SPV_KHR_cooperative_matrix
// (tools/spv_nv2khr.c), which maps each matrix type to its KHR "use" by its place in
// the multiply. So A (M x K), B (K x N) and C (M x N) must be distinct types: their
// shape comes from three specialization constants, distinct ids even when the values
// are equal, set at pipeline creation to a shape the device supports (M, N 8 or 16,
// K 8, 16 or 32).
// 128 x 128 tiles, K in steps of 32; 8 subgroups, 2 x 4 over the tile, each 64 x 32
// outputs (4 x 2 matrices of 16 x 16: 6 matrix loads per 8 products). The workgroup
// has at least 256 invocations (8 subgroups of 32; more subgroups where they are
// smaller: those only stage), so each stages at most 4 vec4 of A and 4 of B per step,
// into registers while the matrices multiply the previous step: two barriers a step.
// Every loop over matrices runs to a compile-time bound (the shape's largest count)
// with the shape's count as a guard the driver folds, so all matrix arrays are indexed
// by constants (no local memory).
// f16 has 5 exponent bits: gradients of 1e-6 would lose most of their bits and 1e-8
// vanish, values past 65504 overflow. So each 128 x 32 chunk of A (32 x 128 of B) is
// scaled by a power of two that brings its largest magnitude to [2^14, 2^15) (as
// PyTorch's GradScaler, but per block and automatic); the accumulators carry the
// product of the scales, rescaled (by a power of two, exactly) when a chunk needs a
// smaller one, and the epilogue divides it out.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "ops_common.glsl"
#include "gemm_load.glsl"

layout(local_size_x_id = 0) in; // max(8 x the subgroup size, 256)
layout(constant_id = 1) const uint lM = 16;
layout(constant_id = 2) const uint lN = 16;
layout(constant_id = 3) const uint lK = 16;

layout(push_constant) uniform PC {
    F32 A;
    F32 B;
    F32 C;
    F32 bias;
    int M, N, K, lda, ldb, ldc;
    int sA0, sA1, sB0, sB1, sC0, sC1;
    int binner;
    int flags; // as gemm_big.glsl (bits 9/10/11: A/B/C may be read as vec4)
    float alpha, beta, p0, p1;
    int Ktot;
} pc;


#define BM 128
#define BN 128
#define BK 32
#define WM 64
#define WN 32
#define NSG 8 // working subgroups
// row strides in shared memory: multiples of 16 bytes (what the matrix loads need),
// padded against bank conflicts
#define AS (BK + 8)
#define BS (BN + 8)
// a transposed operand is kept as it lies in memory (A k-major, B n-major) and loaded as a
// column-major matrix: its staging stores stay 4 consecutive halves (transposing them in
// shared memory hit 2 banks of 32)
#define ATS (BM + 8)
#define BTS (BK + 8)
#define SA (BM * AS) // both layouts of each operand fit
#define SB (BN * BTS)
#define CS 20 // a 16 x 16 accumulator's row stride (the largest the probe admits)
#define NV4 (BM * BK / 4) // vec4 of A (and of B) per chunk

const uint TM = WM / lM, TN = WN / lN; // matrices per subgroup: TM <= 8, TN <= 4

shared float16_t As[SA]; // A(m, k) at m * AS + k, transposed at k * ATS + m
shared float16_t Bs[SB]; // B(k, n) at k * BS + n, transposed at n * BTS + k
shared float Cs[NSG * 16 * CS]; // each subgroup's accumulator on its way out
shared uint amax[2][2];         // largest |A|, |B| of a chunk (float bits), by chunk parity

// the exponent of the power of two that brings mx to [2^14, 2^15), at most cap (0, inf
// and NaN: cap, so they pass through unscaled)
int chunk_exp(uint bits, int cap) {
    float mx = uintBitsToFloat(bits);
    if (mx == 0.0 || isinf(mx) || isnan(mx)) return cap;
    int e;
    frexp(mx, e); // mx = f 2^e, f in [0.5, 1)
    return min(clamp(15 - e, -100, 100), cap);
}


float max4(vec4 v) {
    v = abs(v);
    return max(max(v.x, v.y), max(v.z, v.w));
}

#ifndef SN_COOP_EMULATE
#extension GL_NV_cooperative_matrix : require
#define SN_MAT_A fcoopmatNV<16, 3, lM, lK>
#define SN_MAT_B fcoopmatNV<16, 3, lK, lN>
#define SN_MAT_C fcoopmatNV<32, 3, lM, lN>
#define SN_ZERO_C(c) c = SN_MAT_C(0.0)
#define SN_LOAD_A(m, off)                                \
    if (ta) coopMatLoadNV(m, As, off, ATS, true); \
    else coopMatLoadNV(m, As, off, AS, false)
#define SN_LOAD_B(m, off)                                \
    if (tb) coopMatLoadNV(m, Bs, off, BTS, true); \
    else coopMatLoadNV(m, Bs, off, BS, false)
#define SN_MULADD(c, a, b) c = coopMatMulAddNV(a, b, c)
#define SN_STORE_C(m, off) coopMatStoreNV(m, Cs, off, CS, false)
#define SN_SCALE_C(c, s) c = c * (s)
#else
// A and B are their places in As and Bs, read by the multiply; an accumulator is
// spread over the subgroup as on a GPU: element e of the row-major M x N matrix lives
// in invocation e % gl_SubgroupSize (a subgroup of at least 8: 32 per invocation)
#define SN_MAT_A uint
#define SN_MAT_B uint
struct SnMatC { float v[32]; };
#define SN_MAT_C SnMatC
#define SN_ZERO_C(c) for (uint q_ = 0u; q_ < 32u; q_++) c.v[q_] = 0.0
#define SN_SCALE_C(c, s) for (uint q_ = 0u; q_ < 32u; q_++) c.v[q_] *= (s)
#define SN_LOAD_A(m, off) m = (off)
#define SN_LOAD_B(m, off) m = (off)
#define SN_MULADD(c, a, b)                                                                    \
    for (uint q_ = 0u; q_ * gl_SubgroupSize < lM * lN; q_++) {                                \
        uint e_ = q_ * gl_SubgroupSize + gl_SubgroupInvocationID, r_ = e_ / lN, s_ = e_ % lN; \
        float t_ = c.v[q_];                                                                   \
        for (uint k_ = 0u; k_ < lK; k_++)                                                     \
            t_ = fma(float(As[(a) + (ta ? k_ * ATS + r_ : r_ * AS + k_)]),                      \
                     float(Bs[(b) + (tb ? s_ * BTS + k_ : k_ * BS + s_)]), t_);                 \
        c.v[q_] = t_;                                                                         \
    }
#define SN_STORE_C(m, off)                                                                    \
    for (uint q_ = 0u; q_ * gl_SubgroupSize < lM * lN; q_++) {                                \
        uint e_ = q_ * gl_SubgroupSize + gl_SubgroupInvocationID;                             \
        Cs[(off) + (e_ / lN) * CS + e_ % lN] = m.v[q_];                                       \
    }
#endif

// the epilogue of the lM x lN outputs from row gm0, column gn0, staged in Cs at cs
void out_matrix(int gm0, int gn0, uint cs, uint oc, float s, float s2) {
    const int bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    for (uint e = gl_SubgroupInvocationID; e < lM * lN; e += gl_SubgroupSize) {
        uint r = e / lN, c = e % lN;
        int gm = gm0 + int(r), gn = gn0 + int(c);
        if (gm < pc.M && gn < pc.N) {
            float v = s * (Cs[cs + r * CS + c] * s2);
            uint ci = oc + uint(gm) * uint(pc.ldc) + uint(gn);
            if (pc.beta != 0.0) v += pc.beta * pc.C.v[ci];
            if (bmode == 1) v += pc.bias.v[gn];
            else if (bmode == 2) v += pc.bias.v[gm];
            pc.C.v[ci] = sn_act(uint(act), v, pc.p0, pc.p1);
        }
    }
}

// The products of one step, spelled out: glslc's unroller leaves loops over matrices
// that hold a matrix load, and a loop index into acc would put it in local memory.
#define MMA_I(i, j) if ((i) < TM) SN_MULADD(acc[(i) * 4 + (j)], a[i], b);
#define MMA_J(kk, j)                                                                          \
    if ((j) < TN) {                                                                           \
        SN_MAT_B b;                                                                           \
        SN_LOAD_B(b, tb ? (wn * WN + (j) * lN) * BTS + (kk) : (kk) * BS + wn * WN + (j) * lN); \
        MMA_I(0, j) MMA_I(1, j) MMA_I(2, j) MMA_I(3, j) MMA_I(4, j) MMA_I(5, j) MMA_I(6, j) MMA_I(7, j) \
    }
#define LOAD_AI(i, kk) \
    if ((i) < TM) { SN_LOAD_A(a[i], ta ? (kk) * ATS + wm * WM + (i) * lM : (wm * WM + (i) * lM) * AS + (kk)); }
#define MMA_K(kk)                                                                             \
    if ((kk) % lK == 0u) {                                                                    \
        SN_MAT_A a[8];                                                                        \
        LOAD_AI(0, kk) LOAD_AI(1, kk) LOAD_AI(2, kk) LOAD_AI(3, kk)                           \
        LOAD_AI(4, kk) LOAD_AI(5, kk) LOAD_AI(6, kk) LOAD_AI(7, kk)                           \
        MMA_J(kk, 0) MMA_J(kk, 1) MMA_J(kk, 2) MMA_J(kk, 3)                                   \
    }

void main() {
    const uint lid = gl_LocalInvocationID.x, nthr = gl_WorkGroupSize.x;
    const uint sg = gl_SubgroupID, wm = sg / 4u, wn = sg % 4u;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint z = gl_WorkGroupID.z, zo = z / uint(pc.binner), zi = z % uint(pc.binner);
    const uint oa = zo * uint(pc.sA0) + zi * uint(pc.sA1);
    const uint ob = zo * uint(pc.sB0) + zi * uint(pc.sB1);
    const uint oc = zo * uint(pc.sC0) + zi * uint(pc.sC1);
    const bool ta = (pc.flags & 1) != 0, tb = (pc.flags & 2) != 0;
    const bool va = (pc.flags & 512) != 0, vb = (pc.flags & 1024) != 0;
    const int K = (pc.flags & 256) != 0 ? min(pc.K, pc.Ktot - int(zo) * pc.K) : pc.K;
    const uint lda = uint(pc.lda), ldb = uint(pc.ldb);
    const bool working = sg < NSG; // more subgroups (smaller ones) only stage

    SN_MAT_C acc[8 * 4]; // [i * 4 + j], i < TM, j < TN
    [[unroll]] for (uint i = 0u; i < 8u; i++)
        [[unroll]] for (uint j = 0u; j < 4u; j++)
            if (i < TM && j < TN) SN_ZERO_C(acc[i * 4u + j]);

    vec4 ra[4], rb[4]; // this invocation's vec4 of the chunk being staged
// loads chunk k0 into ra, rb and folds its magnitudes into amax[p]: A as vec4 along its
// contiguous dimension (k, or m when transposed), B likewise (n, or k when transposed)
#define LOAD(k0, p)                                                                                  \
    {                                                                                                \
        float ma = 0.0, mb = 0.0;                                                                    \
        [[unroll]] for (uint r = 0u; r < 4u; r++) {                                                  \
            uint e = lid + r * nthr;                                                                 \
            uint m = ta ? (e % (BM / 4)) * 4u : e / (BK / 4), k = ta ? e / (BM / 4) : (e % (BK / 4)) * 4u; \
            int gm = m0 + int(m), gk = (k0) + int(k), n;                                             \
            if (ta) n = gk < K ? min(pc.M - gm, 4) : 0;                                              \
            else    n = gm < pc.M ? min(K - gk, 4) : 0;                                              \
            if (e >= NV4) n = 0;                                                                     \
            ra[r] = load4(pc.A, va, oa + (ta ? uint(gk) * lda + uint(gm) : uint(gm) * lda + uint(gk)), n); \
            ma = max(ma, max4(ra[r]));                                                               \
            uint nn = tb ? e / (BK / 4) : (e % (BN / 4)) * 4u, kb = tb ? (e % (BK / 4)) * 4u : e / (BN / 4); \
            int gn = n0 + int(nn), gkb = (k0) + int(kb);                                             \
            if (tb) n = gn < pc.N ? min(K - gkb, 4) : 0;                                             \
            else    n = gkb < K ? min(pc.N - gn, 4) : 0;                                             \
            if (e >= NV4) n = 0;                                                                     \
            rb[r] = load4(pc.B, vb, ob + (tb ? uint(gn) * ldb + uint(gkb) : uint(gkb) * ldb + uint(gn)), n); \
            mb = max(mb, max4(rb[r]));                                                               \
        }                                                                                            \
        atomicMax(amax[p][0], floatBitsToUint(ma));                                                  \
        atomicMax(amax[p][1], floatBitsToUint(mb));                                                  \
    }

    if (lid == 0u) {
        amax[0][0] = 0u; amax[0][1] = 0u;
        amax[1][0] = 0u; amax[1][1] = 0u;
    }
    barrier();
    LOAD(0, 0u)
    barrier();
    int ea = 100, eb = 100; // the accumulators' scale is 2^(ea + eb)
    uint par = 0u;
    for (int k0 = 0; k0 < K; k0 += BK, par ^= 1u) {
        // the chunk's scales: never above the accumulators' (rescaling them down only, exact)
        const int ca = chunk_exp(amax[par][0], ea), cb = chunk_exp(amax[par][1], eb);
        const float sa = ldexp(1.0, ca), sb = ldexp(1.0, cb);
        if (lid == 0u) { // the next chunk's maxima (their last reader passed the barrier above)
            amax[par ^ 1u][0] = 0u;
            amax[par ^ 1u][1] = 0u;
        }
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            uint e = lid + r * nthr;
            if (e < NV4) {
                vec4 a = ra[r] * sa, b = rb[r] * sb;
                if (ta) {
                    uint m = (e % (BM / 4)) * 4u, k = e / (BM / 4);
                    As[k * ATS + m] = float16_t(a.x);
                    As[k * ATS + m + 1u] = float16_t(a.y);
                    As[k * ATS + m + 2u] = float16_t(a.z);
                    As[k * ATS + m + 3u] = float16_t(a.w);
                } else {
                    uint m = e / (BK / 4), k = (e % (BK / 4)) * 4u;
                    As[m * AS + k] = float16_t(a.x);
                    As[m * AS + k + 1u] = float16_t(a.y);
                    As[m * AS + k + 2u] = float16_t(a.z);
                    As[m * AS + k + 3u] = float16_t(a.w);
                }
                if (tb) {
                    uint n = e / (BK / 4), k = (e % (BK / 4)) * 4u;
                    Bs[n * BTS + k] = float16_t(b.x);
                    Bs[n * BTS + k + 1u] = float16_t(b.y);
                    Bs[n * BTS + k + 2u] = float16_t(b.z);
                    Bs[n * BTS + k + 3u] = float16_t(b.w);
                } else {
                    uint n = (e % (BN / 4)) * 4u, k = e / (BN / 4);
                    Bs[k * BS + n] = float16_t(b.x);
                    Bs[k * BS + n + 1u] = float16_t(b.y);
                    Bs[k * BS + n + 2u] = float16_t(b.z);
                    Bs[k * BS + n + 3u] = float16_t(b.w);
                }
            }
        }
        if (working && ca + cb != ea + eb) {
            const float down = ldexp(1.0, ca + cb - ea - eb); // <= 1
            [[unroll]] for (uint i = 0u; i < 8u; i++)
                [[unroll]] for (uint j = 0u; j < 4u; j++)
                    if (i < TM && j < TN) SN_SCALE_C(acc[i * 4u + j], down);
        }
        ea = ca;
        eb = cb;
        barrier();
        // the next chunk into registers while this one multiplies
        if (k0 + BK < K) LOAD(k0 + BK, par ^ 1u)
        if (working) {
            MMA_K(0u) MMA_K(8u) MMA_K(16u) MMA_K(24u)
        }
        barrier();
    }

    // out through shared memory, one matrix at a time per subgroup (no workgroup barrier):
    // the scale out in two steps, as 2^-(ea + eb) alone may be below f32's range
    if (working) {
        const float s = pc.alpha * ldexp(1.0, -ea);
        const float s2 = ldexp(1.0, -eb);
        const uint cs = sg * (16u * CS);
        // one copy of the epilogue (sn_act is large): the loop picks the matrix, and a switch
        // stores it, so acc is still indexed by constants only
#define ST(f) case f: SN_STORE_C(acc[f], cs); break;
        for (uint f = 0u; f < 32u; f++) {
            const uint i = f / 4u, j = f % 4u;
            if (i < TM && j < TN) {
                switch (f) {
                ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11) ST(12) ST(13) ST(14) ST(15)
                ST(16) ST(17) ST(18) ST(19) ST(20) ST(21) ST(22) ST(23) ST(24) ST(25) ST(26) ST(27) ST(28) ST(29)
                ST(30) ST(31)
                }
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                out_matrix(m0 + int(wm * WM + i * lM), n0 + int(wn * WN + j * lN), cs, oc, s, s2);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
            }
        }
    }
}
