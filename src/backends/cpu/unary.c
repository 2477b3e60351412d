/* CPU kernels: activations and their backward ops (PyTorch formulas). */
#include "backends/cpu/cpu.h"

#include <math.h>

#define GRAIN 8192

typedef struct {
    const float *x, *d; /* x: input (or y for the _BWD ops), d: dy */
    float *y;
    float p0, p1;
    sn_op op;
} ujob;

static void run(void *arg, int64_t b, int64_t e, int tid) {
    ujob *j = arg;
    const float *x = j->x, *d = j->d;
    float *y = j->y;
    float p0 = j->p0, p1 = j->p1;
    switch (j->op) {
    case SN_OP_RELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case SN_OP_ELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : p0 * expm1f(x[i]);
        break;
    case SN_OP_SOFTPLUS:
        for (int64_t i = b; i < e; i++) {
            float bx = x[i] * p0;
            y[i] = bx > p1 ? x[i] : log1pf(expf(bx)) / p0;
        }
        break;
    case SN_OP_SIGMOID:
        for (int64_t i = b; i < e; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case SN_OP_TANH:
        for (int64_t i = b; i < e; i++) y[i] = tanhf(x[i]);
        break;
    case SN_OP_RELU_BWD:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? d[i] : 0.0f;
        break;
    case SN_OP_ELU_BWD: /* from y: for x <= 0, alpha*exp(x) = y + alpha */
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? d[i] : d[i] * (x[i] + p0);
        break;
    case SN_OP_SOFTPLUS_BWD:
        for (int64_t i = b; i < e; i++) {
            float bx = x[i] * p0;
            float z = expf(bx);
            y[i] = bx > p1 ? d[i] : d[i] * z / (z + 1.0f);
        }
        break;
    case SN_OP_SIGMOID_BWD:
        for (int64_t i = b; i < e; i++) y[i] = d[i] * x[i] * (1.0f - x[i]);
        break;
    case SN_OP_TANH_BWD:
        for (int64_t i = b; i < e; i++) y[i] = d[i] * (1.0f - x[i] * x[i]);
        break;
    default: break;
    }
}

sn_status sn_cpu_unary(sn_cpu *c, sn_tensor *node) {
    ujob j = {.y = node->data, .p0 = node->fp[0], .p1 = node->fp[1], .op = node->op};
    switch (node->op) {
    case SN_OP_RELU:
    case SN_OP_ELU:
    case SN_OP_SOFTPLUS:
    case SN_OP_SIGMOID:
    case SN_OP_TANH: j.x = node->src[0]->data; break;
    case SN_OP_RELU_BWD:
    case SN_OP_ELU_BWD:
    case SN_OP_SOFTPLUS_BWD:
    case SN_OP_SIGMOID_BWD:
    case SN_OP_TANH_BWD:
        j.d = node->src[0]->data;
        j.x = node->src[1]->data;
        break;
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_unary: op %s is not a unary op", sn_op_name(node->op));
    }
    sn_pool_for(c->pool, sn_nelem(node), GRAIN, run, &j);
    return SN_OK;
}
