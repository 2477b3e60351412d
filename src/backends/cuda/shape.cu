/* COPY CONCAT PAD SLICE PERMUTE: copies, 2-D copies and one generic gather kernel. */
#include "backends/cuda/cuda_common.h"

/* y[i] = x[sum_d (coord_d - off_d) * st_d], or 0 where a coordinate falls outside sdim
 * (pad). Where every index fits 32 bits the coordinates come by fast division
 * (sn_fastdiv: 64-bit divisions bounded this kernel), else in 64 bits. */
typedef struct {
    int nd;
    sn_fastdiv dim[SN_MAX_DIMS];
    int off[SN_MAX_DIMS], st[SN_MAX_DIMS], sdim[SN_MAX_DIMS];
} gather32;

template <bool BOUNDS>
__global__ void k_gather32(const float *x, float *y, uint32_t n, gather32 ix) {
    SN_GRID_LOOP32(i, n) {
        uint32_t r = i;
        int o = 0;
        bool in = true;
        for (int d = ix.nd - 1; d >= 0; d--) {
            uint32_t q;
            int cd = (int)sn_fastdiv_qr(ix.dim[d], r, &q) - ix.off[d];
            r = q;
            if (BOUNDS && (cd < 0 || cd >= ix.sdim[d])) in = false;
            o += cd * ix.st[d];
        }
        y[i] = in ? x[o] : 0.0f;
    }
}

template <bool BOUNDS>
__global__ void k_gather(const float *x, float *y, int64_t n, sn_cu_idx ix) {
    SN_GRID_LOOP(i, n) {
        int64_t r = i, o = 0;
        bool in = true;
        for (int d = ix.nd - 1; d >= 0; d--) {
            int64_t q = r / ix.dim[d];
            int64_t cd = r - q * ix.dim[d] - ix.off[d];
            r = q;
            if (BOUNDS && (cd < 0 || cd >= ix.sdim[d])) in = false;
            o += cd * ix.st[d];
        }
        y[i] = in ? x[o] : 0.0f;
    }
}

/* rows x cols block copy between pitched rows of T (float or float4: 16-byte moves
 * where the pointers, pitches and width allow), n = rows * cols < 2^31 a launch */
template <typename T>
__global__ void k_copy2d(const T *x, int64_t sp, T *y, int64_t dp, uint32_t n, sn_fastdiv cols) {
    SN_GRID_LOOP32(i, n) {
        uint32_t r, q = sn_fastdiv_qr(cols, i, &r);
        y[r * dp + q] = x[r * sp + q];
    }
}

template <typename T>
static sn_status copy2d_as(sn_cuda *c, const T *x, int64_t sp, T *y, int64_t dp, int64_t rows, int64_t cols,
                           const char *what) {
    int64_t per = sn_cu_rows32(rows, cols);
    if (per < 1) return sn_error(SN_ERR_UNSUPPORTED, "CUDA %s: rows of %lld elements, more than 2^31", what,
                                 (long long)cols);
    sn_fastdiv fc = sn_fastdiv_make((uint32_t)cols);
    for (int64_t r = 0; r < rows; r += per) {
        int64_t n = (rows - r < per ? rows - r : per) * cols;
        k_copy2d<T><<<sn_cu_blocks(c, n), SN_CU_THREADS, 0, c->stream>>>(x + r * sp, sp, y + r * dp, dp, (uint32_t)n, fc);
        CU_LAUNCHED(what);
    }
    return SN_OK;
}

static sn_status copy2d(sn_cuda *c, const float *x, int64_t sp, float *y, int64_t dp, int64_t rows, int64_t cols,
                        const char *what) {
    if (rows <= 0 || cols <= 0) return SN_OK;
    if (((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 && sp % 4 == 0 && dp % 4 == 0 && cols % 4 == 0)
        return copy2d_as(c, (const float4 *)x, sp / 4, (float4 *)y, dp / 4, rows, cols / 4, what);
    return copy2d_as(c, x, sp, y, dp, rows, cols, what);
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
        if (const int ax = slice_axis(node, x); ax >= 0) {
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
        bool pad = node->op == SN_OP_PAD, small = n < INT32_MAX && sn_cu_nel(x) < INT32_MAX;
        for (int d = 0; small && d < ix.nd; d++) /* offsets and pads must fit an int too */
            small = ix.off[d] > INT32_MIN / 2 && ix.off[d] < INT32_MAX / 2;
        if (small) {
            gather32 g32;
            memset(&g32, 0, sizeof g32);
            g32.nd = ix.nd;
            for (int d = 0; d < ix.nd; d++) {
                g32.dim[d] = sn_fastdiv_make((uint32_t)ix.dim[d]);
                g32.off[d] = (int)ix.off[d], g32.st[d] = (int)ix.st[d], g32.sdim[d] = (int)ix.sdim[d];
            }
            if (pad) k_gather32<true><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, (uint32_t)n, g32);
            else k_gather32<false><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, (uint32_t)n, g32);
        } else if (pad) {
            k_gather<true><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        } else {
            k_gather<false><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        }
        CU_LAUNCHED(sn_op_name(node->op));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA shape: unexpected op %s", sn_op_name(node->op));
}
