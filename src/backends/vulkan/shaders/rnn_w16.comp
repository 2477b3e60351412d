#version 450
// The recurrent weights as f16 for the step kernels' SN_RNN_W16 forms (rnn.c,
// train.mixed_precision f16): dst = f16(src), or f16(src^T) at tr != 0, of an [R, C] f32
// matrix, two per 32-bit word (element 2i in the low half, as unpackHalf2x16 reads it; an
// odd count pads its last word with 0). Once per layer and call, not per step.
#include "ops_common.glsl"

layout(local_size_x = 256) in;

layout(buffer_reference, std430, buffer_reference_align = 4) writeonly buffer SnU32 { uint v[]; };

layout(push_constant) uniform PC {
    F32 src;
    SnU32 dst;
    int R, C, tr;
} pc;

void main() {
    const uint R = uint(pc.R), C = uint(pc.C), n = R * C, np = (n + 1u) / 2u;
    for (uint p = gl_GlobalInvocationID.x; p < np; p += gl_NumWorkGroups.x * 256u) {
        vec2 h = vec2(0.0);
        for (uint k = 0u; k < 2u; k++) {
            uint e = 2u * p + k; // element e of dst: (c, r) = (e / R, e % R) of src^T
            if (e < n) h[k] = pc.src.v[pc.tr != 0 ? (e % R) * C + e / R : e];
        }
        pc.dst.v[p] = packHalf2x16(h);
    }
}
