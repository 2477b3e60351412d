/* CONV2D and CONVT2D, forward and backward: im2col / col2im kernels + cuBLAS GEMMs.
 *
 * "cols" of an image [Ci, Hi, Wi] for a kernel kh x kw, stride s, padding p over an
 * output grid Hc x Wc is the matrix [Ci*kh*kw, Hc*Wc] with
 *   cols[(c,i,j)][(y,x)] = img[c][y*sh - ph + i][x*sw - pw + j]   (0 outside).
 * col2im is its adjoint, written as a gather (each image element sums the cols entries
 * that read it), so no atomics and the result is deterministic. Images are processed in
 * chunks so the cols workspace stays bounded.
 *
 * Hc, Wc and Hi, Wi come from the tensors' shapes, ph/pw (ip[2], ip[3]) is the offset:
 * conv2d's padding after (ip[6], ip[7]) is the grid reaching past the image (zeros),
 * conv_transpose2d's end crop (ip[6], ip[7]) an image shorter than the full output
 * (positions past it are never written, and read as zeros in the backward). is_1x1
 * requires Hc == Hi, Wc == Wi, so neither takes the GEMM-only path.
 *
 * Weight gradients of small layers skip im2col: a direct kernel reads the image through
 * the same geometry (wgrad_direct; SN_CONV_WGRAD=gemm|direct forces a path), on tensor
 * cores in bf16 mode (SN_CONV_WGRAD=direct32: the f32 one there too). Even the f32 direct
 * kernel beat im2col (bf16) + the bf16 GEMM there: H100, the CRN step 6.36 against
 * 6.53 ms. Larger layers take im2col, written as bf16 in bf16 mode.
 *
 * Index arithmetic per element is 32-bit fast division (core/fastdiv.h).
 *
 * A forward node's activation epilogue (ip[SN_IP_ACT]) runs where its bias is added:
 * in col2im (conv_transpose2d), or in one bias+activation kernel after the GEMMs
 * (conv2d, 1x1 conv_transpose2d, and linear through sn_cu_bias_act). */
#include "backends/cuda/cuda_common.h"

#include <stdlib.h>

