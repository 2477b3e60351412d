#version 450
// MSE_BWD (op 0): da = dl * 2 (a - b) / n; L1_BWD (op 1): da = dl sign(a - b) / n
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 dl; F32 a; F32 b; F32 y; uint n; uint op; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    float k = (p.op == 0 ? 2.0 : 1.0) * p.dl.v[0] / float(p.n);
    float d = p.a.v[i] - p.b.v[i];
    p.y.v[i] = p.op == 0 ? k * d : (d > 0.0 ? k : (d < 0.0 ? -k : 0.0));
}
