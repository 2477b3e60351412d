#version 450
// y = a + b (op 0) or a * b (op 1), a and b of y's size; b_n == 1: b is a scalar
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 a; F32 b; F32 y; uint n; uint op; uint scalar; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    float bv = p.b.v[p.scalar != 0 ? 0 : i];
    p.y.v[i] = p.op == 0 ? p.a.v[i] + bv : p.a.v[i] * bv;
}