/* The activation ops' formulas (unary.cu), so fusing changes no result. */
template <int ACT>
__device__ __forceinline__ float act_dev(float v, float p0, float p1) {
    if (ACT == SN_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (ACT == SN_ACT_ELU) return v > 0.0f ? v : p0 * expm1f(v);
    if (ACT == SN_ACT_SOFTPLUS) return v * p0 > p1 ? v : log1pf(expf(v * p0)) / p0;
    if (ACT == SN_ACT_SIGMOID) return 1.0f / (1.0f + expf(-v));
    if (ACT == SN_ACT_TANH) return tanhf(v);
    return v;
}

/* Runs the statement (...) with the compile-time constant A = act (an sn_act); other
 * values return an error. */
#define SN_ACT_SWITCH(act, where, ...)                                                                         \
    switch (act) {                                                                                             \
    case SN_ACT_NONE: { constexpr int A = SN_ACT_NONE; __VA_ARGS__; break; }                                   \
    case SN_ACT_RELU: { constexpr int A = SN_ACT_RELU; __VA_ARGS__; break; }                                   \
    case SN_ACT_ELU: { constexpr int A = SN_ACT_ELU; __VA_ARGS__; break; }                                     \
    case SN_ACT_SOFTPLUS: { constexpr int A = SN_ACT_SOFTPLUS; __VA_ARGS__; break; }                           \
    case SN_ACT_SIGMOID: { constexpr int A = SN_ACT_SIGMOID; __VA_ARGS__; break; }                             \
    case SN_ACT_TANH: { constexpr int A = SN_ACT_TANH; __VA_ARGS__; break; }                                   \
    default: return sn_error(SN_ERR_INTERNAL, "CUDA %s: unknown activation %d", where, (int)(act));            \
    }

/* y[(o*C + ch)*inner + i] = act(y[..] + b[ch]) in place (b may be NULL); n < 2^31 */
template <int ACT>
__global__ void k_bias_act(float *y, const float *b, uint32_t n, sn_fastdiv inner, sn_fastdiv C, float p0, float p1) {
    SN_GRID_LOOP32(i, n) {
        float v = y[i];
        if (b) {
            uint32_t o, ch = sn_fastdiv_qr(C, sn_fastdiv_q(inner, i), &o);
            v += b[ch];
        }
        y[i] = act_dev<ACT>(v, p0, p1);
    }
}

sn_status sn_cu_bias_act(sn_cuda *c, float *y, const float *b, int64_t outer, int64_t C, int64_t inner, int act,
                         float p0, float p1, const char *where) {
    int64_t row = C * inner, per = sn_cu_rows32(outer, row);
    if (outer * row <= 0 || (act == SN_ACT_NONE && !b)) return SN_OK;
    if (per < 1) return sn_error(SN_ERR_UNSUPPORTED, "CUDA %s: %lld elements per sample, more than 2^31", where,
                                 (long long)row);
    sn_fastdiv fi = sn_fastdiv_make((uint32_t)inner), fc = sn_fastdiv_make((uint32_t)C);
    for (int64_t o = 0; o < outer; o += per) {
        int64_t n = (outer - o < per ? outer - o : per) * row;
        unsigned g = sn_cu_blocks(c, n);
        SN_ACT_SWITCH(act, where,
                      k_bias_act<A><<<g, SN_CU_THREADS, 0, c->stream>>>(y + o * row, b, (uint32_t)n, fi, fc, p0, p1));
        CU_LAUNCHED(where);
    }
    return SN_OK;
}

typedef struct {
    int64_t Ci, Hi, Wi, Hc, Wc;
    int kh, kw, sh, sw, ph, pw;
} geom;

/* Workspace caps (it counts in the peak memory): cols of a chunk of images (at least
 * one image), and the split-K partial products of a weight gradient. */
#define SN_CU_COLS_LIMIT ((int64_t)4 << 20) /* floats (16 MB) */
#define SN_CU_PART_LIMIT ((int64_t)2 << 20) /* floats (8 MB) */

/* The per-element index splits of im2col / col2im by fast division (core/fastdiv.h):
 * with 64-bit division they ran at a fraction of memory bandwidth. A launch covers
 * fewer than 2^31 elements (the cols chunks are bounded; checked where launched). */
typedef struct {
    sn_fastdiv P, Q, Wc, kw, kh; /* im2col: flat index -> (b, q, y, x), q -> (ch, i, j) */
    sn_fastdiv Wi, Hi, Ci, sh, sw; /* col2im: flat index -> (b, ch, h, w), taps by stride */
} geom_div;

static geom_div geom_div_of(const geom *g) {
    geom_div d;
    d.P = sn_fastdiv_make((uint32_t)(g->Hc * g->Wc)), d.Q = sn_fastdiv_make((uint32_t)(g->Ci * g->kh * g->kw));
    d.Wc = sn_fastdiv_make((uint32_t)g->Wc), d.kw = sn_fastdiv_make((uint32_t)g->kw);
    d.kh = sn_fastdiv_make((uint32_t)g->kh), d.Wi = sn_fastdiv_make((uint32_t)g->Wi);
    d.Hi = sn_fastdiv_make((uint32_t)g->Hi), d.Ci = sn_fastdiv_make((uint32_t)g->Ci);
    d.sh = sn_fastdiv_make((uint32_t)g->sh), d.sw = sn_fastdiv_make((uint32_t)g->sw);
    return d;
}

__device__ __forceinline__ void cols_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void cols_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

/* cols (f32, or bf16 straight for a bf16 GEMM) of nb images */
template <typename T>
__global__ void k_im2col(const float *img, T *cols, uint32_t n, geom g, geom_div dv) {
    SN_GRID_LOOP32(idx, n) {
        uint32_t t, y, b, r, ch;
        uint32_t p = sn_fastdiv_qr(dv.P, idx, &t);
        uint32_t q = sn_fastdiv_qr(dv.Q, t, &b);
        uint32_t x = sn_fastdiv_qr(dv.Wc, p, &y);
        uint32_t j = sn_fastdiv_qr(dv.kw, q, &r);
        uint32_t i = sn_fastdiv_qr(dv.kh, r, &ch);
        int hy = (int)(y * g.sh + i) - g.ph, wx = (int)(x * g.sw + j) - g.pw;
        float v = 0.0f;
        if (hy >= 0 && hy < g.Hi && wx >= 0 && wx < g.Wi)
            v = img[(((int64_t)b * g.Ci + ch) * g.Hi + hy) * g.Wi + wx];
        cols_store(cols + idx, v);
    }
}

/* img[b][c][h][w] = act(sum of cols entries that read it (+ bias[c])). The taps that
 * read (h, w) are i = h + ph - y*sh: the first is (h + ph) % sh at y = (h + ph) / sh,
 * then every sh-th with y one less (w alike), so no division per tap. */
template <int ACT>
__global__ void k_col2im(const float *cols, float *img, const float *bias, uint32_t n, geom g, geom_div dv,
                         float p0, float p1) {
    const int64_t P = g.Hc * g.Wc;
    SN_GRID_LOOP32(idx, n) {
        uint32_t t, bc, b, yq, xq;
        uint32_t w = sn_fastdiv_qr(dv.Wi, idx, &t);
        uint32_t h = sn_fastdiv_qr(dv.Hi, t, &bc);
        uint32_t ch = sn_fastdiv_qr(dv.Ci, bc, &b);
        const float *cb = cols + (int64_t)bc * g.kh * g.kw * P;
        float s = bias ? bias[ch] : 0.0f;
        int th = (int)h + g.ph, tw = (int)w + g.pw;
        if (th >= 0 && tw >= 0) {
            int i0 = (int)sn_fastdiv_qr(dv.sh, (uint32_t)th, &yq);
            int j0 = (int)sn_fastdiv_qr(dv.sw, (uint32_t)tw, &xq);
            for (int i = i0, y = (int)yq; i < g.kh && y >= 0; i += g.sh, y--) {
                if (y >= g.Hc) continue;
                for (int j = j0, x = (int)xq; j < g.kw && x >= 0; j += g.sw, x--) {
                    if (x >= g.Wc) continue;
                    s += cb[((int64_t)i * g.kw + j) * P + (int64_t)y * g.Wc + x];
                }
            }
        }
        img[idx] = act_dev<ACT>(s, p0, p1);
    }
}

/* one launch's elements must fit the kernels' 32-bit indices */
static sn_status fits32(int64_t n, const char *what) {
    if (n < ((int64_t)1 << 31)) return SN_OK;
    return sn_error(SN_ERR_UNSUPPORTED, "CUDA %s: one image needs %lld im2col entries, more than 2^31; use a smaller "
                    "image or fewer channels", what, (long long)n);
}

template <typename T>
static sn_status im2col(sn_cuda *c, const float *img, T *cols, int64_t nb, const geom *g) {
    int64_t n = nb * g->Ci * g->kh * g->kw * g->Hc * g->Wc;
    SN_TRY(fits32(n, "im2col"));
    k_im2col<T><<<sn_cu_blocks(c, n), SN_CU_THREADS, 0, c->stream>>>(img, cols, (uint32_t)n, *g, geom_div_of(g));
    CU_LAUNCHED("im2col");
    return SN_OK;
}

static sn_status col2im(sn_cuda *c, const float *cols, float *img, const float *bias, int64_t nb, const geom *g,
                        int act = SN_ACT_NONE, float p0 = 0.0f, float p1 = 0.0f) {
    int64_t n = nb * g->Ci * g->Hi * g->Wi;
    SN_TRY(fits32(n, "col2im"));
    unsigned blocks = sn_cu_blocks(c, n);
    geom_div dv = geom_div_of(g);
    SN_ACT_SWITCH(act, "col2im",
                  k_col2im<A><<<blocks, SN_CU_THREADS, 0, c->stream>>>(cols, img, bias, (uint32_t)n, *g, dv, p0, p1));
    CU_LAUNCHED("col2im");
    return SN_OK;
}

static bool is_1x1(const geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->Hc == g->Hi &&
           g->Wc == g->Wi;
}

/* the cols workspace for n floats (none for a 1x1 convolution, which reads images directly) */
static sn_status cols_ws(sn_cuda *c, bool one, int64_t n, float **cols, const char *what) {
    *cols = NULL;
    if (one) return SN_OK;
    *cols = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)n * sizeof(float));
    return *cols ? SN_OK : sn_error_prefix(SN_ERR_NOMEM, "%s", what);
}

