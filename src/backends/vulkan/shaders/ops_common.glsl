// Shared by the heavy op families' shaders (matmul, conv, batchnorm, norm, rnn,
// attention): the buffer-reference type every tensor address is read through and the
// activation functions of the fused epilogues (sn_act), written to match the CPU's
// libm results closely (expm1 and log1p accurate near 0).
#ifndef SN_OPS_COMMON_GLSL
#define SN_OPS_COMMON_GLSL
#extension GL_EXT_buffer_reference : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32 { float v[]; };

// sn_act values (tensor.h)
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_ELU 2
#define ACT_SOFTPLUS 3
#define ACT_SIGMOID 4
#define ACT_TANH 5

// exp(x) - 1 without the cancellation near 0: Taylor to x^8 for |x| < 0.5
float sn_expm1(float x) {
    if (abs(x) < 0.5) {
        float p = 1.0 / 40320.0;
        p = p * x + 1.0 / 5040.0;
        p = p * x + 1.0 / 720.0;
        p = p * x + 1.0 / 120.0;
        p = p * x + 1.0 / 24.0;
        p = p * x + 1.0 / 6.0;
        p = p * x + 0.5;
        return (p * x) * x + x;
    }
    return exp(x) - 1.0;
}

// log(1 + x), exact for tiny x (the classic log(u) * x / (u - 1) correction)
float sn_log1p(float x) {
    float u = 1.0 + x;
    if (u == 1.0) return x;
    return log(u) * (x / (u - 1.0));
}

float sn_sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// through expm1: accurate near 0, exactly +-1 for large |x| (no inf/inf)
float sn_tanh(float x) {
    float e = sn_expm1(-2.0 * abs(x));
    float r = -e / (2.0 + e);
    return x < 0.0 ? -r : r;
}

float sn_act(int act, float v, float p0, float p1) {
    if (act == ACT_RELU) return v > 0.0 ? v : 0.0;
    if (act == ACT_ELU) return v > 0.0 ? v : p0 * sn_expm1(v);
    if (act == ACT_SOFTPLUS) return v * p0 > p1 ? v : sn_log1p(exp(v * p0)) / p0;
    if (act == ACT_SIGMOID) return sn_sigmoid(v);
    if (act == ACT_TANH) return sn_tanh(v);
    return v;
}

#endif
