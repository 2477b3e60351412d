// The body of matmul_gemm_coop.comp, and of matmul_gemm_coop_emu.comp, which emulates the
// matrix operations per invocation (SN_COOP_EMULATE) to test the rest on drivers without
// cooperative matrices.
// train.mixed_precision on Vulkan: matmul_gemm.comp's GEMM (same push constants, 64x64
// tiles, epilogue, batching and split K) on cooperative matrices: A and B rounded to f16
// while staged into shared memory, products summed in f32 accumulators.
// Written with GL_NV_cooperative_matrix because Debian 12's glslang predates
// GL_KHR_cooperative_matrix; the build rewrites the module to SPV_KHR_cooperative_matrix
// (tools/spv_nv2khr.c), which maps each matrix type to its KHR "use" by its place in
// the multiply. So A (M x K), B (K x N) and C (M x N) must be distinct types: their
// shape comes from three specialization constants, distinct ids even when the values
// are equal, set at pipeline creation to a shape the device supports.
// 4 subgroups, 2 x 2 over the tile, each 32 x 32 outputs of (32/M) x (32/N) matrices.
// f16 has 5 exponent bits: gradients of 1e-6 would lose most of their bits and 1e-8
// vanish, values past 65504 overflow. So each 64 x 32 chunk of A (32 x 64 of B) is
// scaled by a power of two that brings its largest magnitude to [2^14, 2^15) (as
// PyTorch's GradScaler, but per block and automatic); the accumulators carry the
// product of the scales, rescaled (by a power of two, exactly) when a chunk needs a
// smaller one, and the epilogue divides it out.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "ops_common.glsl"

layout(local_size_x_id = 0) in; // 4 x the subgroup size
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
    int flags; // as matmul_gemm.comp
    float alpha, beta, p0, p1;
    int Ktot;
} pc;

#define BM 64
#define BN 64
#define BK 32
#define WM 32
#define WN 32
// row strides in shared memory: multiples of 16 bytes (what the matrix loads need),
// padded against bank conflicts
#define AS (BK + 8)
#define BS (BN + 8)
#define CS (WN + 4)

const uint TM = WM / lM, TN = WN / lN;

shared float16_t As[BM * AS]; // A(m, k) at m * AS + k
shared float16_t Bs[BK * BS]; // B(k, n) at k * BS + n
shared float Cs[4 * WM * CS];  // each subgroup's outputs before the epilogue
shared uint amax[2][2];        // largest |A|, |B| of a chunk (float bits), by chunk parity

const uint NR = BM * BK / gl_WorkGroupSize.x; // chunk elements per invocation

// the exponent of the power of two that brings mx to [2^14, 2^15), at most cap (0, inf
// and NaN: cap, so they pass through unscaled)
int chunk_exp(uint bits, int cap) {
    float mx = uintBitsToFloat(bits);
    if (mx == 0.0 || isinf(mx) || isnan(mx)) return cap;
    int e;
    frexp(mx, e); // mx = f 2^e, f in [0.5, 1)
    return min(clamp(15 - e, -100, 100), cap);
}

#ifndef SN_COOP_EMULATE
#extension GL_NV_cooperative_matrix : require
#define SN_MAT_A fcoopmatNV<16, 3, lM, lK>
#define SN_MAT_B fcoopmatNV<16, 3, lK, lN>
#define SN_MAT_C fcoopmatNV<32, 3, lM, lN>
#define SN_ZERO_C(c) c = SN_MAT_C(0.0)
#define SN_LOAD_A(m, off) coopMatLoadNV(m, As, off, AS, false)
#define SN_LOAD_B(m, off) coopMatLoadNV(m, Bs, off, BS, false)
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
            t_ = fma(float(As[(a) + r_ * AS + k_]), float(Bs[(b) + k_ * BS + s_]), t_);       \
        c.v[q_] = t_;                                                                         \
    }
#define SN_STORE_C(m, off)                                                                    \
    for (uint q_ = 0u; q_ * gl_SubgroupSize < lM * lN; q_++) {                                \
        uint e_ = q_ * gl_SubgroupSize + gl_SubgroupInvocationID;                             \
        Cs[(off) + (e_ / lN) * CS + e_ % lN] = m.v[q_];                                       \
    }
#endif

