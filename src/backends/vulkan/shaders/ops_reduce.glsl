// Workgroup sums for 256-invocation shaders (include after the local size): a fixed
// tree over shared memory, the same order on every run. Every invocation must call
// them (they contain barriers); each returns the total to all invocations.
#ifndef SN_OPS_REDUCE_GLSL
#define SN_OPS_REDUCE_GLSL

shared float sn_red[256];
shared float sn_red2[256];

float sn_wg_sum(float v) {
    const uint lid = gl_LocalInvocationID.x;
    sn_red[lid] = v;
    barrier();
    for (uint w = 128u; w > 0u; w >>= 1) {
        if (lid < w) sn_red[lid] += sn_red[lid + w];
        barrier();
    }
    float r = sn_red[0];
    barrier();
    return r;
}

vec2 sn_wg_sum2(vec2 v) {
    const uint lid = gl_LocalInvocationID.x;
    sn_red[lid] = v.x;
    sn_red2[lid] = v.y;
    barrier();
    for (uint w = 128u; w > 0u; w >>= 1) {
        if (lid < w) {
            sn_red[lid] += sn_red[lid + w];
            sn_red2[lid] += sn_red2[lid + w];
        }
        barrier();
    }
    vec2 r = vec2(sn_red[0], sn_red2[0]);
    barrier();
    return r;
}

float sn_wg_max(float v) {
    const uint lid = gl_LocalInvocationID.x;
    sn_red[lid] = v;
    barrier();
    for (uint w = 128u; w > 0u; w >>= 1) {
        if (lid < w) sn_red[lid] = max(sn_red[lid], sn_red[lid + w]);
        barrier();
    }
    float r = sn_red[0];
    barrier();
    return r;
}

#endif
