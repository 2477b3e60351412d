// Activations and their derivatives as the CPU backend computes them (src/backends/cpu/unary.c),
// for the unary shaders and the fused bias+activation epilogues: #include "act.glsl".
// GLSL has no expm1/log1p: both here, accurate where exp(x) - 1 and log(1 + u) cancel.

// exp within about 1 ulp on every driver: GLSL allows exp() an error of 3 + 2|x| ulp, and
// NVIDIA's (exp2 of a rounded x * log2 e) is that loose, enough to move the golden CRN's
// 5-step training trajectory past PyTorch's. Cody-Waite reduction x = n ln2 + r (ln2 in
// two parts, n * hi exact), e^r by Taylor to r^7 on |r| <= ln2 / 2 (term r^8 / 8! < 6e-9).
float sn_exp(float x) {
    if (x > 88.7228) return uintBitsToFloat(0x7f800000u);
    if (x < -103.973) return 0.0;
    float n = round(x * 1.44269504);
    float r = fma(n, -0.693359375, x);
    r = fma(n, 2.12194440e-4, r);
    float p = 1.0 / 5040.0;
    p = fma(p, r, 1.0 / 720.0);
    p = fma(p, r, 1.0 / 120.0);
    p = fma(p, r, 1.0 / 24.0);
    p = fma(p, r, 1.0 / 6.0);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    // two steps: 2^n alone overflows at n = 128 where p < 1 keeps the product finite
    int k = int(n);
    return ldexp(ldexp(p, k / 2), k - k / 2);
}

// a / b to within an ulp where a driver's division is approximate (GLSL allows 2.5 ulp):
// one correction from the exact residual
float sn_div(float a, float b) {
    float q = a / b;
    return isinf(b) ? q : q + fma(-q, b, a) / b;
}

float sn_expm1(float x) {
    if (abs(x) >= 0.5) return sn_exp(x) - 1.0;
    // Taylor to x^8 (the CPU's AVX-512 expm1 does the same): error < 1e-8 relative
    float p = 1.0 / 40320.0;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    return (p * x) * x + x;
}

float sn_log1p(float u) {
    if (abs(u) >= 0.5) return log(1.0 + u);
    // 2 atanh(s), s = u / (2 + u), |s| < 1/3: odd series to s^11
    float s = u / (2.0 + u), s2 = s * s;
    float p = 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return 2.0 * s * p;
}

// tanh from expm1: no overflow for large |x|, no cancellation near 0
float sn_tanh(float x) {
    float e = sn_expm1(-2.0 * abs(x));
    float t = sn_div(-e, 2.0 + e);
    return x < 0.0 ? -t : t;
}

float sn_sigmoid(float x) { return sn_div(1.0, 1.0 + sn_exp(-x)); }

// sn_act codes (include/sinter/tensor.h): 0 none 1 relu 2 elu 3 softplus 4 sigmoid 5 tanh
#define SN_ACT_NONE 0
#define SN_ACT_RELU 1
#define SN_ACT_ELU 2
#define SN_ACT_SOFTPLUS 3
#define SN_ACT_SIGMOID 4
#define SN_ACT_TANH 5

// y = act(x); p0/p1: ELU alpha; softplus beta, threshold
float sn_act(uint act, float x, float p0, float p1) {
    switch (act) {
    case SN_ACT_RELU: return x > 0.0 ? x : 0.0;
    case SN_ACT_ELU: return x > 0.0 ? x : p0 * sn_expm1(x);
    case SN_ACT_SOFTPLUS: {
        float bx = x * p0;
        return bx > p1 ? x : sn_log1p(sn_exp(bx)) / p0;
    }
    case SN_ACT_SIGMOID: return sn_sigmoid(x);
    case SN_ACT_TANH: return sn_tanh(x);
    default: return x;
    }
}

// dx from dy and the activation's output y (RELU/ELU/SIGMOID/TANH_BWD, SOFTPLUS_BWD ip0 = 1)
float sn_act_bwd_y(uint act, float dy, float y, float p0, float p1) {
    switch (act) {
    case SN_ACT_RELU: return y > 0.0 ? dy : 0.0;
    case SN_ACT_ELU: return y > 0.0 ? dy : dy * (y + p0);
    case SN_ACT_SOFTPLUS: {
        float by = y * p0;
        return by > p1 ? dy : dy * -sn_expm1(-by);
    }
    case SN_ACT_SIGMOID: return dy * y * (1.0 - y);
    case SN_ACT_TANH: return dy * (1.0 - y * y);
    default: return dy;
    }
}
