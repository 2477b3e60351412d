/* CPU kernels: BatchNorm2d forward (batch or running statistics) and backward,
 * parallel over channels; per-channel sums in double. With ip[1] = 1 the forward
 * applies ELU(alpha fp[2]) as an epilogue and the backward first turns dy (w.r.t.
 * the ELU output y) into dz = dy * (y > 0 ? 1 : y + alpha). */
#include "backends/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>

#include "backends/cpu/vmath.h"

typedef struct {
    const sn_tensor *node;
    int64_t N, C, HW;
    const float *x, *dy, *gamma, *beta;
    float *y, *rm, *rv, *mean, *invstd;
    float *dx, *dg, *db;
    const float *yf; /* fused backward: the forward's ELU output */
    float eps, mom, alpha;
    bool training, elu;
    /* synchronised BatchNorm: phase 1 writes this process's per-channel sums to acc
     * (forward: sum x, then with mean given sum (x - mean)^2; backward: sum dz, sum
     * dz*(x - mean)); the group's sums g1/g2 over gcnt values then finish the op */
    int phase;
    double *acc;
    const double *g1, *g2, *gmean;
    double gcnt;
} bnjob;

#ifdef SN_VM_X86
/* y = ELU(x*sc + sh); expm1 as in unary.c: Taylor to z^8 for |z| < 0.5 (exp(z) - 1
 * would cancel there), exp(z) - 1 outside */
__attribute__((target("avx512f"))) static void affine_elu512(float *y, const float *x, int64_t n, float sc, float sh,
                                                             float alpha) {
    __m512 vsc = _mm512_set1_ps(sc), vsh = _mm512_set1_ps(sh), va = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 z = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), vsc, vsh);
        __m512 t = _mm512_min_ps(z, zero);
        __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.0f / 5040.0f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.0f / 720.0f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.0f / 120.0f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.0f / 24.0f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.0f / 6.0f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.5f));
        __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, t), t, t);
        __m512 big = _mm512_sub_ps(sn_exp512(t), _mm512_set1_ps(1.0f));
        __m512 e = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, _mm512_set1_ps(-0.5f), _CMP_GT_OQ), big, small);
        __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ), _mm512_mul_ps(va, e), z);
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

__attribute__((target("avx2,fma"))) static void affine_elu256(float *y, const float *x, int64_t n, float sc, float sh,
                                                              float alpha) {
    __m256 vsc = _mm256_set1_ps(sc), vsh = _mm256_set1_ps(sh), va = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vsc, vsh);
        __m256 t = _mm256_min_ps(z, zero);
        __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 5040.0f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 720.0f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 120.0f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 24.0f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f / 6.0f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.5f));
        __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, t), t, t);
        __m256 big = _mm256_sub_ps(sn_exp256(t), _mm256_set1_ps(1.0f));
        __m256 e = _mm256_blendv_ps(big, small, _mm256_cmp_ps(t, _mm256_set1_ps(-0.5f), _CMP_GT_OQ));
        __m256 r = _mm256_blendv_ps(_mm256_mul_ps(va, e), z, _mm256_cmp_ps(z, zero, _CMP_GT_OQ));
        _mm256_storeu_ps(y + i, r);
    }
    for (; i < n; i++) {
        float z = x[i] * sc + sh;
        y[i] = z > 0.0f ? z : alpha * expm1f(z);
    }
}

/* The per-channel sums on AVX-512: 32 float lanes, folded into the double sums every
 * BN_BLK values (at most 64 adds per lane, so the float error stays near one rounding
 * of each term: the double sums' accuracy at a quarter of the work). */
#define BN_BLK 2048

static inline __mmask16 tail16(int64_t r) { return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1); }

