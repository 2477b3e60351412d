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
 * A forward node's activation epilogue (ip[SN_IP_ACT]) runs where its bias is added:
 * in col2im (conv_transpose2d), or in one bias+activation kernel after the GEMMs
 * (conv2d, 1x1 conv_transpose2d, and linear through sn_cu_bias_act). */
#include "backends/cuda/cuda_common.h"

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

/* y[(o*C + ch)*inner + i] = act(y[..] + b[ch]) in place (b may be NULL) */
template <int ACT>
__global__ void k_bias_act(float *y, const float *b, int64_t outer, int64_t C, int64_t inner, float p0, float p1) {
    SN_GRID_LOOP(i, outer * C * inner) {
        float v = y[i];
        if (b) v += b[(i / inner) % C];
        y[i] = act_dev<ACT>(v, p0, p1);
    }
}

sn_status sn_cu_bias_act(sn_cuda *c, float *y, const float *b, int64_t outer, int64_t C, int64_t inner, int act,
                         float p0, float p1, const char *where) {
    int64_t n = outer * C * inner;
    if (n <= 0 || (act == SN_ACT_NONE && !b)) return SN_OK;
    unsigned g = sn_cu_blocks(c, n);
    SN_ACT_SWITCH(act, where, k_bias_act<A><<<g, SN_CU_THREADS, 0, c->stream>>>(y, b, outer, C, inner, p0, p1));
    CU_LAUNCHED(where);
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

__global__ void k_im2col(const float *img, float *cols, int64_t nb, geom g) {
    int64_t P = g.Hc * g.Wc, Q = g.Ci * g.kh * g.kw, n = nb * Q * P;
    SN_GRID_LOOP(idx, n) {
        int64_t p = idx % P, t = idx / P;
        int64_t q = t % Q, b = t / Q;
        int j = (int)(q % g.kw), i = (int)((q / g.kw) % g.kh);
        int64_t ch = q / ((int64_t)g.kw * g.kh);
        int64_t x = p % g.Wc, y = p / g.Wc;
        int64_t hy = y * g.sh - g.ph + i, wx = x * g.sw - g.pw + j;
        float v = 0.0f;
        if (hy >= 0 && hy < g.Hi && wx >= 0 && wx < g.Wi) v = img[((b * g.Ci + ch) * g.Hi + hy) * g.Wi + wx];
        cols[idx] = v;
    }
}

/* img[b][c][h][w] = act(sum of cols entries that read it (+ bias[c])) */
template <int ACT>
__global__ void k_col2im(const float *cols, float *img, const float *bias, int64_t nb, geom g, float p0, float p1) {
    int64_t HW = g.Hi * g.Wi, n = nb * g.Ci * HW, P = g.Hc * g.Wc;
    SN_GRID_LOOP(idx, n) {
        int64_t w = idx % g.Wi, h = (idx / g.Wi) % g.Hi;
        int64_t bc = idx / HW, ch = bc % g.Ci, b = bc / g.Ci;
        const float *cb = cols + (b * g.Ci + ch) * (int64_t)g.kh * g.kw * P;
        float s = bias ? bias[ch] : 0.0f;
        for (int i = 0; i < g.kh; i++) {
            int64_t ty = h + g.ph - i;
            if (ty < 0 || ty % g.sh) continue;
            int64_t y = ty / g.sh;
            if (y >= g.Hc) continue;
            for (int j = 0; j < g.kw; j++) {
                int64_t tx = w + g.pw - j;
                if (tx < 0 || tx % g.sw) continue;
                int64_t x = tx / g.sw;
                if (x >= g.Wc) continue;
                s += cb[((int64_t)i * g.kw + j) * P + y * g.Wc + x];
            }
        }
        img[idx] = act_dev<ACT>(s, p0, p1);
    }
}

static sn_status im2col(sn_cuda *c, const float *img, float *cols, int64_t nb, const geom *g) {
    int64_t n = nb * g->Ci * g->kh * g->kw * g->Hc * g->Wc;
    k_im2col<<<sn_cu_blocks(c, n), SN_CU_THREADS, 0, c->stream>>>(img, cols, nb, *g);
    CU_LAUNCHED("im2col");
    return SN_OK;
}

static sn_status col2im(sn_cuda *c, const float *cols, float *img, const float *bias, int64_t nb, const geom *g,
                        int act = SN_ACT_NONE, float p0 = 0.0f, float p1 = 0.0f) {
    int64_t n = nb * g->Ci * g->Hi * g->Wi;
    unsigned blocks = sn_cu_blocks(c, n);
    SN_ACT_SWITCH(act, "col2im", k_col2im<A><<<blocks, SN_CU_THREADS, 0, c->stream>>>(cols, img, bias, nb, *g, p0, p1));
    CU_LAUNCHED("col2im");
    return SN_OK;
}

static bool is_1x1(const geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->Hc == g->Hi &&
           g->Wc == g->Wi;
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
                       int64_t m, bool accumulate, float *dw, const char *what) {
    int64_t MQ = M * Q;
    int64_t S = P / 512;
    if (S > 64) S = 64;
    while (S > 1 && (S + 1) * MQ > SN_CU_PART_LIMIT) S--;
    if (S < 1) S = 1;
    if (S == 1) {
        for (int64_t i = 0; i < m; i++)
            SN_TRY(sn_cu_gemm(c, false, true, M, Q, P, 1.0f, A + i * sA, P, cols + i * Q * P, P,
                              accumulate || i > 0 ? 1.0f : 0.0f, dw, Q, what));
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
            float *Ci = part + k * per * MQ;
            SN_TRY(sn_cu_gemm_ex(c, false, true, M, Q, Pc, 1.0f, Ai, P, Pc, Bi, P, Pc, 0.0f, Ci, Q, MQ, S, NULL, NULL,
                                 what));
            if (rem > 0)
                SN_TRY(sn_cu_gemm(c, false, true, M, Q, rem, 1.0f, Ai + S * Pc, P, Bi + S * Pc, P, 0.0f, Ci + S * MQ,
                                  Q, what));
        }
        SN_TRY(sn_cu_colsum(c, part, mi * per, MQ, dw, accumulate || i0 > 0));
    }
    return SN_OK;
}

