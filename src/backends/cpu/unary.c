/* CPU kernels: activations and their backward ops (PyTorch formulas), and the
 * bias + activation epilogue of linear and the convolutions (the same formulas). */
#include "backends/cpu/cpu.h"

#include <math.h>

#include "backends/cpu/vmath.h"


#define GRAIN 8192

typedef struct {
    const float *x, *d; /* x: input (or y for the _BWD ops), d: dy */
    float *y;
    float p0, p1;
    sn_op op;
    bool from_y; /* SOFTPLUS_BWD: x is the forward's output */
} ujob;

#ifdef SN_VM_X86
/* expm1 within a few ulp: Taylor to x^8 for |x| < 0.5 (exp(x) - 1 would cancel
 * there), exp(x) - 1 outside */
__attribute__((target("avx512f"))) static inline __m512 expm1_512(__m512 x) {
    __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 5040.0f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, x), x, x);
    __m512 big = _mm512_sub_ps(sn_exp512(x), _mm512_set1_ps(1.0f));
    __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32((int)0x80000000u), _mm512_castps_si512(x)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ), big, small);
}

/* ELU, SIGMOID or TANH (op) of 16 values */
__attribute__((target("avx512f"))) static inline __m512 act512(sn_op op, __m512 v, __m512 alpha) {
    __m512 zero = _mm512_setzero_ps();
    switch (op) {
    case SN_OP_ELU: {
        __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        return _mm512_mask_blend_ps(pos, _mm512_mul_ps(alpha, expm1_512(_mm512_min_ps(v, zero))), v);
    }
    case SN_OP_SIGMOID: return sn_sigm512(v);
    default: return sn_tanh512(v);
    }
}

/* SOFTPLUS_BWD, the scalar loop's formulas: from y, d * -expm1(-by); from x, d * z / (z + 1)
 * with z = exp(bx); d where b*(y or x) > threshold */
__attribute__((target("avx512f"))) static void softplus_bwd512(const ujob *j, int64_t b, int64_t e) {
    __m512 beta = _mm512_set1_ps(j->p0), thr = _mm512_set1_ps(j->p1), one = _mm512_set1_ps(1.0f);
    for (int64_t i = b; i < e; i += 16) {
        __mmask16 m = e - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (e - i)) - 1);
        __m512 d = _mm512_maskz_loadu_ps(m, j->d + i), bx = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, j->x + i), beta);
        __m512 g;
        if (j->from_y) {
            g = _mm512_mul_ps(d, _mm512_sub_ps(_mm512_setzero_ps(), expm1_512(_mm512_sub_ps(_mm512_setzero_ps(), bx))));
        } else {
            __m512 z = sn_exp512(bx);
            g = _mm512_div_ps(_mm512_mul_ps(d, z), _mm512_add_ps(z, one));
        }
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(bx, thr, _CMP_GT_OQ), g, d);
        _mm512_mask_storeu_ps(j->y + i, m, g);
    }
}

/* the transcendental ops, 16 at a time; false when not handled here */
__attribute__((target("avx512f"))) static bool run_avx512(const ujob *j, int64_t b, int64_t e) {
    if (j->op == SN_OP_SOFTPLUS_BWD) {
        softplus_bwd512(j, b, e);
        return true;
    }
    if (j->op != SN_OP_ELU && j->op != SN_OP_SIGMOID && j->op != SN_OP_TANH) return false;
    const float *x = j->x;
    float *y = j->y;
    __m512 alpha = _mm512_set1_ps(j->p0);
    for (int64_t i = b; i < e; i += 16) {
        __mmask16 m = e - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (e - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, act512(j->op, _mm512_maskz_loadu_ps(m, x + i), alpha));
    }
    return true;
}

/* y = op(x + bias) for ELU, SIGMOID, TANH: bias bvec[i], or bs (add skipped when add is false) */
__attribute__((target("avx512f"))) static void bias_act512(float *y, const float *x, int64_t n, const float *bvec,
                                                           float bs, bool add, sn_op op, float p0) {
    __m512 alpha = _mm512_set1_ps(p0), bb = _mm512_set1_ps(bs);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (bvec) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bvec + i));
        else if (add) v = _mm512_add_ps(v, bb);
        _mm512_mask_storeu_ps(y + i, m, act512(op, v, alpha));
    }
}
#endif

