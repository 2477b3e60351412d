/* CPU kernels: MATMUL, LINEAR, BIAS_GRAD, all through sn_cpu_gemm (f32, or bf16 in mixed precision). */
#include "backends/cpu/cpu.h"

#include <string.h>

#include "backends/cpu/vmath.h"


static sn_status cpu_matmul(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *a = node->src[0], *b = node->src[1];
    bool ta = node->ip[0], tb = node->ip[1];
    int na = a->ndim, nb = b->ndim;
    int64_t M = node->shape[na - 2], N = node->shape[na - 1];
    int64_t K = ta ? a->shape[na - 2] : a->shape[na - 1];
    int64_t lda = a->shape[na - 1], ldb = b->shape[nb - 1];
    int64_t batch = sn_nelem(node) / (M * N);
    const float *A = a->data, *B = b->data;
    float *C = node->data;
    if (K == 0) {
        memset(C, 0, (size_t)sn_nelem(node) * sizeof *C);
        return SN_OK;
    }
    if (nb == 2 && !ta) {
        /* a's batch rows are contiguous: one GEMM over batch*M rows */
        sn_cpu_gemm(c, false, tb, batch * M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        return SN_OK;
    }
    int64_t sa = M * K, sb = nb == 2 ? 0 : K * N;
    for (int64_t i = 0; i < batch; i++)
        sn_cpu_gemm(c, ta, tb, M, N, K, 1.0f, A + i * sa, lda, B + i * sb, ldb, 0.0f, C + i * M * N, N);
    return SN_OK;
}

typedef struct {
    float *y;
    const float *b;
    int64_t N;
    int act;
    float p0, p1;
} epi_job;

static void epi_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    const epi_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *row = j->y + r * j->N;
        sn_cpu_bias_act(row, row, j->N, j->b, 0.0f, j->act, j->p0, j->p1);
    }
}

static sn_status cpu_linear(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *x = node->src[0], *w = node->src[1], *b = node->nsrc > 2 ? node->src[2] : NULL;
    int64_t K = w->shape[1], N = w->shape[0], M = sn_nelem(x) / K;
    float *y = node->data;
    int act = node->ip[SN_IP_ACT];
    if (act < SN_ACT_NONE || act >= SN_ACT_COUNT)
        return sn_error(SN_ERR_INTERNAL, "CPU linear '%s': unknown activation %d", node->name, act);
    if (act != SN_ACT_NONE) {
        /* epilogue: y = act(x W^T + b), the bias and the activation in one pass over y */
        sn_cpu_gemm(c, false, true, M, N, K, 1.0f, x->data, K, w->data, K, 0.0f, y, N);
        epi_job j = {y, b ? b->data : NULL, N, act, node->fp[SN_FP_ACT], node->fp[SN_FP_ACT + 1]};
        int64_t grain = 16384 / (N > 0 ? N : 1);
        sn_pool_for(c->pool, M, grain > 0 ? grain : 1, epi_rows, &j);
        return SN_OK;
    }
    if (b) {
        const float *bb = b->data;
        for (int64_t m = 0; m < M; m++) memcpy(y + m * N, bb, (size_t)N * sizeof *y);
    }
    sn_cpu_gemm(c, false, true, M, N, K, 1.0f, x->data, K, w->data, K, b ? 1.0f : 0.0f, y, N);
    return SN_OK;
}

typedef struct {
    const float *dy;
    float *db;
    int64_t outer, C, inner;
} bias_job;

static void bias_rows(void *arg, int64_t c0, int64_t c1, int tid) {
    const bias_job *j = arg;
    for (int64_t ch = c0; ch < c1; ch++) {
        double s = 0;
        for (int64_t o = 0; o < j->outer; o++) s += sn_vsum(j->dy + (o * j->C + ch) * j->inner, j->inner);
        j->db[ch] = (float)s;
    }
}

/* inner == 1 (linear): sum rows; parallel over column blocks */
static void bias_cols(void *arg, int64_t c0, int64_t c1, int tid) {
    const bias_job *j = arg;
    for (int64_t ch = c0; ch < c1; ch++) j->db[ch] = 0;
    for (int64_t o = 0; o < j->outer; o++) {
        const float *p = j->dy + o * j->C;
        for (int64_t ch = c0; ch < c1; ch++) j->db[ch] += p[ch];
    }
}

static sn_status cpu_bias_grad(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *dy = node->src[0];
    int axis = node->ip[0];
    bias_job j = {dy->data, node->data, 1, dy->shape[axis], 1};
    for (int d = 0; d < axis; d++) j.outer *= dy->shape[d];
    for (int d = axis + 1; d < dy->ndim; d++) j.inner *= dy->shape[d];
    if (j.inner == 1) sn_pool_for(c->pool, j.C, 64, bias_cols, &j);
    else sn_pool_for(c->pool, j.C, 1, bias_rows, &j);
    return SN_OK;
}

sn_status sn_cpu_matmul(sn_cpu *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_MATMUL: return cpu_matmul(c, node);
    case SN_OP_LINEAR: return cpu_linear(c, node);
    case SN_OP_BIAS_GRAD: return cpu_bias_grad(c, node);
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_matmul: unexpected op %s", sn_op_name(node->op));
    }
}