/* what a GEMM reads for m images: the images themselves (1x1) or their im2col in cols.
 * With B16 in bf16 mode im2col writes bf16 there instead (*B16), so the GEMM has no
 * operand to convert. */
static sn_status gemm_operand(sn_cuda *c, const float *img, float *cols, int64_t m, const geom *g, bool one,
                              const float **B, const __nv_bfloat16 **B16 = NULL) {
    *B = img;
    if (B16) *B16 = NULL;
    if (one) return SN_OK;
    *B = cols;
    if (B16 && c->bf16) {
        SN_TRY(im2col(c, img, (__nv_bfloat16 *)cols, m, g));
        *B16 = (const __nv_bfloat16 *)cols;
        return SN_OK;
    }
    return im2col(c, img, cols, m, g);
}


static int64_t chunk_of(int64_t N, int64_t per) {
    int64_t nb = per > 0 ? SN_CU_COLS_LIMIT / per : N;
    if (nb < 1) nb = 1;
    if (nb > N) nb = N;
    return nb;
}

/* dW[M,Q] (+)= sum over m images of A_i[M,P] cols_i[Q,P]^T. The reduction dimension P
 * is long and M x Q small, so each image's P is split into S chunks: one strided-batched
 * GEMM per image writes S (+1 for a remainder) partial products, and a deterministic
 * column sum adds the partials (no atomics, the GPU is filled). The partials of a pass
 * stay under SN_CU_PART_LIMIT: fewer chunks, fewer images per pass, or (S = 1) plain
 * GEMMs accumulating into dW. */
