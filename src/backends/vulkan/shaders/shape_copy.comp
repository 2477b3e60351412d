#version 450
// y[at + r*drow + k] = x[r*w + k] for r < rows, k < w: COPY (rows 1) and one source of a
// CONCAT (its block of each outer row)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { F32 x; F32 y; uint n; uint w; uint drow; uint at; } p;
void main() {
    uint i = sn_index();
    if (i >= p.n) return;
    uint r = i / p.w, k = i - r * p.w;
    p.y.v[p.at + r * p.drow + k] = p.x.v[i];
}
