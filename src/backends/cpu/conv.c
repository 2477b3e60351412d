/* CPU kernels for conv2d / conv_transpose2d and their backward ops: im2col and
 * col2im over the pool, the products through sn_cpu_gemm (bf16 in mixed precision), one
 * GEMM for the batch, or for chunks of it where the batch's column matrix is large
 * (conv_chunk).
 *
 * One pair of helpers serves all six ops. im2col reads an image src[C,Hs,Ws] into
 * col[C*kh*kw, Hc*Wc] with col[(c,i,j),(oh,ow)] = src[c, oh*sh-ph+i, ow*sw-pw+j]
 * (0 outside); col2im is its adjoint (scatter-add into a zeroed image). conv2d reads
 * x with im2col; its data gradient and conv_transpose2d scatter with col2im.
 *
 * The geometry comes from the shapes, with ph/pw (ip[2], ip[3]) the offset: conv2d's
 * padding after (ip[6], ip[7], sn_conv2d_pad) is the column grid reaching past the
 * image (read as zeros, not scattered to), conv_transpose2d's end crop (ip[6], ip[7])
 * an image smaller than the full output (positions past it dropped by col2im, read as
 * zeros by im2col in the backward). Neither needs code of its own here.
 *
 * A forward node's activation epilogue (ip[SN_IP_ACT]) is applied where its bias is
 * added, to each output row while it is still in cache: no separate pass.
 *
 * In fp32 the default is the row-blocked ("fused") path below: each thread works on
 * blocks of rows of one image in its own L2-sized buffer. With AVX-512 and sh = 1 its
 * products are sinter's own direct kernels (dk_*) over per-block column-tap planes
 * (kw copies of the rows, not im2col's kh*kw, and no BLAS packing); without, im2col +
 * a serial OpenBLAS call per block. The weight gradient reduces over positions: with
 * R % 16 == 0 output rows it transposes each block's grid rows once and broadcasts the
 * taps (dk_wgrad_t), else sums 16-lane accumulators (dk_wgrad). While a block's tiles
 * run, the next block's operands are prefetched into L2 (pfplan). bf16 takes the
 * one-GEMM form above. */
#include "backends/cpu/cpu.h"
#include "backends/cpu/vmath.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* cpu/unary.c (belongs in cpu.h, a shared file): y = act(x + bias) over a row */

/* SN_CONV_PROF=1: time spent in im2col, col2im, batch (un)folding and the GEMMs of
 * the conv ops, printed at exit. */
enum { CP_IM2COL, CP_COL2IM, CP_FOLD, CP_GEMM, CP_N };
static double g_cprof[CP_N];
static int g_cprof_on = -1;
/* the fused path's parts, summed over threads: [tid][part] */
enum { FP_IM2COL, FP_GEMM, FP_COL2IM, FP_EPI, FP_N };
static double g_fprof[256][FP_N];
static void cprof_dump(void) {
    static const char *nm[CP_N] = {"im2col", "col2im", "fold", "GEMM"};
    static const char *fn[FP_N] = {"im2col", "GEMM", "col2im", "epilogue"};
    for (int i = 0; i < CP_N; i++) fprintf(stderr, "  conv %-8s %9.1f ms\n", nm[i], g_cprof[i]);
    for (int i = 0; i < FP_N; i++) {
        double s = 0;
        for (int t = 0; t < 256; t++) s += g_fprof[t][i];
        fprintf(stderr, "  conv fused %-8s %9.1f thread-ms\n", fn[i], s);
    }
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
#define FPROF(tid, slot, t0) do { if (g_cprof_on) { double t1_ = cprof_now(); g_fprof[tid][slot] += t1_ - (t0); (t0) = t1_; } } while (0)
#define CPROF(slot, t0) do { if (g_cprof_on) { double t1_ = cprof_now(); g_cprof[slot] += t1_ - (t0); (t0) = t1_; } } while (0)

typedef struct {
    const float *src; /* im2col: images; col2im: columns */
    float *dst;       /* im2col: columns; col2im: images */
    const float *bias;/* col2im: added to each output channel, may be NULL */
    int64_t N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
    int act;          /* col2im: activation epilogue (sn_act) */
    float p0, p1;
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
        if (a->act) sn_cpu_bias_act(img, img, HWs, NULL, 0.0f, a->act, a->p0, a->p1);
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
    int act;          /* with the bias: act(img + bias) (sn_act) */
    float p0, p1;
} fold_job;

static void fold_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const fold_job *j = arg;
    for (int64_t it = i0; it < i1; it++) { /* it = n*R + r */
        int64_t n = it / j->R, r = it % j->R;
        const float *img = j->to_folded ? j->src + it * j->L : j->src + (r * j->N + n) * j->L;
        float *out = j->to_folded ? j->dst + (r * j->N + n) * j->L : j->dst + it * j->L;
        if (j->act) sn_cpu_bias_act(out, img, j->L, NULL, j->bias ? j->bias[r] : 0.0f, j->act, j->p0, j->p1);
        else if (!j->bias) memcpy(out, img, (size_t)j->L * sizeof *out);
        else {
            float bv = j->bias[r];
            for (int64_t k = 0; k < j->L; k++) out[k] = img[k] + bv;
        }
    }
}

static void fold_act(sn_cpu *c, float *dst, const float *src, const float *bias, int64_t N, int64_t R, int64_t L,
                     bool to_folded, int act, float p0, float p1) {
    if (N == 1 && !bias && !act) { /* the layouts coincide */
        if (dst != src) memcpy(dst, src, (size_t)(R * L) * sizeof *dst);
        return;
    }
    fold_job j = {src, dst, bias, N, R, L, to_folded, act, p0, p1};
    sn_pool_for(c->pool, N * R, grain_for(L), fold_rows, &j);
}

static void fold(sn_cpu *c, float *dst, const float *src, const float *bias, int64_t N, int64_t R, int64_t L,
                 bool to_folded) {
    fold_act(c, dst, src, bias, N, R, L, to_folded, 0, 0.0f, 0.0f);
}

/* ---- fused path: each pool thread runs im2col / col2im on a block of whole rows
 * of one image into its own L2-sized buffer and calls a single-threaded BLAS on it.
 * No full-size column matrix goes through memory, no batch (un)folding, and the
 * pool splits the work evenly (a threaded BLAS does badly with M = 16..256 output
 * channels and a huge N). SN_CONV_FUSED=0 selects the path above. */

typedef struct {
    /* geometry: image src/dst [C, Hs, Ws] per batch item, column grid [Hc, Wc] */
    int64_t N, C, Hs, Ws, kh, kw, sh, sw, ph, pw, Hc, Wc;
    int mode;               /* FM_* */
    const float *img;       /* im2col source, per image stride C*Hs*Ws */
    const float *wt;        /* weight */
    const float *other;     /* the GEMM's other operand per image: [R, Hc*Wc] */
    int64_t R;              /* rows of `other` / of the GEMM output */
    float *out;             /* FM_GEMM: [N, R, Hc*Wc]; FM_GATHER: images [N, C, Hs, Ws]; FM_WGRAD: per-thread accumulators */
    const float *bias;
    int act;                /* activation epilogue (sn_act), with the bias */
    float p0, p1;
    float *colbuf;          /* per-thread column blocks */
    int64_t colcap;         /* floats per thread */
    int64_t maxrows;        /* column-grid rows per block */
    int64_t wsize;          /* FM_WGRAD: floats per accumulator */
    bool w_kfirst;          /* weight [R, CKK] (conv2d) rather than [C.., R..] */
    unsigned char *used;    /* FM_WGRAD: which threads accumulated */
    /* direct kernel (dk_*): weight in 8-row panels, per-thread planes, tap offsets */
    bool dk;
    const float *wpack;     /* [R/8][CKK][8] */
    const int32_t *off;     /* [CKK]: tap (c,i,j)'s offset in the planes */
    const int32_t *off2;    /* gather: tap (r,i)'s offset in the grid itself (NULL: copy always) */
    int64_t tp;             /* plane rows per block: maxrows + kh - 1 */
    int64_t cs;             /* FM_WGRAD: channels per chunk of planes */
    bool wgt;               /* FM_WGRAD: dk_wgrad_t (acc [CKK][R]) rather than dk_wgrad */
    int64_t pcap;           /* wgt: floats of planes before the transposed grid rows */
} fused_job;

enum {
    FM_GEMM,   /* out_n[:, blk] = wt[R, CKK] @ im2col(img_n)[CKK, blk] (+ bias) */
    FM_WGRAD,  /* acc[R, CKK] += other_n[R, blk] @ im2col(img_n)[CKK, blk]^T */
    FM_GATHER  /* col = wt^T @ other_n[R, blk]; out_n rows = col2im(col) (+ bias) */
};