static sn_status wgrad(sn_cuda *c, int64_t M, int64_t Q, int64_t P, const float *A, int64_t sA, const float *cols,
                       const __nv_bfloat16 *cols16, int64_t m, bool accumulate, float *dw, const char *what) {
    int64_t MQ = M * Q;
    int64_t S = P / 512;
    if (S > 64) S = 64;
    while (S > 1 && (S + 1) * MQ > SN_CU_PART_LIMIT) S--;
    if (S < 1) S = 1;
    if (S == 1) {
        for (int64_t i = 0; i < m; i++)
            SN_TRY(sn_cu_gemm_ex(c, false, true, M, Q, P, 1.0f, A + i * sA, P, 0, cols + i * Q * P, P, 0,
                                 accumulate || i > 0 ? 1.0f : 0.0f, dw, Q, 0, 1, NULL,
                                 cols16 ? cols16 + i * Q * P : NULL, what));
        return SN_OK;
    }
    int64_t Pc = P / S, rem = P - S * Pc, per = S + (rem > 0);
    int64_t ib = SN_CU_PART_LIMIT / (per * MQ); /* images per pass */
    if (ib < 1) ib = 1;
    if (ib > m) ib = m;
    float *part = (float *)sn_cu_ws(c, SN_WS_OP2, (size_t)(ib * per * MQ) * sizeof(float));
    if (!part) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    for (int64_t i0 = 0; i0 < m; i0 += ib) {
        int64_t mi = m - i0 < ib ? m - i0 : ib;
        for (int64_t k = 0; k < mi; k++) {
            int64_t i = i0 + k;
            const float *Ai = A + i * sA, *Bi = cols + i * Q * P;
            const __nv_bfloat16 *B16 = cols16 ? cols16 + i * Q * P : NULL;
            float *Ci = part + k * per * MQ;
            SN_TRY(sn_cu_gemm_ex(c, false, true, M, Q, Pc, 1.0f, Ai, P, Pc, Bi, P, Pc, 0.0f, Ci, Q, MQ, S, NULL, B16,
                                 what));
            if (rem > 0)
                SN_TRY(sn_cu_gemm_ex(c, false, true, M, Q, rem, 1.0f, Ai + S * Pc, P, 0, Bi + S * Pc, P, 0, 0.0f,
                                     Ci + S * MQ, Q, 0, 1, NULL, B16 ? B16 + S * Pc : NULL, what));
        }
        SN_TRY(sn_cu_colsum(c, part, mi * per, MQ, dw, accumulate || i0 > 0));
    }
    return SN_OK;
}

/* ---- direct weight gradient (no cols workspace) ----
 * dW[m][q] = sum over r = n*P + p of A[n][m][p] * cols_n[q][p], the cols entry read from
 * the image through the im2col geometry. Block (tile, s): a BM x BQ tile of dW over the
 * s-th range of L consecutive r (ranges cross image boundaries freely). Per iteration a
 * chunk of BP r is staged into shared memory (register prefetch, two buffers, one
 * barrier); 256 threads as 16 x 16, each TM = BM/16 rows x TQ = BQ/16 columns in
 * registers. Splits write partial tiles, summed in a fixed order by sn_cu_colsum:
 * deterministic, no atomics. Offsets inside one image / one A image are int (checked). */
#define SN_WG_BP 32
/* auto rule: direct when the weight is at most this many elements (every CRN layer:
 * on an H100 it beat im2col + split-K cuBLAS on all ten, 1.2-3x on the small ones
 * and 0.25 vs 0.29 ms on the largest, [512,128,2,3]), im2col + GEMM above */
#define SN_WG_DIRECT_MAX_MQ ((int64_t)1 << 19)

template <int T>
__device__ __forceinline__ void wg_lds(float (&v)[T], const float *p) {
    if constexpr (T == 4) {
        float4 t = *reinterpret_cast<const float4 *>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
    } else {
        float2 t = *reinterpret_cast<const float2 *>(p);
        v[0] = t.x; v[1] = t.y;
    }
}

/* Tap table of the weight-gradient tile's columns q0 .. q0 + n: each column's offset in
 * an image and its (i, j) for the bounds; columns past Q are never in bounds. All
 * threads call it; it ends with a barrier. */
__device__ __forceinline__ void wg_taps(const geom &g, int q0, int n, int Q, int *sq_off, int *sq_i, int *sq_j) {
    const int Hi = (int)g.Hi, Wi = (int)g.Wi;
    for (int t = threadIdx.x; t < n; t += blockDim.x) {
        int q = q0 + t;
        if (q < Q) {
            int j = q % g.kw, i = (q / g.kw) % g.kh, ch = q / (g.kw * g.kh);
            sq_off[t] = (ch * Hi + i) * Wi + j;
            sq_i[t] = i;
            sq_j[t] = j;
        } else {
            sq_off[t] = 0;
            sq_i[t] = -(1 << 29);
            sq_j[t] = 0;
        }
    }
    __syncthreads();
}

/* r = n * P + p (ok: r in range; otherwise n = p = 0): the image n, the output position
 * p and the corner (hy0, wx0) of its input window */
struct wg_pos {
    int n, p, hy0, wx0;
    __device__ __forceinline__ wg_pos(const geom &g, int r, bool ok, int P, int Wc) {
        n = 0;
        p = 0;
        if (ok) {
            n = r / P;
            p = r - n * P;
        }
        int y = p / Wc, x = p - y * Wc;
        hy0 = y * g.sh - g.ph;
        wx0 = x * g.sw - g.pw;
    }
};

