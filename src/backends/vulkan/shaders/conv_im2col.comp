#version 450
// col[(c,i,j), n*Hc*Wc + oh*Wc + ow] = src[n, c, oh*sh - ph + i, ow*sw - pw + j] (0 outside
// the image): the image side of every convolution product (src/backends/cpu/conv.c).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 src;
    F32 col;
    int N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
} pc;

void main() {
    const uint HWc = uint(pc.Hc * pc.Wc), L = uint(pc.N) * HWc;
    const uint total = uint(pc.C * pc.kh * pc.kw) * L;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint r = e / L, q = e % L;
        int n = int(q / HWc), p = int(q % HWc);
        int oh = p / pc.Wc, ow = p % pc.Wc;
        int j = int(r) % pc.kw, i = (int(r) / pc.kw) % pc.kh, c = int(r) / (pc.kw * pc.kh);
        int ih = oh * pc.sh - pc.ph + i, iw = ow * pc.sw - pc.pw + j;
        float v = 0.0;
        if (ih >= 0 && ih < pc.Hs && iw >= 0 && iw < pc.Ws)
            v = pc.src.v[((uint(n) * uint(pc.C) + uint(c)) * uint(pc.Hs) + uint(ih)) * uint(pc.Ws) + uint(iw)];
        pc.col.v[e] = v;
    }
}
