/* CPU kernels: broadcasting add/mul, scale, reduce_to, expand. */
#include "backends/cpu/cpu.h"

#include <string.h>

#define GRAIN 16384

/* Broadcast layout of `small` onto `big` after merging neighbouring dims with the
 * same broadcast status: size[d] and the stride of `small` (0 where broadcast). */
typedef struct {
    int nd;
    int64_t size[SN_MAX_DIMS], sstr[SN_MAX_DIMS];
    bool full[SN_MAX_DIMS];
} bcast;

static void bcast_init(bcast *s, const sn_tensor *big, const sn_tensor *small) {
    int off = big->ndim - small->ndim;
    s->nd = 0;
    for (int d = 0; d < big->ndim; d++) {
        int64_t n = big->shape[d];
        if (n == 1) continue;
        bool full = d >= off && small->shape[d - off] != 1;
        if (s->nd > 0 && s->full[s->nd - 1] == full) s->size[s->nd - 1] *= n;
        else {
            s->size[s->nd] = n;
            s->full[s->nd] = full;
            s->nd++;
        }
    }
    if (s->nd == 0) {
        s->nd = 1;
        s->size[0] = 1;
        s->full[0] = true;
    }
    int64_t st = 1;
    for (int d = s->nd - 1; d >= 0; d--) {
        s->sstr[d] = s->full[d] ? st : 0;
        if (s->full[d]) st *= s->size[d];
    }
}

/* Offset into `small` of outer row r (all dims but the last). */
static int64_t bcast_row_offset(const bcast *s, int64_t r) {
    int64_t o = 0;
    for (int d = s->nd - 2; d >= 0; d--) {
        o += (r % s->size[d]) * s->sstr[d];
        r /= s->size[d];
    }
    return o;
}

typedef struct {
    const float *a, *b;
    float *y;
    bcast s;
    int op;
    float f;
    double *part;
    int64_t nout;
} bjob;

static void binary_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    bjob *j = arg;
    int64_t inner = j->s.size[j->s.nd - 1];
    bool full = j->s.full[j->s.nd - 1];
    for (int64_t r = r0; r < r1; r++) {
        const float *a = j->a + r * inner;
        const float *b = j->b + bcast_row_offset(&j->s, r);
        float *y = j->y + r * inner;
        if (j->op == SN_OP_ADD) {
            if (full)
                for (int64_t i = 0; i < inner; i++) y[i] = a[i] + b[i];
            else {
                float bv = b[0];
                for (int64_t i = 0; i < inner; i++) y[i] = a[i] + bv;
            }
        } else {
            if (full)
                for (int64_t i = 0; i < inner; i++) y[i] = a[i] * b[i];
            else {
                float bv = b[0];
                for (int64_t i = 0; i < inner; i++) y[i] = a[i] * bv;
            }
        }
    }
}

static void scale_range(void *arg, int64_t b, int64_t e, int tid) {
    bjob *j = arg;
    float f = j->f;
    for (int64_t i = b; i < e; i++) j->y[i] = j->a[i] * f;
}

/* same shapes: one flat range (no per-row broadcast arithmetic, whatever the last dim) */
static void binary_flat(void *arg, int64_t b, int64_t e, int tid) {
    bjob *j = arg;
    const float *x = j->a, *z = j->b;
    float *y = j->y;
    if (j->op == SN_OP_ADD)
        for (int64_t i = b; i < e; i++) y[i] = x[i] + z[i];
    else
        for (int64_t i = b; i < e; i++) y[i] = x[i] * z[i];
}

static void fill_range(void *arg, int64_t b, int64_t e, int tid) {
    bjob *j = arg;
    for (int64_t i = b; i < e; i++) j->y[i] = j->f;
}

/* reduce_to: each chunk sums its rows into its own double buffer */
static void reduce_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    bjob *j = arg;
    double *acc = j->part + (size_t)tid * (size_t)j->nout;
    memset(acc, 0, (size_t)j->nout * sizeof *acc);
    int64_t inner = j->s.size[j->s.nd - 1];
    bool full = j->s.full[j->s.nd - 1];
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->a + r * inner;
        double *o = acc + bcast_row_offset(&j->s, r);
        if (full)
            for (int64_t i = 0; i < inner; i++) o[i] += x[i];
        else {
            double s = 0;
            for (int64_t i = 0; i < inner; i++) s += x[i];
            o[0] += s;
        }
    }
}

static int64_t row_grain(int64_t inner) {
    int64_t g = GRAIN / (inner > 0 ? inner : 1);
    return g < 1 ? 1 : g;
}

sn_status sn_cpu_binary(sn_cpu *c, sn_tensor *node) {
    bjob j = {0};
    j.y = node->data;
    j.a = node->src[0]->data;
    int64_t n = sn_nelem(node);
    switch (node->op) {
    case SN_OP_ADD:
    case SN_OP_MUL: {
        j.b = node->src[1]->data;
        j.op = node->op;
        if (sn_nelem(node->src[1]) == n && sn_nelem(node->src[0]) == n) {
            sn_pool_for(c->pool, n, GRAIN, binary_flat, &j);
            return SN_OK;
        }
        bcast_init(&j.s, node, node->src[1]);
        int64_t inner = j.s.size[j.s.nd - 1];
        sn_pool_for(c->pool, n / inner, row_grain(inner), binary_rows, &j);
        return SN_OK;
    }
    case SN_OP_SCALE:
        j.f = node->fp[0];
        sn_pool_for(c->pool, n, GRAIN, scale_range, &j);
        return SN_OK;
    case SN_OP_EXPAND:
        j.f = j.a[0] * node->fp[0];
        sn_pool_for(c->pool, n, GRAIN, fill_range, &j);
        return SN_OK;
    case SN_OP_REDUCE_TO: {
        const sn_tensor *x = node->src[0];
        int64_t nin = sn_nelem(x);
        if (nin == n) {
            if (node->data != x->data) memcpy(node->data, x->data, (size_t)n * sizeof(float));
            return SN_OK;
        }
        bcast_init(&j.s, x, node);
        int64_t inner = j.s.size[j.s.nd - 1];
        int nt = sn_pool_size(c->pool);
        j.nout = n;
        j.part = (double *)sn_cpu_scratch(c, (size_t)nt * (size_t)n * 2);
        if (!j.part) return SN_ERR_NOMEM;
        int64_t rows = nin / inner;
        /* chunks that do not run leave their buffers untouched: they must read as zero */
        for (int t = 0; t < nt; t++) memset(j.part + (size_t)t * n, 0, (size_t)n * sizeof(double));
        sn_pool_for(c->pool, rows, row_grain(inner), reduce_rows, &j);
        float *y = node->data;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < nt; t++) s += j.part[(size_t)t * n + i];
            y[i] = (float)s;
        }
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_binary: op %s is not a binary op", sn_op_name(node->op));
}