template <int BM, int BQ>
__global__ void __launch_bounds__(256) k_wgrad_direct(const float *__restrict__ A, int64_t sA,
                                                      const float *__restrict__ img, geom g, int M, int Q, int NP,
                                                      int L, float *__restrict__ out) {
    constexpr int BP = SN_WG_BP, TM = BM / 16, TQ = BQ / 16, RA = BM / 8, RB = BQ / 8;
    static_assert(BP == 32 && (TM == 2 || TM == 4) && (TQ == 2 || TQ == 4), "tile");
    __shared__ __align__(16) float As[2][BP][BM + 4];
    __shared__ __align__(16) float Bs[2][BP][BQ + 4];
    __shared__ int sq_off[BQ], sq_i[BQ], sq_j[BQ];
    const int tid = threadIdx.x, lane = tid & 31, row0 = tid >> 5;
    const int ntq = (Q + BQ - 1) / BQ;
    const int m0 = (int)(blockIdx.x / ntq) * BM, q0 = (int)(blockIdx.x % ntq) * BQ;
    const int P = (int)(g.Hc * g.Wc), Wc = (int)g.Wc, Hi = (int)g.Hi, Wi = (int)g.Wi;
    const int64_t imgN = g.Ci * g.Hi * g.Wi;
    const int r0 = (int)blockIdx.y * L, r1 = NP - r0 < L ? NP : r0 + L;
    wg_taps(g, q0, BQ, Q, sq_off, sq_i, sq_j);

    float ra[RA], rb[RB];
    /* the chunk starting at rc into registers: this thread's r = rc + lane, rows row0 + 8k */
    auto load = [&](int rc) {
        const bool ok = rc + lane < r1;
        const wg_pos w(g, rc + lane, ok, P, Wc);
        const int hy0 = w.hy0, wx0 = w.wx0;
        const float *an = A + (int64_t)w.n * sA + w.p;
        const float *bn = img + (int64_t)w.n * imgN;
#pragma unroll
        for (int k = 0; k < RA; k++) {
            int m = m0 + row0 + 8 * k;
            ra[k] = ok && m < M ? __ldg(an + m * P) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < RB; k++) {
            int t = row0 + 8 * k;
            int hy = hy0 + sq_i[t], wx = wx0 + sq_j[t];
            rb[k] = ok && (unsigned)hy < (unsigned)Hi && (unsigned)wx < (unsigned)Wi
                        ? __ldg(bn + (sq_off[t] + hy0 * Wi + wx0))
                        : 0.0f;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int k = 0; k < RA; k++) As[buf][lane][row0 + 8 * k] = ra[k];
#pragma unroll
        for (int k = 0; k < RB; k++) Bs[buf][lane][row0 + 8 * k] = rb[k];
    };

    const int tq = tid & 15, tm = tid >> 4;
    float acc[TM][TQ];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TQ; j++) acc[i][j] = 0.0f;

    int buf = 0;
    if (r0 < r1) {
        load(r0);
        store(0);
    }
    __syncthreads();
    for (int rc = r0; rc < r1; rc += BP) {
        bool more = rc + BP < r1;
        if (more) load(rc + BP);
#pragma unroll
        for (int k = 0; k < BP; k++) {
            float a[TM], b[TQ];
            wg_lds<TM>(a, &As[buf][k][tm * TM]);
            wg_lds<TQ>(b, &Bs[buf][k][tq * TQ]);
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TQ; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        /* buf ^ 1 was last read before the previous iteration's barrier */
        if (more) store(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }

    float *o = out + (int64_t)blockIdx.y * M * Q;
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + tm * TM + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TQ; j++) {
            int q = q0 + tq * TQ + j;
            if (q < Q) o[(int64_t)m * Q + q] = acc[i][j];
        }
    }
}

/* ---- the same reduction on tensor cores (bf16 mode) ----
 * Operands rounded to bf16 as they are staged (what im2col in bf16 + the bf16 GEMM
 * computes), products by m16n8k16 mma with f32 accumulation. Block (tile, s): a 64 x 64
 * tile of dW over the s-th range of r; 4 warps, each a 32 x 32 quarter (2 x 4 mma
 * tiles); chunks of 32 r staged as bf16 pairs [row][r], rows 20 words apart so the
 * fragment loads hit 32 different banks. Thread t loads r pair t % 16 of rows t / 16 + 8k. */
#define SN_WGT_TILE 64
#define SN_WGT_BK 32
#define SN_WGT_LD (SN_WGT_BK / 2 + 4)

