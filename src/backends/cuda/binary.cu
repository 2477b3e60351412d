/* ADD MUL SCALE REDUCE_TO EXPAND, and the small shared bias / column-sum kernels. */
#include "backends/cuda/cuda_common.h"

/* ---- shared helpers ---- */
__global__ void k_colsum(const float *x, int64_t rows, int64_t cols, float *out, int accumulate) {
    SN_GRID_LOOP(j, cols) {
        float s = 0.0f;
        for (int64_t r = 0; r < rows; r++) s += x[r * cols + j];
        out[j] = accumulate ? out[j] + s : s;
    }
}

/* partial column sums over row chunks: part[s*cols + j] */
__global__ void k_colsum_part(const float *x, int64_t rows, int64_t cols, int64_t chunk, float *part) {
    int64_t s = blockIdx.y;
    int64_t r0 = s * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += (int64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int64_t r = r0; r < r1; r++) acc += x[r * cols + j];
        part[s * cols + j] = acc;
    }
}

sn_status sn_cu_colsum(sn_cuda *c, const float *x, int64_t rows, int64_t cols, float *out, bool accumulate) {
    if (cols <= 0) return SN_OK;
    int64_t want = (int64_t)c->nsm * 2048; /* threads to keep busy */
    int64_t S = 1;
    if (cols < want && rows > 64) {
        S = want / cols;
        if (S > rows / 32) S = rows / 32;
        if (S > 1024) S = 1024;
        if (S < 1) S = 1;
    }
    if (S <= 1) {
        k_colsum<<<sn_cu_blocks(c, cols), SN_CU_THREADS, 0, c->stream>>>(x, rows, cols, out, accumulate);
        CU_LAUNCHED("column sum");
        return SN_OK;
    }
    int64_t chunk = (rows + S - 1) / S;
    S = (rows + chunk - 1) / chunk;
    float *part = (float *)sn_cu_ws(c, SN_WS_RED, (size_t)(S * cols) * sizeof(float));
    if (!part) return SN_ERR_NOMEM;
    dim3 g((unsigned)((cols + SN_CU_THREADS - 1) / SN_CU_THREADS < 65535 ? (cols + SN_CU_THREADS - 1) / SN_CU_THREADS : 65535),
           (unsigned)S);
    k_colsum_part<<<g, SN_CU_THREADS, 0, c->stream>>>(x, rows, cols, chunk, part);
    CU_LAUNCHED("column sum (partials)");
    k_colsum<<<sn_cu_blocks(c, cols), SN_CU_THREADS, 0, c->stream>>>(part, S, cols, out, accumulate);
    CU_LAUNCHED("column sum (final)");
    return SN_OK;
}

__global__ void k_add_rowvec(float *y, const float *b, int64_t rows, int64_t cols) {
    SN_GRID_LOOP(i, rows * cols) y[i] += b[i % cols];
}

sn_status sn_cu_add_rowvec(sn_cuda *c, float *y, const float *b, int64_t rows, int64_t cols) {
    if (rows * cols <= 0) return SN_OK;
    k_add_rowvec<<<sn_cu_blocks(c, rows * cols), SN_CU_THREADS, 0, c->stream>>>(y, b, rows, cols);
    CU_LAUNCHED("bias add");
    return SN_OK;
}

/* y[(o*C + ch)*inner + i] += b[ch], a launch per at most 2^31 elements */
__global__ void k_add_chanvec(float *y, const float *b, uint32_t n, sn_fastdiv inner, sn_fastdiv C) {
    SN_GRID_LOOP32(i, n) {
        uint32_t o, ch = sn_fastdiv_qr(C, sn_fastdiv_q(inner, i), &o);
        y[i] += b[ch];
    }
}

/* outer rows per launch so that each launch's indices fit 32 bits (0: one row is too big) */
int64_t sn_cu_rows32(int64_t outer, int64_t row) {
    int64_t per = row > 0 ? (((int64_t)1 << 31) - 1) / row : outer;
    return per < outer ? per : outer;
}