/* im2col of grid rows [o0, o1) of one image into d[CKK, (o1-o0)*Wc] */
static void im2col_block(const fused_job *a, const float *src, int64_t o0, int64_t o1, float *d) {
    int64_t kk = a->kh * a->kw, cols = (o1 - o0) * a->Wc;
    for (int64_t r = 0; r < a->C * kk; r++) {
        int64_t c = r / kk, i = (r / a->kw) % a->kh, j = r % a->kw;
        const float *s = src + c * a->Hs * a->Ws;
        float *dr = d + r * cols;
        int64_t lo, hi;
        ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
        for (int64_t oh = o0; oh < o1; oh++, dr += a->Wc) {
            int64_t ih = oh * a->sh - a->ph + i;
            if (ih < 0 || ih >= a->Hs || lo >= hi) {
                memset(dr, 0, (size_t)a->Wc * sizeof *dr);
                continue;
            }
            const float *srow = s + ih * a->Ws - a->pw + j;
            for (int64_t ow = 0; ow < lo; ow++) dr[ow] = 0.0f;
            if (a->sw == 1) memcpy(dr + lo, srow + lo, (size_t)(hi - lo) * sizeof *dr);
            else if (a->sw == 2)
                for (int64_t ow = lo; ow < hi; ow++) dr[ow] = srow[2 * ow];
            else
                for (int64_t ow = lo; ow < hi; ow++) dr[ow] = srow[ow * a->sw];
            for (int64_t ow = hi; ow < a->Wc; ow++) dr[ow] = 0.0f;
        }
    }
}

/* image rows [h0, h1) of one image from the columns of grid rows [o0, o1) */
static void col2im_block(const fused_job *a, const float *col, int64_t o0, int64_t o1, float *img, int64_t h0,
                         int64_t h1) {
    int64_t kk = a->kh * a->kw, cols = (o1 - o0) * a->Wc;
    for (int64_t c = 0; c < a->C; c++) {
        float bv = a->bias ? a->bias[c] : 0.0f;
        for (int64_t ih = h0; ih < h1; ih++) {
            float *drow = img + (c * a->Hs + ih) * a->Ws;
            for (int64_t k = 0; k < a->Ws; k++) drow[k] = bv;
            for (int64_t i = 0; i < a->kh; i++) {
                int64_t t = ih + a->ph - i;
                if (t < 0 || t % a->sh) continue;
                int64_t oh = t / a->sh;
                if (oh < o0 || oh >= o1) continue;
                for (int64_t j = 0; j < a->kw; j++) {
                    int64_t lo, hi;
                    ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
                    const float *crow = col + (c * kk + i * a->kw + j) * cols + (oh - o0) * a->Wc;
                    float *dd = drow - a->pw + j;
                    if (a->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) dd[ow] += crow[ow];
                    else if (a->sw == 2)
                        for (int64_t ow = lo; ow < hi; ow++) dd[2 * ow] += crow[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) dd[ow * a->sw] += crow[ow];
                }
            }
            if (a->act) sn_cpu_bias_act(drow, drow, a->Ws, NULL, 0.0f, a->act, a->p0, a->p1);
        }
    }
}

/* ---- direct kernel for FM_GEMM where the grid's rows are the image's (sh = 1) and
 * R % 8 == 0, with AVX-512: instead of im2col (kh*kw copies of the image) and a BLAS
 * call that packs both operands again, each block's image rows are copied once per
 * column tap j into planes P[c][j][t][ow] = img[c, o0 + t - ph, ow*sw + j - pw] (0
 * outside) of row pitch Wc, so that tap (c,i,j) of grid position q (flattened over the
 * block's rows) is P[c][j] + i*Wc + q: contiguous in q for every tap. An 8 x 48 tile
 * (8 output rows, 48 positions) then accumulates over the taps in 24 registers, with
 * the weight packed once per op in 8-row panels (not once per block). The output
 * lands in place, row-major [R][Hc*Wc]. SN_CONV_DK=0 selects the BLAS form. */
static int dk_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SN_CONV_DK");
#ifdef SN_VM_X86
        on = !(e && *e == '0') && sn_vm_level() == 2;
#else
        (void)e;
        on = 0;
#endif
    }
    return on;
}

#ifdef SN_VM_X86
/* d[k] = s[2k] for k < n: two loads and a permute per 16, the tail scalar (the planes'
 * stride-2 rows were scalar loops; rows of 16 or fewer stay so: no faster on Zen 5) */
__attribute__((target("avx512f"))) static void dk_copy_s2(float *d, const float *s, int64_t n) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t k = 0;
    for (; k + 16 < n; k += 16) /* reads s[2k .. 2k+31], within s[0 .. 2n-2] */
        _mm512_storeu_ps(d + k, _mm512_permutex2var_ps(_mm512_loadu_ps(s + 2 * k), ev, _mm512_loadu_ps(s + 2 * k + 16)));
    for (; k < n; k++) d[k] = s[2 * k];
}

/* the three planes of one image row for kw = 3, sw = 2 with no column outside the row:
 * d_j[o] = s[2o + j] (d_j = d + j*ldp), 16 positions of all three from four loads and
 * three permutes (one call a row, not a scalar loop per plane), the rest scalar */
__attribute__((target("avx512f"))) static void dk_row3_s2(float *d, int64_t ldp, const float *s, int64_t W,
                                                          int64_t Wc) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    float *d1 = d + ldp, *d2 = d + 2 * ldp;
    int64_t o = 0;
    for (; o + 16 <= Wc && 2 * o + 34 <= W; o += 16) {
        __m512 v0 = _mm512_loadu_ps(s + 2 * o), v1 = _mm512_loadu_ps(s + 2 * o + 16);
        __m512 w0 = _mm512_loadu_ps(s + 2 * o + 2), w1 = _mm512_loadu_ps(s + 2 * o + 18);
        _mm512_storeu_ps(d + o, _mm512_permutex2var_ps(v0, ev, v1));
        _mm512_storeu_ps(d1 + o, _mm512_permutex2var_ps(v0, od, v1));
        _mm512_storeu_ps(d2 + o, _mm512_permutex2var_ps(w0, ev, w1));
    }
    for (; o < Wc; o++) d[o] = s[2 * o], d1[o] = s[2 * o + 1], d2[o] = s[2 * o + 2];
}

/* one image row of the stride-2 gather: drow[x] = bv + sum_j q_j[(x + pw - j)/2] over
 * the taps j of x's parity with 0 <= (x + pw - j)/2 < Wc (q_j = q + j*ldj), 32 positions
 * at a time: the even and odd halves summed in registers and interleaved, one store
 * (not kw strided read-modify-write passes). Rows of 16 or more (narrower ones were no
 * faster so on Zen 5). */
__attribute__((target("avx512f"))) static void dk_row_s2(float *drow, int64_t Ws, const float *q, int64_t ldj,
                                                         int64_t kw, int64_t pw, int64_t Wc, float bv) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t x0 = 0; x0 < Ws; x0 += 32) {
        int64_t m0 = x0 / 2;
        __m512 e[2];
        for (int p = 0; p < 2; p++) {
            __m512 acc = _mm512_set1_ps(bv);
            for (int64_t j = (p + pw) & 1; j < kw; j += 2) {
                int64_t dj = (p + pw - j) / 2; /* exact: p + pw - j is even */
                /* lanes u with 0 <= m0 + u + dj < Wc */
                int64_t a = -dj - m0, b = Wc - dj - m0;
                if (a < 0) a = 0;
                if (b > 16) b = 16;
                if (a >= b) continue;
                __mmask16 mk = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
                acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mk, q + j * ldj + m0 + dj));
            }
            e[p] = acc;
        }
        int64_t left = Ws - x0;
        __mmask16 s0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __mmask16 s1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
        _mm512_mask_storeu_ps(drow + x0, s0, _mm512_permutex2var_ps(e[0], lo, e[1]));
        _mm512_mask_storeu_ps(drow + x0 + 16, s1, _mm512_permutex2var_ps(e[0], hi, e[1]));
    }
}
#endif

/* planes of grid rows [o0, o1) (P's rows t = 0 .. o1-o0+kh-2) */
static void dk_planes(const fused_job *a, const float *src, int64_t o0, int64_t o1, int64_t c0, int64_t c1, float *P) {
    int64_t T = o1 - o0 + a->kh - 1;
#ifdef SN_VM_X86
    /* the CRN's form (kw = 3, sw = 2, no padding in width, every column inside the row):
     * the three planes of a row at once */
    if (a->kw == 3 && a->sw == 2 && a->pw == 0 && 2 * a->Wc + 1 <= a->Ws) {
        int64_t ldp = a->tp * a->Wc;
        for (int64_t c = c0; c < c1; c++) {
            float *pc = P + (c - c0) * 3 * ldp;
            for (int64_t t = 0; t < T; t++) {
                int64_t ih = o0 + t - a->ph;
                if (ih < 0 || ih >= a->Hs)
                    for (int64_t j = 0; j < 3; j++) memset(pc + j * ldp + t * a->Wc, 0, (size_t)a->Wc * sizeof *pc);
                else
                    dk_row3_s2(pc + t * a->Wc, ldp, src + (c * a->Hs + ih) * a->Ws, a->Ws, a->Wc);
            }
        }
        return;
    }
#endif
    for (int64_t c = c0; c < c1; c++)
        for (int64_t j = 0; j < a->kw; j++) {
            float *pl = P + ((c - c0) * a->kw + j) * a->tp * a->Wc;
            int64_t lo, hi;
            ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
            for (int64_t t = 0; t < T; t++, pl += a->Wc) {
                int64_t ih = o0 + t - a->ph;
                if (ih < 0 || ih >= a->Hs || lo >= hi) {
                    memset(pl, 0, (size_t)a->Wc * sizeof *pl);
                    continue;
                }
                const float *srow = src + (c * a->Hs + ih) * a->Ws - a->pw + j;
                for (int64_t ow = 0; ow < lo; ow++) pl[ow] = 0.0f;
                if (a->sw == 1) memcpy(pl + lo, srow + lo, (size_t)(hi - lo) * sizeof *pl);
#ifdef SN_VM_X86
                else if (a->sw == 2 && hi - lo > 16) dk_copy_s2(pl + lo, srow + 2 * lo, hi - lo);
#endif
                else if (a->sw == 2)
                    for (int64_t ow = lo; ow < hi; ow++) pl[ow] = srow[2 * ow];
                else
                    for (int64_t ow = lo; ow < hi; ow++) pl[ow] = srow[ow * a->sw];
                for (int64_t ow = hi; ow < a->Wc; ow++) pl[ow] = 0.0f;
            }
        }
}

