#version 450
// PAD SLICE PERMUTE: y[i] = x[sum_d (coord_d - off_d) * st_d], 0 where a coordinate falls
// outside sdim (pad, when bounds = 1)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P {
    F32 x; F32 y; uint n; uint nd; uint bounds;
    int dim[6]; int off[6]; int sdim[6]; int st[6];
} p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    int r = int(i), o = 0;
    bool in_ = true;
    for (int d = int(p.nd) - 1; d >= 0; d--) {
        int q = r / p.dim[d];
        int cd = r - q * p.dim[d] - p.off[d];
        r = q;
        if (p.bounds != 0 && (cd < 0 || cd >= p.sdim[d])) in_ = false;
        o += cd * p.st[d];
    }
    p.y.v[i] = in_ ? p.x.v[o] : 0.0;
}