/* s1 += sum(x - a); s2 (if not NULL) += sum((x - a)^2); a is a float */
__attribute__((target("avx512f"))) static void stats512(const float *x, float a, int64_t n, double *s1, double *s2) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t b = 0; b < n; b += BN_BLK) {
        int64_t e = b + BN_BLK < n ? b + BN_BLK : n;
        __m512 p0 = _mm512_setzero_ps(), p1 = p0, q0 = p0, q1 = p0;
        int64_t i = b;
        for (; i + 32 <= e; i += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), va), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), va);
            p0 = _mm512_add_ps(p0, d0);
            p1 = _mm512_add_ps(p1, d1);
            if (s2) {
                q0 = _mm512_fmadd_ps(d0, d0, q0);
                q1 = _mm512_fmadd_ps(d1, d1, q1);
            }
        }
        for (; i < e; i += 16) { /* masked lanes load as 0 and must not add (0 - a) */
            __mmask16 k = tail16(e - i);
            __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), va);
            p0 = _mm512_add_ps(p0, d);
            if (s2) q0 = _mm512_fmadd_ps(d, d, q0);
        }
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_add_ps(p0, p1)));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(_mm512_add_ps(p0, p1)), 1)));
        *s1 += _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
        if (s2) {
            __m512 q = _mm512_add_ps(q0, q1);
            lo = _mm512_cvtps_pd(_mm512_castps512_ps256(q));
            hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(q), 1)));
            *s2 += _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
        }
    }
}

/* the backward's sums, with the ELU's gradient fused in: dz = dy, or with y (the ELU's
 * output) dy * (y > 0 ? 1 : y + alpha), stored to dz; s1 += sum dz, s2 += sum dz*(x - m) */
__attribute__((target("avx512f"))) static void bwd_sums512(float *dz, const float *dy, const float *y, const float *x,
                                                           float m, float alpha, int64_t n, double *s1, double *s2) {
    __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    for (int64_t b = 0; b < n; b += BN_BLK) {
        int64_t e = b + BN_BLK < n ? b + BN_BLK : n;
        __m512 p0 = _mm512_setzero_ps(), p1 = p0, q0 = p0, q1 = p0;
        for (int64_t i = b; i < e; i += 32) {
            __mmask16 k0 = tail16(e - i), k1 = tail16(e - i - 16 > 0 ? e - i - 16 : 0);
            __m512 g0 = _mm512_maskz_loadu_ps(k0, dy + i), g1 = _mm512_maskz_loadu_ps(k1, dy + i + 16);
            if (y) {
                __m512 y0 = _mm512_maskz_loadu_ps(k0, y + i), y1 = _mm512_maskz_loadu_ps(k1, y + i + 16);
                g0 = _mm512_mask_mul_ps(g0, _mm512_cmp_ps_mask(y0, zero, _CMP_NGT_UQ), g0, _mm512_add_ps(y0, va));
                g1 = _mm512_mask_mul_ps(g1, _mm512_cmp_ps_mask(y1, zero, _CMP_NGT_UQ), g1, _mm512_add_ps(y1, va));
                _mm512_mask_storeu_ps(dz + i, k0, g0);
                _mm512_mask_storeu_ps(dz + i + 16, k1, g1);
            }
            /* masked lanes: g is 0, so nothing adds */
            __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(k0, x + i), vm);
            __m512 d1 = _mm512_sub_ps(_mm512_maskz_loadu_ps(k1, x + i + 16), vm);
            p0 = _mm512_add_ps(p0, g0);
            p1 = _mm512_add_ps(p1, g1);
            q0 = _mm512_fmadd_ps(g0, d0, q0);
            q1 = _mm512_fmadd_ps(g1, d1, q1);
        }
        __m512 p = _mm512_add_ps(p0, p1), q = _mm512_add_ps(q0, q1);
        *s1 += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(p)),
                                                  _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1)))));
        *s2 += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(q)),
                                                  _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(q), 1)))));
    }
}

/* dx = k * (dz - mdy - (x - m) * mdx) */
__attribute__((target("avx512f"))) static void bwd_dx512(float *dx, const float *dz, const float *x, int64_t n, float k,
                                                         float mdy, float m, float mdx) {
    __m512 vk = _mm512_set1_ps(k), vmdy = _mm512_set1_ps(mdy), vm = _mm512_set1_ps(m), vmdx = _mm512_set1_ps(mdx);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 t = tail16(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + i), vm);
        __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(t, dz + i), vmdy);
        _mm512_mask_storeu_ps(dx + i, t, _mm512_mul_ps(vk, _mm512_fnmadd_ps(d, vmdx, g)));
    }
}
#endif

/* s1 += sum(x - m), s2 += sum((x - m)^2) (portable: in double) */
static void sums(const float *x, double m, int64_t n, double *s1, double *s2) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - m;
        a += d;
        b += d * d;
    }
    *s1 += a;
    if (s2) *s2 += b;
}

