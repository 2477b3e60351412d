/* CPU kernels: BatchNorm2d forward (batch or running statistics) and backward,
 * parallel over channels; per-channel sums in double. */
#include "backends/cpu/cpu.h"

#include <math.h>

typedef struct {
    const sn_tensor *node;
    int64_t N, C, HW;
    const float *x, *dy, *gamma, *beta;
    float *y, *rm, *rv, *mean, *invstd;
    float *dx, *dg, *db;
    float eps, mom;
    bool training;
} bnjob;

static void bn_fwd(void *arg, int64_t c0, int64_t c1, int tid) {
    bnjob *j = arg;
    int64_t N = j->N, C = j->C, HW = j->HW, cnt = N * HW;
    for (int64_t c = c0; c < c1; c++) {
        float m, is;
        if (j->training) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) {
                const float *x = j->x + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) s += x[i];
            }
            double mu = s / (double)cnt, q = 0;
            for (int64_t n = 0; n < N; n++) {
                const float *x = j->x + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) {
                    double d = x[i] - mu;
                    q += d * d;
                }
            }
            double var = q / (double)cnt;
            m = (float)mu;
            is = (float)(1.0 / sqrt(var + (double)j->eps));
            double unbiased = q / (double)(cnt - 1);
            j->rm[c] = (float)((1.0 - j->mom) * j->rm[c] + j->mom * mu);
            j->rv[c] = (float)((1.0 - j->mom) * j->rv[c] + j->mom * unbiased);
        } else {
            m = j->rm[c];
            is = (float)(1.0 / sqrt((double)j->rv[c] + (double)j->eps));
        }
        j->mean[c] = m;
        j->invstd[c] = is;
        float sc = is * j->gamma[c], sh = j->beta[c] - m * sc;
        for (int64_t n = 0; n < N; n++) {
            const float *x = j->x + (n * C + c) * HW;
            float *y = j->y + (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) y[i] = x[i] * sc + sh;
        }
    }
}

static void bn_bwd(void *arg, int64_t c0, int64_t c1, int tid) {
    bnjob *j = arg;
    int64_t N = j->N, C = j->C, HW = j->HW, cnt = N * HW;
    for (int64_t c = c0; c < c1; c++) {
        float m = j->mean[c], is = j->invstd[c];
        double sdy = 0, sdyx = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *x = j->x + (n * C + c) * HW, *dy = j->dy + (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                sdy += dy[i];
                sdyx += (double)dy[i] * (x[i] - m);
            }
        }
        double dgamma = sdyx * is;
        j->db[c] = (float)sdy;
        j->dg[c] = (float)dgamma;
        float g = j->gamma[c];
        if (j->training) {
            /* dx = gamma*invstd * (dy - mean(dy) - xhat*mean(dy*xhat)) */
            float k = g * is, mdy = (float)(sdy / (double)cnt), mdx = (float)(dgamma / (double)cnt) * is;
            for (int64_t n = 0; n < N; n++) {
                const float *x = j->x + (n * C + c) * HW, *dy = j->dy + (n * C + c) * HW;
                float *dx = j->dx + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) dx[i] = k * (dy[i] - mdy - (x[i] - m) * mdx);
            }
        } else {
            float k = g * is;
            for (int64_t n = 0; n < N; n++) {
                const float *dy = j->dy + (n * C + c) * HW;
                float *dx = j->dx + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) dx[i] = k * dy[i];
            }
        }
    }
}

sn_status sn_cpu_batchnorm(sn_cpu *c, sn_tensor *node) {
    bnjob j = {.node = node};
    if (node->op == SN_OP_BATCHNORM) {
        const sn_tensor *x = node->src[0];
        j.N = x->shape[0];
        j.C = x->shape[1];
        j.HW = x->shape[2] * x->shape[3];
        j.x = x->data;
        j.gamma = node->src[1]->data;
        j.beta = node->src[2]->data;
        j.rm = node->src[3]->data;
        j.rv = node->src[4]->data;
        j.y = node->data;
        j.mean = sn_extra_ptr(node);
        j.invstd = j.mean + sn_align64(j.C);
        j.training = node->ip[0] != 0;
        j.eps = node->fp[0];
        j.mom = node->fp[1];
        sn_pool_for(c->pool, j.C, 1 + 32768 / (j.N * j.HW), bn_fwd, &j);
        return SN_OK;
    }
    if (node->op == SN_OP_BATCHNORM_BWD) {
        const sn_tensor *x = node->src[1], *fwd = node->src[2];
        j.N = x->shape[0];
        j.C = x->shape[1];
        j.HW = x->shape[2] * x->shape[3];
        j.dy = node->src[0]->data;
        j.x = x->data;
        j.gamma = node->src[3]->data;
        j.mean = sn_extra_ptr(fwd);
        j.invstd = j.mean + sn_align64(j.C);
        j.training = node->ip[0] != 0;
        int64_t sizes[3] = {j.N * j.C * j.HW, j.C, j.C};
        float *out = node->data;
        j.dx = out + sn_packed_offset(sizes, 0);
        j.dg = out + sn_packed_offset(sizes, 1);
        j.db = out + sn_packed_offset(sizes, 2);
        sn_pool_for(c->pool, j.C, 1 + 32768 / (j.N * j.HW), bn_bwd, &j);
        return SN_OK;
    }
    return sn_error(SN_ERR_INTERNAL, "sn_cpu_batchnorm: op %s is not a batchnorm op", sn_op_name(node->op));
}
