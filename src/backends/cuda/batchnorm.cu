/* BATCHNORM (2-D, NCHW) forward and backward. Per-channel statistics are reduced in
 * a fixed two-level order (blocks of a channel write partials, then one pass sums
 * them), so replays give bit-identical results. extra = mean[C] | invstd[C] (the
 * second block at align64(C)); running_var is updated with the unbiased variance.
 * Fused ELU (ip[1] = 1, alpha fp[2]): the forward applies ELU to the normalised
 * value, the backward turns dy into dz = dy * (y > 0 ? 1 : y + alpha) as it reads
 * it (y: the forward's output), so no extra pass or buffer. */
#include "backends/cuda/cuda_common.h"

#define BN_THREADS 256

/* A statistics thread walks elements m = n*HW + i of its channel blockDim.x apart,
 * carrying (n, i) from one to the next: one division per thread, not per element. */
#define SN_BN_WALK(m, o, m0, m1, ch, C, HW)                                                               \
    for (int64_t m = (m0) + threadIdx.x, n_ = m / (HW), i_ = m - n_ * (HW), o = (n_ * (C) + (ch)) * (HW) + i_; \
         m < (m1); m += blockDim.x, i_ += blockDim.x, o = sn_bn_next(&n_, &i_, C, ch, HW))
__device__ __forceinline__ int64_t sn_bn_next(int64_t *n, int64_t *i, int64_t C, int64_t ch, int64_t HW) {
    while (*i >= HW) *i -= HW, ++*n;
    return (*n * C + ch) * HW + *i;
}

/* Elementwise passes over [N, C, HW]: block row y walks planes (n, ch), its x blocks the
 * plane, so the channel comes without a division per element. */
#define SN_BN_PLANES(p, ch, i, NC, C, HW)                                                              \
    for (int64_t p = blockIdx.y; p < (NC); p += gridDim.y)                                             \
        for (int64_t ch = p % (C), i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (HW);        \
             i += (int64_t)gridDim.x * blockDim.x)
static dim3 bn_plane_grid(const sn_cuda *c, int64_t NC, int64_t HW) {
    int64_t gx = (HW + SN_CU_THREADS - 1) / SN_CU_THREADS, want = (int64_t)c->nsm * 8;
    int64_t gy = NC < 65535 ? NC : 65535;
    if (gx * gy > want) gx = (want + gy - 1) / gy;
    if (gx < 1) gx = 1;
    return dim3((unsigned)gx, (unsigned)gy);
}

/* the gradient w.r.t. the BN output: dy itself, or through the fused ELU (y != NULL) */
__device__ __forceinline__ float bn_dz(const float *dy, const float *y, float alpha, int64_t o) {
    float g = dy[o];
    if (y) {
        float v = y[o];
        g = v > 0.0f ? g : g * (v + alpha);
    }
    return g;
}

/* part[ch*S + s] = sum over the block's range of x (MODE 0) or of (x-mean)^2 (MODE 1),
 * mean = (sum of the Sp partials in psum) / cnt (synchronised: the group's sum, Sp 1) */
template <int MODE>
__global__ void k_bn_part(const float *x, int64_t C, int64_t HW, int64_t M, int S, int64_t chunk, const float *psum,
                          int Sp, float cnt, float *part) {
    int64_t ch = blockIdx.x;
    int s = blockIdx.y;
    float mean = 0.0f;
    if (MODE == 1) {
        float t = 0.0f;
        for (int k = 0; k < Sp; k++) t += psum[ch * Sp + k];
        mean = t / cnt;
    }
    int64_t m0 = s * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
    float acc = 0.0f;
    SN_BN_WALK(m, o, m0, m1, ch, C, HW) {
        float v = x[o];
        if (MODE == 0) acc += v;
        else acc += (v - mean) * (v - mean);
    }
    acc = sn_block_sum(acc);
    if (threadIdx.x == 0) part[ch * S + s] = acc;
}

/* tot[ch] = sum of the S partials of channel ch (synchronised BatchNorm: what the group sums) */
__global__ void k_bn_sum_parts(const float *part, int S, int64_t C, float *tot) {
    SN_GRID_LOOP(ch, C) {
        float t = 0.0f;
        for (int k = 0; k < S; k++) t += part[ch * S + k];
        tot[ch] = t;
    }
}