void main() {
    const uint lid = gl_LocalInvocationID.x, nthr = gl_WorkGroupSize.x;
    const uint sg = gl_SubgroupID, wm = sg / 2u, wn = sg % 2u;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint z = gl_WorkGroupID.z, zo = z / uint(pc.binner), zi = z % uint(pc.binner);
    const uint oa = zo * uint(pc.sA0) + zi * uint(pc.sA1);
    const uint ob = zo * uint(pc.sB0) + zi * uint(pc.sB1);
    const uint oc = zo * uint(pc.sC0) + zi * uint(pc.sC1);
    const bool ta = (pc.flags & 1) != 0, tb = (pc.flags & 2) != 0;
    const int K = (pc.flags & 256) != 0 ? min(pc.K, pc.Ktot - int(zo) * pc.K) : pc.K;
    const bool working = sg < 4u; // more subgroups than 4 (a smaller subgroup size) only stage

    SN_MAT_C acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++) SN_ZERO_C(acc[i]);

    if (lid == 0u) {
        amax[0][0] = 0u; amax[0][1] = 0u;
        amax[1][0] = 0u; amax[1][1] = 0u;
    }
    barrier();
    int ea = 100, eb = 100; // the accumulators' scale is 2^(ea + eb)
    uint par = 0u;
    for (int k0 = 0; k0 < K; k0 += BK, par ^= 1u) {
        // stage: consecutive invocations read consecutive addresses
        float ra[NR], rb[NR];
        float ma = 0.0, mb = 0.0;
        for (uint r = 0u; r < NR; r++) {
            uint e = lid + r * nthr, m, k;
            if (ta) { m = e % BM; k = e / BM; } else { k = e % BK; m = e / BK; }
            int gm = m0 + int(m), gk = k0 + int(k);
            float v = 0.0;
            if (gm < pc.M && gk < K)
                v = ta ? pc.A.v[oa + uint(gk) * uint(pc.lda) + uint(gm)] : pc.A.v[oa + uint(gm) * uint(pc.lda) + uint(gk)];
            ra[r] = v;
            ma = max(ma, abs(v));
        }
        for (uint r = 0u; r < NR; r++) {
            uint e = lid + r * nthr, n, k;
            if (tb) { k = e % BK; n = e / BK; } else { n = e % BN; k = e / BN; }
            int gn = n0 + int(n), gk = k0 + int(k);
            float v = 0.0;
            if (gn < pc.N && gk < K)
                v = tb ? pc.B.v[ob + uint(gn) * uint(pc.ldb) + uint(gk)] : pc.B.v[ob + uint(gk) * uint(pc.ldb) + uint(gn)];
            rb[r] = v;
            mb = max(mb, abs(v));
        }
        atomicMax(amax[par][0], floatBitsToUint(ma));
        atomicMax(amax[par][1], floatBitsToUint(mb));
        barrier();
        // the chunk's scales: never above the accumulators' (rescaling them down only, exact)
        const int ca = chunk_exp(amax[par][0], ea), cb = chunk_exp(amax[par][1], eb);
        const float sa = ldexp(1.0, ca), sb = ldexp(1.0, cb);
        if (lid == 0u) { // the next chunk's maxima (nobody reads these before the barrier below)
            amax[par ^ 1u][0] = 0u;
            amax[par ^ 1u][1] = 0u;
        }
        for (uint r = 0u; r < NR; r++) {
            uint e = lid + r * nthr, m, k;
            if (ta) { m = e % BM; k = e / BM; } else { k = e % BK; m = e / BK; }
            As[m * AS + k] = float16_t(ra[r] * sa);
        }
        for (uint r = 0u; r < NR; r++) {
            uint e = lid + r * nthr, n, k;
            if (tb) { k = e % BK; n = e / BK; } else { n = e % BN; k = e / BN; }
            Bs[k * BS + n] = float16_t(rb[r] * sb);
        }
        if (working && ca + cb != ea + eb) {
            const float down = ldexp(1.0, ca + cb - ea - eb); // <= 1
            for (uint i = 0u; i < TM * TN; i++) SN_SCALE_C(acc[i], down);
        }
        ea = ca;
        eb = cb;
        barrier();
        if (working) {
            for (uint kk = 0u; kk < BK; kk += lK) {
                SN_MAT_A a[TM];
                for (uint i = 0u; i < TM; i++) SN_LOAD_A(a[i], (wm * WM + i * lM) * AS + kk);
                for (uint j = 0u; j < TN; j++) {
                    SN_MAT_B b;
                    SN_LOAD_B(b, kk * BS + wn * WN + j * lN);
                    for (uint i = 0u; i < TM; i++) SN_MULADD(acc[i * TN + j], a[i], b);
                }
            }
        }
        barrier();
    }

    if (working)
        for (uint i = 0u; i < TM; i++)
            for (uint j = 0u; j < TN; j++)
                SN_STORE_C(acc[i * TN + j], sg * (WM * CS) + i * lM * CS + j * lN);
    barrier();

    const int bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    for (uint e = lid; e < BM * BN; e += nthr) {
        uint r = e / BN, c = e % BN;
        int gm = m0 + int(r), gn = n0 + int(c);
        if (gm >= pc.M || gn >= pc.N) continue;
        uint s = (r / WM) * 2u + c / WN;
        // the scale out in two steps: 2^-(ea + eb) alone may be below f32's range
        float v = pc.alpha * (Cs[s * (WM * CS) + (r % WM) * CS + c % WN] * ldexp(1.0, -ea) * ldexp(1.0, -eb));
        uint ci = oc + uint(gm) * uint(pc.ldc) + uint(gn);
        if (pc.beta != 0.0) v += pc.beta * pc.C.v[ci];
        if (bmode == 1) v += pc.bias.v[gn];
        else if (bmode == 2) v += pc.bias.v[gm];
        pc.C.v[ci] = sn_act(uint(act), v, pc.p0, pc.p1);
    }
}
