// The vec4 operand loads of the register-blocked and cooperative-matrix GEMMs
// (gemm_big.glsl, matmul_gemm_coop.glsl). After ops_common.glsl.
#ifndef SN_GEMM_LOAD_GLSL
#define SN_GEMM_LOAD_GLSL

layout(buffer_reference, std430, buffer_reference_align = 16) buffer F32x4 { vec4 v[]; };

// 4 consecutive elements at index i, the first `n` of them (0..4) in range
vec4 load4(F32 p, bool v4, uint i, int n) {
    if (n >= 4 && v4) return F32x4(p).v[i >> 2];
    vec4 r = vec4(0.0); // components by name: no dynamic index into a register vector
    if (n > 0) r.x = p.v[i];
    if (n > 1) r.y = p.v[i + 1u];
    if (n > 2) r.z = p.v[i + 2u];
    if (n > 3) r.w = p.v[i + 3u];
    return r;
}

#endif