#ifdef SN_VM_X86
/* out[r][q] = sum_k wp[k][r] * b[off[k] + q] for r < 8, q < n (n <= 48) */
/* (pf: also prefetch the next tile's positions of each tap into L2) */
/* (full: n == 48, no masks; both flags constants in dk_tile's four calls) */
__attribute__((target("avx512f"), always_inline)) static inline void
dk_tile_body(const float *wp, const float *b, const int32_t *off, int64_t K, int64_t n, float *out, int64_t ldo,
             bool pf, bool full, const float *bias) {
    __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    __mmask16 m2 = n >= 48 ? 0xFFFF : n > 32 ? (__mmask16)((1u << (n - 32)) - 1) : 0;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00, c21 = c00,
           c22 = c00, c30 = c00, c31 = c00, c32 = c00, c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00,
           c52 = c00, c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    if (bias) { /* the bias as the accumulators' start: no second pass over the output */
        c00 = c01 = c02 = _mm512_set1_ps(bias[0]), c10 = c11 = c12 = _mm512_set1_ps(bias[1]);
        c20 = c21 = c22 = _mm512_set1_ps(bias[2]), c30 = c31 = c32 = _mm512_set1_ps(bias[3]);
        c40 = c41 = c42 = _mm512_set1_ps(bias[4]), c50 = c51 = c52 = _mm512_set1_ps(bias[5]);
        c60 = c61 = c62 = _mm512_set1_ps(bias[6]), c70 = c71 = c72 = _mm512_set1_ps(bias[7]);
    }
    for (int64_t k = 0; k < K; k++, wp += 8) {
        const float *bk = b + off[k];
        if (pf) {
            _mm_prefetch((const char *)(bk + 48), _MM_HINT_T1);
            _mm_prefetch((const char *)(bk + 64), _MM_HINT_T1);
            _mm_prefetch((const char *)(bk + 80), _MM_HINT_T1);
            _mm_prefetch((const char *)(bk + 95), _MM_HINT_T1);
        }
        __m512 b0, b1, b2;
        if (full) b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16), b2 = _mm512_loadu_ps(bk + 32);
        else
            b0 = _mm512_maskz_loadu_ps(m0, bk), b1 = _mm512_maskz_loadu_ps(m1, bk + 16),
            b2 = _mm512_maskz_loadu_ps(m2, bk + 32);
#define DK_ROW(r, x0, x1, x2)                                                                                       \
    do {                                                                                                            \
        __m512 w_ = _mm512_set1_ps(wp[r]);                                                                          \
        x0 = _mm512_fmadd_ps(w_, b0, x0);                                                                           \
        x1 = _mm512_fmadd_ps(w_, b1, x1);                                                                           \
        x2 = _mm512_fmadd_ps(w_, b2, x2);                                                                           \
    } while (0)
        DK_ROW(0, c00, c01, c02);
        DK_ROW(1, c10, c11, c12);
        DK_ROW(2, c20, c21, c22);
        DK_ROW(3, c30, c31, c32);
        DK_ROW(4, c40, c41, c42);
        DK_ROW(5, c50, c51, c52);
        DK_ROW(6, c60, c61, c62);
        DK_ROW(7, c70, c71, c72);
#undef DK_ROW
    }
#define DK_ST(r, x0, x1, x2)                                                                                        \
    do {                                                                                                            \
        if (full) {                                                                                                 \
            _mm512_storeu_ps(out + (r) * ldo, x0);                                                                  \
            _mm512_storeu_ps(out + (r) * ldo + 16, x1);                                                             \
            _mm512_storeu_ps(out + (r) * ldo + 32, x2);                                                             \
        } else {                                                                                                    \
            _mm512_mask_storeu_ps(out + (r) * ldo, m0, x0);                                                         \
            _mm512_mask_storeu_ps(out + (r) * ldo + 16, m1, x1);                                                    \
            _mm512_mask_storeu_ps(out + (r) * ldo + 32, m2, x2);                                                    \
        }                                                                                                           \
    } while (0)
    DK_ST(0, c00, c01, c02);
    DK_ST(1, c10, c11, c12);
    DK_ST(2, c20, c21, c22);
    DK_ST(3, c30, c31, c32);
    DK_ST(4, c40, c41, c42);
    DK_ST(5, c50, c51, c52);
    DK_ST(6, c60, c61, c62);
    DK_ST(7, c70, c71, c72);
#undef DK_ST
}

__attribute__((target("avx512f"))) static void dk_tile(const float *wp, const float *b, const int32_t *off,
                                                       int64_t K, int64_t n, float *out, int64_t ldo, bool pf,
                                                       const float *bias) {
    if (n == 48 && pf) dk_tile_body(wp, b, off, K, n, out, ldo, true, true, bias);
    else if (n == 48) dk_tile_body(wp, b, off, K, n, out, ldo, false, true, bias);
    else if (pf) dk_tile_body(wp, b, off, K, n, out, ldo, true, false, bias);
    else dk_tile_body(wp, b, off, K, n, out, ldo, false, false, bias);
}
#endif

/* the next block's operands, prefetched into L2 a few lines at a time while the tiles
 * of this one run: its copies then read L2, not memory (they were a fifth to a third
 * of the narrow layers' time, the memory idle during the tiles). Up to two sets of
 * equal ranges (bytes: set s has n[s] ranges of len[s] bytes, stride[s] apart). */
typedef struct {
    const char *base[2];
    int64_t stride[2], n[2], len[2];
    int s, i;
    int64_t off;
} pfplan;

static void pf_add(pfplan *p, const float *base, int64_t stride, int64_t n, int64_t len) {
    int k = p->base[0] ? 1 : 0;
    p->base[k] = (const char *)base, p->stride[k] = stride * 4, p->n[k] = n, p->len[k] = len * 4;
}

/* SN_CONV_PF=0: no prefetch of the next block */
static int pf_on(void) {
    static int on = -1;
    return sn_cpu_switch_on(&on, "SN_CONV_PF");
}

static int64_t pf_lines(const pfplan *p) {
    int64_t t = 0;
    for (int k = 0; k < 2; k++)
        if (p->base[k]) t += p->n[k] * ((p->len[k] + 63) / 64);
    return t;
}

static void pf_step(pfplan *p, int64_t lines) {
#ifdef SN_VM_X86
    for (; lines > 0 && p->s < 2 && p->base[p->s]; lines--) {
        _mm_prefetch(p->base[p->s] + p->i * p->stride[p->s] + p->off, _MM_HINT_T1);
        p->off += 64;
        if (p->off >= p->len[p->s]) {
            p->off = 0;
            if (++p->i >= p->n[p->s]) p->i = 0, p->s++;
        }
    }
#else
    (void)p, (void)lines;
#endif
}

/* o[M][ldo] (M % 8 == 0) for cols positions: o[m][q] = sum_k wp[m/8][k][m%8] b[off[k] + q] */
/* pf: b is read in place from a large tensor, each tap a separate stream that the
 * hardware prefetchers do not follow (the CRN's last decoder layer ran 2x slower) */
static void dk_block(const float *wp, const int32_t *off, int64_t M, int64_t K, const float *b, int64_t cols, float *o,
                     int64_t ldo, bool pf, pfplan *pp, const float *bias) {
#ifdef SN_VM_X86
    /* weight panels in chunks of about 256 KB, reused from L2 over the block's tiles */
    int64_t rc = (256 * 1024 / 4) / (K * 8) * 8;
    if (rc < 8) rc = 8;
    int64_t steps = ((M + rc - 1) / rc) * ((cols + 47) / 48), per = pp ? (pf_lines(pp) + steps - 1) / steps : 0;
    for (int64_t r0 = 0; r0 < M; r0 += rc) {
        int64_t r1 = r0 + rc < M ? r0 + rc : M;
        for (int64_t q0 = 0; q0 < cols; q0 += 48) {
            int64_t n = cols - q0 < 48 ? cols - q0 : 48;
            if (pp) pf_step(pp, per);
            for (int64_t r = r0; r < r1; r += 8)
                dk_tile(wp + r * K, b + q0, off, K, n, o + r * ldo + q0, ldo, pf && r == r0 && q0 + 48 < cols,
                        bias ? bias + r : NULL);
        }
    }
#else
    (void)wp, (void)off, (void)M, (void)K, (void)b, (void)cols, (void)o, (void)ldo, (void)pf, (void)pp, (void)bias;
#endif
}

