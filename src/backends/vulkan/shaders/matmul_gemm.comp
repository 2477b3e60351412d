#version 450
// C = act(alpha * op(A) op(B) + beta * C + bias), row-major, fp32, batched.
// 64x64 output tile per workgroup of 256 invocations, 4x4 outputs each (rows ty + 16i,
// columns tx + 16j: neighbouring invocations touch neighbouring shared-memory words and
// output columns), K in steps of 16 through shared memory. Every output is summed in a
// fixed order by one invocation: deterministic. Batch z = zo * binner + zi offsets each
// operand by zo * s0 + zi * s1 elements (two levels: batch x heads with a row stride).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 A;
    F32 B;
    F32 C;
    F32 bias;    // read only when the bias mode is not 0
    int M, N, K, lda, ldb, ldc;
    int sA0, sA1, sB0, sB1, sC0, sC1;
    int binner;
    int flags;   // bit 0 trans A, bit 1 trans B, bits 2-3 bias (1 per column, 2 per row), bits 4-7 act,
                 // bit 8 split K: product zo takes K indices [zo*K, min((zo+1)*K, Ktot)) (A, B offset by the host)
    float alpha, beta, p0, p1;
    int Ktot;
} pc;

#define BM 64
#define BN 64
#define BK 16

shared float As[BK][BM + 1];
shared float Bs[BK][BN + 1];

void main() {
    const uint lid = gl_LocalInvocationID.x;
    const uint tx = lid % 16u, ty = lid / 16u;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint z = gl_WorkGroupID.z, zo = z / uint(pc.binner), zi = z % uint(pc.binner);
    const uint oa = zo * uint(pc.sA0) + zi * uint(pc.sA1);
    const uint ob = zo * uint(pc.sB0) + zi * uint(pc.sB1);
    const uint oc = zo * uint(pc.sC0) + zi * uint(pc.sC1);
    const bool ta = (pc.flags & 1) != 0, tb = (pc.flags & 2) != 0;
    const int K = (pc.flags & 256) != 0 ? min(pc.K, pc.Ktot - int(zo) * pc.K) : pc.K;

    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (uint r = 0u; r < 4u; r++) {
            uint e = lid + 256u * r;
            int m, k;
            if (ta) { m = int(e % 64u); k = int(e / 64u); } // A(m,k) at A[k*lda + m]: m fastest
            else    { k = int(e % 16u); m = int(e / 16u); } // A(m,k) at A[m*lda + k]: k fastest
            int gm = m0 + m, gk = k0 + k;
            float v = 0.0;
            if (gm < pc.M && gk < K)
                v = ta ? pc.A.v[oa + uint(gk) * uint(pc.lda) + uint(gm)] : pc.A.v[oa + uint(gm) * uint(pc.lda) + uint(gk)];
            As[k][m] = v;
            int n;
            if (tb) { k = int(e % 16u); n = int(e / 16u); } // B(k,n) at B[n*ldb + k]
            else    { n = int(e % 64u); k = int(e / 64u); } // B(k,n) at B[k*ldb + n]
            int gn = n0 + n;
            gk = k0 + k;
            v = 0.0;
            if (gn < pc.N && gk < K)
                v = tb ? pc.B.v[ob + uint(gn) * uint(pc.ldb) + uint(gk)] : pc.B.v[ob + uint(gk) * uint(pc.ldb) + uint(gn)];
            Bs[k][n] = v;
        }
        barrier();
        for (int k = 0; k < BK; k++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = As[k][ty + 16u * uint(i)];
            for (int j = 0; j < 4; j++) b[j] = Bs[k][tx + 16u * uint(j)];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }

    const int bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    for (int i = 0; i < 4; i++) {
        int gm = m0 + int(ty) + 16 * i;
        if (gm >= pc.M) continue;
        for (int j = 0; j < 4; j++) {
            int gn = n0 + int(tx) + 16 * j;
            if (gn >= pc.N) continue;
            uint ci = oc + uint(gm) * uint(pc.ldc) + uint(gn);
            float v = pc.alpha * acc[i][j];
            if (pc.beta != 0.0) v += pc.beta * pc.C.v[ci];
            if (bmode == 1) v += pc.bias.v[gn];
            else if (bmode == 2) v += pc.bias.v[gm];
            pc.C.v[ci] = sn_act(uint(act), v, pc.p0, pc.p1);
        }
    }
}