__global__ void __launch_bounds__(128) k_wgrad_direct_bf16(const float *__restrict__ A, int64_t sA,
                                                           const float *__restrict__ img, geom g, int M, int Q,
                                                           int NP, int L, float *__restrict__ out) {
    constexpr int BT = SN_WGT_TILE, BK = SN_WGT_BK, LD = SN_WGT_LD, RK = BT / 8;
    __shared__ unsigned As[2][BT * LD];
    __shared__ unsigned Bs[2][BT * LD];
    __shared__ int sq_off[BT], sq_i[BT], sq_j[BT];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ntq = (Q + BT - 1) / BT;
    const int m0 = (int)(blockIdx.x / ntq) * BT, q0 = (int)(blockIdx.x % ntq) * BT;
    const int P = (int)(g.Hc * g.Wc), Wc = (int)g.Wc, Hi = (int)g.Hi, Wi = (int)g.Wi;
    const int64_t imgN = g.Ci * g.Hi * g.Wi;
    const int r0 = (int)blockIdx.y * L, r1 = NP - r0 < L ? NP : r0 + L;
    wg_taps(g, q0, BT, Q, sq_off, sq_i, sq_j);

    const int rp = tid & 15, rg = tid >> 4;
    float ra[RK][2], rb[RK][2];
    auto load = [&](int rc) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const bool ok = rc + 2 * rp + e < r1;
            const wg_pos w(g, rc + 2 * rp + e, ok, P, Wc);
            const int hy0 = w.hy0, wx0 = w.wx0;
            const float *an = A + (int64_t)w.n * sA + w.p;
            const float *bn = img + (int64_t)w.n * imgN + hy0 * Wi + wx0;
#pragma unroll
            for (int k = 0; k < RK; k++) {
                int m = m0 + rg + 8 * k, t = rg + 8 * k;
                ra[k][e] = ok && m < M ? __ldg(an + (int64_t)m * P) : 0.0f;
                int hy = hy0 + sq_i[t], wx = wx0 + sq_j[t];
                rb[k][e] = ok && (unsigned)hy < (unsigned)Hi && (unsigned)wx < (unsigned)Wi ? __ldg(bn + sq_off[t])
                                                                                              : 0.0f;
            }
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int k = 0; k < RK; k++) {
            As[buf][(rg + 8 * k) * LD + rp] = bf16x2(ra[k][0], ra[k][1]);
            Bs[buf][(rg + 8 * k) * LD + rp] = bf16x2(rb[k][0], rb[k][1]);
        }
    };

    const int gid = lane >> 2, tig = lane & 3, wm = (warp >> 1) * 32, wq = (warp & 1) * 32;
    float acc[2][4][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0.0f;

    int buf = 0;
    if (r0 < r1) {
        load(r0);
        store(0);
    }
    __syncthreads();
    for (int rc = r0; rc < r1; rc += BK) {
        bool more = rc + BK < r1;
        if (more) load(rc + BK);
        const unsigned *as = As[buf], *bs = Bs[buf];
#pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) {
            int kw = ks * 8 + tig;
            uint4 fa[2];
            uint2 fb[4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const unsigned *row = as + (wm + mt * 16 + gid) * LD + kw;
                fa[mt] = make_uint4(row[0], row[8 * LD], row[4], row[8 * LD + 4]);
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const unsigned *col = bs + (wq + nt * 8 + gid) * LD + kw;
                fb[nt] = make_uint2(col[0], col[4]);
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++) mma_bf16(acc[mt][nt], fa[mt], fb[nt]);
        }
        /* buf ^ 1 was last read before the previous iteration's barrier */
        if (more) store(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }

    float *o = out + (int64_t)blockIdx.y * M * Q;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int m = m0 + wm + mt * 16 + gid + 8 * h;
            if (m >= M) continue;
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int q = q0 + wq + nt * 8 + tig * 2 + e;
                    if (q < Q) o[(int64_t)m * Q + q] = acc[mt][nt][2 * h + e];
                }
        }
}

/* SN_CONV_WGRAD=gemm|direct forces a path (read on every call, so tests and A/B runs
 * can switch it); unset or anything else: the shape rule */
static int wgrad_forced(void) {
    const char *e = getenv("SN_CONV_WGRAD");
    if (!e) return 0;
    if (!strcmp(e, "gemm")) return 1;
    if (!strcmp(e, "direct")) return 2;
    if (!strcmp(e, "direct32")) return 3; /* the f32 direct kernel in bf16 mode too */
    return 0;
}

static bool wgrad_use_direct(int64_t M, int64_t Q, int64_t N, int64_t P, int64_t sA, const geom *g) {
    const int64_t lim = (int64_t)1 << 30; /* the kernel's int offsets, with room */
    if (M <= 0 || Q <= 0 || N * P >= lim || M * P >= lim || sA >= lim || g->Ci * g->Hi * g->Wi >= lim ||
        M * Q >= lim)
        return false;
    int f = wgrad_forced();
    if (f) return f >= 2;
    return M * Q <= SN_WG_DIRECT_MAX_MQ;
}

/* tile edge 32 or 64, whichever pads n less (64 on a tie) */
static int wg_tile(int64_t n) { return (n + 31) / 32 * 32 < (n + 63) / 64 * 64 ? 32 : 64; }

