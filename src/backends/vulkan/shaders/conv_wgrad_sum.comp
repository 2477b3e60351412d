#version 450
// dst[i] = sum over s < S of part[s*n + i], s in order: the direct weight gradient's
// split partials (one invocation per element, coalesced rows; deterministic).
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    F32 part;
    F32 dst;
    int S, n;
} pc;

void main() {
    const uint n = uint(pc.n);
    for (uint i = sn_index(); i < n; i += gl_NumWorkGroups.x * 256u) {
        float s = 0.0;
        for (uint k = 0u; k < uint(pc.S); k++) s += pc.part.v[k * n + i];
        pc.dst.v[i] = s;
    }
}
