#version 450
// y = a op b with b broadcast onto y's shape: b's offset from y's coordinates (stride 0 on
// broadcast dims)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 a; F32 b; F32 y; uint n; uint op; uint nd; uint dim[6]; uint st[6]; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    float bv = p.b.v[sn_offset(i, p.nd, p.dim, p.st)];
    p.y.v[i] = p.op == 0 ? p.a.v[i] + bv : p.a.v[i] * bv;
}
