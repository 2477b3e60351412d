#version 450
// The end of a split-K GEMM: C[m, n] = act(alpha * sum over s of part[s][m][n] (in order:
// deterministic) + beta * C + bias), parts [S, M, N] written by matmul_gemm*.comp.
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 part, C, bias;
    int M, N, S, ldc, bias_mode, act;
    float alpha, beta, p0, p1;
} pc;

void main() {
    const uint MN = uint(pc.M) * uint(pc.N);
    for (uint e = gl_GlobalInvocationID.x; e < MN; e += gl_NumWorkGroups.x * 256u) {
        uint m = e / uint(pc.N), n = e % uint(pc.N);
        float s = 0.0;
        for (uint k = 0u; k < uint(pc.S); k++) s += pc.part.v[k * MN + e];
        uint ci = m * uint(pc.ldc) + n;
        float v = pc.alpha * s;
        if (pc.beta != 0.0) v += pc.beta * pc.C.v[ci];
        if (pc.bias_mode == 1) v += pc.bias.v[n];
        else if (pc.bias_mode == 2) v += pc.bias.v[m];
        pc.C.v[ci] = sn_act(uint(pc.act), v, pc.p0, pc.p1);
    }
}