__global__ void k_bn_stats(const float *psum, const float *psq, int S, int64_t C, int64_t M, float eps, float mom,
                           float *rmean, float *rvar, float *mean_out, float *invstd_out) {
    SN_GRID_LOOP(ch, C) {
        float t = 0.0f, q = 0.0f;
        for (int k = 0; k < S; k++) t += psum[ch * S + k];
        for (int k = 0; k < S; k++) q += psq[ch * S + k];
        float mean = t / (float)M, var = q / (float)M;
        mean_out[ch] = mean;
        invstd_out[ch] = rsqrtf(var + eps);
        if (rmean) rmean[ch] = (1.0f - mom) * rmean[ch] + mom * mean;
        if (rvar) rvar[ch] = (1.0f - mom) * rvar[ch] + mom * (M > 1 ? var * (float)M / (float)(M - 1) : var);
    }
}

__global__ void k_bn_eval_stats(const float *rmean, const float *rvar, int64_t C, float eps, float *mean_out,
                                float *invstd_out) {
    SN_GRID_LOOP(ch, C) {
        mean_out[ch] = rmean[ch];
        invstd_out[ch] = rsqrtf(rvar[ch] + eps);
    }
}

__global__ void k_bn_apply(const float *x, float *y, const float *mean, const float *invstd, const float *gamma,
                           const float *beta, int64_t C, int64_t HW, int64_t NC, int elu, float alpha) {
    SN_BN_PLANES(p, ch, j, NC, C, HW) {
        const int64_t i = p * HW + j;
        float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
        float z = (x[i] - mean[ch]) * invstd[ch] * g + b;
        if (elu) z = z > 0.0f ? z : alpha * expm1f(z);
        y[i] = z;
    }
}

/* partials of sum(dy) and sum(dy * xhat) */
__global__ void k_bn_bwd_part(const float *dy, const float *yf, float alpha, const float *x, const float *mean,
                              const float *invstd, int64_t C, int64_t HW, int64_t M, int S, int64_t chunk, float *pdy,
                              float *pdyx) {
    int64_t ch = blockIdx.x;
    int s = blockIdx.y;
    float mu = mean[ch], is = invstd[ch];
    int64_t m0 = s * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
    float a = 0.0f, b = 0.0f;
    SN_BN_WALK(m, o, m0, m1, ch, C, HW) {
        float g = bn_dz(dy, yf, alpha, o);
        a += g;
        b += g * (x[o] - mu) * is;
    }
    a = sn_block_sum(a);
    b = sn_block_sum(b);
    if (threadIdx.x == 0) {
        pdy[ch * S + s] = a;
        pdyx[ch * S + s] = b;
    }
}

__global__ void k_bn_bwd_final(const float *pdy, const float *pdyx, int S, int64_t C, float *dgamma, float *dbeta) {
    SN_GRID_LOOP(ch, C) {
        float a = 0.0f, b = 0.0f;
        for (int k = 0; k < S; k++) a += pdy[ch * S + k];
        for (int k = 0; k < S; k++) b += pdyx[ch * S + k];
        dbeta[ch] = a;
        dgamma[ch] = b;
    }
}

__global__ void k_bn_bwd_dx(const float *dy, const float *yf, float alpha, const float *x, const float *mean,
                            const float *invstd,
                            const float *gamma, const float *dgamma, const float *dbeta, int64_t C, int64_t HW,
                            int64_t M, int training, int64_t NC, float *dx) {
    SN_BN_PLANES(p, ch, j, NC, C, HW) {
        const int64_t i = p * HW + j;
        float g = gamma ? gamma[ch] : 1.0f, is = invstd[ch], d = bn_dz(dy, yf, alpha, i);
        if (training) {
            float xh = (x[i] - mean[ch]) * is;
            dx[i] = g * is / (float)M * ((float)M * d - dbeta[ch] - xh * dgamma[ch]);
        } else {
            dx[i] = d * g * is;
        }
    }
}

