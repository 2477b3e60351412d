// The register-blocked GEMM of matmul_gemm_big*.comp (tiles BM x BN: 128x128, 128x64,
// 64x128): C = act(alpha * op(A) op(B) + beta * C + bias), row-major, fp32, batched, the
// same push constants, batches, split-K and epilogue as matmul_gemm.comp.
// A BM x BN tile per workgroup, 8x8 outputs per invocation in registers (rows ty*4+i and
// BM/2+ty*4+i, columns tx*4+j and BN/2+tx*4+j: vec4 shared-memory reads, neighbouring
// invocations on neighbouring words). K in steps of BK through two shared buffers: the
// next step's global loads go to registers before the current step's products and to the
// other buffer after them, so one barrier per step. Global loads are vec4 along the
// operand's contiguous dimension where the host says the addresses allow (flags bits
// 9-11). Every output is one fixed-order sum by one invocation: deterministic.
#extension GL_EXT_control_flow_attributes : require
#include "ops_common.glsl"
#include "gemm_load.glsl"

#define BK 8
#define NTX (BN / 8)
#define NTY (BM / 8)
#define NT (NTX * NTY)
#define LA (BM * BK / 4 / NT) // vec4 loads per invocation per step
#define LB (BN * BK / 4 / NT)

layout(local_size_x = NT) in;


layout(push_constant) uniform PC {
    F32 A;
    F32 B;
    F32 C;
    F32 bias;    // read only when the bias mode is not 0
    int M, N, K, lda, ldb, ldc;
    int sA0, sA1, sB0, sB1, sC0, sC1;
    int binner;
    int flags;   // bit 0 trans A, bit 1 trans B, bits 2-3 bias (1 per column, 2 per row), bits 4-7 act,
                 // bit 8 split K (as matmul_gemm.comp), bits 9/10/11: A/B/C may be read as vec4
                 // (16-byte aligned base, leading dimension and batch strides multiples of 4)
    float alpha, beta, p0, p1;
    int Ktot;
} pc;

// [k][m or n / 4]; one vec4 of padding per row: the transposing stores of a k-contiguous
// operand (4 rows apart per invocation pair) land on distinct banks
shared vec4 As[2][BK][BM / 4 + 1];
shared vec4 Bs[2][BK][BN / 4 + 1];


// C's 4 outputs at row gm, columns gn.. from the accumulator a, with the epilogue
void out4(int gm, int gn, uint oc, bool vc, vec4 a) {
    const int n = min(pc.N - gn, 4), bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    if (gm >= pc.M || n <= 0) return;
    uint ci = oc + uint(gm) * uint(pc.ldc) + uint(gn);
    vec4 v = pc.alpha * a;
    if (pc.beta != 0.0) v += pc.beta * load4(pc.C, vc, ci, n);
    if (bmode == 1) v += load4(pc.bias, false, uint(gn), n);
    else if (bmode == 2) v += vec4(pc.bias.v[gm]);
    v = vec4(sn_act(uint(act), v.x, pc.p0, pc.p1), sn_act(uint(act), v.y, pc.p0, pc.p1),
             sn_act(uint(act), v.z, pc.p0, pc.p1), sn_act(uint(act), v.w, pc.p0, pc.p1));
    if (n == 4 && vc) F32x4(pc.C).v[ci >> 2] = v;
    else {
        pc.C.v[ci] = v.x;
        if (n > 1) pc.C.v[ci + 1u] = v.y;
        if (n > 2) pc.C.v[ci + 2u] = v.z;
        if (n > 3) pc.C.v[ci + 3u] = v.w;
    }
}

