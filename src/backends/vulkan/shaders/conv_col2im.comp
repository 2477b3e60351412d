#version 450
// The adjoint of im2col, as a gather (each image element sums its own contributions
// in a fixed (i, j) order, no atomics): img[n, c, ih, iw] = act(bias[c] + sum of
// col[(c,i,j), n*Hc*Wc + oh*Wc + ow] over oh*sh - ph + i = ih, ow*sw - pw + j = iw).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 col;
    F32 img;
    F32 bias;   // read when has_bias
    int N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
    int has_bias, act;
    float p0, p1;
} pc;

void main() {
    const uint HWs = uint(pc.Hs * pc.Ws), HWc = uint(pc.Hc * pc.Wc), L = uint(pc.N) * HWc;
    const uint total = uint(pc.N * pc.C) * HWs;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 256u) {
        uint nc = e / HWs, p = e % HWs;
        int n = int(nc) / pc.C, c = int(nc) % pc.C;
        int ih = int(p) / pc.Ws, iw = int(p) % pc.Ws;
        float s = pc.has_bias != 0 ? pc.bias.v[c] : 0.0;
        for (int i = 0; i < pc.kh; i++) {
            int t = ih + pc.ph - i;
            if (t < 0 || t % pc.sh != 0) continue;
            int oh = t / pc.sh;
            if (oh >= pc.Hc) continue;
            for (int j = 0; j < pc.kw; j++) {
                int u = iw + pc.pw - j;
                if (u < 0 || u % pc.sw != 0) continue;
                int ow = u / pc.sw;
                if (ow >= pc.Wc) continue;
                uint r = uint((c * pc.kh + i) * pc.kw + j);
                s += pc.col.v[r * L + uint(n) * HWc + uint(oh * pc.Wc + ow)];
            }
        }
        pc.img.v[e] = sn_act(uint(pc.act), s, pc.p0, pc.p1);
    }
}
