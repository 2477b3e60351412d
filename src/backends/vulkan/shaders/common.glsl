// Shared by every shader (#include "common.glsl"): tensor pointers and the 1-D index of
// a thread on the 2-D grid of sn_vk_dispatch_n.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_scalar_block_layout : enable

// A tensor's f32 data at a device address (push constants hold these as 64-bit values).
// SN_BUF_COHERENT (empty unless a shader defines it first): `coherent` in the persistent RNN
// kernels (rnn_persist.glsl), whose workgroups read what others wrote in the same dispatch.
#ifndef SN_BUF_COHERENT
#define SN_BUF_COHERENT
#endif
layout(buffer_reference, std430, buffer_reference_align = 4) SN_BUF_COHERENT buffer F32 { float v[]; };
// int32 data (index tables, argument blocks).
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32 { int v[]; };
// A device address stored in memory (argument blocks: arrays of pointers).
layout(buffer_reference, std430, buffer_reference_align = 8) buffer PtrArr { F32 v[]; };

// The thread's index over gx*gy workgroups of gl_WorkGroupSize.x threads (row-major grid).
// A macro, not a function: gl_WorkGroupSize is (1,1,1) in code above the shader's
// layout(local_size_x = ...) declaration, which comes after this #include.
#define sn_index() ((gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x)

// Offset of flat index r over dims dim[0..nd) (row-major) with strides st.
uint sn_offset(uint r, uint nd, uint dim[6], uint st[6]) {
    uint o = 0;
    for (int d = int(nd) - 1; d >= 0; d--) {
        uint q = r / dim[d];
        o += (r - q * dim[d]) * st[d];
        r = q;
    }
    return o;
}
