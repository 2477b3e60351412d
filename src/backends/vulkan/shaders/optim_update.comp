#version 450
// ADAM/ADAMW and SGD over up to 16 (param, grad) pairs, as src/backends/cpu/optim.c (torch's
// single-tensor path, operation by operation in f32). lr and the bias corrections come from
// the hyper tensor and the clip scale from the sumsq tensor, read on the device: the recorded
// command buffer replays every step unchanged.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(buffer_reference, std430, buffer_reference_align = 8) buffer Args {
    F32 p[16]; F32 g[16];
    uint off[16];     // each param's offset in the flat state
    uint start[17];   // segment s covers items [start[s], start[s+1])
    uint nseg;
};
layout(push_constant) uniform P {
    Args args; F32 s0; F32 s1; F32 hyper; F32 sumsq; F32 token;
    uint adam; uint flag; uint has_sumsq;
    float f0; float f1; float f2; float f3; float f4;
} p;
// hyper: lr, bc1, bc2, step (SN_HYPER_*)
void main() {
    uint i = sn_index();
    Args A = p.args;
    uint total = A.start[A.nseg];
    if (i == 0) p.token.v[0] = 0.0;
    if (i >= total) return;
    uint s = 0;
    while (i >= A.start[s + 1]) s++;
    uint j = i - A.start[s], o = A.off[s] + j;
    float lr = p.hyper.v[0];
    float max_norm = p.adam != 0 ? p.f4 : p.f3;
    float clip = 1.0;
    if (p.has_sumsq != 0 && max_norm > 0.0) { // torch clip_grad_norm_: max_norm / (norm + 1e-6), at most 1
        float c = max_norm / (sqrt(p.sumsq.v[0]) + 1e-6);
        clip = c < 1.0 ? c : 1.0;
    }
    F32 P_ = A.p[s];
    float g = A.g[s].v[j];
    if (clip != 1.0) g *= clip;
    float w = P_.v[j];
    if (p.adam != 0) {
        float b1 = p.f0, b2 = p.f1, eps = p.f2, wd = p.f3;
        float step_size = lr / p.hyper.v[1];
        float bc2_sqrt = sqrt(p.hyper.v[2]);
        if (p.flag != 0) w *= 1.0 - lr * wd;     // AdamW
        else if (wd != 0.0) g += wd * w;
        float m0 = p.s0.v[o], v0 = p.s1.v[o];
        float m = m0 + (1.0 - b1) * (g - m0);    // exp_avg.lerp_(grad, 1 - beta1)
        float v = v0 * b2 + (1.0 - b2) * g * g;  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        float denom = sqrt(v) / bc2_sqrt + eps;
        p.s0.v[o] = m;
        p.s1.v[o] = v;
        P_.v[j] = w - step_size * (m / denom);
    } else {
        float mom = p.f0, damp = p.f1, wd = p.f2;
        if (wd != 0.0) g += wd * w;
        if (mom != 0.0) {
            bool first = p.hyper.v[3] <= 1.0;    // torch: the first step starts the buffer at g
            float bf = first ? g : p.s0.v[o] * mom + (1.0 - damp) * g;
            p.s0.v[o] = bf;
            g = p.flag != 0 ? g + mom * bf : bf;  // nesterov
        }
        P_.v[j] = w - lr * g;
    }
}
