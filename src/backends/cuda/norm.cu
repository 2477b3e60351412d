/* LAYERNORM and SOFTMAX (last dim) with their backward ops; the row softmax is shared
 * with attention (scaled, optionally causal). extra of LAYERNORM = mean[M] | rstd[M]
 * (the second block at align64(M)), biased variance as PyTorch. */
#include "backends/cuda/cuda_common.h"

static unsigned row_threads(int64_t n) {
    int64_t t = (n + 31) / 32 * 32;
    if (t > 256) t = 256;
    if (t < 32) t = 32;
    return (unsigned)t;
}
static unsigned row_grid(int64_t rows) { return (unsigned)(rows < 65535 * 4 ? rows : 65535 * 4); }

__global__ void k_softmax(const float *x, float *y, int64_t rows, int64_t n, int causal, int64_t T, float scale) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        int64_t lim = causal ? (r % T) + 1 : n;
        if (lim > n) lim = n;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < lim; j += blockDim.x) m = fmaxf(m, xr[j] * scale);
        m = sn_block_max(m);
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < lim; j += blockDim.x) s += expf(xr[j] * scale - m);
        s = sn_block_sum(s);
        float inv = 1.0f / s;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = j < lim ? expf(xr[j] * scale - m) * inv : 0.0f;
    }
}

__global__ void k_softmax_bwd(const float *dy, const float *y, float *dx, int64_t rows, int64_t n, float scale) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *g = dy + r * n, *p = y + r * n;
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += g[j] * p[j];
        s = sn_block_sum(s);
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dx[r * n + j] = scale * p[j] * (g[j] - s);
    }
}

sn_status sn_cu_softmax_rows(sn_cuda *c, const float *x, float *y, int64_t rows, int64_t n, bool causal, int64_t T,
                             float scale) {
    if (rows <= 0 || n <= 0) return SN_OK;
    k_softmax<<<row_grid(rows), row_threads(n), 0, c->stream>>>(x, y, rows, n, causal, T > 0 ? T : 1, scale);
    CU_LAUNCHED("softmax");
    return SN_OK;
}

sn_status sn_cu_softmax_bwd_rows(sn_cuda *c, const float *dy, const float *y, float *dx, int64_t rows, int64_t n,
                                 float scale) {
    if (rows <= 0 || n <= 0) return SN_OK;
    k_softmax_bwd<<<row_grid(rows), row_threads(n), 0, c->stream>>>(dy, y, dx, rows, n, scale);
    CU_LAUNCHED("softmax backward");
    return SN_OK;
}

__global__ void k_layernorm(const float *x, const float *gamma, const float *beta, float *y, float *mean_out,
                            float *rstd_out, int64_t M, int64_t E, float eps) {
    for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
        const float *xr = x + r * E;
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < E; j += blockDim.x) s += xr[j];
        float mean = sn_block_sum(s) / (float)E;
        float q = 0.0f;
        for (int64_t j = threadIdx.x; j < E; j += blockDim.x) q += (xr[j] - mean) * (xr[j] - mean);
        float rstd = rsqrtf(sn_block_sum(q) / (float)E + eps);
        for (int64_t j = threadIdx.x; j < E; j += blockDim.x) {
            float v = (xr[j] - mean) * rstd;
            y[r * E + j] = v * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
        }
        if (threadIdx.x == 0) {
            mean_out[r] = mean;
            rstd_out[r] = rstd;
        }
    }
}

__global__ void k_layernorm_bwd_dx(const float *dy, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, float *dx, int64_t M, int64_t E) {
    for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
        const float *xr = x + r * E, *gr = dy + r * E;
        float mu = mean[r], rs = rstd[r];
        float a = 0.0f, b = 0.0f;
        for (int64_t j = threadIdx.x; j < E; j += blockDim.x) {
            float dxh = gr[j] * (gamma ? gamma[j] : 1.0f), xh = (xr[j] - mu) * rs;
            a += dxh;
            b += dxh * xh;
        }
        a = sn_block_sum(a) / (float)E;
        b = sn_block_sum(b) / (float)E;
        for (int64_t j = threadIdx.x; j < E; j += blockDim.x) {
            float dxh = gr[j] * (gamma ? gamma[j] : 1.0f), xh = (xr[j] - mu) * rs;
            dx[r * E + j] = rs * (dxh - a - xh * b);
        }
    }
}

