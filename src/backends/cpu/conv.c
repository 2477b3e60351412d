/* CPU kernels for conv2d / conv_transpose2d and their backward ops: im2col and
 * col2im over the pool, the products through sn_sgemm, one batch item at a time.
 *
 * One pair of helpers serves all six ops. im2col reads an image src[C,Hs,Ws] into
 * col[C*kh*kw, Hc*Wc] with col[(c,i,j),(oh,ow)] = src[c, oh*sh-ph+i, ow*sw-pw+j]
 * (0 outside); col2im is its adjoint (scatter-add into a zeroed image). conv2d reads
 * x with im2col; its data gradient and conv_transpose2d scatter with col2im. */
#include "backends/cpu/cpu.h"

#include <string.h>

typedef struct {
    const float *src; /* im2col: image; col2im: columns */
    float *dst;       /* im2col: columns; col2im: image */
    const float *bias;/* col2im: added to each output channel, may be NULL */
    int64_t C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
} colargs;

/* valid column range [lo, hi) of ow for kernel offset j: 0 <= ow*s - p + j < W */
static void ow_range(int64_t j, int64_t s, int64_t p, int64_t W, int64_t Wc, int64_t *lo, int64_t *hi) {
    int64_t a = p - j; /* need ow*s >= a */
    *lo = a > 0 ? (a + s - 1) / s : 0;
    int64_t b = W - 1 + p - j; /* need ow*s <= b */
    *hi = b < 0 ? 0 : b / s + 1;
    if (*hi > Wc) *hi = Wc;
    if (*lo > *hi) *lo = *hi;
}

static void im2col_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    const colargs *a = arg;
    int64_t kk = a->kh * a->kw, HWc = a->Hc * a->Wc;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / kk, i = (r / a->kw) % a->kh, j = r % a->kw;
        const float *s = a->src + c * a->Hs * a->Ws;
        float *d = a->dst + r * HWc;
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

static void col2im_chans(void *arg, int64_t c0, int64_t c1, int tid) {
    const colargs *a = arg;
    int64_t HWc = a->Hc * a->Wc, HWs = a->Hs * a->Ws;
    for (int64_t c = c0; c < c1; c++) {
        float *img = a->dst + c * HWs;
        float bv = a->bias ? a->bias[c] : 0.0f;
        for (int64_t k = 0; k < HWs; k++) img[k] = bv;
        for (int64_t i = 0; i < a->kh; i++)
            for (int64_t j = 0; j < a->kw; j++) {
                const float *col = a->src + ((c * a->kh + i) * a->kw + j) * HWc;
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
                    else
                        for (int64_t ow = lo; ow < hi; ow++) drow[ow * a->sw] += crow[ow];
                }
            }
    }
}

static void im2col(sn_cpu *c, colargs *a) {
    int64_t rows = a->C * a->kh * a->kw;
    int64_t g = 65536 / (a->Hc * a->Wc);
    sn_pool_for(c->pool, rows, g < 1 ? 1 : g, im2col_rows, a);
}

static void col2im(sn_cpu *c, colargs *a) {
    int64_t g = 65536 / (a->Hc * a->Wc * a->kh * a->kw);
    sn_pool_for(c->pool, a->C, g < 1 ? 1 : g, col2im_chans, a);
}

typedef struct {
    const float *b;
    float *y;
    int64_t hw;
} biasargs;

static void bias_fill(void *arg, int64_t k0, int64_t k1, int tid) {
    biasargs *a = arg;
    for (int64_t k = k0; k < k1; k++) {
        float v = a->b[k], *y = a->y + k * a->hw;
        for (int64_t i = 0; i < a->hw; i++) y[i] = v;
    }
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
        int64_t CKK = C * kh * kw, HWo = Ho * Wo;
        float *col = sn_cpu_scratch(c, (size_t)(CKK * HWo));
        if (!col) return SN_ERR_NOMEM;
        colargs ca = {0};
        ca.C = C; ca.Hs = H; ca.Ws = W; ca.kh = kh; ca.kw = kw; ca.sh = sh; ca.sw = sw; ca.ph = ph; ca.pw = pw;
        ca.Hc = Ho; ca.Wc = Wo;
        float *xd = x->data, *yd = y->data, *wd = w->data;
        for (int64_t n = 0; n < N; n++) {
            float *xn = xd + n * C * H * W, *yn = yd + n * K * HWo;
            if (node->op == SN_OP_CONV2D) {
                ca.src = xn; ca.dst = col;
                im2col(c, &ca);
                float beta = 0.0f;
                if (node->nsrc > 2) {
                    biasargs ba = {node->src[2]->data, yn, HWo};
                    sn_pool_for(c->pool, K, 1 + 65536 / HWo, bias_fill, &ba);
                    beta = 1.0f;
                }
                sn_sgemm(c->pool, false, false, K, HWo, CKK, 1.0f, wd, CKK, col, HWo, beta, yn, HWo);
            } else if (node->op == SN_OP_CONV2D_BWD_DATA) {
                sn_sgemm(c->pool, true, false, CKK, HWo, K, 1.0f, wd, CKK, yn, HWo, 0.0f, col, HWo);
                ca.src = col; ca.dst = xn; ca.bias = NULL;
                col2im(c, &ca);
            } else {
                ca.src = xn; ca.dst = col;
                im2col(c, &ca);
                sn_sgemm(c->pool, false, true, K, CKK, HWo, 1.0f, yn, HWo, col, HWo, n ? 1.0f : 0.0f, wd, CKK);
            }
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
        int64_t KKK = K * kh * kw, HW = H * W;
        float *col = sn_cpu_scratch(c, (size_t)(KKK * HW));
        if (!col) return SN_ERR_NOMEM;
        colargs ca = {0};
        ca.C = K; ca.Hs = Ho; ca.Ws = Wo; ca.kh = kh; ca.kw = kw; ca.sh = sh; ca.sw = sw; ca.ph = ph; ca.pw = pw;
        ca.Hc = H; ca.Wc = W;
        float *xd = x->data, *yd = y->data, *wd = w->data;
        const float *bias = (node->op == SN_OP_CONVT2D && node->nsrc > 2) ? node->src[2]->data : NULL;
        for (int64_t n = 0; n < N; n++) {
            float *xn = xd + n * C * HW, *yn = yd + n * K * Ho * Wo;
            if (node->op == SN_OP_CONVT2D) {
                sn_sgemm(c->pool, true, false, KKK, HW, C, 1.0f, wd, KKK, xn, HW, 0.0f, col, HW);
                ca.src = col; ca.dst = yn; ca.bias = bias;
                col2im(c, &ca);
            } else if (node->op == SN_OP_CONVT2D_BWD_DATA) {
                ca.src = yn; ca.dst = col;
                im2col(c, &ca);
                sn_sgemm(c->pool, false, false, C, HW, KKK, 1.0f, wd, KKK, col, HW, 0.0f, xn, HW);
            } else {
                ca.src = yn; ca.dst = col;
                im2col(c, &ca);
                sn_sgemm(c->pool, false, true, C, KKK, HW, 1.0f, xn, HW, col, HW, n ? 1.0f : 0.0f, wd, KKK);
            }
        }
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_conv: op %s is not a conv op", sn_op_name(node->op));
}
