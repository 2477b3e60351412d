/* CPU kernels: MSE/L1 losses and their backward, sum/mean/sumsq. Reductions
 * accumulate in double, one partial per pool thread. */
#include "backends/cpu/cpu.h"

#include <math.h>

#define GRAIN 32768
#define MAX_PART 256

typedef struct {
    const float *a, *b;
    float *y;
    float k;
    sn_op op;
    double part[MAX_PART];
} ljob;

static void reduce(void *arg, int64_t b, int64_t e, int tid) {
    ljob *j = arg;
    const float *x = j->a, *t = j->b;
    double s = 0;
    switch (j->op) {
    case SN_OP_MSE:
        for (int64_t i = b; i < e; i++) {
            double d = (double)x[i] - (double)t[i];
            s += d * d;
        }
        break;
    case SN_OP_L1:
        for (int64_t i = b; i < e; i++) s += fabs((double)x[i] - (double)t[i]);
        break;
    case SN_OP_SUMSQ:
        for (int64_t i = b; i < e; i++) s += (double)x[i] * x[i];
        break;
    default:
        for (int64_t i = b; i < e; i++) s += x[i];
        break;
    }
    j->part[tid] += s;
}

static void bwd(void *arg, int64_t b, int64_t e, int tid) {
    ljob *j = arg;
    const float *x = j->a, *t = j->b;
    float k = j->k, *y = j->y;
    if (j->op == SN_OP_MSE_BWD)
        for (int64_t i = b; i < e; i++) y[i] = k * (x[i] - t[i]);
    else
        for (int64_t i = b; i < e; i++) {
            float d = x[i] - t[i];
            y[i] = d > 0.0f ? k : (d < 0.0f ? -k : 0.0f);
        }
}

static double total(sn_cpu *c, ljob *j, int64_t n) {
    for (int i = 0; i < MAX_PART; i++) j->part[i] = 0;
    sn_pool_for(c->pool, n, GRAIN, reduce, j);
    double s = 0;
    for (int i = 0; i < MAX_PART && i < sn_pool_size(c->pool); i++) s += j->part[i];
    return s;
}

sn_status sn_cpu_loss(sn_cpu *c, sn_tensor *node) {
    ljob j = {.op = node->op, .y = node->data};
    if (sn_pool_size(c->pool) > MAX_PART)
        return sn_error(SN_ERR_UNSUPPORTED, "CPU loss kernels: at most %d threads", MAX_PART);
    float *y = node->data;
    switch (node->op) {
    case SN_OP_MSE:
    case SN_OP_L1:
    case SN_OP_SUM:
    case SN_OP_MEAN: {
        int64_t n = sn_nelem(node->src[0]);
        j.a = node->src[0]->data;
        j.b = node->nsrc > 1 ? node->src[1]->data : NULL;
        double s = total(c, &j, n);
        y[0] = (float)(node->op == SN_OP_SUM ? s : s / (double)n);
        return SN_OK;
    }
    case SN_OP_SUMSQ: {
        double s = 0;
        for (int i = 0; i < node->nsrc; i++) {
            j.a = node->src[i]->data;
            s += total(c, &j, sn_nelem(node->src[i]));
        }
        y[0] = (float)s;
        return SN_OK;
    }
    case SN_OP_MSE_BWD:
    case SN_OP_L1_BWD: {
        int64_t n = sn_nelem(node);
        const float *dl = node->src[0]->data;
        j.a = node->src[1]->data;
        j.b = node->src[2]->data;
        j.k = (float)((node->op == SN_OP_MSE_BWD ? 2.0 : 1.0) * dl[0] / (double)n);
        sn_pool_for(c->pool, n, GRAIN, bwd, &j);
        return SN_OK;
    }
    default: break;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_loss: op %s is not a loss op", sn_op_name(node->op));
}
