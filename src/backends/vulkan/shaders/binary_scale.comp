#version 450
// y = a * s (op 0); y = a[0] * s everywhere (op 1, expand)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 a; F32 y; uint n; uint op; float s; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    p.y.v[i] = p.a.v[p.op == 0 ? i : 0] * p.s;
}