/* dW[M,Q] = sum over N images of A_n[M,P] cols_n[Q,P]^T, cols read from img (stride
 * Ci*Hi*Wi per image) through g: overwrites dw */
static sn_status wgrad_direct(sn_cuda *c, int64_t M, int64_t Q, int64_t N, int64_t P, const float *A, int64_t sA,
                              const float *img, const geom *g, float *dw, const char *what) {
    bool tc = c->bf16 && wgrad_forced() != 3;
    const int BP = tc ? SN_WGT_BK : SN_WG_BP;
    int bm = tc ? SN_WGT_TILE : wg_tile(M), bq = tc ? SN_WGT_TILE : wg_tile(Q);
    int64_t MQ = M * Q, NP = N * P;
    int64_t tiles = ((M + bm - 1) / bm) * ((Q + bq - 1) / bq);
    /* one wave: 4 blocks per SM (256 threads at <= 64 registers, or 128 at <= 128) */
    int64_t S = (int64_t)c->nsm * 4 / tiles;
    if (S > NP / (4 * BP)) S = NP / (4 * BP);               /* at least 4 chunks per block */
    if (S > SN_CU_PART_LIMIT / MQ) S = SN_CU_PART_LIMIT / MQ;
    if (S > 65535) S = 65535;
    if (S < 1) S = 1;
    int64_t L = (NP + S - 1) / S;
    L = (L + BP - 1) / BP * BP;
    if (L < BP) L = BP;
    S = (NP + L - 1) / L;
    if (S < 1) S = 1;
    float *out = dw;
    if (S > 1) {
        out = (float *)sn_cu_ws(c, SN_WS_OP2, (size_t)(S * MQ) * sizeof(float));
        if (!out) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    }
    dim3 grid((unsigned)tiles, (unsigned)S);
    int Mi = (int)M, Qi = (int)Q, NPi = (int)NP, Li = (int)L;
    if (tc) k_wgrad_direct_bf16<<<grid, 128, 0, c->stream>>>(A, sA, img, *g, Mi, Qi, NPi, Li, out);
    else if (bm == 64 && bq == 64) k_wgrad_direct<64, 64><<<grid, 256, 0, c->stream>>>(A, sA, img, *g, Mi, Qi, NPi, Li, out);
    else if (bm == 64) k_wgrad_direct<64, 32><<<grid, 256, 0, c->stream>>>(A, sA, img, *g, Mi, Qi, NPi, Li, out);
    else if (bq == 64) k_wgrad_direct<32, 64><<<grid, 256, 0, c->stream>>>(A, sA, img, *g, Mi, Qi, NPi, Li, out);
    else k_wgrad_direct<32, 32><<<grid, 256, 0, c->stream>>>(A, sA, img, *g, Mi, Qi, NPi, Li, out);
    CU_LAUNCHED(what);
    if (S > 1) SN_TRY(sn_cu_colsum(c, out, S, MQ, dw, false));
    return SN_OK;
}

