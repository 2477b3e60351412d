/* CPU kernels for conv2d / conv_transpose2d and their backward ops: im2col and
 * col2im over the pool, the products through sn_sgemm, one GEMM for the whole batch.
 *
 * One pair of helpers serves all six ops. im2col reads an image src[C,Hs,Ws] into
 * col[C*kh*kw, Hc*Wc] with col[(c,i,j),(oh,ow)] = src[c, oh*sh-ph+i, ow*sw-pw+j]
 * (0 outside); col2im is its adjoint (scatter-add into a zeroed image). conv2d reads
 * x with im2col; its data gradient and conv_transpose2d scatter with col2im. */
#include "backends/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SN_CONV_PROF=1: time spent in im2col, col2im, batch (un)folding and the GEMMs of
 * the conv ops, printed at exit. */
enum { CP_IM2COL, CP_COL2IM, CP_FOLD, CP_GEMM, CP_N };
static double g_cprof[CP_N];
static int g_cprof_on = -1;
static void cprof_dump(void) {
    static const char *nm[CP_N] = {"im2col", "col2im", "fold", "GEMM"};
    for (int i = 0; i < CP_N; i++) fprintf(stderr, "  conv %-8s %9.1f ms\n", nm[i], g_cprof[i]);
}
static double cprof_now(void) {
    if (g_cprof_on < 0) {
        const char *e = getenv("SN_CONV_PROF");
        g_cprof_on = e && *e == '1';
        if (g_cprof_on) atexit(cprof_dump);
    }
    if (!g_cprof_on) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
#define CPROF(slot, t0) do { if (g_cprof_on) { double t1_ = cprof_now(); g_cprof[slot] += t1_ - (t0); (t0) = t1_; } } while (0)

typedef struct {
    const float *src; /* im2col: images; col2im: columns */
    float *dst;       /* im2col: columns; col2im: images */
    const float *bias;/* col2im: added to each output channel, may be NULL */
    int64_t N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
} colargs;

/* The batch is folded into the column dimension: col[(c,i,j), n*Hc*Wc + (oh,ow)], so
 * each op is one GEMM with N*Hc*Wc columns (not N small ones) and the pool splits
 * im2col/col2im over (row, image) / (image, channel). */

/* valid column range [lo, hi) of ow for kernel offset j: 0 <= ow*s - p + j < W */
static void ow_range(int64_t j, int64_t s, int64_t p, int64_t W, int64_t Wc, int64_t *lo, int64_t *hi) {
    int64_t a = p - j; /* need ow*s >= a */
    *lo = a > 0 ? (a + s - 1) / s : 0;
    int64_t b = W - 1 + p - j; /* need ow*s <= b */
    *hi = b < 0 ? 0 : b / s + 1;
    if (*hi > Wc) *hi = Wc;
    if (*lo > *hi) *lo = *hi;
}

/* items it = r*N + n: column row r of image n */
static void im2col_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const colargs *a = arg;
    int64_t kk = a->kh * a->kw, HWc = a->Hc * a->Wc, ld = a->N * HWc;
    for (int64_t it = i0; it < i1; it++) {
        int64_t r = it / a->N, n = it % a->N;
        int64_t c = r / kk, i = (r / a->kw) % a->kh, j = r % a->kw;
        const float *s = a->src + (n * a->C + c) * a->Hs * a->Ws;
        float *d = a->dst + r * ld + n * HWc;
        int64_t lo, hi;
        ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
        for (int64_t oh = 0; oh < a->Hc; oh++, d += a->Wc) {
            int64_t ih = oh * a->sh - a->ph + i;
            if (ih < 0 || ih >= a->Hs || lo >= hi) {
                memset(d, 0, (size_t)a->Wc * sizeof *d);
                continue;
            }
            const float *srow = s + ih * a->Ws - a->pw + j;
            for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0.0f;
            if (a->sw == 1) memcpy(d + lo, srow + lo, (size_t)(hi - lo) * sizeof *d);
            else if (a->sw == 2)
                for (int64_t ow = lo; ow < hi; ow++) d[ow] = srow[2 * ow];
            else
                for (int64_t ow = lo; ow < hi; ow++) d[ow] = srow[ow * a->sw];
            for (int64_t ow = hi; ow < a->Wc; ow++) d[ow] = 0.0f;
        }
    }
}