/* a channel's sum of x and sum of squared deviations from its mean, over its N runs of
 * HW; the second pass finds the data in L2 */
static void channel_stats(const float *x0, int64_t N, int64_t stride, int64_t HW, double *mean, double *m2) {
    double s = 0, cnt = (double)(N * HW);
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        for (int64_t n = 0; n < N; n++) stats512(x0 + n * stride, 0.0f, HW, &s, NULL);
        /* deviations from the float nearest the mean: sum (x-a)^2 = m2 + S1^2/cnt, S1 = sum (x-a) */
        float a = (float)(s / cnt);
        double s1 = 0, s2 = 0;
        for (int64_t n = 0; n < N; n++) stats512(x0 + n * stride, a, HW, &s1, &s2);
        *mean = (double)a + s1 / cnt;
        *m2 = s2 - s1 * s1 / cnt;
        if (*m2 < 0) *m2 = 0;
        return;
    }
#endif
    for (int64_t n = 0; n < N; n++) sums(x0 + n * stride, 0.0, HW, &s, NULL);
    double mu = s / cnt, q = 0;
    s = 0;
    for (int64_t n = 0; n < N; n++) sums(x0 + n * stride, mu, HW, &s, &q);
    *mean = mu;
    *m2 = q;
}

static void affine_elu(float *y, const float *x, int64_t n, float sc, float sh, float alpha) {
#ifdef SN_VM_X86
    int l = sn_vm_level();
    if (l == 2) { affine_elu512(y, x, n, sc, sh, alpha); return; }
    if (l == 1) { affine_elu256(y, x, n, sc, sh, alpha); return; }
#endif
    for (int64_t i = 0; i < n; i++) {
        float z = x[i] * sc + sh;
        y[i] = z > 0.0f ? z : alpha * expm1f(z);
    }
}

/* the backward's per-run sums: dz = dy, or with y (the fused ELU's output) dz = dy * ELU'(z)
 * = dy * (y > 0 ? 1 : y + alpha) (for z <= 0, alpha*exp(z) = y + alpha), stored to dz;
 * s1 += sum dz, s2 += sum dz*(x - m) */
static void bwd_sums(float *dz, const float *dy, const float *y, const float *x, float m, float alpha, int64_t n,
                     double *s1, double *s2) {
#ifdef SN_VM_X86
    if (sn_vm_level() == 2) {
        bwd_sums512(dz, dy, y, x, m, alpha, n, s1, s2);
        return;
    }
#endif
    if (y) {
        for (int64_t i = 0; i < n; i++) dz[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + alpha);
        dy = dz;
    }
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        a += dy[i];
        b += (double)dy[i] * ((double)x[i] - m);
    }
    *s1 += a;
    *s2 += b;
}

static void bn_fwd(void *arg, int64_t c0, int64_t c1, int tid) {
    bnjob *j = arg;
    int64_t N = j->N, C = j->C, HW = j->HW, cnt = N * HW;
    for (int64_t c = c0; c < c1; c++) {
        float m, is;
        if (j->training && j->g1) {
            double mu = j->g1[c] / j->gcnt, var = j->g2[c] / j->gcnt;
            m = (float)mu;
            is = (float)(1.0 / sqrt(var + (double)j->eps));
            j->rm[c] = (float)((1.0 - j->mom) * j->rm[c] + j->mom * mu);
            j->rv[c] = (float)((1.0 - j->mom) * j->rv[c] + j->mom * (j->g2[c] / (j->gcnt - 1.0)));
        } else if (j->training) {
            double mu, q;
            channel_stats(j->x + c * HW, N, C * HW, HW, &mu, &q);
            double var = q / (double)cnt;
            m = (float)mu;
            is = (float)(1.0 / sqrt(var + (double)j->eps));
            double unbiased = q / (double)(cnt - 1);
            j->rm[c] = (float)((1.0 - j->mom) * j->rm[c] + j->mom * mu);
            j->rv[c] = (float)((1.0 - j->mom) * j->rv[c] + j->mom * unbiased);
        } else {
            m = j->rm[c];
            is = (float)(1.0 / sqrt((double)j->rv[c] + (double)j->eps));
        }
        j->mean[c] = m;
        j->invstd[c] = is;
        float sc = is * j->gamma[c], sh = j->beta[c] - m * sc;
        for (int64_t n = 0; n < N; n++) {
            const float *x = j->x + (n * C + c) * HW;
            float *y = j->y + (n * C + c) * HW;
            if (j->elu) affine_elu(y, x, HW, sc, sh, j->alpha);
            else
                for (int64_t i = 0; i < HW; i++) y[i] = x[i] * sc + sh;
        }
    }
}

