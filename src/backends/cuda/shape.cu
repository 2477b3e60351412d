/* COPY CONCAT PAD SLICE PERMUTE: copies, 2-D copies and one generic gather kernel. */
#include "backends/cuda/cuda_common.h"

/* y[i] = x[sum_d (coord_d - off_d) * st_d], or 0 where a coordinate falls outside sdim (pad) */
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
            if (w > 0 && outer > 0)
                CU_TRY(cudaMemcpy2DAsync(y + at, (size_t)drow * 4, s->data, (size_t)w * 4, (size_t)w * 4, (size_t)outer,
                                         cudaMemcpyDeviceToDevice, c->stream),
                       "concat (cudaMemcpy2DAsync)");
            at += w;
        }
        return SN_OK;
    }
    case SN_OP_PAD:
    case SN_OP_SLICE:
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
        if (node->op == SN_OP_PAD) k_gather<true><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        else k_gather<false><<<g, SN_CU_THREADS, 0, c->stream>>>(sn_cu_f(x), y, n, ix);
        CU_LAUNCHED(sn_op_name(node->op));
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "CUDA shape: unexpected op %s", sn_op_name(node->op));
}
