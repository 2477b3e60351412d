#version 450
// Deterministic reductions, pass 2: y[0] = scale * sum of part[0..np) (one workgroup, a
// fixed order as pass 1)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 part; F32 y; uint np; float scale; } p;
shared float red[256];
void main() {
    uint t = gl_LocalInvocationID.x;
    precise float s = 0.0, c = 0.0;
    for (uint i = t; i < p.np; i += 256) {
        precise float y = p.part.v[i] - c;
        precise float u = s + y;
        c = (u - s) - y;
        s = u;
    }
    red[t] = s;
    barrier();
    for (uint k = 128; k > 0; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    if (t == 0) p.y.v[0] = red[0] * p.scale;
}