sn_status sn_cu_conv(sn_cuda *c, sn_tensor *node) {
    const sn_tensor *s0 = node->src[0], *s1 = node->src[1];
    const int *ip = node->ip;
    geom g;
    memset(&g, 0, sizeof g);
    g.sh = ip[0];
    g.sw = ip[1];
    g.ph = ip[2];
    g.pw = ip[3];
    const char *what = sn_op_name(node->op);
    /* the forward ops' activation epilogue (the *_BWD ops have none) */
    bool fwd = node->op == SN_OP_CONV2D || node->op == SN_OP_CONVT2D;
    int act = fwd ? ip[SN_IP_ACT] : SN_ACT_NONE;
    float p0 = node->fp[SN_FP_ACT], p1 = node->fp[SN_FP_ACT + 1];
    switch (node->op) {
    case SN_OP_CONV2D:
    case SN_OP_CONV2D_BWD_DATA:
    case SN_OP_CONV2D_BWD_W: {
        /* x [N,C,H,W], w [K,C,kh,kw], y [N,K,Ho,Wo] */
        const sn_tensor *x, *w, *y;
        if (node->op == SN_OP_CONV2D) { x = s0; w = s1; y = node; }
        else if (node->op == SN_OP_CONV2D_BWD_DATA) { y = s0; w = s1; x = node; }
        else { y = s0; x = s1; w = node; }
        int64_t N = x->shape[0], C = x->shape[1], K = w->shape[0];
        g.Ci = C; g.Hi = x->shape[2]; g.Wi = x->shape[3];
        g.kh = (int)w->shape[2]; g.kw = (int)w->shape[3];
        g.Hc = y->shape[2]; g.Wc = y->shape[3];
        int64_t Q = C * g.kh * g.kw, P = g.Hc * g.Wc, HW = g.Hi * g.Wi;
        bool one = is_1x1(&g);
        int64_t nb = chunk_of(N, Q * P);
        float *cols = NULL;
        if (!one) {
            cols = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(nb * Q * P) * sizeof(float));
            if (!cols) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        }
        const float *xd = sn_cu_f(x), *wd = sn_cu_f(w);
        float *yd = sn_cu_f(y);
        for (int64_t n0 = 0; n0 < N; n0 += nb) {
            int64_t m = N - n0 < nb ? N - n0 : nb;
            if (node->op == SN_OP_CONV2D) {
                const float *B = xd + n0 * C * HW;
                if (!one) {
                    SN_TRY(im2col(c, B, cols, m, &g));
                    B = cols;
                }
                SN_TRY(sn_cu_gemm_ex(c, false, false, K, P, Q, 1.0f, wd, Q, 0, B, P, Q * P, 0.0f, yd + n0 * K * P, P,
                                     K * P, m, NULL, NULL, what));
            } else if (node->op == SN_OP_CONV2D_BWD_DATA) {
                float *dst = one ? (float *)xd + n0 * C * HW : cols;
                SN_TRY(sn_cu_gemm_ex(c, true, false, Q, P, K, 1.0f, wd, Q, 0, yd + n0 * K * P, P, K * P, 0.0f, dst, P,
                                     Q * P, m, NULL, NULL, what));
                if (!one) SN_TRY(col2im(c, cols, (float *)xd + n0 * C * HW, NULL, m, &g));
            } else {
                const float *B = xd + n0 * C * HW;
                if (!one) {
                    SN_TRY(im2col(c, B, cols, m, &g));
                    B = cols;
                }
                SN_TRY(wgrad(c, K, Q, P, yd + n0 * K * P, K * P, B, m, n0 > 0, (float *)wd, what));
            }
        }
        if (node->op == SN_OP_CONV2D) {
            const float *bias = node->nsrc > 2 && node->src[2] ? sn_cu_f(node->src[2]) : NULL;
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
        const sn_tensor *x, *w, *y;
        if (node->op == SN_OP_CONVT2D) { x = s0; w = s1; y = node; }
        else if (node->op == SN_OP_CONVT2D_BWD_DATA) { y = s0; w = s1; x = node; }
        else { y = s0; x = s1; w = node; }
        int64_t N = x->shape[0], C = x->shape[1], K = w->shape[1];
        g.Ci = K; g.Hi = y->shape[2]; g.Wi = y->shape[3];
        g.kh = (int)w->shape[2]; g.kw = (int)w->shape[3];
        g.Hc = x->shape[2]; g.Wc = x->shape[3];
        int64_t Q = K * g.kh * g.kw, P = g.Hc * g.Wc, YHW = g.Hi * g.Wi;
        bool one = is_1x1(&g);
        int64_t nb = chunk_of(N, Q * P);
        float *cols = NULL;
        if (!one) {
            cols = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(nb * Q * P) * sizeof(float));
            if (!cols) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        }
        const float *xd = sn_cu_f(x), *wd = sn_cu_f(w);
        float *yd = sn_cu_f(y);
        const float *bias = node->op == SN_OP_CONVT2D && node->nsrc > 2 && node->src[2] ? sn_cu_f(node->src[2]) : NULL;
        for (int64_t n0 = 0; n0 < N; n0 += nb) {
            int64_t m = N - n0 < nb ? N - n0 : nb;
            if (node->op == SN_OP_CONVT2D) {
                float *dst = one ? yd + n0 * K * YHW : cols;
                SN_TRY(sn_cu_gemm_ex(c, true, false, Q, P, C, 1.0f, wd, Q, 0, xd + n0 * C * P, P, C * P, 0.0f, dst, P,
                                     Q * P, m, NULL, NULL, what));
                if (!one) SN_TRY(col2im(c, cols, yd + n0 * K * YHW, bias, m, &g, act, p0, p1));
            } else if (node->op == SN_OP_CONVT2D_BWD_DATA) {
                const float *B = yd + n0 * K * YHW;
                if (!one) {
                    SN_TRY(im2col(c, B, cols, m, &g));
                    B = cols;
                }
                SN_TRY(sn_cu_gemm_ex(c, false, false, C, P, Q, 1.0f, wd, Q, 0, B, P, Q * P, 0.0f,
                                     (float *)xd + n0 * C * P, P, C * P, m, NULL, NULL, what));
            } else {
                const float *B = yd + n0 * K * YHW;
                if (!one) {
                    SN_TRY(im2col(c, B, cols, m, &g));
                    B = cols;
                }
                SN_TRY(wgrad(c, C, Q, P, xd + n0 * C * P, C * P, B, m, n0 > 0, (float *)wd, what));
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
