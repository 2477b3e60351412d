#version 450
// Softmax backward over rows of E, one workgroup per row: dx = y (dy - sum(dy y)); in
// place when dx == dy.
#include "ops_common.glsl"

layout(local_size_x = 256) in;
#include "ops_reduce.glsl"

layout(push_constant) uniform PC {
    F32 dy, y, dx;
    int rows, E;
} pc;

void main() {
    const uint lid = gl_LocalInvocationID.x, E = uint(pc.E);
    for (uint r = gl_WorkGroupID.x; r < uint(pc.rows); r += gl_NumWorkGroups.x) {
        const uint o = r * E;
        float s = 0.0;
        for (uint e = lid; e < E; e += 256u) s += pc.dy.v[o + e] * pc.y.v[o + e];
        s = sn_wg_sum(s);
        for (uint e = lid; e < E; e += 256u) pc.dx.v[o + e] = pc.y.v[o + e] * (pc.dy.v[o + e] - s);
    }
}
