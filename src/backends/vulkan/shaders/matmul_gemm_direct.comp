#version 450
// C = act(alpha * op(A) op(B) + beta * C + bias), as matmul_gemm.comp (same push
// constants, batches and epilogue) for CPU Vulkan drivers: 32x32 outputs per workgroup
// of 64 invocations, 4x4 each, operands read straight from memory, no shared memory and
// no barriers. Every output is one fixed-order sum: deterministic.
#include "ops_common.glsl"

layout(local_size_x = 64) in;

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

void main() {
    const uint lid = gl_LocalInvocationID.x;
    const uint tx = lid % 8u, ty = lid / 8u;
    const int m0 = int(gl_WorkGroupID.y) * 32, n0 = int(gl_WorkGroupID.x) * 32;
    const uint z = gl_WorkGroupID.z, zo = z / uint(pc.binner), zi = z % uint(pc.binner);
    const uint oa = zo * uint(pc.sA0) + zi * uint(pc.sA1);
    const uint ob = zo * uint(pc.sB0) + zi * uint(pc.sB1);
    const uint oc = zo * uint(pc.sC0) + zi * uint(pc.sC1);
    const bool ta = (pc.flags & 1) != 0, tb = (pc.flags & 2) != 0;
    const int K = (pc.flags & 256) != 0 ? min(pc.K, pc.Ktot - int(zo) * pc.K) : pc.K;
    int rows[4], cols[4];
    for (int i = 0; i < 4; i++) {
        rows[i] = min(m0 + int(ty) + 8 * i, pc.M - 1);
        cols[i] = min(n0 + int(tx) + 8 * i, pc.N - 1);
    }
    // element strides of A along m and k, of B along k and n
    const uint am = ta ? 1u : uint(pc.lda), ak = ta ? uint(pc.lda) : 1u;
    const uint bk = tb ? 1u : uint(pc.ldb), bn = tb ? uint(pc.ldb) : 1u;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;
    for (int k = 0; k < K; k++) {
        float a[4], b[4];
        for (int i = 0; i < 4; i++) a[i] = pc.A.v[oa + uint(rows[i]) * am + uint(k) * ak];
        for (int j = 0; j < 4; j++) b[j] = pc.B.v[ob + uint(k) * bk + uint(cols[j]) * bn];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    const int bmode = (pc.flags >> 2) & 3, act = (pc.flags >> 4) & 15;
    for (int i = 0; i < 4; i++) {
        int gm = m0 + int(ty) + 8 * i;
        if (gm >= pc.M) continue;
        for (int j = 0; j < 4; j++) {
            int gn = n0 + int(tx) + 8 * j;
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
