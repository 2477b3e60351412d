#version 450
// Direct convolution weight gradient (no column workspace): out_s[m][q] = sum over r in
// [s*L, s*L + L) of A[n][m][p] * cols_n[q][p] (r = n*P + p), the cols entry read from
// the image through the im2col geometry. Workgroup (tile, s): a 64x64 tile of dW over the
// s-th range of r; chunks of 32 r staged in shared memory (the next chunk prefetched into
// registers during the products); 256 invocations, 4x4 outputs each. Splits write
// partial tiles that a fixed-order sum adds: deterministic, no atomics.
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 A;   // [N][M][P], image n at n*sA
    F32 img; // [N][C][Hs][Ws]
    F32 dst; // [S][M][Q]
    int N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
    int M, Q, NP, L, sA;
} pc;

const uint BM = 64u, BQ = 64u, BP = 32u;
shared float As[BP][BM + 4u];
shared float Bs[BP][BQ + 4u];
shared int sq_off[BQ], sq_i[BQ], sq_j[BQ];

void main() {
    const uint tid = gl_LocalInvocationID.x, lane = tid & 31u, row0 = tid >> 5;
    const uint ntq = (uint(pc.Q) + BQ - 1u) / BQ;
    const uint m0 = (gl_WorkGroupID.x / ntq) * BM, q0 = (gl_WorkGroupID.x % ntq) * BQ;
    const int P = pc.Hc * pc.Wc;
    const uint imgN = uint(pc.C * pc.Hs * pc.Ws);
    const int r0 = int(gl_WorkGroupID.y) * pc.L, r1 = min(pc.NP, r0 + pc.L);
    if (tid < BQ) {
        int q = int(q0 + tid);
        if (q < pc.Q) {
            int j = q % pc.kw, i = (q / pc.kw) % pc.kh, ch = q / (pc.kw * pc.kh);
            sq_off[tid] = (ch * pc.Hs + i) * pc.Ws + j;
            sq_i[tid] = i;
            sq_j[tid] = j;
        } else { // past Q: never in bounds
            sq_off[tid] = 0;
            sq_i[tid] = -(1 << 29);
            sq_j[tid] = 0;
        }
    }
    barrier();

    float ra[8], rb[8];
    const uint tq = tid & 15u, tm = tid >> 4;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;

    // chunk rc into registers: this invocation's r = rc + lane, rows row0 + 8k
#define LOAD(rc)                                                                                      \
    {                                                                                                 \
        int r = (rc) + int(lane);                                                                     \
        bool ok = r < r1;                                                                             \
        int n = ok ? r / P : 0, p = ok ? r - n * P : 0;                                               \
        int y = p / pc.Wc, x = p - y * pc.Wc;                                                         \
        int hy0 = y * pc.sh - pc.ph, wx0 = x * pc.sw - pc.pw;                                         \
        uint an = uint(n) * uint(pc.sA) + uint(p), bn = uint(n) * imgN;                               \
        for (uint k = 0u; k < 8u; k++) {                                                              \
            uint m = m0 + row0 + 8u * k;                                                              \
            ra[k] = ok && m < uint(pc.M) ? pc.A.v[an + m * uint(P)] : 0.0;                            \
            uint t = row0 + 8u * k;                                                                   \
            int hy = hy0 + sq_i[t], wx = wx0 + sq_j[t];                                               \
            rb[k] = ok && uint(hy) < uint(pc.Hs) && uint(wx) < uint(pc.Ws)                            \
                        ? pc.img.v[bn + uint(sq_off[t] + hy0 * pc.Ws + wx0)] : 0.0;                   \
        }                                                                                             \
    }

    if (r0 < r1) LOAD(r0)
    for (int rc = r0; rc < r1; rc += int(BP)) {
        for (uint k = 0u; k < 8u; k++) {
            As[lane][row0 + 8u * k] = ra[k];
            Bs[lane][row0 + 8u * k] = rb[k];
        }
        barrier();
        if (rc + int(BP) < r1) LOAD(rc + int(BP))
        for (uint k = 0u; k < BP; k++) {
            float a[4], b[4];
            for (uint i = 0u; i < 4u; i++) {
                a[i] = As[k][tm * 4u + i];
                b[i] = Bs[k][tq * 4u + i];
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }

    const uint o = gl_WorkGroupID.y * uint(pc.M) * uint(pc.Q);
    for (uint i = 0u; i < 4u; i++) {
        uint m = m0 + tm * 4u + i;
        if (m >= uint(pc.M)) continue;
        for (uint j = 0u; j < 4u; j++) {
            uint q = q0 + tq * 4u + j;
            if (q < uint(pc.Q)) pc.dst.v[o + m * uint(pc.Q) + q] = acc[i][j];
        }
    }
}