/* FM_GATHER with the direct kernel: image rows [h0, h1) of one image. The grid rows
 * they draw on (h + ph - i, i < kh) are copied into D (zero rows outside the grid),
 * Q[(c,j)][t*Wc + ow] = sum_(r,i) w[r,(c,i,j)] D[r][(t + kh-1-i)*Wc + ow] comes from
 * the tiles (rows (c,j) padded to a multiple of 8), and each Q row is added into the
 * image row at columns ow*sw - pw + j: kw strided passes per row, not col2im's kh*kw. */
static void dk_gather(const fused_job *a, const float *oth, int64_t h0, int64_t h1, float *buf, float *img, int tid,
                      pfplan *pp) {
    double t0 = cprof_now();
    int64_t T = h1 - h0, Tg = T + a->kh - 1, HWc = a->Hc * a->Wc;
    int64_t ldd = a->tp * a->Wc, g0 = h0 + a->ph - (a->kh - 1);
    float *Q = buf + sn_align64(a->R * ldd + 64);
    const float *D = oth + g0 * a->Wc;
    const int32_t *off = a->off2;
    if (!off || g0 < 0 || g0 + Tg > a->Hc) { /* rows past the grid's edges: a copy with zero rows */
        for (int64_t r = 0; r < a->R; r++)
            for (int64_t u = 0; u < Tg; u++) {
                int64_t g = g0 + u;
                float *dr = buf + r * ldd + u * a->Wc;
                if (g < 0 || g >= a->Hc) memset(dr, 0, (size_t)a->Wc * sizeof *dr);
                else memcpy(dr, oth + r * HWc + g * a->Wc, (size_t)a->Wc * sizeof *dr);
            }
        D = buf;
        off = a->off;
    }
    int64_t M = (a->C * a->kw + 7) / 8 * 8, ldq = T * a->Wc;
    FPROF(tid, FP_IM2COL, t0);
    dk_block(a->wpack, off, M, a->R * a->kh, D, ldq, Q, ldq, D != buf, pp, NULL);
    FPROF(tid, FP_GEMM, t0);
    for (int64_t c = 0; c < a->C; c++) {
        float bv = a->bias ? a->bias[c] : 0.0f;
        for (int64_t t = 0; t < T; t++) {
            float *drow = img + (c * a->Hs + h0 + t) * a->Ws;
#ifdef SN_VM_X86
            if (a->sw == 2 && a->Ws >= 16) {
                dk_row_s2(drow, a->Ws, Q + c * a->kw * ldq + t * a->Wc, ldq, a->kw, a->pw, a->Wc, bv);
                if (a->act) sn_cpu_bias_act(drow, drow, a->Ws, NULL, 0.0f, a->act, a->p0, a->p1);
                continue;
            }
            if (a->sw == 2 && a->kw == 3 && a->pw == 0) {
                /* narrow rows of the CRN's form: each position once (x = 2m from taps 0
                 * and 2, x = 2m + 1 from tap 1), not three strided read-modify-write passes */
                const float *q0 = Q + c * 3 * ldq + t * a->Wc, *q1 = q0 + ldq, *q2 = q1 + ldq;
                for (int64_t x = 0; x < a->Ws; x++) {
                    int64_t m = x >> 1;
                    drow[x] = x & 1 ? bv + (m < a->Wc ? q1[m] : 0.0f)
                                    : bv + (m < a->Wc ? q0[m] : 0.0f) + (m >= 1 && m - 1 < a->Wc ? q2[m - 1] : 0.0f);
                }
                if (a->act) sn_cpu_bias_act(drow, drow, a->Ws, NULL, 0.0f, a->act, a->p0, a->p1);
                continue;
            }
#endif
            for (int64_t k = 0; k < a->Ws; k++) drow[k] = bv;
            for (int64_t j = 0; j < a->kw; j++) {
                int64_t lo, hi;
                ow_range(j, a->sw, a->pw, a->Ws, a->Wc, &lo, &hi);
                const float *q = Q + (c * a->kw + j) * ldq + t * a->Wc;
                float *dd = drow - a->pw + j;
                if (a->sw == 1)
                    for (int64_t ow = lo; ow < hi; ow++) dd[ow] += q[ow];
                else if (a->sw == 2)
                    for (int64_t ow = lo; ow < hi; ow++) dd[2 * ow] += q[ow];
                else
                    for (int64_t ow = lo; ow < hi; ow++) dd[ow * a->sw] += q[ow];
            }
            if (a->act) sn_cpu_bias_act(drow, drow, a->Ws, NULL, 0.0f, a->act, a->p0, a->p1);
        }
    }
    FPROF(tid, FP_COL2IM, t0);
}

typedef struct {
    const float *w;
    float *wp;
    int64_t R, K;
    bool gather;            /* rows (c,j), taps (r,i) of w[R][(c,i,j)] */
    int64_t C, kh, kw;
} wpack_job;

/* forward form: wp[r/8][k][r%8] = w[r][k]; gather form: wp[m/8][(r,i)][m%8] =
 * w[r][(c,i,j)] for m = c*kw + j (0 for m >= C*kw) */
static void wpack_task(void *arg, int64_t i0, int64_t i1, int tid) {
    const wpack_job *j = arg;
    (void)tid;
    for (int64_t p = i0; p < i1; p++) {
        if (!j->gather) {
            for (int64_t k = 0; k < j->K; k++)
                for (int64_t r = 0; r < 8; r++) j->wp[(p * j->K + k) * 8 + r] = j->w[(p * 8 + r) * j->K + k];
            continue;
        }
        int64_t CKK = j->C * j->kh * j->kw, Kt = j->R * j->kh;
        for (int64_t m8 = 0; m8 < 8; m8++) {
            int64_t m = p * 8 + m8, c = m / j->kw, jj = m % j->kw;
            for (int64_t r = 0; r < j->R; r++)
                for (int64_t i = 0; i < j->kh; i++)
                    j->wp[(p * Kt + r * j->kh + i) * 8 + m8] =
                        c < j->C ? j->w[r * CKK + (c * j->kh + i) * j->kw + jj] : 0.0f;
        }
    }
}

/* FM_WGRAD with the direct kernel: acc[r][k] += sum_q g[r][q] * P[off[k] + q] over the
 * block's cols positions, 4 rows x 4 taps at a time in 16 registers of 16 positions,
 * each summed across its lanes once per block (a transpose-add tree) */
#ifdef SN_VM_X86
__attribute__((target("avx512f"))) static void dk_wgrad_tile(const float *g, int64_t ldg, const float *P,
                                                             const int32_t *off, int nk, int64_t cols, float *acc,
                                                             int64_t lda) {
    const float *g0 = g, *g1 = g + ldg, *g2 = g + 2 * ldg, *g3 = g + 3 * ldg;
    const float *b0 = P + off[0], *b1 = P + off[nk > 1 ? 1 : 0], *b2 = P + off[nk > 2 ? 2 : 0],
                *b3 = P + off[nk > 3 ? 3 : 0];
    /* named accumulators: GCC keeps an array of them in memory across the loop */
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0,
           s10 = s0, s11 = s0, s12 = s0, s13 = s0, s14 = s0, s15 = s0;
    for (int64_t q = 0; q < cols; q += 16) {
        __mmask16 mk = cols - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - q)) - 1);
        __m512 x0 = _mm512_maskz_loadu_ps(mk, b0 + q), x1 = _mm512_maskz_loadu_ps(mk, b1 + q),
               x2 = _mm512_maskz_loadu_ps(mk, b2 + q), x3 = _mm512_maskz_loadu_ps(mk, b3 + q);
        __m512 y = _mm512_maskz_loadu_ps(mk, g0 + q);
        s0 = _mm512_fmadd_ps(y, x0, s0), s1 = _mm512_fmadd_ps(y, x1, s1);
        s2 = _mm512_fmadd_ps(y, x2, s2), s3 = _mm512_fmadd_ps(y, x3, s3);
        y = _mm512_maskz_loadu_ps(mk, g1 + q);
        s4 = _mm512_fmadd_ps(y, x0, s4), s5 = _mm512_fmadd_ps(y, x1, s5);
        s6 = _mm512_fmadd_ps(y, x2, s6), s7 = _mm512_fmadd_ps(y, x3, s7);
        y = _mm512_maskz_loadu_ps(mk, g2 + q);
        s8 = _mm512_fmadd_ps(y, x0, s8), s9 = _mm512_fmadd_ps(y, x1, s9);
        s10 = _mm512_fmadd_ps(y, x2, s10), s11 = _mm512_fmadd_ps(y, x3, s11);
        y = _mm512_maskz_loadu_ps(mk, g3 + q);
        s12 = _mm512_fmadd_ps(y, x0, s12), s13 = _mm512_fmadd_ps(y, x1, s13);
        s14 = _mm512_fmadd_ps(y, x2, s14), s15 = _mm512_fmadd_ps(y, x3, s15);
    }
    __m512 a[16] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15};
    /* e[m] = sum of a[m]'s lanes: pairs interleaved, then 64-bit pairs, then 128-bit lanes */
    __m512 b[8], c[4], d[2];
    for (int m = 0; m < 8; m++)
        b[m] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * m], a[2 * m + 1]), _mm512_unpackhi_ps(a[2 * m], a[2 * m + 1]));
    for (int m = 0; m < 4; m++) {
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(b[2 * m]), _mm512_castps_pd(b[2 * m + 1]));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(b[2 * m]), _mm512_castps_pd(b[2 * m + 1]));
        c[m] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
    for (int m = 0; m < 2; m++)
        d[m] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * m], c[2 * m + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * m], c[2 * m + 1], 0xDD));
    __m512 e = _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88), _mm512_shuffle_f32x4(d[0], d[1], 0xDD));
    /* lanes 4*rr .. 4*rr+nk-1 hold row rr's taps */
    for (int rr = 0; rr < 4; rr++) {
        __mmask16 m = (__mmask16)(((1u << nk) - 1) << (4 * rr));
        float *p = acc + rr * lda - 4 * rr;
        _mm512_mask_storeu_ps(p, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), e));
    }
}
#endif