sn_status sn_cu_add_chanvec(sn_cuda *c, float *y, const float *b, int64_t outer, int64_t C, int64_t inner) {
    int64_t row = C * inner, per = sn_cu_rows32(outer, row);
    if (outer * row <= 0) return SN_OK;
    if (per < 1) return sn_error(SN_ERR_UNSUPPORTED, "CUDA channel bias add: %lld elements per sample, more than 2^31",
                                 (long long)row);
    sn_fastdiv fi = sn_fastdiv_make((uint32_t)inner), fc = sn_fastdiv_make((uint32_t)C);
    for (int64_t o = 0; o < outer; o += per) {
        int64_t n = (outer - o < per ? outer - o : per) * row;
        k_add_chanvec<<<sn_cu_blocks(c, n), SN_CU_THREADS, 0, c->stream>>>(y + o * row, b, (uint32_t)n, fi, fc);
        CU_LAUNCHED("channel bias add");
    }
    return SN_OK;
}

/* ---- elementwise ---- */
template <int OP>
__device__ __forceinline__ float bin(float a, float b) {
    return OP == 0 ? a + b : a * b;
}

template <int OP>
__global__ void k_bin_same(const float *a, const float *b, float *y, int64_t n) {
    SN_GRID_LOOP(i, n) y[i] = bin<OP>(a[i], b[i]);
}
template <int OP>
__global__ void k_bin_scalar(const float *a, const float *b, float *y, int64_t n) {
    float s = b[0];
    SN_GRID_LOOP(i, n) y[i] = bin<OP>(a[i], s);
}
/* b broadcast: b index from the output coordinates (stride 0 on broadcast dims) */
template <int OP>
__global__ void k_bin_bcast(const float *a, const float *b, float *y, int64_t n, sn_cu_idx ix) {
    SN_GRID_LOOP(i, n) {
        int64_t r = i, o = 0;
        for (int d = ix.nd - 1; d >= 0; d--) {
            int64_t q = r / ix.dim[d];
            o += (r - q * ix.dim[d]) * ix.st[d];
            r = q;
        }
        y[i] = bin<OP>(a[i], b[o]);
    }
}

__global__ void k_scale(const float *a, float *y, float s, int64_t n) {
    SN_GRID_LOOP(i, n) y[i] = a[i] * s;
}
__global__ void k_expand(const float *a, float *y, float s, int64_t n) {
    float v = a[0] * s;
    SN_GRID_LOOP(i, n) y[i] = v;
}

/* Strides of a right-aligned broadcast source onto out dims (0 where broadcast). */
static void bcast_idx(const sn_tensor *out, const sn_tensor *b, sn_cu_idx *ix) {
    memset(ix, 0, sizeof *ix);
    ix->nd = out->ndim;
    int64_t st = 1;
    for (int d = out->ndim - 1; d >= 0; d--) {
        ix->dim[d] = out->shape[d];
        int bd = d - (out->ndim - b->ndim);
        if (bd >= 0 && b->shape[bd] != 1) {
            ix->st[d] = st;
            st *= b->shape[bd];
        } else {
            ix->st[d] = 0;
            if (bd >= 0) st *= b->shape[bd];
        }
    }
}

/* ---- REDUCE_TO: y[o] = sum over the broadcast dims of x ---- */
typedef struct {
    int nk, nr;
    int64_t kdim[SN_MAX_DIMS], kst[SN_MAX_DIMS]; /* kept dims (y's), x strides */
    int64_t rdim[SN_MAX_DIMS], rst[SN_MAX_DIMS]; /* reduced dims, x strides */
} red_idx;

__device__ __forceinline__ int64_t red_off(int n, const int64_t *dim, const int64_t *st, int64_t r) {
    int64_t o = 0;
    for (int d = n - 1; d >= 0; d--) {
        int64_t q = r / dim[d];
        o += (r - q * dim[d]) * st[d];
        r = q;
    }
    return o;
}

__global__ void k_reduce_thread(const float *x, float *y, int64_t nout, int64_t R, red_idx ix) {
    SN_GRID_LOOP(o, nout) {
        int64_t base = red_off(ix.nk, ix.kdim, ix.kst, o);
        float s = 0.0f;
        for (int64_t r = 0; r < R; r++) s += x[base + red_off(ix.nr, ix.rdim, ix.rst, r)];
        y[o] = s;
    }
}

