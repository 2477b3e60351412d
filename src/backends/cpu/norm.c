/* CPU kernels: LAYERNORM, SOFTMAX and their backward ops, parallel over rows. */
#include "backends/cpu/cpu.h"

#include <math.h>
#include <string.h>

typedef struct {
    const float *x, *g, *b, *dy, *y;
    float *out, *mean, *rstd, *part; /* part: per-task [2E] dgamma|dbeta partial sums */
    int64_t E, chunk;
    float eps;
} norm_job;

static void ln_fwd(void *arg, int64_t r0, int64_t r1, int tid) {
    const norm_job *j = arg;
    int64_t E = j->E;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * E;
        float *y = j->out + r * E;
        double s = 0, s2 = 0;
        for (int64_t e = 0; e < E; e++) s += x[e];
        double mu = s / E;
        for (int64_t e = 0; e < E; e++) s2 += (x[e] - mu) * (x[e] - mu);
        float rs = (float)(1.0 / sqrt(s2 / E + j->eps)), m = (float)mu;
        for (int64_t e = 0; e < E; e++) y[e] = (x[e] - m) * rs * j->g[e] + j->b[e];
        j->mean[r] = m;
        j->rstd[r] = rs;
    }
}

/* dx = rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)); dgamma, dbeta per task */
static void ln_bwd(void *arg, int64_t r0, int64_t r1, int tid) {
    const norm_job *j = arg;
    int64_t E = j->E;
    float *pg = j->part + (r0 / j->chunk) * 2 * E, *pb = pg + E;
    memset(pg, 0, (size_t)(2 * E) * sizeof *pg);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * E, *dy = j->dy + r * E;
        float *dx = j->out + r * E, m = j->mean[r], rs = j->rstd[r];
        double a = 0, bsum = 0;
        for (int64_t e = 0; e < E; e++) {
            float xh = (x[e] - m) * rs, dg = dy[e] * j->g[e];
            a += dg;
            bsum += dg * xh;
            pg[e] += dy[e] * xh;
            pb[e] += dy[e];
        }
        float ma = (float)(a / E), mb = (float)(bsum / E);
        for (int64_t e = 0; e < E; e++) {
            float xh = (x[e] - m) * rs;
            dx[e] = rs * (dy[e] * j->g[e] - ma - xh * mb);
        }
    }
}

static void sm_fwd(void *arg, int64_t r0, int64_t r1, int tid) {
    const norm_job *j = arg;
    int64_t E = j->E;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * E;
        float *y = j->out + r * E, mx = x[0];
        for (int64_t e = 1; e < E; e++) mx = x[e] > mx ? x[e] : mx;
        double s = 0;
        for (int64_t e = 0; e < E; e++) s += (y[e] = expf(x[e] - mx));
        float inv = (float)(1.0 / s);
        for (int64_t e = 0; e < E; e++) y[e] *= inv;
    }
}

static void sm_bwd(void *arg, int64_t r0, int64_t r1, int tid) {
    const norm_job *j = arg;
    int64_t E = j->E;
    for (int64_t r = r0; r < r1; r++) {
        const float *y = j->y + r * E, *dy = j->dy + r * E;
        float *dx = j->out + r * E;
        double s = 0;
        for (int64_t e = 0; e < E; e++) s += dy[e] * y[e];
        float fs = (float)s;
        for (int64_t e = 0; e < E; e++) dx[e] = y[e] * (dy[e] - fs);
    }
}

sn_status sn_cpu_norm(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->op == SN_OP_LAYERNORM_BWD || node->op == SN_OP_SOFTMAX_BWD ? node->src[1] : node->src[0];
    int64_t E = x->shape[x->ndim - 1], M = sn_nelem(x) / E;
    norm_job j = {.x = x->data, .out = node->data, .E = E};
    int64_t grain = 4096 / E + 1;
    switch (node->op) {
    case SN_OP_LAYERNORM: {
        float *ex = sn_extra_ptr(node);
        j.g = node->src[1]->data;
        j.b = node->src[2]->data;
        j.mean = ex;
        j.rstd = ex + sn_align64(M);
        j.eps = node->fp[0];
        sn_pool_for(c->pool, M, grain, ln_fwd, &j);
        return SN_OK;
    }
    case SN_OP_LAYERNORM_BWD: {
        const sn_tensor *fwd = node->src[2];
        float *ex = sn_extra_ptr(fwd);
        int nt = sn_pool_size(c->pool);
        j.dy = node->src[0]->data;
        j.g = node->src[3]->data;
        j.mean = ex;
        j.rstd = ex + sn_align64(M);
        /* the pool splits [0,M) into at most nt equal chunks: one partial-sum slot each */
        int64_t chunks = M / grain < 2 ? 1 : (M / grain < nt ? M / grain : nt);
        j.chunk = (M + chunks - 1) / chunks;
        j.part = sn_cpu_scratch(c, (size_t)(chunks * 2 * E));
        if (!j.part) return SN_ERR_NOMEM;
        memset(j.part, 0, (size_t)(chunks * 2 * E) * sizeof(float));
        sn_pool_for(c->pool, M, grain, ln_bwd, &j);
        int64_t sizes[3] = {M * E, E, E};
        float *dg = (float *)node->data + sn_packed_offset(sizes, 1), *db = (float *)node->data + sn_packed_offset(sizes, 2);
        for (int64_t e = 0; e < E; e++) {
            float sg = 0, sb = 0;
            for (int64_t k = 0; k < chunks; k++) sg += j.part[k * 2 * E + e], sb += j.part[k * 2 * E + E + e];
            dg[e] = sg;
            db[e] = sb;
        }
        return SN_OK;
    }
    case SN_OP_SOFTMAX: sn_pool_for(c->pool, M, grain, sm_fwd, &j); return SN_OK;
    case SN_OP_SOFTMAX_BWD:
        j.dy = node->src[0]->data;
        j.y = node->src[1]->data;
        sn_pool_for(c->pool, M, grain, sm_bwd, &j);
        return SN_OK;
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_norm: unexpected op %s", sn_op_name(node->op));
    }
}