#ifdef SN_VM_X86
/* d[q][r] = s[r][q] for q < n, r < 16 (s rows ld apart, d rows ldd apart): one 16 x 16
 * transpose in registers (32-bit, then 64-bit unpacks, then two 128-bit lane shuffles) */
__attribute__((target("avx512f"))) static void dk_t16(const float *s, int64_t ld, int64_t n, float *d, int64_t ldd) {
    __mmask16 mk = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    __m512 r[16], t[16], v[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(mk, s + i * ld);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + m], lane L: column 4L + m of rows 4g .. 4g+3 */
    for (int g = 0; g < 4; g++) {
        __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]),
                c = _mm512_castps_pd(t[4 * g + 2]), e = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    /* v[8h + 2m + s]: lanes (column m + 4s, rows 8h..+3), (column m + 4s + 8, rows 8h..+3),
     * then the same of rows 8h+4 .. 8h+7 */
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 4; m++) {
            v[8 * h + 2 * m] = _mm512_shuffle_f32x4(r[8 * h + m], r[8 * h + 4 + m], 0x88);
            v[8 * h + 2 * m + 1] = _mm512_shuffle_f32x4(r[8 * h + m], r[8 * h + 4 + m], 0xDD);
        }
    for (int m = 0; m < 4; m++)
        for (int s2 = 0; s2 < 2; s2++) {
            int col = m + 4 * s2;
            __m512 lo = _mm512_shuffle_f32x4(v[2 * m + s2], v[8 + 2 * m + s2], 0x88);
            __m512 hi = _mm512_shuffle_f32x4(v[2 * m + s2], v[8 + 2 * m + s2], 0xDD);
            if (col < n) _mm512_storeu_ps(d + col * ldd, lo);
            if (col + 8 < n) _mm512_storeu_ps(d + (col + 8) * ldd, hi);
        }
}
#endif

#ifdef SN_VM_X86
/* weight gradient with the positions as the reduction: acc[t][r] += sum_q P[off[t] + q] *
 * G[q][r] for ntap taps t (G: the grid's rows transposed, ldG apart), 8 taps x 48 rows or
 * 12 taps x 32 rows in 24 registers: no lane sums, the weight as a tap broadcast */