/* synchronised forward, phase 1: acc[c] = sum x (gmean NULL) or sum (x - gmean)^2 */
static void bn_sync_sums(void *arg, int64_t c0, int64_t c1, int tid) {
    bnjob *j = arg;
    int64_t N = j->N, C = j->C, HW = j->HW;
    for (int64_t c = c0; c < c1; c++) {
        double m = j->gmean ? j->gmean[c] : 0.0, s = 0, q = 0;
        for (int64_t n = 0; n < N; n++) sums(j->x + (n * C + c) * HW, m, HW, &s, &q);
        j->acc[c] = j->gmean ? q : s;
    }
}

static void bn_bwd(void *arg, int64_t c0, int64_t c1, int tid) {
    bnjob *j = arg;
    int64_t N = j->N, C = j->C, HW = j->HW;
    double cnt = j->phase == 2 ? j->gcnt : (double)(N * HW);
    for (int64_t c = c0; c < c1; c++) {
        float m = j->mean[c], is = j->invstd[c];
        double sdy = 0, sdyx = 0;
        if (j->phase == 2) { /* the group's sums; dz is in dx already */
            sdy = j->g1[c];
            sdyx = j->g2[c];
        } else {
            for (int64_t n = 0; n < N; n++) {
                int64_t o = (n * C + c) * HW;
                /* dz goes to dx and is the dy of the BN backward from here on */
                bwd_sums(j->dx + o, j->dy + o, j->elu ? j->yf + o : NULL, j->x + o, m, j->alpha, HW, &sdy, &sdyx);
            }
        }
        double dgamma = sdyx * is;
        if (j->phase == 1) { /* local dgamma/dbeta; dx waits for the group's sums */
            j->acc[c] = sdy;
            j->acc[C + c] = sdyx;
            j->db[c] = (float)sdy;
            j->dg[c] = (float)dgamma;
            continue;
        }
        if (j->phase == 0) {
            j->db[c] = (float)sdy;
            j->dg[c] = (float)dgamma;
        }
        float g = j->gamma[c];
        if (j->training) {
            /* dx = gamma*invstd * (dy - mean(dy) - xhat*mean(dy*xhat)) */
            float k = g * is, mdy = (float)(sdy / cnt), mdx = (float)(dgamma / cnt) * is;
            for (int64_t n = 0; n < N; n++) {
                const float *x = j->x + (n * C + c) * HW, *dy = (j->elu ? j->dx : j->dy) + (n * C + c) * HW;
                float *dx = j->dx + (n * C + c) * HW;
#ifdef SN_VM_X86
                if (sn_vm_level() == 2) {
                    bwd_dx512(dx, dy, x, HW, k, mdy, m, mdx);
                    continue;
                }
#endif
                for (int64_t i = 0; i < HW; i++) dx[i] = k * (dy[i] - mdy - (x[i] - m) * mdx);
            }
        } else {
            float k = g * is;
            for (int64_t n = 0; n < N; n++) {
                const float *dy = (j->elu ? j->dx : j->dy) + (n * C + c) * HW;
                float *dx = j->dx + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) dx[i] = k * dy[i];
            }
        }
    }
}

static sn_status group_sum(sn_cpu *c, double *buf, int64_t n) {
    if (!c->coll) return sn_error(SN_ERR_UNSUPPORTED, "synchronised batchnorm2d: no host collective attached");
    return c->coll->allreduce(c->coll->user, buf, buf, (size_t)n, true, NULL);
}

/* Two collectives, as the two-pass statistics: the global mean first, then the sum of
 * squared deviations from it (a one-pass sum of squares would cancel) */
