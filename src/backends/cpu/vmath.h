/* Vector exp / sigmoid / tanh for the CPU kernels (AVX-512 and AVX2+FMA), float
 * accuracy: exp within ~2 ulp (Cody-Waite reduction + the Cephes expf polynomial),
 * sigmoid and tanh within a few ulp (tanh uses its Taylor series near 0, where
 * (1-e)/(1+e) would cancel). Callers check sn_vm_level() before using them. */
#ifndef SN_BACKENDS_CPU_VMATH_H
#define SN_BACKENDS_CPU_VMATH_H

#include <math.h>
#include <stdint.h>

/* The cap on sn_vm_level(), 2 unless set: SN_CPU_VM_LEVEL=0|1 at start-up, or the tests
 * directly, to run the portable or AVX2 paths on an AVX-512 machine (pool.c holds it). */
extern int sn_vm_cap;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SN_VM_X86 1

/* 2: AVX-512F, 1: AVX2+FMA, 0: scalar */
static inline int sn_vm_level(void) {
    static int level = -1;
    if (level < 0) {
        int l = 0;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) l = 2;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 1;
        level = l;
    }
    return level < sn_vm_cap ? level : sn_vm_cap;
}

#define SN_EXP_POLY(T, FMA, SET1, x, r)                                                  \
    do {                                                                                 \
        T p_ = SET1(1.9875691500E-4f);                                                   \
        p_ = FMA(p_, r, SET1(1.3981999507E-3f));                                         \
        p_ = FMA(p_, r, SET1(8.3334519073E-3f));                                         \
        p_ = FMA(p_, r, SET1(4.1665795894E-2f));                                         \
        p_ = FMA(p_, r, SET1(1.6666665459E-1f));                                         \
        p_ = FMA(p_, r, SET1(5.0000001201E-1f));                                         \
        x = FMA(p_, _mul(r, r), _add(r, SET1(1.0f)));                                    \
    } while (0)

__attribute__((target("avx512f"))) static inline __m512 sn_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y;
#define _mul _mm512_mul_ps
#define _add _mm512_add_ps
    SN_EXP_POLY(__m512, _mm512_fmadd_ps, _mm512_set1_ps, y, r);
#undef _mul
#undef _add
    return _mm512_scalef_ps(y, n);
}

__attribute__((target("avx512f"))) static inline __m512 sn_sigm512(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, sn_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

__attribute__((target("avx512f"))) static inline __m512 sn_tanh512(__m512 x) {
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32((int)0x80000000u), _mm512_castps_si512(x)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = sn_exp512(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
    __m512 big = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    /* |x| < 0.3: x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 (next term < 6e-8 relative) */
    __m512 a2 = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(62.0f / 2835.0f);
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(-17.0f / 315.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(2.0f / 15.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(-1.0f / 3.0f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, a2), a, a);
    __mmask16 m = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.3f), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(m, big, small);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}

__attribute__((target("avx2,fma"))) static inline __m256 sn_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y;
#define _mul _mm256_mul_ps
#define _add _mm256_add_ps
    SN_EXP_POLY(__m256, _mm256_fmadd_ps, _mm256_set1_ps, y, r);
#undef _mul
#undef _add
    /* 2^n with n in [-150, 129]: two factors, each a normal float; overflow gives inf as exp does */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

__attribute__((target("avx2,fma"))) static inline __m256 sn_sigm256(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, sn_exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

__attribute__((target("avx2,fma"))) static inline __m256 sn_tanh256(__m256 x) {
    __m256 signm = _mm256_set1_ps(-0.0f);
    __m256 sign = _mm256_and_ps(x, signm), a = _mm256_andnot_ps(signm, x);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = sn_exp256(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    __m256 a2 = _mm256_mul_ps(a, a);
    __m256 p = _mm256_set1_ps(62.0f / 2835.0f);
    p = _mm256_fmadd_ps(p, a2, _mm256_set1_ps(-17.0f / 315.0f));
    p = _mm256_fmadd_ps(p, a2, _mm256_set1_ps(2.0f / 15.0f));
    p = _mm256_fmadd_ps(p, a2, _mm256_set1_ps(-1.0f / 3.0f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, a2), a, a);
    __m256 t = _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.3f), _CMP_LT_OQ));
    return _mm256_or_ps(t, sign);
}
#else
static inline int sn_vm_level(void) { return 0; }
#endif

/* sum of x[0..n) in double: 64 float partial sums (x[i] into lane i % 64) folded in one
 * fixed order, so the AVX-512 and portable forms give the same bits; the lanes keep
 * the float error of a 64th of the run, well below the sequential float sum's. */
static inline double sn_fold64(const float *l) {
    double s = 0;
    for (int k = 0; k < 16; k++) s += (double)((l[k] + l[16 + k]) + (l[32 + k] + l[48 + k]));
    return s;
}

#ifdef SN_VM_X86
__attribute__((target("avx512f"))) static inline double sn_vsum512(const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    __m512 *acc[4] = {&a0, &a1, &a2, &a3};
    for (int q = 0; q < 4 && i + 16 * q < n; q++) { /* the tail: lanes past the end stay as they are */
        int64_t r = n - i - 16 * q;
        __mmask16 m = r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1);
        *acc[q] = _mm512_mask_add_ps(*acc[q], m, *acc[q], _mm512_maskz_loadu_ps(m, x + i + 16 * q));
    }
    float l[64];
    _mm512_storeu_ps(l, a0);
    _mm512_storeu_ps(l + 16, a1);
    _mm512_storeu_ps(l + 32, a2);
    _mm512_storeu_ps(l + 48, a3);
    return sn_fold64(l);
}
#endif

static inline double sn_vsum(const float *x, int64_t n) {
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) return sn_vsum512(x, n);
#endif
    float l[64] = {0};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int k = 0; k < 64; k++) l[k] += x[i + k];
    for (int k = 0; i + k < n; k++) l[k] += x[i + k];
    return sn_fold64(l);
}

#endif