sn_status sn_cu_conv(sn_cuda *c, sn_tensor *node) {
    sn_conv_geom cg;
    SN_TRY(sn_conv_geom_of(node, &cg));
    const sn_tensor *x = cg.x, *w = cg.w, *y = cg.y;
    geom g;
    memset(&g, 0, sizeof g);
    g.sh = (int)cg.sh, g.sw = (int)cg.sw, g.ph = (int)cg.ph, g.pw = (int)cg.pw;
    g.kh = (int)cg.kh, g.kw = (int)cg.kw;
    g.Ci = cg.C, g.Hi = cg.Hs, g.Wi = cg.Ws; /* the image side */
    g.Hc = cg.Hc, g.Wc = cg.Wc;              /* the column grid */
    const char *what = sn_op_name(node->op);
    int act = cg.act;
    float p0 = cg.p0, p1 = cg.p1;
    const int64_t N = cg.N;
    switch (node->op) {
    case SN_OP_CONV2D:
    case SN_OP_CONV2D_BWD_DATA:
    case SN_OP_CONV2D_BWD_W: {
        /* x [N,C,H,W], w [K,C,kh,kw], y [N,K,Ho,Wo] */
        int64_t C = cg.C, K = cg.R;
        int64_t Q = C * g.kh * g.kw, P = g.Hc * g.Wc, HW = g.Hi * g.Wi;
        if (node->op == SN_OP_CONV2D_BWD_W && wgrad_use_direct(K, Q, N, P, K * P, &g))
            return wgrad_direct(c, K, Q, N, P, sn_cu_f(y), K * P, sn_cu_f(x), &g, sn_cu_f(w), what);
        bool one = is_1x1(&g);
        int64_t nb = chunk_of(N, Q * P);
        float *cols = NULL;
        SN_TRY(cols_ws(c, one, nb * Q * P, &cols, what));
        const float *xd = sn_cu_f(x), *wd = sn_cu_f(w);
        float *yd = sn_cu_f(y);
        for (int64_t n0 = 0; n0 < N; n0 += nb) {
            int64_t m = N - n0 < nb ? N - n0 : nb;
            if (node->op == SN_OP_CONV2D) {
                const float *B;
                const __nv_bfloat16 *B16;
                SN_TRY(gemm_operand(c, xd + n0 * C * HW, cols, m, &g, one, &B, &B16));
                SN_TRY(sn_cu_gemm_ex(c, false, false, K, P, Q, 1.0f, wd, Q, 0, B, P, Q * P, 0.0f, yd + n0 * K * P, P,
                                     K * P, m, NULL, B16, what));
            } else if (node->op == SN_OP_CONV2D_BWD_DATA) {
                float *dst = one ? (float *)xd + n0 * C * HW : cols;
                SN_TRY(sn_cu_gemm_ex(c, true, false, Q, P, K, 1.0f, wd, Q, 0, yd + n0 * K * P, P, K * P, 0.0f, dst, P,
                                     Q * P, m, NULL, NULL, what));
                if (!one) SN_TRY(col2im(c, cols, (float *)xd + n0 * C * HW, NULL, m, &g));
            } else {
                const float *B;
                const __nv_bfloat16 *B16;
                SN_TRY(gemm_operand(c, xd + n0 * C * HW, cols, m, &g, one, &B, &B16));
                SN_TRY(wgrad(c, K, Q, P, yd + n0 * K * P, K * P, B, B16, m, n0 > 0, (float *)wd, what));
            }
        }
        if (node->op == SN_OP_CONV2D) {
            const float *bias = cg.bias ? sn_cu_f(cg.bias) : NULL;
            if (act != SN_ACT_NONE) SN_TRY(sn_cu_bias_act(c, yd, bias, N, K, P, act, p0, p1, what));
            else if (bias) SN_TRY(sn_cu_add_chanvec(c, yd, bias, N, K, P));
        }
        return SN_OK;
    }
    case SN_OP_CONVT2D:
    case SN_OP_CONVT2D_BWD_DATA:
    case SN_OP_CONVT2D_BWD_W: {
        /* x [N,C,H,W], w [C,K,kh,kw], y [N,K,Ho,Wo]; the "image" of col2im/im2col is y,
         * the cols grid is x's H x W */
        int64_t C = cg.R, K = cg.C;
        int64_t Q = K * g.kh * g.kw, P = g.Hc * g.Wc, YHW = g.Hi * g.Wi;
        if (node->op == SN_OP_CONVT2D_BWD_W && wgrad_use_direct(C, Q, N, P, C * P, &g))
            return wgrad_direct(c, C, Q, N, P, sn_cu_f(x), C * P, sn_cu_f(y), &g, sn_cu_f(w), what);
        bool one = is_1x1(&g);
        int64_t nb = chunk_of(N, Q * P);
        float *cols = NULL;
        SN_TRY(cols_ws(c, one, nb * Q * P, &cols, what));
        const float *xd = sn_cu_f(x), *wd = sn_cu_f(w);
        float *yd = sn_cu_f(y);
        const float *bias = cg.bias ? sn_cu_f(cg.bias) : NULL;
        for (int64_t n0 = 0; n0 < N; n0 += nb) {
            int64_t m = N - n0 < nb ? N - n0 : nb;
            if (node->op == SN_OP_CONVT2D) {
                float *dst = one ? yd + n0 * K * YHW : cols;
                SN_TRY(sn_cu_gemm_ex(c, true, false, Q, P, C, 1.0f, wd, Q, 0, xd + n0 * C * P, P, C * P, 0.0f, dst, P,
                                     Q * P, m, NULL, NULL, what));
                if (!one) SN_TRY(col2im(c, cols, yd + n0 * K * YHW, bias, m, &g, act, p0, p1));
            } else if (node->op == SN_OP_CONVT2D_BWD_DATA) {
                const float *B;
                const __nv_bfloat16 *B16;
                SN_TRY(gemm_operand(c, yd + n0 * K * YHW, cols, m, &g, one, &B, &B16));
                SN_TRY(sn_cu_gemm_ex(c, false, false, C, P, Q, 1.0f, wd, Q, 0, B, P, Q * P, 0.0f,
                                     (float *)xd + n0 * C * P, P, C * P, m, NULL, B16, what));
            } else {
                const float *B;
                const __nv_bfloat16 *B16;
                SN_TRY(gemm_operand(c, yd + n0 * K * YHW, cols, m, &g, one, &B, &B16));
                SN_TRY(wgrad(c, C, Q, P, xd + n0 * C * P, C * P, B, B16, m, n0 > 0, (float *)wd, what));
            }
        }
        if (one && act != SN_ACT_NONE) SN_TRY(sn_cu_bias_act(c, yd, bias, N, K, YHW, act, p0, p1, what));
        else if (one && bias) SN_TRY(sn_cu_add_chanvec(c, yd, bias, N, K, YHW));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA conv: unexpected op %s", sn_op_name(node->op));
}