/* items it = n*C + c: channel c of image n */
static void col2im_chans(void *arg, int64_t i0, int64_t i1, int tid) {
    const colargs *a = arg;
    int64_t HWc = a->Hc * a->Wc, HWs = a->Hs * a->Ws, ld = a->N * HWc;
    for (int64_t it = i0; it < i1; it++) {
        int64_t n = it / a->C, c = it % a->C;
        float *img = a->dst + it * HWs;
        float bv = a->bias ? a->bias[c] : 0.0f;
        for (int64_t k = 0; k < HWs; k++) img[k] = bv;
        for (int64_t i = 0; i < a->kh; i++)
            for (int64_t j = 0; j < a->kw; j++) {
                const float *col = a->src + ((c * a->kh + i) * a->kw + j) * ld + n * HWc;
                int64_t lo, hi;
                ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
                if (lo >= hi) continue;
                for (int64_t oh = 0; oh < a->Hc; oh++) {
                    int64_t ih = oh * a->sh - a->ph + i;
                    if (ih < 0 || ih >= a->Hs) continue;
                    float *drow = img + ih * a->Ws - a->pw + j;
                    const float *crow = col + oh * a->Wc;
                    if (a->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) drow[ow] += crow[ow];
                    else if (a->sw == 2)
                        for (int64_t ow = lo; ow < hi; ow++) drow[2 * ow] += crow[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) drow[ow * a->sw] += crow[ow];
                }
            }
    }
}

static int64_t grain_for(int64_t per_item) {
    int64_t g = 32768 / (per_item > 0 ? per_item : 1);
    return g < 1 ? 1 : g;
}

static void im2col(sn_cpu *c, colargs *a) {
    int64_t items = a->C * a->kh * a->kw * a->N;
    sn_pool_for(c->pool, items, grain_for(a->Hc * a->Wc), im2col_rows, a);
}

static void col2im(sn_cpu *c, colargs *a) {
    sn_pool_for(c->pool, a->N * a->C, grain_for(a->Hc * a->Wc * a->kh * a->kw), col2im_chans, a);
}

/* between [N, R, L] (images) and [R, N*L] (batch-folded rows), with an optional
 * per-r bias added on the way to [N, R, L] */
typedef struct {
    const float *src;
    float *dst;
    const float *bias;
    int64_t N, R, L;
    bool to_folded;
} fold_job;

static void fold_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const fold_job *j = arg;
    for (int64_t it = i0; it < i1; it++) { /* it = n*R + r */
        int64_t n = it / j->R, r = it % j->R;
        const float *img = j->to_folded ? j->src + it * j->L : j->src + (r * j->N + n) * j->L;
        float *out = j->to_folded ? j->dst + (r * j->N + n) * j->L : j->dst + it * j->L;
        if (!j->bias) memcpy(out, img, (size_t)j->L * sizeof *out);
        else {
            float bv = j->bias[r];
            for (int64_t k = 0; k < j->L; k++) out[k] = img[k] + bv;
        }
    }
}

static void fold(sn_cpu *c, float *dst, const float *src, const float *bias, int64_t N, int64_t R, int64_t L,
                 bool to_folded) {
    if (N == 1 && !bias) { /* the layouts coincide */
        if (dst != src) memcpy(dst, src, (size_t)(R * L) * sizeof *dst);
        return;
    }
    fold_job j = {src, dst, bias, N, R, L, to_folded};
    sn_pool_for(c->pool, N * R, grain_for(L), fold_rows, &j);
}