__global__ void k_reduce_block(const float *x, float *y, int64_t nout, int64_t R, red_idx ix) {
    for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
        int64_t base = red_off(ix.nk, ix.kdim, ix.kst, o);
        float s = 0.0f;
        for (int64_t r = threadIdx.x; r < R; r += blockDim.x) s += x[base + red_off(ix.nr, ix.rdim, ix.rst, r)];
        s = sn_block_sum(s);
        if (threadIdx.x == 0) y[o] = s;
    }
}

static sn_status reduce_to(sn_cuda *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0];
    red_idx ix;
    memset(&ix, 0, sizeof ix);
    int64_t xst[SN_MAX_DIMS], st = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        xst[d] = st;
        st *= x->shape[d];
    }
    int64_t R = 1;
    bool leading = true, seen_kept = false;
    for (int d = 0; d < x->ndim; d++) {
        int yd = d - (x->ndim - node->ndim);
        int64_t ys = yd >= 0 ? node->shape[yd] : 1;
        if (x->shape[d] == 1) continue;
        if (ys == x->shape[d]) {
            ix.kdim[ix.nk] = ys;
            ix.kst[ix.nk++] = xst[d];
            seen_kept = true;
        } else {
            if (seen_kept) leading = false;
            ix.rdim[ix.nr] = x->shape[d];
            ix.rst[ix.nr++] = xst[d];
            R *= x->shape[d];
        }
    }
    int64_t nout = sn_cu_nel(node);
    if (ix.nr == 0) {
        if (node->data != x->data)
            CU_TRY(cudaMemcpyAsync(node->data, x->data, (size_t)nout * 4, cudaMemcpyDeviceToDevice, c->stream),
                   "reduce_to (copy)");
        return SN_OK;
    }
    /* every reduced dim before every kept dim: a column sum over [R, nout] */
    if (leading) return sn_cu_colsum(c, sn_cu_f(x), R, nout, sn_cu_f(node), false);
    if (R >= 1024 || nout < (int64_t)c->nsm * 64) {
        unsigned g = (unsigned)(nout < 65535 ? nout : 65535);
        k_reduce_block<<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), sn_cu_f(node), nout, R, ix);
    } else {
        k_reduce_thread<<<sn_cu_blocks(c, nout), SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), sn_cu_f(node), nout, R, ix);
    }
    CU_LAUNCHED("reduce_to");
    return SN_OK;
}

sn_status sn_cu_binary(sn_cuda *c, sn_tensor *node) {
    int64_t n = sn_cu_nel(node);
    float *y = sn_cu_f(node);
    const float *a = sn_cu_f(node->src[0]);
    unsigned g = sn_cu_blocks(c, n);
    switch (node->op) {
    case SN_OP_ADD:
    case SN_OP_MUL: {
        const sn_tensor *b = node->src[1];
        int64_t nb = sn_cu_nel(b);
        const float *bp = sn_cu_f(b);
        bool add = node->op == SN_OP_ADD;
        if (nb == n) {
            if (add) k_bin_same<0><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n);
            else k_bin_same<1><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n);
        } else if (nb == 1) {
            if (add) k_bin_scalar<0><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n);
            else k_bin_scalar<1><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n);
        } else {
            sn_cu_idx ix;
            bcast_idx(node, b, &ix);
            if (add) k_bin_bcast<0><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n, ix);
            else k_bin_bcast<1><<<g, SN_CU_THREADS, 0, c->stream>>>(a, bp, y, n, ix);
        }
        CU_LAUNCHED(add ? "add" : "mul");
        return SN_OK;
    }
    case SN_OP_SCALE:
        k_scale<<<g, SN_CU_THREADS, 0, c->stream>>>(a, y, node->fp[0], n);
        CU_LAUNCHED("scale");
        return SN_OK;
    case SN_OP_EXPAND:
        k_expand<<<g, SN_CU_THREADS, 0, c->stream>>>(a, y, node->fp[0], n);
        CU_LAUNCHED("expand");
        return SN_OK;
    case SN_OP_REDUCE_TO: return reduce_to(c, node);
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA binary: unexpected op %s", sn_op_name(node->op));
}