#define WG_PTR(t) const float *p##t = P + off[ntap > (t) ? (t) : 0]
#define WG_FMA3(t)                                                                                                   \
    do {                                                                                                             \
        __m512 w_ = _mm512_set1_ps(p##t[q]);                                                                         \
        c##t##0 = _mm512_fmadd_ps(w_, b0, c##t##0);                                                                  \
        c##t##1 = _mm512_fmadd_ps(w_, b1, c##t##1);                                                                  \
        c##t##2 = _mm512_fmadd_ps(w_, b2, c##t##2);                                                                  \
    } while (0)
#define WG_FMA2(t)                                                                                                   \
    do {                                                                                                             \
        __m512 w_ = _mm512_set1_ps(p##t[q]);                                                                         \
        c##t##0 = _mm512_fmadd_ps(w_, b0, c##t##0);                                                                  \
        c##t##1 = _mm512_fmadd_ps(w_, b1, c##t##1);                                                                  \
    } while (0)
#define WG_ST(t, v, x)                                                                                               \
    do {                                                                                                             \
        if ((t) < ntap) {                                                                                            \
            float *a_ = acc + (t) * lda + 16 * (v);                                                                  \
            _mm512_storeu_ps(a_, _mm512_add_ps(_mm512_loadu_ps(a_), x));                                             \
        }                                                                                                            \
    } while (0)

__attribute__((target("avx512f"))) static void dk_wgt8x48(const float *G, int64_t ldG, const float *P,
                                                          const int32_t *off, int ntap, int64_t Q, float *acc,
                                                          int64_t lda) {
    WG_PTR(0); WG_PTR(1); WG_PTR(2); WG_PTR(3); WG_PTR(4); WG_PTR(5); WG_PTR(6); WG_PTR(7);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00, c21 = c00,
           c22 = c00, c30 = c00, c31 = c00, c32 = c00, c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00,
           c52 = c00, c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    for (int64_t q = 0; q < Q; q++) {
        const float *g = G + q * ldG;
        __m512 b0 = _mm512_loadu_ps(g), b1 = _mm512_loadu_ps(g + 16), b2 = _mm512_loadu_ps(g + 32);
        WG_FMA3(0); WG_FMA3(1); WG_FMA3(2); WG_FMA3(3); WG_FMA3(4); WG_FMA3(5); WG_FMA3(6); WG_FMA3(7);
    }
    WG_ST(0, 0, c00); WG_ST(0, 1, c01); WG_ST(0, 2, c02); WG_ST(1, 0, c10); WG_ST(1, 1, c11); WG_ST(1, 2, c12);
    WG_ST(2, 0, c20); WG_ST(2, 1, c21); WG_ST(2, 2, c22); WG_ST(3, 0, c30); WG_ST(3, 1, c31); WG_ST(3, 2, c32);
    WG_ST(4, 0, c40); WG_ST(4, 1, c41); WG_ST(4, 2, c42); WG_ST(5, 0, c50); WG_ST(5, 1, c51); WG_ST(5, 2, c52);
    WG_ST(6, 0, c60); WG_ST(6, 1, c61); WG_ST(6, 2, c62); WG_ST(7, 0, c70); WG_ST(7, 1, c71); WG_ST(7, 2, c72);
}

__attribute__((target("avx512f"))) static void dk_wgt12x32(const float *G, int64_t ldG, const float *P,
                                                           const int32_t *off, int ntap, int64_t Q, float *acc,
                                                           int64_t lda) {
    WG_PTR(0); WG_PTR(1); WG_PTR(2); WG_PTR(3); WG_PTR(4); WG_PTR(5);
    WG_PTR(6); WG_PTR(7); WG_PTR(8); WG_PTR(9); WG_PTR(10); WG_PTR(11);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00,
           c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
    for (int64_t q = 0; q < Q; q++) {
        const float *g = G + q * ldG;
        __m512 b0 = _mm512_loadu_ps(g), b1 = _mm512_loadu_ps(g + 16);
        WG_FMA2(0); WG_FMA2(1); WG_FMA2(2); WG_FMA2(3); WG_FMA2(4); WG_FMA2(5);
        WG_FMA2(6); WG_FMA2(7); WG_FMA2(8); WG_FMA2(9); WG_FMA2(10); WG_FMA2(11);
    }
    WG_ST(0, 0, c00); WG_ST(0, 1, c01); WG_ST(1, 0, c10); WG_ST(1, 1, c11); WG_ST(2, 0, c20); WG_ST(2, 1, c21);
    WG_ST(3, 0, c30); WG_ST(3, 1, c31); WG_ST(4, 0, c40); WG_ST(4, 1, c41); WG_ST(5, 0, c50); WG_ST(5, 1, c51);
    WG_ST(6, 0, c60); WG_ST(6, 1, c61); WG_ST(7, 0, c70); WG_ST(7, 1, c71); WG_ST(8, 0, c80); WG_ST(8, 1, c81);
    WG_ST(9, 0, c90); WG_ST(9, 1, c91); WG_ST(10, 0, c100); WG_ST(10, 1, c101); WG_ST(11, 0, c110);
    WG_ST(11, 1, c111);
}
#undef WG_PTR
#undef WG_FMA3
#undef WG_FMA2
#undef WG_ST
#endif

/* the transposed weight gradient over one block of cols positions and one chunk of nk
 * taps: G = the block's grid rows transposed [cols][R], acc [CKK][R] at the chunk's first
 * tap. The rows go in tiles of 48 and 32 (R % 16 == 0, R >= 32: 64 = 32 + 32, 112 = 48 +
 * 32 + 32). */
static void dk_wgrad_t(int64_t R, const float *G, const float *P, const int32_t *off, int64_t nk, int64_t cols,
                       float *acc, pfplan *pp, int64_t per) {
#ifdef SN_VM_X86
    int64_t n16 = R / 16, nA = n16 % 3 == 1 ? n16 / 3 - 1 : n16 / 3;
    for (int64_t r0 = 0; r0 < R;) {
        bool wide = r0 < nA * 48;
        int64_t tk = wide ? 8 : 12;
        for (int64_t k = 0; k < nk; k += tk) {
            int nt = (int)(nk - k < tk ? nk - k : tk);
            if (per) pf_step(pp, per);
            if (wide) dk_wgt8x48(G + r0, R, P, off + k, nt, cols, acc + k * R + r0, R);
            else dk_wgt12x32(G + r0, R, P, off + k, nt, cols, acc + k * R + r0, R);
        }
        r0 += wide ? 48 : 32;
    }
#else
    (void)R, (void)G, (void)P, (void)off, (void)nk, (void)cols, (void)acc, (void)pp, (void)per;
#endif
}

/* acc[r][k] for the nk taps of one channel chunk (acc at the chunk's first tap) */
static void dk_wgrad(const fused_job *a, const float *g, int64_t ldg, const float *P, int64_t nk, int64_t cols,
                     float *acc) {
#ifdef SN_VM_X86
    int64_t CKK = a->C * a->kh * a->kw;
    for (int64_t r = 0; r < a->R; r += 4)
        for (int64_t k = 0; k < nk; k += 4)
            dk_wgrad_tile(g + r * ldg, ldg, P, a->off + k, nk - k < 4 ? (int)(nk - k) : 4, cols, acc + r * CKK + k,
                          CKK);
#else
    (void)a, (void)g, (void)ldg, (void)P, (void)nk, (void)cols, (void)acc;
#endif
}

/* the block after item `it` of a thread's items [it, i1): its image rows, and with
 * grid rows its rows of the grid's other operand (FM_GEMM / FM_WGRAD with dk) */
static void next_plan(const fused_job *a, int64_t it, int64_t i1, int64_t rows, bool grid, pfplan *pp) {
    memset(pp, 0, sizeof *pp);
    if (it >= i1) return;
    int64_t n = it / rows, q0 = it % rows, q1 = q0 + a->maxrows;
    if (q1 > rows) q1 = rows;
    if (q1 - q0 > i1 - it) q1 = q0 + (i1 - it);
    int64_t h0 = q0 - a->ph, h1 = q1 + a->kh - 1 - a->ph;
    if (h0 < 0) h0 = 0;
    if (h1 > a->Hs) h1 = a->Hs;
    if (h1 > h0)
        pf_add(pp, a->img + (n * a->C * a->Hs + h0) * a->Ws, a->Hs * a->Ws, a->C, (h1 - h0) * a->Ws);
    if (grid) {
        int64_t HWc = a->Hc * a->Wc;
        pf_add(pp, a->other + n * a->R * HWc + q0 * a->Wc, HWc, a->R, (q1 - q0) * a->Wc);
    }
}

static void fused_task(void *arg, int64_t i0, int64_t i1, int tid) {
    const fused_job *a = arg;
    float *col = a->colbuf + tid * a->colcap;
    int64_t CKK = a->C * a->kh * a->kw, HWc = a->Hc * a->Wc;
    bool gather = a->mode == FM_GATHER;
    int64_t rows = gather ? a->Hs : a->Hc; /* items are rows of this per image */
    float *acc = a->mode == FM_WGRAD ? a->out + tid * a->wsize : NULL;
    bool first = true;
    double t0 = cprof_now();
    for (int64_t it = i0; it < i1;) {
        int64_t n = it / rows, r0 = it % rows;
        int64_t r1 = r0 + a->maxrows;
        if (r1 > rows) r1 = rows;
        if (r1 - r0 > i1 - it) r1 = r0 + (i1 - it);
        it += r1 - r0;
        const float *img = a->img ? a->img + n * a->C * a->Hs * a->Ws : NULL;
        const float *oth = a->other ? a->other + n * a->R * HWc : NULL;
        if (a->mode == FM_GEMM) {
            int64_t cols = (r1 - r0) * a->Wc;
            float *o = a->out + n * a->R * HWc + r0 * a->Wc;
            if (a->dk) {
                dk_planes(a, img, r0, r1, 0, a->C, col);
                FPROF(tid, FP_IM2COL, t0);
                pfplan pp;
                next_plan(a, it, i1, rows, false, &pp);
                dk_block(a->wpack, a->off, a->R, CKK, col, cols, o, HWc, false, pf_on() ? &pp : NULL, a->bias);
            } else {
                im2col_block(a, img, r0, r1, col);
                FPROF(tid, FP_IM2COL, t0);
                sn_sgemm_serial(false, false, a->R, cols, CKK, 1.0f, a->wt, CKK, col, cols, 0.0f, o, HWc);
            }
            FPROF(tid, FP_GEMM, t0);
            if (a->act) /* (the direct kernel added the bias) */
                for (int64_t k = 0; k < a->R; k++)
                    sn_cpu_bias_act(o + k * HWc, o + k * HWc, cols, NULL, a->bias && !a->dk ? a->bias[k] : 0.0f,
                                    a->act, a->p0, a->p1);
            else if (a->bias && !a->dk)
                for (int64_t k = 0; k < a->R; k++) {
                    float bv = a->bias[k], *orow = o + k * HWc;
                    for (int64_t q = 0; q < cols; q++) orow[q] += bv;
                }
            FPROF(tid, FP_EPI, t0);
        } else if (a->mode == FM_WGRAD && a->wgt) {
            /* the block's grid rows transposed once, then every chunk of planes */
            int64_t cols = (r1 - r0) * a->Wc, kk = a->kh * a->kw;
            float *G = col + a->pcap;
            if (first) memset(acc, 0, (size_t)(a->R * CKK) * sizeof *acc);
#ifdef SN_VM_X86
            for (int64_t r = 0; r < a->R; r += 16)
                for (int64_t q = 0; q < cols; q += 16)
                    dk_t16(oth + r * HWc + r0 * a->Wc + q, HWc, cols - q < 16 ? cols - q : 16, G + q * a->R + r, a->R);
#endif
            FPROF(tid, FP_IM2COL, t0);
            pfplan pp;
            next_plan(a, it, i1, rows, true, &pp);
            /* kernel calls of the block: chunks x row tiles (48 or 32) x tap groups (8 or 12) */
            int64_t calls = (a->C + a->cs - 1) / a->cs * ((a->R + 47) / 48) * ((a->cs * kk + 11) / 12);
            int64_t per = pf_on() ? (pf_lines(&pp) + calls - 1) / calls : 0;
            for (int64_t c0 = 0; c0 < a->C; c0 += a->cs) {
                int64_t c1 = c0 + a->cs < a->C ? c0 + a->cs : a->C;
                dk_planes(a, img, r0, r1, c0, c1, col);
                FPROF(tid, FP_IM2COL, t0);
                dk_wgrad_t(a->R, G, col, a->off, (c1 - c0) * kk, cols, acc + c0 * kk * a->R, &pp, per);
                FPROF(tid, FP_GEMM, t0);
            }
            first = false;
        } else if (a->mode == FM_WGRAD && a->dk) {
            /* long blocks of rows, their planes a chunk of channels at a time: the
             * tiles' lanes are summed once per chunk over all the block's positions */
            int64_t cols = (r1 - r0) * a->Wc, kk = a->kh * a->kw;
            if (first) memset(acc, 0, (size_t)(a->R * CKK) * sizeof *acc);
            for (int64_t c0 = 0; c0 < a->C; c0 += a->cs) {
                int64_t c1 = c0 + a->cs < a->C ? c0 + a->cs : a->C;
                dk_planes(a, img, r0, r1, c0, c1, col);
                FPROF(tid, FP_IM2COL, t0);
                dk_wgrad(a, oth + r0 * a->Wc, HWc, col, (c1 - c0) * kk, cols, acc + c0 * kk);
                FPROF(tid, FP_GEMM, t0);
            }
            first = false;
        } else if (a->mode == FM_WGRAD) {
            int64_t cols = (r1 - r0) * a->Wc;
            im2col_block(a, img, r0, r1, col);
            FPROF(tid, FP_IM2COL, t0);
            /* acc[R, CKK] (+)= oth[R, cols] @ col[CKK, cols]^T */
            sn_sgemm_serial(false, true, a->R, CKK, cols, 1.0f, oth + r0 * a->Wc, HWc, col, cols, first ? 0.0f : 1.0f,
                            acc, CKK);
            FPROF(tid, FP_GEMM, t0);
            first = false;
        } else if (a->dk) {
            /* the next block's image rows: written by its row adds */
            pfplan pp;
            memset(&pp, 0, sizeof pp);
            if (it < i1 && pf_on()) {
                int64_t n2 = it / rows, q0 = it % rows, q1 = q0 + a->maxrows;
                if (q1 > rows) q1 = rows;
                if (q1 - q0 > i1 - it) q1 = q0 + (i1 - it);
                pf_add(&pp, a->out + (n2 * a->C * a->Hs + q0) * a->Ws, a->Hs * a->Ws, a->C, (q1 - q0) * a->Ws);
            }
            dk_gather(a, oth, r0, r1, col, a->out + n * a->C * a->Hs * a->Ws, tid, pp.base[0] ? &pp : NULL);
            t0 = cprof_now();
        } else {
            /* grid rows whose columns reach image rows [r0, r1): ih = oh*sh - ph + i */
            int64_t o0 = (r0 + a->ph - (a->kh - 1) + a->sh - 1);
            o0 = o0 < 0 ? 0 : o0 / a->sh;
            int64_t o1 = (r1 - 1 + a->ph);
            o1 = o1 < 0 ? 0 : o1 / a->sh + 1;
            if (o1 > a->Hc) o1 = a->Hc;
            if (o0 > o1) o0 = o1;
            int64_t cols = (o1 - o0) * a->Wc;
            if (cols > 0) /* col[CKK, cols] = wt^T @ oth[R, cols]; wt is [R, CKK] */
                sn_sgemm_serial(true, false, CKK, cols, a->R, 1.0f, a->wt, CKK, oth + o0 * a->Wc, HWc, 0.0f, col,
                                cols);
            FPROF(tid, FP_GEMM, t0);
            col2im_block(a, col, o0, o1, a->out + n * a->C * a->Hs * a->Ws, r0, r1);
            FPROF(tid, FP_COL2IM, t0);
        }
    }
    if (acc && !first) a->used[tid] = 1;
}

typedef struct {
    const float *acc;
    const unsigned char *used;
    int nth;
    int64_t wsize;
    float *w;
    int64_t ckk, wsize_r;   /* wsum_t_task: the weight's [R][CKK] */
} wsum_job;

/* wgt: w[r][k] = sum of the threads' acc[k][r] (items k) */
static void wsum_t_task(void *arg, int64_t i0, int64_t i1, int tid) {
    const wsum_job *j = arg;
    (void)tid;
    int64_t CKK = j->ckk, R = j->wsize_r;
    for (int64_t k = i0; k < i1; k++) {
        for (int64_t r = 0; r < R; r++) j->w[r * CKK + k] = 0.0f;
        for (int t = 0; t < j->nth; t++) {
            if (!j->used[t]) continue;
            const float *s = j->acc + t * j->wsize + k * R;
            for (int64_t r = 0; r < R; r++) j->w[r * CKK + k] += s[r];
        }
    }
}

static void wsum_task(void *arg, int64_t i0, int64_t i1, int tid) {
    const wsum_job *j = arg;
    (void)tid;
    for (int64_t k = i0; k < i1; k++) j->w[k] = 0.0f;
    for (int t = 0; t < j->nth; t++) {
        if (!j->used[t]) continue;
        const float *s = j->acc + t * j->wsize;
        for (int64_t k = i0; k < i1; k++) j->w[k] += s[k];
    }
}

/* SN_CONV_WGT=0: the weight gradient on dk_wgrad (lane sums) rather than dk_wgrad_t */
static int wgt_on(void) {
    static int on = -1;
    return sn_cpu_switch_on(&on, "SN_CONV_WGT");
}

static int fused_on(void) {
    static int on = -1;
    return sn_cpu_switch_on(&on, "SN_CONV_FUSED");
}

/* runs a fused_job with geometry and operands set */
static sn_status fused_run(sn_cpu *c, fused_job *a, float *wgrad) {
    int nth = sn_pool_size(c->pool);
    int64_t CKK = a->C * a->kh * a->kw;
    bool gather = a->mode == FM_GATHER;
    /* a block of grid rows: about 128K floats of columns (half of a 2 MB L2) */
    int64_t rows = gather ? a->Hs : a->Hc;
    static int64_t budget = -1; /* SN_CONV_BLOCK: floats of columns per block */
    if (budget < 0) {
        const char *e = getenv("SN_CONV_BLOCK");
        budget = e && atoll(e) > 0 ? atoll(e) : 128 * 1024;
    }
    /* gather: rows (c,j) padded to a multiple of 8 (even 3 -> 8, the CRN's last
     * decoder layer, is faster than the BLAS form's 3-row product) */
    a->dk = ((a->mode == FM_GEMM && a->R % 8 == 0) || (a->mode == FM_WGRAD && a->R % 4 == 0) || gather) &&
            a->sh == 1 && dk_on();
    int64_t Mg = (a->C * a->kw + 7) / 8 * 8; /* gather: rows (c,j) of the tiles */
    int64_t items = a->N * rows, per = (items + nth - 1) / nth, maxrows = 0;
    /* the direct kernel's planes hold kw (not kh*kw) copies of each row; its gather
     * form a copy of the grid rows and the tiles' output */
    int64_t per_row = !a->dk ? CKK * a->Wc : gather ? (a->R + Mg) * a->Wc : a->C * a->kw * a->Wc;
    maxrows = budget / (per_row > 0 ? per_row : 1);
    /* the direct forward with the next block's image rows prefetched: its planes, those
     * rows and its output rows in 1.5 budgets (3/4 of a 1 MB L2; the planes alone in one
     * budget crowded the prefetched rows out) */
    if (a->dk && a->mode == FM_GEMM && pf_on())
        maxrows = budget * 3 / 2 / ((a->C * a->kw + a->R) * a->Wc + a->C * a->Ws);
    if (maxrows < 1) maxrows = 1;
    /* blocks of at least 4 rows in the gather form (it recomputes kh-1 rows per block) */
    if (gather && maxrows < 4 * a->kh) maxrows = 4 * a->kh;
    a->cs = a->C;
    if (a->dk && a->mode == FM_WGRAD) {
        /* the weight gradient's tiles sum their 16 lanes once per block and channel
         * chunk: blocks as long as the thread's share and the budget for a chunk of
         * cmin channels allow (cmin*kh*kw taps fill the 4-tap tiles), chunks of as
         * many channels as the budget holds */
        int64_t kk = a->kh * a->kw, cmin = kk % 4 == 0 ? 1 : kk % 2 == 0 ? 2 : 4;
        if (cmin > a->C) cmin = a->C;
        maxrows = budget / (cmin * a->kw * a->Wc) - (a->kh - 1);
        if (maxrows < 1) maxrows = 1;
        if (maxrows > rows) maxrows = rows;
        if (maxrows > per) maxrows = per;
        a->cs = budget / (a->kw * (maxrows + a->kh - 1) * a->Wc) / cmin * cmin;
        if (a->cs < cmin) a->cs = cmin;
        if (a->cs > a->C) a->cs = a->C;
    }
    /* the transposed form (R % 16 == 0, R >= 32, 32 taps or more: with fewer the transpose
     * costs more than it saves; its accumulators [CKK][R] at most half
     * of L2: it reads and writes them once per block; the CRN's two widest layers keep
     * dk_wgrad, as fast there on 1 core of Zen 5): blocks of at most 2048 positions and
     * a budget of transposed grid rows (L2; at least 256 positions), planes in chunks
     * of half a budget */
    a->wgt = a->dk && a->mode == FM_WGRAD && a->R % 16 == 0 && a->R >= 32 && CKK >= 32 &&
             a->R * CKK <= 131072 && wgt_on();
    if (a->wgt) {
        int64_t bpos = budget / a->R;
        if (bpos > 2048) bpos = 2048;
        if (bpos < budget / 512) bpos = budget / 512;
        maxrows = bpos / a->Wc;
        if (maxrows < 1) maxrows = 1;
        if (maxrows > rows) maxrows = rows;
        if (maxrows > per) maxrows = per;
        a->cs = budget / 2 / (a->kw * (maxrows + a->kh - 1) * a->Wc);
        if (a->cs < 1) a->cs = 1;
        if (a->cs > a->C) a->cs = a->C;
    }
    if (maxrows > per) maxrows = per;
    a->maxrows = maxrows;
    int64_t grid_rows = gather ? (maxrows + a->kh - 1) / a->sh + 2 : maxrows;
    a->colcap = sn_align64(CKK * grid_rows * a->Wc);
    a->tp = maxrows + a->kh - 1;
    if (a->dk) /* + the tail loads' slack */
        a->colcap = gather ? sn_align64(a->R * a->tp * a->Wc + 64) + sn_align64(Mg * maxrows * a->Wc)
                           : sn_align64(a->cs * a->kw * a->tp * a->Wc + 64);
    a->pcap = a->colcap;
    if (a->wgt) a->colcap += sn_align64(a->R * maxrows * a->Wc);
    a->wsize = a->mode == FM_WGRAD ? sn_align64(a->R * CKK) : 0;
    int64_t wpn = gather ? Mg * a->R * a->kh : a->mode == FM_WGRAD ? 0 : a->R * CKK,
            offn = gather ? 2 * a->R * a->kh : CKK;
    int64_t dkn = a->dk ? sn_align64(wpn) + sn_align64(offn) : 0;
    size_t need = (size_t)(nth * a->colcap + nth * a->wsize + dkn + 64);
    float *buf = sn_cpu_scratch(c, need);
    if (!buf) return SN_ERR_NOMEM;
    a->colbuf = buf;
    if (a->dk) {
        float *wp = buf + nth * a->colcap + nth * a->wsize;
        int32_t *off = (int32_t *)(wp + sn_align64(wpn));
        a->off2 = NULL;
        if (gather) { /* tap (r,i): grid row t + kh-1-i of D's channel r, in the copy and in the grid */
            int32_t *off2 = off + a->R * a->kh;
            for (int64_t r = 0; r < a->R; r++)
                for (int64_t i = 0; i < a->kh; i++) {
                    off[r * a->kh + i] = (int32_t)((r * a->tp + a->kh - 1 - i) * a->Wc);
                    off2[r * a->kh + i] = (int32_t)(r * a->Hc * a->Wc + (a->kh - 1 - i) * a->Wc);
                }
            if (a->R * a->Hc * a->Wc < INT32_MAX / 2) a->off2 = off2;
        }
        else /* tap (c,i,j) in the weight's order */
            for (int64_t cc = 0; cc < a->C; cc++)
                for (int64_t i = 0; i < a->kh; i++)
                    for (int64_t j = 0; j < a->kw; j++)
                        off[(cc * a->kh + i) * a->kw + j] = (int32_t)(((cc * a->kw + j) * a->tp + i) * a->Wc);
        wpack_job wj = {a->wt, wp, a->R, CKK, gather, a->C, a->kh, a->kw};
        if (a->mode != FM_WGRAD) sn_pool_for(c->pool, gather ? Mg / 8 : a->R / 8, 1, wpack_task, &wj);
        a->wpack = wp;
        a->off = off;
    }
    unsigned char used[256] = {0};
    if (a->mode == FM_WGRAD) {
        a->out = buf + nth * a->colcap;
        a->used = used;
    }
    sn_blas_serial(true);
    sn_pool_for(c->pool, items, 1, fused_task, a);
    sn_blas_serial(false);
    if (a->mode == FM_WGRAD) {
        wsum_job j = {a->out, used, nth, a->wsize, wgrad, CKK, a->R};
        int64_t wn = a->R * CKK;
        if (a->wgt) sn_pool_for(c->pool, CKK, 1 + 4096 / a->R, wsum_t_task, &j);
        else sn_pool_for(c->pool, wn, 4096, wsum_task, &j);
    }
    return SN_OK;
}

static sn_status conv_fused(sn_cpu *c, sn_tensor *node, const sn_conv_geom *g) {
    fused_job a = {0};
    a.sh = g->sh; a.sw = g->sw; a.ph = g->ph; a.pw = g->pw;
    a.act = g->act; a.p0 = g->p0; a.p1 = g->p1;
    a.N = g->N; a.C = g->C; a.Hs = g->Hs; a.Ws = g->Ws;
    a.R = g->R; a.Hc = g->Hc; a.Wc = g->Wc; a.kh = g->kh; a.kw = g->kw;
    a.bias = g->bias ? g->bias->data : NULL;
    /* conv2d's image is x and its grid y; conv_transpose2d's the other way round */
    float *img = g->transposed ? g->y->data : g->x->data, *grid = g->transposed ? g->x->data : g->y->data;
    switch (node->op) {
    case SN_OP_CONV2D: case SN_OP_CONVT2D_BWD_DATA: /* grid = w . im2col(image) */
        a.mode = FM_GEMM; a.img = img; a.wt = g->w->data; a.out = grid;
        return fused_run(c, &a, NULL);
    case SN_OP_CONV2D_BWD_DATA: case SN_OP_CONVT2D: /* image = col2im(w^T . grid) */
        a.mode = FM_GATHER; a.wt = g->w->data; a.other = grid; a.out = img;
        return fused_run(c, &a, NULL);
    default: /* dw = grid . im2col(image)^T */
        a.mode = FM_WGRAD; a.img = img; a.other = grid;
        return fused_run(c, &a, g->w->data);
    }
}

/* Images per GEMM of the whole-batch path: as many as keep the column matrix within
 * 6M floats (24 MB), at least one. One product for the whole batch packs the weight
 * once, but past that size its column matrix and the batch-folded copy stream through
 * memory several times (2-core AMX Xeon, bench_conv --bf16, the four layers on this
 * path: batch 16 587-618 -> 474-485 ms for all ops; batch 4, where every layer fits,
 * unchanged). One image a product needs no folding: its [R, Hc*Wc] block is the
 * operand. SN_CONV_CHUNK_IMAGES=n sets the count (read per call: tests). */
static int64_t conv_chunk(int64_t N, int64_t per_image) {
    const char *e = getenv("SN_CONV_CHUNK_IMAGES");
    int64_t nc = e && atoll(e) > 0 ? atoll(e) : ((int64_t)6 << 20) / (per_image > 0 ? per_image : 1);
    return nc < 1 ? 1 : nc > N ? N : nc;
}

/* bf16 mode: convolutions as one bf16 GEMM (each operand rounded and packed once; the
 * fused form would repack the weight for every block of rows) where the GEMM runs on
 * AMX tiles and both channel counts are at least 64. Fewer channels give the tiles too
 * few rows or k-pairs to pay for the packing, and the fp32 direct kernels win (2-core
 * AMX Xeon, bench_conv: enc.0-2 and dec.2-4 1.5-7x faster in f32; enc.3-4, dec.0-1
 * 1.0-2.2x faster as bf16 GEMMs). With AVX512-BF16 alone the direct kernels win
 * everywhere (2-core Zen 5: the step's conv ops 165 -> 148 ms) and are at least as
 * exact. SN_CONV_BF16=gemm|f32 forces either for every layer. */
#define SN_CONV_BF16_MIN_CH 64
static bool bf16_convs_gemm(const sn_conv_geom *g) {
    const char *e = getenv("SN_CONV_BF16");
    if (e && !strcmp(e, "gemm")) return true;
    if (e && !strcmp(e, "f32")) return false;
    if (!dk_on()) return true;
    return strncmp(sn_cpu_bgemm_path(), "AMX", 3) == 0 && g->C >= SN_CONV_BF16_MIN_CH && g->R >= SN_CONV_BF16_MIN_CH;
}

sn_status sn_cpu_conv(sn_cpu *c, sn_tensor *node) {
    sn_conv_geom g;
    sn_status gs = sn_conv_geom_of(node, &g);
    if (gs != SN_OK) return gs;
    int act = g.act;
    float p0 = g.p0, p1 = g.p1;
    if (act < SN_ACT_NONE || act >= SN_ACT_COUNT)
        return sn_error(SN_ERR_INTERNAL, "CPU %s '%s': unknown activation %d", sn_op_name(node->op), node->name, act);
    if (fused_on() && (!c->bf16 || !bf16_convs_gemm(&g)) && sn_pool_size(c->pool) <= 256) {
        double t0 = cprof_now();
        sn_status st = conv_fused(c, node, &g);
        CPROF(CP_GEMM, t0);
        return st;
    }
    int64_t sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, kh = g.kh, kw = g.kw;
    float *xd = g.x->data, *yd = g.y->data, *wd = g.w->data;
    const float *bias = g.bias ? g.bias->data : NULL;
    colargs ca = {0};
    ca.C = g.C; ca.Hs = g.Hs; ca.Ws = g.Ws; ca.kh = kh; ca.kw = kw; ca.sh = sh; ca.sw = sw; ca.ph = ph;
    ca.pw = pw; ca.Hc = g.Hc; ca.Wc = g.Wc;
    /* image side x[N,C,Hs,Ws]; column grid side [N,R,Hc,Wc]; rows of the column matrix */
    int64_t N = g.N, HWs = g.Hs * g.Ws, HWc = g.Hc * g.Wc, RC = g.R, CC = g.C;
    int64_t rows = CC * kh * kw, nc = conv_chunk(N, rows * HWc); /* the image side's (c, i, j) */
    /* col [rows, nc*HWc] | folded grid side [R, nc*HWc] (unused when nc == 1: one
     * image's [R, HWc] block of the grid side is that matrix) */
    int64_t o_f = sn_align64(rows * nc * HWc);
    float *col = sn_cpu_scratch(c, (size_t)(o_f + (nc > 1 ? RC * nc * HWc : 0)));
    if (!col) return SN_ERR_NOMEM;
    float *fold_buf = col + o_f;
    /* Three forms serve the six ops. The image side is x for conv2d and y for
     * conv_transpose2d, the column grid side the other; the weight is [R, C*kh*kw] either way.
     *   gather (conv2d, conv_transpose2d's data gradient): grid = w . im2col(image)
     *   scatter (conv2d's data gradient, conv_transpose2d): image = col2im(w^T . grid)
     *   weight gradient (both): w = grid . im2col(image)^T, summed over the chunks */
    bool gather = node->op == SN_OP_CONV2D || node->op == SN_OP_CONVT2D_BWD_DATA;
    bool scatter = node->op == SN_OP_CONV2D_BWD_DATA || node->op == SN_OP_CONVT2D;
    float *img = g.transposed ? yd : xd, *grid = g.transposed ? xd : yd;
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        int64_t nb = N - n0 < nc ? N - n0 : nc, L = nb * HWc;
        float *im = img + n0 * CC * HWs, *gr = grid + n0 * RC * HWc, *gf = nb > 1 ? fold_buf : gr;
        ca.N = nb;
        double t0 = cprof_now();
        if (scatter) {
            if (nb > 1) fold(c, gf, gr, NULL, nb, RC, HWc, true);
            CPROF(CP_FOLD, t0);
            sn_cpu_gemm(c, true, false, rows, L, RC, 1.0f, wd, rows, gf, L, 0.0f, col, L);
            CPROF(CP_GEMM, t0);
            ca.src = col; ca.dst = im; ca.bias = bias;
            ca.act = g.act; ca.p0 = p0; ca.p1 = p1;
            col2im(c, &ca);
            CPROF(CP_COL2IM, t0);
            continue;
        }
        ca.src = im; ca.dst = col;
        im2col(c, &ca);
        CPROF(CP_IM2COL, t0);
        if (gather) {
            sn_cpu_gemm(c, false, false, RC, L, rows, 1.0f, wd, rows, col, L, 0.0f, gf, L);
            CPROF(CP_GEMM, t0);
            fold_act(c, gr, gf, bias, nb, RC, HWc, false, g.act, p0, p1);
            CPROF(CP_FOLD, t0);
        } else {
            if (nb > 1) fold(c, gf, gr, NULL, nb, RC, HWc, true);
            CPROF(CP_FOLD, t0);
            sn_cpu_gemm(c, false, true, RC, rows, L, 1.0f, gf, L, col, L, n0 == 0 ? 0.0f : 1.0f, wd, rows);
            CPROF(CP_GEMM, t0);
        }
    }
    return SN_OK;
}
