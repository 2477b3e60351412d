#version 450
// Deterministic reductions, pass 2: y[0] = scale * the sum of the np (sum, error) pairs in
// part (one workgroup, a fixed order as pass 1)
#include "common.glsl"
#include "reduce.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 part; F32 y; uint np; float scale; } p;
shared float red[256], rec[256];
void main() {
    uint t = gl_LocalInvocationID.x;
    float s = 0.0, c = 0.0;
    for (uint i = t; i < p.np; i += 256) sn_pair_merge(s, c, p.part.v[2 * i], p.part.v[2 * i + 1]);
    red[t] = s;
    rec[t] = c;
    barrier();
    for (uint k = 128; k > 0; k >>= 1) {
        if (t < k) {
            float a = red[t], b = rec[t];
            sn_pair_merge(a, b, red[t + k], rec[t + k]);
            red[t] = a;
            rec[t] = b;
        }
        barrier();
    }
    if (t == 0) p.y.v[0] = (red[0] + rec[0]) * p.scale;
}
