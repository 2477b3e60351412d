/* CPU kernels: copy, concat, and pad/slice/permute as one strided box copy. */
#include "backends/cpu/cpu.h"

#include <string.h>

#define GRAIN 16384

/* Copy a box of shape size[] from src (strides sst) to dst (strides dst_); rows are
 * the last dim, each cut into `split` pieces (a few long rows still spread over the
 * threads). */
typedef struct {
    int nd;
    int64_t size[SN_MAX_DIMS], sst[SN_MAX_DIMS], dst_[SN_MAX_DIMS];
    const float *src;
    float *dst;
    int64_t split;
    /* concat */
    int nsrc;
    const float *srcs[SN_MAX_SRC];
    int64_t blk[SN_MAX_SRC], row;
} sjob;

/* one row of n floats: memcpy for long contiguous runs; the permutes' short runs
 * (the LSTM's layout change copies runs of 4) inline */
static inline void copy_run(float *restrict t, const float *restrict s, int64_t n, int64_t is, int64_t id) {
    if (is == 1 && id == 1) {
        if (n == 4) memcpy(t, s, 4 * sizeof *t);
        else if (n > 32) memcpy(t, s, (size_t)n * sizeof *t);
        else
            for (int64_t i = 0; i < n; i++) t[i] = s[i];
    } else {
        for (int64_t i = 0; i < n; i++) t[i * id] = s[i * is];
    }
}

static void box_rows(void *arg, int64_t u0, int64_t u1, int tid) {
    const sjob *j = arg;
    int nd = j->nd;
    int64_t inner = j->size[nd - 1], is = j->sst[nd - 1], id = j->dst_[nd - 1];
    if (j->split > 1) { /* few long rows: unit u is piece u % split of row u / split */
        for (int64_t u = u0; u < u1; u++) {
            int64_t r = u / j->split, p = u % j->split, so = 0, dof = 0;
            for (int d = nd - 2; d >= 0; d--) {
                so += (r % j->size[d]) * j->sst[d];
                dof += (r % j->size[d]) * j->dst_[d];
                r /= j->size[d];
            }
            int64_t b = inner * p / j->split, e = inner * (p + 1) / j->split;
            copy_run(j->dst + dof + b * id, j->src + so + b * is, e - b, is, id);
        }
        return;
    }
    if (nd == 1) {
        copy_run(j->dst, j->src, inner, is, id);
        return;
    }
    /* rows u0..u1: walk the second-last dim in a tight loop, the outer ones by carry;
     * so/dof: the offsets of the outer dims' index */
    int64_t idx[SN_MAX_DIMS] = {0}, r = u0, so = 0, dof = 0;
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = r % j->size[d];
        r /= j->size[d];
        if (d < nd - 2) {
            so += idx[d] * j->sst[d];
            dof += idx[d] * j->dst_[d];
        }
    }
    int64_t m = j->size[nd - 2], ms = j->sst[nd - 2], md = j->dst_[nd - 2];
    for (int64_t row = u0; row < u1;) {
        int64_t k0 = idx[nd - 2], k1 = k0 + (u1 - row) < m ? k0 + (u1 - row) : m;
        const float *s = j->src + so;
        float *t = j->dst + dof;
        for (int64_t k = k0; k < k1; k++) copy_run(t + k * md, s + k * ms, inner, is, id);
        row += k1 - k0;
        idx[nd - 2] = 0;
        for (int d = nd - 3; d >= 0; d--) { /* carry into the outer dims */
            so += j->sst[d];
            dof += j->dst_[d];
            if (++idx[d] < j->size[d]) break;
            so -= j->size[d] * j->sst[d];
            dof -= j->size[d] * j->dst_[d];
            idx[d] = 0;
        }
    }
}

