#version 450
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
#extension GL_NV_cooperative_matrix : require
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

    fcoopmatNV<32, 3, lM, lN> acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++) acc[i] = fcoopmatNV<32, 3, lM, lN>(0.0);

    for (int k0 = 0; k0 < K; k0 += BK) {
        // stage: consecutive invocations read consecutive addresses
        for (uint e = lid; e < BM * BK; e += nthr) {
            uint m, k;
            if (ta) { m = e % BM; k = e / BM; } else { k = e % BK; m = e / BK; }
            int gm = m0 + int(m), gk = k0 + int(k);
            float v = 0.0;
            if (gm < pc.M && gk < K)
                v = ta ? pc.A.v[oa + uint(gk) * uint(pc.lda) + uint(gm)] : pc.A.v[oa + uint(gm) * uint(pc.lda) + uint(gk)];
            As[m * AS + k] = float16_t(v);
        }
        for (uint e = lid; e < BK * BN; e += nthr) {
            uint n, k;
            if (tb) { k = e % BK; n = e / BK; } else { n = e % BN; k = e / BN; }
            int gn = n0 + int(n), gk = k0 + int(k);
            float v = 0.0;
            if (gn < pc.N && gk < K)
                v = tb ? pc.B.v[ob + uint(gn) * uint(pc.ldb) + uint(gk)] : pc.B.v[ob + uint(gk) * uint(pc.ldb) + uint(gn)];
            Bs[k * BS + n] = float16_t(v);
        }
        barrier();
        if (working) {
            for (uint kk = 0u; kk < BK; kk += lK) {
                fcoopmatNV<16, 3, lM, lK> a[TM];
                for (uint i = 0u; i < TM; i++)
                    coopMatLoadNV(a[i], As, (wm * WM + i * lM) * AS + kk, AS, false);
                for (uint j = 0u; j < TN; j++) {
                    fcoopmatNV<16, 3, lK, lN> b;
                    coopMatLoadNV(b, Bs, kk * BS + wn * WN + j * lN, BS, false);
                    for (uint i = 0u; i < TM; i++) acc[i * TN + j] = coopMatMulAddNV(a[i], b, acc[i * TN + j]);
                }
            }
        }
        barrier();
    }

    if (working)
        for (uint i = 0u; i < TM; i++)
            for (uint j = 0u; j < TN; j++)
                coopMatStoreNV(acc[i * TN + j], Cs, sg * (WM * CS) + i * lM * CS + j * lN, CS, false);
    barrier();

    const int bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    for (uint e = lid; e < BM * BN; e += nthr) {
        uint r = e / BN, c = e % BN;
        int gm = m0 + int(r), gn = n0 + int(c);
        if (gm >= pc.M || gn >= pc.N) continue;
        uint s = (r / WM) * 2u + c / WN;
        float v = pc.alpha * Cs[s * (WM * CS) + (r % WM) * CS + c % WN];
        uint ci = oc + uint(gm) * uint(pc.ldc) + uint(gn);
        if (pc.beta != 0.0) v += pc.beta * pc.C.v[ci];
        if (bmode == 1) v += pc.bias.v[gn];
        else if (bmode == 2) v += pc.bias.v[gm];
        pc.C.v[ci] = sn_act(uint(act), v, pc.p0, pc.p1);
    }
}
