#version 450
// y[o] = sum over the reduced dims of x, one thread per output, in a fixed order as a
// (sum, error) pair: deterministic and close to the CPU's double sums.
#include "common.glsl"
#include "reduce.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P {
    F32 x; F32 y; uint nout; uint R; uint nk; uint nr;
    uint kdim[6]; uint kst[6]; uint rdim[6]; uint rst[6];
} p;
void main() {
    uint o = sn_index();
    if (o >= p.nout) return;
    uint base = sn_offset(o, p.nk, p.kdim, p.kst);
    float s = 0.0, c = 0.0;
    for (uint r = 0; r < p.R; r++) sn_pair_add(s, c, p.x.v[base + sn_offset(r, p.nr, p.rdim, p.rst)]);
    p.y.v[o] = s + c;
}