void main() {
    const uint lid = gl_LocalInvocationID.x;
    const uint tx = lid % NTX, ty = lid / NTX;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint z = gl_WorkGroupID.z, zo = z / uint(pc.binner), zi = z % uint(pc.binner);
    const uint oa = zo * uint(pc.sA0) + zi * uint(pc.sA1);
    const uint ob = zo * uint(pc.sB0) + zi * uint(pc.sB1);
    const uint oc = zo * uint(pc.sC0) + zi * uint(pc.sC1);
    const bool ta = (pc.flags & 1) != 0, tb = (pc.flags & 2) != 0;
    const bool va = (pc.flags & 512) != 0, vb = (pc.flags & 1024) != 0, vc = (pc.flags & 2048) != 0;
    const int K = (pc.flags & 256) != 0 ? min(pc.K, pc.Ktot - int(zo) * pc.K) : pc.K;
    const uint lda = uint(pc.lda), ldb = uint(pc.ldb);

    vec4 acc[8][2];
    [[unroll]] for (int i = 0; i < 8; i++) {
        acc[i][0] = vec4(0.0);
        acc[i][1] = vec4(0.0);
    }
    // staging registers as scalars, not arrays: NVIDIA's compiler puts an array it cannot
    // index statically in local memory (that made these tiles 10x slower than 64x64)
    vec4 ra0, ra1, rb0, rb1;

// loads step k0's vec4 number r into ra: a k-contiguous operand as 4 k of one row, the other as 4 rows of one k
#define LOADA(k0, r, ra)                                                                          \
    {                                                                                             \
        uint e = lid + uint(NT * (r));                                                            \
        int m, k, n;                                                                              \
        if (ta) { k = int(e / (BM / 4)); m = int(e % (BM / 4)) * 4; }                             \
        else    { m = int(e / (BK / 4)); k = int(e % (BK / 4)) * 4; }                             \
        int gm = m0 + m, gk = (k0) + k;                                                           \
        if (ta) n = gk < K ? min(pc.M - gm, 4) : 0;                                               \
        else    n = gm < pc.M ? min(K - gk, 4) : 0;                                               \
        ra = load4(pc.A, va, oa + (ta ? uint(gk) * lda + uint(gm) : uint(gm) * lda + uint(gk)), n); \
    }
#define LOADB(k0, r, rb)                                                                          \
    {                                                                                             \
        uint e = lid + uint(NT * (r));                                                            \
        int k, nn, n;                                                                             \
        if (tb) { nn = int(e / (BK / 4)); k = int(e % (BK / 4)) * 4; }                            \
        else    { k = int(e / (BN / 4)); nn = int(e % (BN / 4)) * 4; }                            \
        int gn = n0 + nn, gk = (k0) + k;                                                          \
        if (tb) n = gn < pc.N ? min(K - gk, 4) : 0;                                               \
        else    n = gk < K ? min(pc.N - gn, 4) : 0;                                               \
        rb = load4(pc.B, vb, ob + (tb ? uint(gn) * ldb + uint(gk) : uint(gk) * ldb + uint(gn)), n); \
    }
// stores them into buffer s: [k][m] whatever the operand's layout
#define STOREA(s, r, ra)                                                                          \
    {                                                                                             \
        uint e = lid + uint(NT * (r));                                                            \
        if (ta) As[s][e / (BM / 4)][e % (BM / 4)] = ra;                                           \
        else {                                                                                    \
            uint m = e / (BK / 4), k = (e % (BK / 4)) * 4u;                                       \
            As[s][k][m >> 2][m & 3u] = ra.x;                                                      \
            As[s][k + 1u][m >> 2][m & 3u] = ra.y;                                                 \
            As[s][k + 2u][m >> 2][m & 3u] = ra.z;                                                 \
            As[s][k + 3u][m >> 2][m & 3u] = ra.w;                                                 \
        }                                                                                         \
    }
#define STOREB(s, r, rb)                                                                          \
    {                                                                                             \
        uint e = lid + uint(NT * (r));                                                            \
        if (!tb) Bs[s][e / (BN / 4)][e % (BN / 4)] = rb;                                          \
        else {                                                                                    \
            uint n = e / (BK / 4), k = (e % (BK / 4)) * 4u;                                       \
            Bs[s][k][n >> 2][n & 3u] = rb.x;                                                      \
            Bs[s][k + 1u][n >> 2][n & 3u] = rb.y;                                                 \
            Bs[s][k + 2u][n >> 2][n & 3u] = rb.z;                                                 \
            Bs[s][k + 3u][n >> 2][n & 3u] = rb.w;                                                 \
        }                                                                                         \
    }
#if LA > 2 || LB > 2
#error "gemm_big.glsl stages at most 2 vec4 of A and of B per invocation"
#endif
#if LA == 2
#define LOADA2(k0) LOADA(k0, 1, ra1)
#define STOREA2(s) STOREA(s, 1, ra1)
#else
#define LOADA2(k0)
#define STOREA2(s)
#endif
#if LB == 2
#define LOADB2(k0) LOADB(k0, 1, rb1)
#define STOREB2(s) STOREB(s, 1, rb1)
#else
#define LOADB2(k0)
#define STOREB2(s)
#endif
#define LOAD(k0) LOADA(k0, 0, ra0) LOADA2(k0) LOADB(k0, 0, rb0) LOADB2(k0)
#define STORE(s) STOREA(s, 0, ra0) STOREA2(s) STOREB(s, 0, rb0) STOREB2(s)

    const int nk = (K + BK - 1) / BK;
    if (nk > 0) {
        LOAD(0)
        STORE(0)
    }
    barrier();
    for (int t = 0; t < nk; t++) {
        const uint cur = uint(t) & 1u;
        const bool more = t + 1 < nk;
        if (more) {
            LOAD((t + 1) * BK)
        }
        [[unroll]] for (int k = 0; k < BK; k++) {
            vec4 a0 = As[cur][k][ty], a1 = As[cur][k][ty + BM / 8];
            vec4 b0 = Bs[cur][k][tx], b1 = Bs[cur][k][tx + BN / 8];
            [[unroll]] for (int i = 0; i < 4; i++) {
                acc[i][0] = fma(vec4(a0[i]), b0, acc[i][0]);
                acc[i][1] = fma(vec4(a0[i]), b1, acc[i][1]);
                acc[i + 4][0] = fma(vec4(a1[i]), b0, acc[i + 4][0]);
                acc[i + 4][1] = fma(vec4(a1[i]), b1, acc[i + 4][1]);
            }
        }
        if (more) {
            STORE(cur ^ 1u)
        }
        barrier();
    }

    // the epilogue spelled out per accumulator (no loop over acc[i][j] left to the driver)
#define OUT(i, j) out4(m0 + ((i) < 4 ? int(ty) * 4 + (i) : BM / 2 + int(ty) * 4 + (i) - 4), \
                       n0 + ((j) == 0 ? int(tx) * 4 : BN / 2 + int(tx) * 4), oc, vc, acc[i][j]);
    OUT(0, 0) OUT(0, 1) OUT(1, 0) OUT(1, 1) OUT(2, 0) OUT(2, 1) OUT(3, 0) OUT(3, 1)
    OUT(4, 0) OUT(4, 1) OUT(5, 0) OUT(5, 1) OUT(6, 0) OUT(6, 1) OUT(7, 0) OUT(7, 1)
}