sn_status sn_cpu_conv(sn_cpu *c, sn_tensor *node) {
    const int32_t *ip = node->ip;
    int64_t sh = ip[0], sw = ip[1], ph = ip[2], pw = ip[3];
    switch (node->op) {
    case SN_OP_CONV2D:
    case SN_OP_CONV2D_BWD_DATA:
    case SN_OP_CONV2D_BWD_W: {
        /* image side x[N,C,H,W], output side y[N,K,Ho,Wo], weight [K,C,kh,kw] */
        const sn_tensor *x, *y, *w;
        if (node->op == SN_OP_CONV2D) { x = node->src[0]; w = node->src[1]; y = node; }
        else if (node->op == SN_OP_CONV2D_BWD_DATA) { y = node->src[0]; w = node->src[1]; x = node; }
        else { y = node->src[0]; x = node->src[1]; w = node; }
        int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
        int64_t K = w->shape[0], kh = w->shape[2], kw = w->shape[3], Ho = y->shape[2], Wo = y->shape[3];
        int64_t CKK = C * kh * kw, HWo = Ho * Wo, NL = N * HWo;
        /* col [CKK, N*HWo] | yf [K, N*HWo] (y batch-folded) */
        int64_t o_yf = sn_align64(CKK * NL);
        float *col = sn_cpu_scratch(c, (size_t)(o_yf + K * NL));
        if (!col) return SN_ERR_NOMEM;
        float *yf = col + o_yf;
        colargs ca = {0};
        ca.N = N; ca.C = C; ca.Hs = H; ca.Ws = W; ca.kh = kh; ca.kw = kw; ca.sh = sh; ca.sw = sw; ca.ph = ph;
        ca.pw = pw; ca.Hc = Ho; ca.Wc = Wo;
        float *xd = x->data, *yd = y->data, *wd = w->data;
        double t0 = cprof_now();
        if (node->op == SN_OP_CONV2D) {
            ca.src = xd; ca.dst = col;
            im2col(c, &ca);
            CPROF(CP_IM2COL, t0);
            sn_sgemm(c->pool, false, false, K, NL, CKK, 1.0f, wd, CKK, col, NL, 0.0f, yf, NL);
            CPROF(CP_GEMM, t0);
            fold(c, yd, yf, node->nsrc > 2 ? node->src[2]->data : NULL, N, K, HWo, false);
            CPROF(CP_FOLD, t0);
        } else if (node->op == SN_OP_CONV2D_BWD_DATA) {
            fold(c, yf, yd, NULL, N, K, HWo, true);
            CPROF(CP_FOLD, t0);
            sn_sgemm(c->pool, true, false, CKK, NL, K, 1.0f, wd, CKK, yf, NL, 0.0f, col, NL);
            CPROF(CP_GEMM, t0);
            ca.src = col; ca.dst = xd; ca.bias = NULL;
            col2im(c, &ca);
            CPROF(CP_COL2IM, t0);
        } else {
            ca.src = xd; ca.dst = col;
            im2col(c, &ca);
            CPROF(CP_IM2COL, t0);
            fold(c, yf, yd, NULL, N, K, HWo, true);
            CPROF(CP_FOLD, t0);
            sn_sgemm(c->pool, false, true, K, CKK, NL, 1.0f, yf, NL, col, NL, 0.0f, wd, CKK);
            CPROF(CP_GEMM, t0);
        }
        return SN_OK;
    }
    case SN_OP_CONVT2D:
    case SN_OP_CONVT2D_BWD_DATA:
    case SN_OP_CONVT2D_BWD_W: {
        /* input side x[N,C,H,W], output side y[N,K,Ho,Wo], weight [C,K,kh,kw]: the
         * output is the col2im of w^T x with x's positions as the column grid */
        const sn_tensor *x, *y, *w;
        if (node->op == SN_OP_CONVT2D) { x = node->src[0]; w = node->src[1]; y = node; }
        else if (node->op == SN_OP_CONVT2D_BWD_DATA) { y = node->src[0]; w = node->src[1]; x = node; }
        else { y = node->src[0]; x = node->src[1]; w = node; }
        int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
        int64_t K = w->shape[1], kh = w->shape[2], kw = w->shape[3], Ho = y->shape[2], Wo = y->shape[3];
        int64_t KKK = K * kh * kw, HW = H * W, NL = N * HW;
        /* col [KKK, N*HW] | xf [C, N*HW] (x batch-folded) */
        int64_t o_xf = sn_align64(KKK * NL);
        float *col = sn_cpu_scratch(c, (size_t)(o_xf + C * NL));
        if (!col) return SN_ERR_NOMEM;
        float *xf = col + o_xf;
        colargs ca = {0};
        ca.N = N; ca.C = K; ca.Hs = Ho; ca.Ws = Wo; ca.kh = kh; ca.kw = kw; ca.sh = sh; ca.sw = sw; ca.ph = ph;
        ca.pw = pw; ca.Hc = H; ca.Wc = W;
        float *xd = x->data, *yd = y->data, *wd = w->data;
        double t0 = cprof_now();
        if (node->op == SN_OP_CONVT2D) {
            fold(c, xf, xd, NULL, N, C, HW, true);
            CPROF(CP_FOLD, t0);
            sn_sgemm(c->pool, true, false, KKK, NL, C, 1.0f, wd, KKK, xf, NL, 0.0f, col, NL);
            CPROF(CP_GEMM, t0);
            ca.src = col; ca.dst = yd; ca.bias = node->nsrc > 2 ? node->src[2]->data : NULL;
            col2im(c, &ca);
            CPROF(CP_COL2IM, t0);
        } else if (node->op == SN_OP_CONVT2D_BWD_DATA) {
            ca.src = yd; ca.dst = col;
            im2col(c, &ca);
            CPROF(CP_IM2COL, t0);
            sn_sgemm(c->pool, false, false, C, NL, KKK, 1.0f, wd, KKK, col, NL, 0.0f, xf, NL);
            CPROF(CP_GEMM, t0);
            fold(c, xd, xf, NULL, N, C, HW, false);
            CPROF(CP_FOLD, t0);
        } else {
            ca.src = yd; ca.dst = col;
            im2col(c, &ca);
            CPROF(CP_IM2COL, t0);
            fold(c, xf, xd, NULL, N, C, HW, true);
            CPROF(CP_FOLD, t0);
            sn_sgemm(c->pool, false, true, C, KKK, NL, 1.0f, xf, NL, col, NL, 0.0f, wd, KKK);
            CPROF(CP_GEMM, t0);
        }
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_conv: op %s is not a conv op", sn_op_name(node->op));
}