/* blocks per channel so the whole grid fills the GPU */
static int bn_split(const sn_cuda *c, int64_t C, int64_t M, int64_t *chunk) {
    int64_t S = ((int64_t)c->nsm * 4 + C - 1) / C;
    int64_t maxS = (M + BN_THREADS * 4 - 1) / (BN_THREADS * 4);
    if (S > maxS) S = maxS;
    if (S > 256) S = 256;
    if (S < 1) S = 1;
    *chunk = (M + S - 1) / S;
    return (int)((M + *chunk - 1) / *chunk);
}

sn_status sn_cu_batchnorm(sn_cuda *c, sn_tensor *node) {
    if (node->op == SN_OP_BATCHNORM) {
        const sn_tensor *x = node->src[0];
        int64_t N = x->shape[0], C = x->shape[1], HW = sn_cu_nel(x) / (N * C), M = N * HW, n = sn_cu_nel(x);
        const float *gamma = node->nsrc > 1 && node->src[1] ? sn_cu_f(node->src[1]) : NULL;
        const float *beta = node->nsrc > 2 && node->src[2] ? sn_cu_f(node->src[2]) : NULL;
        float *rmean = node->nsrc > 3 && node->src[3] ? sn_cu_f(node->src[3]) : NULL;
        float *rvar = node->nsrc > 4 && node->src[4] ? sn_cu_f(node->src[4]) : NULL;
        float *mean = sn_cu_extra(node), *invstd = mean + sn_align64(C);
        float eps = node->fp[0], mom = node->fp[1];
        if (node->ip[0] && node->ip[2]) {
            /* synchronised: the group's sum, then its sum of squared deviations from the global mean */
            int64_t chunk, Mg = M * (c->coll ? c->coll->world : 1);
            int S = bn_split(c, C, M, &chunk);
            float *part = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(2 * C * S + 2 * C) * sizeof(float));
            if (!part) return sn_error_prefix(SN_ERR_NOMEM, "batchnorm2d");
            float *tot = part + 2 * C * S;
            dim3 g((unsigned)C, (unsigned)S);
            k_bn_part<0><<<g, BN_THREADS, 0, c->stream>>>(sn_cu_f(x), C, HW, M, S, chunk, NULL, 0, 1.0f, part);
            CU_LAUNCHED("batchnorm2d (sum)");
            k_bn_sum_parts<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(part, S, C, tot);
            CU_LAUNCHED("batchnorm2d (channel sums)");
            SN_TRY(sn_cu_coll_sum(c, tot, (size_t)C));
            k_bn_part<1><<<g, BN_THREADS, 0, c->stream>>>(sn_cu_f(x), C, HW, M, S, chunk, tot, 1, (float)Mg,
                                                           part + C * S);
            CU_LAUNCHED("batchnorm2d (variance)");
            k_bn_sum_parts<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(part + C * S, S, C, tot + C);
            CU_LAUNCHED("batchnorm2d (channel sums)");
            SN_TRY(sn_cu_coll_sum(c, tot + C, (size_t)C));
            k_bn_stats<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(tot, tot + C, 1, C, Mg, eps, mom, rmean,
                                                                             rvar, mean, invstd);
            CU_LAUNCHED("batchnorm2d (statistics)");
        } else if (node->ip[0]) {
            int64_t chunk;
            int S = bn_split(c, C, M, &chunk);
            float *part = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(2 * C * S) * sizeof(float));
            if (!part) return sn_error_prefix(SN_ERR_NOMEM, "batchnorm2d");
            dim3 g((unsigned)C, (unsigned)S);
            k_bn_part<0><<<g, BN_THREADS, 0, c->stream>>>(sn_cu_f(x), C, HW, M, S, chunk, NULL, 0, 1.0f, part);
            CU_LAUNCHED("batchnorm2d (sum)");
            k_bn_part<1><<<g, BN_THREADS, 0, c->stream>>>(sn_cu_f(x), C, HW, M, S, chunk, part, S, (float)M,
                                                           part + C * S);
            CU_LAUNCHED("batchnorm2d (variance)");
            k_bn_stats<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(part, part + C * S, S, C, M, eps, mom,
                                                                             rmean, rvar, mean, invstd);
            CU_LAUNCHED("batchnorm2d (statistics)");
        } else {
            if (!rmean || !rvar) return sn_error(SN_ERR_INVALID_ARG, "batchnorm2d in eval mode needs running stats");
            k_bn_eval_stats<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(rmean, rvar, C, eps, mean, invstd);
            CU_LAUNCHED("batchnorm2d (eval statistics)");
        }
        (void)n;
        k_bn_apply<<<bn_plane_grid(c, N * C, HW), SN_CU_THREADS, 0, c->stream>>>(
            sn_cu_f(x), sn_cu_f(node), mean, invstd, gamma, beta, C, HW, N * C, node->ip[1] != 0, node->fp[2]);
        CU_LAUNCHED("batchnorm2d (normalise)");
        return SN_OK;
    }
    if (node->op == SN_OP_BATCHNORM_BWD) {
        const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
        const float *gamma = node->nsrc > 3 && node->src[3] ? sn_cu_f(node->src[3]) : NULL;
        int64_t N = x->shape[0], C = x->shape[1], n = sn_cu_nel(x), HW = n / (N * C), M = N * HW;
        int training = fwd->op == SN_OP_BATCHNORM ? fwd->ip[0] : node->ip[0];
        const float *mean = sn_cu_extra(fwd), *invstd = mean + sn_align64(C);
        const float *yf = node->ip[1] ? sn_cu_f(fwd) : NULL; /* fused ELU: its output */
        float alpha = node->fp[2];
        int64_t sizes[3] = {n, C, C};
        float *dx = sn_cu_f(node), *dgamma = dx + sn_packed_offset(sizes, 1), *dbeta = dx + sn_packed_offset(sizes, 2);
        int64_t chunk;
        int S = bn_split(c, C, M, &chunk);
        bool sync = node->ip[2] && training;
        float *part = (float *)sn_cu_ws(c, SN_WS_OP, (size_t)(2 * C * S + (sync ? 2 * C : 0)) * sizeof(float));
        if (!part) return sn_error_prefix(SN_ERR_NOMEM, "batchnorm2d_bwd");
        dim3 g((unsigned)C, (unsigned)S);
        k_bn_bwd_part<<<g, BN_THREADS, 0, c->stream>>>(sn_cu_f(dy), yf, alpha, sn_cu_f(x), mean, invstd, C, HW, M, S,
                                                       chunk, part, part + C * S);
        CU_LAUNCHED("batchnorm2d_bwd (partials)");
        k_bn_bwd_final<<<sn_cu_blocks(c, C), SN_CU_THREADS, 0, c->stream>>>(part, part + C * S, S, C, dgamma, dbeta);
        CU_LAUNCHED("batchnorm2d_bwd (dgamma, dbeta)");
        const float *sdyx = dgamma, *sdy = dbeta;
        int64_t Mg = M;
        if (sync) { /* dx from the group's sums; dgamma/dbeta stay this process's (averaged as gradients) */
            float *tot = part + 2 * C * S;
            CU_TRY(cudaMemcpyAsync(tot, dbeta, (size_t)C * sizeof(float), cudaMemcpyDeviceToDevice, c->stream),
                   "batchnorm2d_bwd (sums)");
            CU_TRY(cudaMemcpyAsync(tot + C, dgamma, (size_t)C * sizeof(float), cudaMemcpyDeviceToDevice, c->stream),
                   "batchnorm2d_bwd (sums)");
            SN_TRY(sn_cu_coll_sum(c, tot, (size_t)(2 * C)));
            sdy = tot;
            sdyx = tot + C;
            Mg = M * (c->coll ? c->coll->world : 1);
        }
        k_bn_bwd_dx<<<bn_plane_grid(c, N * C, HW), SN_CU_THREADS, 0, c->stream>>>(
            sn_cu_f(dy), yf, alpha, sn_cu_f(x), mean, invstd, gamma, sdyx, sdy, C, HW, Mg, training, N * C, dx);
        CU_LAUNCHED("batchnorm2d_bwd (dx)");
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA batchnorm: unexpected op %s", sn_op_name(node->op));
}