static sn_status bn_fwd_sync(sn_cpu *c, bnjob *j, int64_t grain) {
    double *buf = malloc((size_t)(3 * j->C) * sizeof *buf);
    if (!buf) return sn_error(SN_ERR_NOMEM, "synchronised batchnorm2d: out of host memory");
    j->gcnt = (double)(j->N * j->HW) * (double)c->coll->world;
    double *s = buf, *q = buf + j->C, *mean = buf + 2 * j->C;
    j->acc = s;
    sn_pool_for(c->pool, j->C, grain, bn_sync_sums, j);
    sn_status st = group_sum(c, s, j->C);
    if (st == SN_OK) {
        for (int64_t k = 0; k < j->C; k++) mean[k] = s[k] / j->gcnt;
        j->gmean = mean;
        j->acc = q;
        sn_pool_for(c->pool, j->C, grain, bn_sync_sums, j);
        st = group_sum(c, q, j->C);
    }
    if (st == SN_OK) {
        j->g1 = s;
        j->g2 = q;
        sn_pool_for(c->pool, j->C, grain, bn_fwd, j);
    }
    free(buf);
    return st;
}

static sn_status bn_bwd_sync(sn_cpu *c, bnjob *j, int64_t grain) {
    double *buf = malloc((size_t)(2 * j->C) * sizeof *buf);
    if (!buf) return sn_error(SN_ERR_NOMEM, "synchronised batchnorm2d_bwd: out of host memory");
    j->acc = buf;
    j->phase = 1;
    sn_pool_for(c->pool, j->C, grain, bn_bwd, j);
    sn_status st = group_sum(c, buf, 2 * j->C);
    if (st == SN_OK) {
        j->phase = 2;
        j->g1 = buf;
        j->g2 = buf + j->C;
        j->gcnt = (double)(j->N * j->HW) * (double)c->coll->world;
        sn_pool_for(c->pool, j->C, grain, bn_bwd, j);
    }
    free(buf);
    return st;
}

sn_status sn_cpu_batchnorm(sn_cpu *c, sn_tensor *node) {
    bnjob j = {.node = node};
    if (node->op == SN_OP_BATCHNORM) {
        const sn_tensor *x = node->src[0];
        j.N = x->shape[0];
        j.C = x->shape[1];
        j.HW = x->shape[2] * x->shape[3];
        j.x = x->data;
        j.gamma = node->src[1]->data;
        j.beta = node->src[2]->data;
        j.rm = node->src[3]->data;
        j.rv = node->src[4]->data;
        j.y = node->data;
        j.mean = sn_extra_ptr(node);
        j.invstd = j.mean + sn_align64(j.C);
        j.training = node->ip[0] != 0;
        j.eps = node->fp[0];
        j.mom = node->fp[1];
        j.elu = node->ip[1] != 0;
        j.alpha = node->fp[2];
        int64_t grain = 1 + 32768 / (j.N * j.HW);
        if (node->ip[2] && j.training) return bn_fwd_sync(c, &j, grain);
        sn_pool_for(c->pool, j.C, grain, bn_fwd, &j);
        return SN_OK;
    }
    if (node->op == SN_OP_BATCHNORM_BWD) {
        const sn_tensor *x = node->src[1], *fwd = node->src[2];
        j.N = x->shape[0];
        j.C = x->shape[1];
        j.HW = x->shape[2] * x->shape[3];
        j.dy = node->src[0]->data;
        j.x = x->data;
        j.gamma = node->src[3]->data;
        j.mean = sn_extra_ptr(fwd);
        j.invstd = j.mean + sn_align64(j.C);
        j.training = node->ip[0] != 0;
        j.elu = node->ip[1] != 0;
        j.alpha = node->fp[2];
        j.yf = fwd->data;
        int64_t sizes[3] = {j.N * j.C * j.HW, j.C, j.C};
        float *out = node->data;
        j.dx = out + sn_packed_offset(sizes, 0);
        j.dg = out + sn_packed_offset(sizes, 1);
        j.db = out + sn_packed_offset(sizes, 2);
        int64_t grain = 1 + 32768 / (j.N * j.HW);
        if (node->ip[2] && j.training) return bn_bwd_sync(c, &j, grain);
        sn_pool_for(c->pool, j.C, grain, bn_bwd, &j);
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_batchnorm: op %s is not a batchnorm op", sn_op_name(node->op));
}
