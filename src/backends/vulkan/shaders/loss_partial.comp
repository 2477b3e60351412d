#version 450
// Deterministic reductions, pass 1: workgroup w sums the terms of elements [w*chunk,
// (w+1)*chunk) of n into the pair part[2w], part[2w+1]. Each thread sums its strided share
// in order, then a fixed shared-memory tree, all as (sum, error) pairs: the same order on
// every run and device, and close to the CPU's double sums.
// op: 0 sum a, 1 sum (a-b)^2, 2 sum |a-b|, 3 sum a^2
#include "common.glsl"
#include "reduce.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 a; F32 b; F32 part; uint n; uint op; uint chunk; } p;
shared float red[256], rec[256];
void main() {
    uint w = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint begin = w * p.chunk, end = min(p.n, begin + p.chunk);
    float s = 0.0, c = 0.0;
    for (uint i = begin + t; i < end; i += 256) {
        float x = p.a.v[i], v;
        if (p.op == 1) { float d = x - p.b.v[i]; v = d * d; }
        else if (p.op == 2) v = abs(x - p.b.v[i]);
        else if (p.op == 3) v = x * x;
        else v = x;
        sn_pair_add(s, c, v);
    }
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
    if (t == 0) {
        p.part.v[2 * w] = red[0];
        p.part.v[2 * w + 1] = rec[0];
    }
}