static void run_box(sn_cpu *c, sjob *j) {
    /* drop unit dims (keep at least one), then merge a dim into the next where both
     * sides are contiguous across them (a channel slice becomes one run per batch) */
    int k = 0;
    for (int d = 0; d < j->nd; d++) {
        if (j->size[d] == 1 && !(d == j->nd - 1 && k == 0)) continue;
        if (k > 0 && j->sst[k - 1] == j->size[d] * j->sst[d] && j->dst_[k - 1] == j->size[d] * j->dst_[d]) {
            j->size[k - 1] *= j->size[d];
            j->sst[k - 1] = j->sst[d];
            j->dst_[k - 1] = j->dst_[d];
            continue;
        }
        j->size[k] = j->size[d];
        j->sst[k] = j->sst[d];
        j->dst_[k] = j->dst_[d];
        k++;
    }
    j->nd = k;
    int64_t inner = j->size[k - 1], rows = 1;
    for (int d = 0; d < k - 1; d++) rows *= j->size[d];
    int nth = sn_pool_size(c->pool);
    j->split = 1;
    if (rows < 4 * nth && inner >= 2 * GRAIN) { /* pieces of at least GRAIN, about 4 per thread */
        j->split = (4 * nth + rows - 1) / rows;
        if (j->split > inner / GRAIN) j->split = inner / GRAIN;
        sn_pool_for(c->pool, rows * j->split, 1, box_rows, j);
        return;
    }
    int64_t g = GRAIN / inner;
    sn_pool_for(c->pool, rows, g < 1 ? 1 : g, box_rows, j);
}

static void strides(const sn_tensor *t, int64_t *st) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->shape[d];
    }
}

/* output elements [b, e) of a concat: the pieces of each source's blocks that fall in
 * it (a flat range, so a batch of 4 still spreads over every thread) */
static void concat_range(void *arg, int64_t b, int64_t e, int tid) {
    sjob *j = arg;
    while (b < e) {
        int64_t r = b / j->row, o = b - r * j->row, start = 0;
        int i = 0;
        while (o >= start + j->blk[i]) start += j->blk[i++];
        int64_t k = o - start, len = j->blk[i] - k;
        if (len > e - b) len = e - b;
        memcpy(j->dst + b, j->srcs[i] + r * j->blk[i] + k, (size_t)len * sizeof(float));
        b += len;
    }
}

static void copy_range(void *arg, int64_t b, int64_t e, int tid) {
    sjob *j = arg;
    memcpy(j->dst + b, j->src + b, (size_t)(e - b) * sizeof(float));
}

static void zero_range(void *arg, int64_t b, int64_t e, int tid) {
    sjob *j = arg;
    memset(j->dst + b, 0, (size_t)(e - b) * sizeof(float));
}

sn_status sn_cpu_shape(sn_cpu *c, sn_tensor *node) {
    sjob j = {0};
    const sn_tensor *a = node->src[0];
    j.dst = node->data;
    j.src = a->data;
    int nd = node->ndim;
    j.nd = nd;
    switch (node->op) {
    case SN_OP_COPY:
        if (j.dst != j.src) sn_pool_for(c->pool, sn_nelem(node), 1 << 18, copy_range, &j);
        return SN_OK;
    case SN_OP_CONCAT: {
        int axis = node->ip[0];
        int64_t inner = 1;
        for (int d = axis + 1; d < nd; d++) inner *= node->shape[d];
        j.nsrc = node->nsrc;
        for (int i = 0; i < node->nsrc; i++) {
            j.srcs[i] = node->src[i]->data;
            j.blk[i] = node->src[i]->shape[axis] * inner;
        }
        j.row = node->shape[axis] * inner;
        sn_pool_for(c->pool, sn_nelem(node), 1 << 16, concat_range, &j);
        return SN_OK;
    }
    case SN_OP_PAD: {
        int64_t ost[SN_MAX_DIMS], base = 0;
        strides(node, ost);
        strides(a, j.sst);
        for (int d = 0; d < nd; d++) {
            j.size[d] = a->shape[d];
            j.dst_[d] = ost[d];
            base += node->ip[2 * d] * ost[d];
        }
        sn_pool_for(c->pool, sn_nelem(node), 1 << 18, zero_range, &j);
        j.dst += base;
        run_box(c, &j);
        return SN_OK;
    }
    case SN_OP_SLICE: {
        int64_t ist[SN_MAX_DIMS], base = 0;
        strides(a, ist);
        strides(node, j.dst_);
        for (int d = 0; d < nd; d++) {
            j.size[d] = node->shape[d];
            j.sst[d] = ist[d];
            base += node->ip[d] * ist[d];
        }
        j.src += base;
        run_box(c, &j);
        return SN_OK;
    }
    case SN_OP_PERMUTE: {
        int64_t ist[SN_MAX_DIMS];
        strides(a, ist);
        strides(node, j.dst_);
        for (int d = 0; d < nd; d++) {
            j.size[d] = node->shape[d];
            j.sst[d] = ist[node->ip[d]];
        }
        run_box(c, &j);
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_shape: op %s is not a shape op", sn_op_name(node->op));
}
