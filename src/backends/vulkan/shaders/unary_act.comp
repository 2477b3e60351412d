#version 450
// RELU ELU SOFTPLUS SIGMOID TANH (op: an sn_act code) and their backward ops (bwd = 1):
// y = act(x), or dx = act'(dy, y); SOFTPLUS_BWD from x when from_x = 1
#include "common.glsl"
#include "act.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 x; F32 d; F32 y; uint n; uint act; uint bwd; uint from_x; float p0; float p1; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    float x = p.x.v[i];
    float r;
    if (p.bwd == 0) {
        r = sn_act(p.act, x, p.p0, p.p1);
    } else if (p.from_x != 0) { // softplus from its input: dy * sigmoid(beta x)
        float bx = x * p.p0, z = exp(bx), dy = p.d.v[i];
        r = bx > p.p1 ? dy : dy * z / (z + 1.0);
    } else {
        r = sn_act_bwd_y(p.act, p.d.v[i], x, p.p0, p.p1);
    }
    p.y.v[i] = r;
}
