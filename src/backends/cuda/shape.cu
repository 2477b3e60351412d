/* COPY CONCAT PAD SLICE PERMUTE: copies, 2-D copies and one generic gather kernel. */
#include "backends/cuda/cuda_common.h"

/* y[i] = x[sum_d (coord_d - off_d) * st_d], or 0 where a coordinate falls outside sdim
 * (pad). I: the index type, 32-bit where every index fits (its divisions cost a fraction
 * of 64-bit ones, which bound this kernel) */
template <bool BOUNDS, typename I>
__global__ void k_gather(const float *x, float *y, I n, sn_cu_idx ix) {
    I dim[SN_MAX_DIMS], off[SN_MAX_DIMS], st[SN_MAX_DIMS], sdim[SN_MAX_DIMS];
    for (int d = 0; d < ix.nd; d++) {
        dim[d] = (I)ix.dim[d];
        off[d] = (I)ix.off[d];
        st[d] = (I)ix.st[d];
        sdim[d] = (I)ix.sdim[d];
    }
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I r = i, o = 0;
        bool in = true;
        for (int d = ix.nd - 1; d >= 0; d--) {
            I q = r / dim[d];
            I cd = r - q * dim[d] - off[d];
            r = q;
            if (BOUNDS && (cd < 0 || cd >= sdim[d])) in = false;
            o += cd * st[d];
        }
        y[i] = in ? x[o] : 0.0f;
    }
}

/* rows x cols block copy between pitched rows (floats): 16-byte moves where the
 * pointers, pitches and width allow (the concat and slice of whole inner blocks) */
__global__ void k_copy2d4(const float4 *x, int64_t sp4, float4 *y, int64_t dp4, int64_t rows, int64_t cols4) {
    SN_GRID_LOOP(i, rows * cols4) {
        int64_t r = i / cols4, q = i - r * cols4;
        y[r * dp4 + q] = x[r * sp4 + q];
    }
}
__global__ void k_copy2d(const float *x, int64_t sp, float *y, int64_t dp, int64_t rows, int64_t cols) {
    SN_GRID_LOOP(i, rows * cols) {
        int64_t r = i / cols, q = i - r * cols;
        y[r * dp + q] = x[r * sp + q];
    }
}
static sn_status copy2d(sn_cuda *c, const float *x, int64_t sp, float *y, int64_t dp, int64_t rows, int64_t cols,
                        const char *what) {
    if (rows <= 0 || cols <= 0) return SN_OK;
    if (((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 && sp % 4 == 0 && dp % 4 == 0 && cols % 4 == 0)
        k_copy2d4<<<sn_cu_blocks(c, rows * cols / 4), SN_CU_THREADS, 0, c->stream>>>(
            (const float4 *)x, sp / 4, (float4 *)y, dp / 4, rows, cols / 4);
    else
        k_copy2d<<<sn_cu_blocks(c, rows * cols), SN_CU_THREADS, 0, c->stream>>>(x, sp, y, dp, rows, cols);
    CU_LAUNCHED(what);
    return SN_OK;
}

/* a slice that cuts one dimension only (the rest whole) is one 2-D block copy: that
 * dimension, else -1 */
static int slice_axis(const sn_tensor *node, const sn_tensor *x) {
    int ax = -1;
    for (int d = 0; d < node->ndim; d++)
        if (node->ip[d] != 0 || node->shape[d] != x->shape[d]) {
            if (ax >= 0) return -1;
            ax = d;
        }
    return ax;
}

static void strides(const sn_tensor *t, int64_t *st) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->shape[d];
    }
}

sn_status sn_cu_shape(sn_cuda *c, sn_tensor *node) {
    int64_t n = sn_cu_nel(node);
    float *y = sn_cu_f(node);
    const sn_tensor *x = node->src[0];
    switch (node->op) {
    case SN_OP_COPY:
        if (node->data != x->data)
            CU_TRY(cudaMemcpyAsync(y, x->data, (size_t)n * 4, cudaMemcpyDeviceToDevice, c->stream), "copy");
        return SN_OK;
    case SN_OP_CONCAT: {
        int ax = node->ip[0] < 0 ? node->ip[0] + node->ndim : node->ip[0];
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < ax; d++) outer *= node->shape[d];
        for (int d = ax + 1; d < node->ndim; d++) inner *= node->shape[d];
        int64_t at = 0, drow = node->shape[ax] * inner;
        for (int i = 0; i < node->nsrc; i++) {
            const sn_tensor *s = node->src[i];
            int64_t w = s->shape[ax] * inner;
            SN_TRY(copy2d(c, sn_cu_f(s), w, y + at, drow, outer, w, "concat"));
            at += w;
        }
        return SN_OK;
    }
    case SN_OP_SLICE:
        if (slice_axis(node, x) >= 0) {
            int ax = slice_axis(node, x);
            int64_t outer = 1, inner = 1;
            for (int d = 0; d < ax; d++) outer *= node->shape[d];
            for (int d = ax + 1; d < node->ndim; d++) inner *= node->shape[d];
            return copy2d(c, sn_cu_f(x) + node->ip[ax] * inner, x->shape[ax] * inner, y, node->shape[ax] * inner,
                          outer, node->shape[ax] * inner, "slice");
        }
        [[fallthrough]]; /* the general gather */
    case SN_OP_PAD:
    case SN_OP_PERMUTE: {
        sn_cu_idx ix;
        memset(&ix, 0, sizeof ix);
        int64_t xst[SN_MAX_DIMS];
        strides(x, xst);
        ix.nd = node->ndim;
        for (int d = 0; d < node->ndim; d++) {
            ix.dim[d] = node->shape[d];
            if (node->op == SN_OP_PAD) {
                ix.off[d] = node->ip[2 * d];
                ix.sdim[d] = x->shape[d];
                ix.st[d] = xst[d];
            } else if (node->op == SN_OP_SLICE) {
                ix.off[d] = -(int64_t)node->ip[d];
                ix.st[d] = xst[d];
            } else {
                ix.st[d] = xst[node->ip[d]];
            }
        }
        unsigned g = sn_cu_blocks(c, n);
        bool pad = node->op == SN_OP_PAD;
        if (n < INT32_MAX && sn_cu_nel(x) < INT32_MAX) {
            if (pad) k_gather<true, int><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, (int)n, ix);
            else k_gather<false, int><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, (int)n, ix);
        } else if (pad) {
            k_gather<true, int64_t><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        } else {
            k_gather<false, int64_t><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        }
        CU_LAUNCHED(sn_op_name(node->op));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA shape: unexpected op %s", sn_op_name(node->op));
}