/* partial column sums of dy*xhat and dy over row chunks */
__global__ void k_layernorm_bwd_part(const float *dy, const float *x, const float *mean, const float *rstd, int64_t M,
                                     int64_t E, int64_t chunk, float *pg, float *pb) {
    int64_t s = blockIdx.y;
    int64_t r0 = s * chunk, r1 = r0 + chunk < M ? r0 + chunk : M;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < E; j += (int64_t)gridDim.x * blockDim.x) {
        float a = 0.0f, b = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            float g = dy[r * E + j];
            a += g * (x[r * E + j] - mean[r]) * rstd[r];
            b += g;
        }
        pg[s * E + j] = a;
        pb[s * E + j] = b;
    }
}

sn_status sn_cu_norm(sn_cuda *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_SOFTMAX: {
        int64_t n = node->shape[node->ndim - 1], rows = sn_cu_nel(node) / n;
        return sn_cu_softmax_rows(c, sn_cu_f(node->src[0]), sn_cu_f(node), rows, n, false, 1, 1.0f);
    }
    case SN_OP_SOFTMAX_BWD: {
        int64_t n = node->shape[node->ndim - 1], rows = sn_cu_nel(node) / n;
        return sn_cu_softmax_bwd_rows(c, sn_cu_f(node->src[0]), sn_cu_f(node->src[1]), sn_cu_f(node), rows, n, 1.0f);
    }
    case SN_OP_LAYERNORM: {
        const sn_tensor *x = node->src[0];
        int64_t E = x->shape[x->ndim - 1], M = sn_cu_nel(x) / E;
        const float *gamma = node->nsrc > 1 && node->src[1] ? sn_cu_f(node->src[1]) : NULL;
        const float *beta = node->nsrc > 2 && node->src[2] ? sn_cu_f(node->src[2]) : NULL;
        float *mean = sn_cu_extra(node), *rstd = mean + sn_align64(M);
        k_layernorm<<<row_grid(M), row_threads(E), 0, c->stream>>>(sn_cu_f(x), gamma, beta, sn_cu_f(node), mean, rstd,
                                                                     M, E, node->fp[0]);
        CU_LAUNCHED("layernorm");
        return SN_OK;
    }
    case SN_OP_LAYERNORM_BWD: {
        const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
        const float *gamma = node->nsrc > 3 && node->src[3] ? sn_cu_f(node->src[3]) : NULL;
        int64_t E = x->shape[x->ndim - 1], M = sn_cu_nel(x) / E;
        const float *mean = sn_cu_extra(fwd), *rstd = mean + sn_align64(M);
        int64_t sizes[3] = {M * E, E, E};
        float *dx = sn_cu_f(node), *dgamma = dx + sn_packed_offset(sizes, 1), *dbeta = dx + sn_packed_offset(sizes, 2);
        k_layernorm_bwd_dx<<<row_grid(M), row_threads(E), 0, c->stream>>>(sn_cu_f(dy), sn_cu_f(x), gamma, mean, rstd,
                                                                            dx, M, E);
        CU_LAUNCHED("layernorm_bwd (dx)");
        int64_t S = M / 64;
        if (S > 256) S = 256;
        if (S < 1) S = 1;
        int64_t chunk = (M + S - 1) / S;
        S = (M + chunk - 1) / chunk;
        float *part = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(2 * S * E) * sizeof(float));
        if (!part) return sn_error_prefix(SN_ERR_NOMEM, "layernorm_bwd");
        dim3 g((unsigned)((E + 255) / 256), (unsigned)S);
        k_layernorm_bwd_part<<<g, 256, 0, c->stream>>>(sn_cu_f(dy), sn_cu_f(x), mean, rstd, M, E, chunk, part,
                                                        part + S * E);
        CU_LAUNCHED("layernorm_bwd (partials)");
        SN_TRY(sn_cu_colsum(c, part, S, E, dgamma, false));
        SN_TRY(sn_cu_colsum(c, part + S * E, S, E, dbeta, false));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA norm: unexpected op %s", sn_op_name(node->op));
}