static void run(void *arg, int64_t b, int64_t e, int tid) {
    ujob *j = arg;
#ifdef SN_VM_X86
    if ((j->op == SN_OP_ELU || j->op == SN_OP_SIGMOID || j->op == SN_OP_TANH || j->op == SN_OP_SOFTPLUS_BWD) &&
        sn_vm_level() == 2 && run_avx512(j, b, e))
        return;
#endif
    const float *x = j->x, *d = j->d;
    float *y = j->y;
    float p0 = j->p0, p1 = j->p1;
    switch (j->op) {
    case SN_OP_RELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case SN_OP_ELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : p0 * expm1f(x[i]);
        break;
    case SN_OP_SOFTPLUS:
        for (int64_t i = b; i < e; i++) {
            float bx = x[i] * p0;
            y[i] = bx > p1 ? x[i] : log1pf(expf(bx)) / p0;
        }
        break;
    case SN_OP_SIGMOID:
        for (int64_t i = b; i < e; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case SN_OP_TANH:
        for (int64_t i = b; i < e; i++) y[i] = tanhf(x[i]);
        break;
    case SN_OP_RELU_BWD:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? d[i] : 0.0f;
        break;
    case SN_OP_ELU_BWD: /* from y: for x <= 0, alpha*exp(x) = y + alpha */
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? d[i] : d[i] * (x[i] + p0);
        break;
    case SN_OP_SOFTPLUS_BWD:
        if (j->from_y) /* from y = log1p(e^bx)/b: sigmoid(bx) = 1 - e^-by, without cancellation */
            for (int64_t i = b; i < e; i++) {
                float by = x[i] * p0;
                y[i] = by > p1 ? d[i] : d[i] * -expm1f(-by);
            }
        else
            for (int64_t i = b; i < e; i++) {
                float bx = x[i] * p0;
                float z = expf(bx);
                y[i] = bx > p1 ? d[i] : d[i] * z / (z + 1.0f);
            }
        break;
    case SN_OP_SIGMOID_BWD:
        for (int64_t i = b; i < e; i++) y[i] = d[i] * x[i] * (1.0f - x[i]);
        break;
    case SN_OP_TANH_BWD:
        for (int64_t i = b; i < e; i++) y[i] = d[i] * (1.0f - x[i] * x[i]);
        break;
    default: break;
    }
}

sn_status sn_cpu_unary(sn_cpu *c, sn_tensor *node) {
    ujob j = {.y = node->data, .p0 = node->fp[0], .p1 = node->fp[1], .op = node->op,
              .from_y = node->op == SN_OP_SOFTPLUS_BWD && node->ip[0] == 1};
    switch (node->op) {
    case SN_OP_RELU:
    case SN_OP_ELU:
    case SN_OP_SOFTPLUS:
    case SN_OP_SIGMOID:
    case SN_OP_TANH: j.x = node->src[0]->data; break;
    case SN_OP_RELU_BWD:
    case SN_OP_ELU_BWD:
    case SN_OP_SOFTPLUS_BWD:
    case SN_OP_SIGMOID_BWD:
    case SN_OP_TANH_BWD:
        j.d = node->src[0]->data;
        j.x = node->src[1]->data;
        break;
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_unary: op %s is not a unary op", sn_op_name(node->op));
    }
    sn_pool_for(c->pool, sn_nelem(node), GRAIN, run, &j);
    return SN_OK;
}

/* y[i] = act(x[i] + bias) for one row of n (x may be y): bias bvec[i], or bs for all
 * (skipped when bvec is NULL and bs 0). act is an sn_act; the formulas, and on AVX-512
 * the vector code, are the activation ops' own, so fusing changes no result. */
void sn_cpu_bias_act(float *y, const float *x, int64_t n, const float *bvec, float bs, int act, float p0, float p1) {
    static const sn_op ops[SN_ACT_COUNT] = {[SN_ACT_NONE] = SN_OP_NONE,       [SN_ACT_RELU] = SN_OP_RELU,
                                            [SN_ACT_ELU] = SN_OP_ELU,         [SN_ACT_SOFTPLUS] = SN_OP_SOFTPLUS,
                                            [SN_ACT_SIGMOID] = SN_OP_SIGMOID, [SN_ACT_TANH] = SN_OP_TANH};
    sn_op op = act > SN_ACT_NONE && act < SN_ACT_COUNT ? ops[act] : SN_OP_NONE;
    bool add = bvec || bs != 0.0f;
#ifdef SN_VM_X86
    if ((op == SN_OP_ELU || op == SN_OP_SIGMOID || op == SN_OP_TANH) && sn_vm_level() == 2) {
        bias_act512(y, x, n, bvec, bs, add, op, p0);
        return;
    }
#endif
#define SN_BA_LOOP(expr)                                                                \
    do {                                                                                \
        if (bvec)                                                                       \
            for (int64_t i = 0; i < n; i++) { float v = x[i] + bvec[i]; y[i] = (expr); } \
        else if (add)                                                                   \
            for (int64_t i = 0; i < n; i++) { float v = x[i] + bs; y[i] = (expr); }      \
        else                                                                            \
            for (int64_t i = 0; i < n; i++) { float v = x[i]; y[i] = (expr); }          \
    } while (0)
    switch (op) {
    case SN_OP_RELU: SN_BA_LOOP(v > 0.0f ? v : 0.0f); break;
    case SN_OP_ELU: SN_BA_LOOP(v > 0.0f ? v : p0 * expm1f(v)); break;
    case SN_OP_SOFTPLUS: SN_BA_LOOP(v * p0 > p1 ? v : log1pf(expf(v * p0)) / p0); break;
    case SN_OP_SIGMOID: SN_BA_LOOP(1.0f / (1.0f + expf(-v))); break;
    case SN_OP_TANH: SN_BA_LOOP(tanhf(v)); break;
    default: SN_BA_LOOP(v); break;
    }
#undef SN_BA_LOOP
}
