/* Times the CRN training step's small ops on the CPU backend, each alone at the
 * prototype's shapes (B=4, T=400, 161 bins): BatchNorm2d+ELU forward and backward
 * (9 layers), the decoder's skip concat and its gradient's slices (5 layers), the
 * LSTM's two layout permutes, the conv bias gradients, the skip-gradient add and a
 * 17.6M-parameter Adam update in 14 multi-tensor ops as the step's. Per op kind: the
 * sum over the step's calls of each call's median (or fastest) of a few runs.
 * Usage: bench_ops [--min] [runs=7] [threads=0 (all cores)] [B T]
 * SN_CPU_VM_LEVEL=0|1 takes the portable or AVX2 kernels. */
#define _POSIX_C_SOURCE 200809L
#include "bench_graph.h"
#include "bench_util.h"
#include "sinter/backend.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned g_seed = 7;

static int fill(sn_tensor *t, float lo, float hi) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 256, sn_alloc_bytes(t)) != 0) return -1;
    int64_t n = sn_nelem(t);
    for (int64_t i = 0; i < n; i++) {
        g_seed = g_seed * 1664525u + 1013904223u;
        p[i] = lo + (hi - lo) * ((float)(g_seed >> 8) / 16777216.0f);
    }
    t->data = p;
    return 0;
}

enum { K_BN, K_BN_BWD, K_CONCAT, K_SLICE, K_PERMUTE, K_BIAS, K_ADD, K_ADAM, K_N };
static const char *kname[K_N] = {"batchnorm2d", "batchnorm2d_bwd", "concat", "slice", "permute", "bias_grad",
                                 "add", "adam_multi"};

static int kind_of(sn_op op) {
    switch (op) {
    case SN_OP_BATCHNORM: return K_BN;
    case SN_OP_BATCHNORM_BWD: return K_BN_BWD;
    case SN_OP_CONCAT: return K_CONCAT;
    case SN_OP_SLICE: return K_SLICE;
    case SN_OP_PERMUTE: return K_PERMUTE;
    case SN_OP_BIAS_GRAD: return K_BIAS;
    case SN_OP_ADD: return K_ADD;
    case SN_OP_ADAM_MT: return K_ADAM;
    default: return -1;
    }
}

static sn_backend *be;
static int runs = 7;
static bool use_min;
static double tot[K_N];
static int calls[K_N];

/* times every op node from `first` on whose kind is listed, in graph order, once each
 * per round (the nodes of one context depend only on inputs filled beforehand) */
static int time_nodes(sn_ctx *ctx, int first) {
    int n = sn_ctx_count(ctx) - first;
    double *t = calloc((size_t)n * (size_t)runs, sizeof *t);
    if (!t) return -1;
    for (int r = -1; r < runs; r++)
        for (int i = 0; i < n; i++) {
            sn_tensor *x = sn_ctx_tensor(ctx, first + i);
            if (x->op == SN_OP_NONE || x->view_src || kind_of(x->op) < 0) continue;
            double t0 = bench_now_ms();
            if (be->i->compute(be, &x, 1, NULL) != SN_OK) return -1;
            if (r >= 0) t[(size_t)i * runs + r] = bench_now_ms() - t0;
        }
    for (int i = 0; i < n; i++) {
        sn_tensor *x = sn_ctx_tensor(ctx, first + i);
        if (x->op == SN_OP_NONE || x->view_src || kind_of(x->op) < 0) continue;
        double *ti = t + (size_t)i * runs, m = bench_median(ti, runs);
        tot[kind_of(x->op)] += use_min ? ti[0] : m;
        calls[kind_of(x->op)]++;
    }
    free(t);
    return 0;
}

static void free_ctx(sn_ctx *ctx) {
    for (int i = 0; i < sn_ctx_count(ctx); i++) {
        sn_tensor *n = sn_ctx_tensor(ctx, i);
        if (!n->view_src) free(n->data);
        n->data = NULL;
    }
    sn_ctx_free(ctx);
}

int main(int argc, char **argv) {
    char *pos[4] = {0};
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min")) use_min = true;
        else if (np < 4) pos[np++] = argv[i];
    }
    runs = np > 0 ? atoi(pos[0]) : 7;
    int threads = np > 1 ? atoi(pos[1]) : 0;
    int64_t B = np > 2 ? atoll(pos[2]) : 4, T = np > 3 ? atoll(pos[3]) : 400;
    if (runs < 1) runs = 1;
    if (sn_backend_open("cpu", threads, &be) != SN_OK) {
        fprintf(stderr, "bench_ops: %s\n", sn_last_error());
        return 1;
    }
    static const int64_t ch[5] = {16, 32, 64, 128, 256};
    int64_t F[6] = {161};
    for (int i = 0; i < 5; i++) F[i + 1] = (F[i] - 3) / 2 + 1;
    /* BatchNorm+ELU forward and backward: the encoder's 5 layers and the decoder's 4 */
    for (int l = 0; l < 9; l++) {
        int e = l < 5 ? l : 8 - l; /* decoder layer i outputs the shape of encoder 3 - i */
        sn_ctx *ctx = sn_ctx_new();
        int64_t C = ch[e];
        sn_tensor *x = sn_new_4d(ctx, B, C, T, F[e + 1], SN_FLAG_NEEDS_GRAD, "x");
        sn_tensor *g = sn_new_1d(ctx, C, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "gamma");
        sn_tensor *b = sn_new_1d(ctx, C, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "beta");
        sn_tensor *rm = sn_new_1d(ctx, C, 0, "rm"), *rv = sn_new_1d(ctx, C, 0, "rv");
        if (fill(x, -2, 2) || fill(g, 0.5f, 1.5f) || fill(b, -0.5f, 0.5f) || fill(rm, 0, 0) || fill(rv, 1, 1)) return 1;
        int first = sn_ctx_count(ctx);
        sn_tensor *y = sn_batchnorm2d_elu(ctx, x, g, b, rm, rv, true, 1e-5f, 0.1f, 1.0f);
        if (!y) goto fail;
        sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 4, y->shape, 0, "dy");
        if (fill(dy, -0.01f, 0.01f)) return 1;
        sn_tensor *ds[SN_MAX_SRC] = {0};
        if (sn_grad_batchnorm(ctx, y, dy, ds) != SN_OK || bench_alloc_nodes(ctx, first) != 0) goto fail;
        /* the conv bias gradient of the BN's input */
        int64_t one = C;
        sn_tensor *bg = sn_new_op(ctx, SN_OP_BIAS_GRAD, 1, &ds[0], 1, &one);
        if (!bg) goto fail;
        bg->ip[0] = 1;
        if (bench_alloc_nodes(ctx, sn_ctx_count(ctx) - 1) || time_nodes(ctx, first)) goto fail;
        free_ctx(ctx);
    }
    /* decoder skip concat and its gradient; skip-gradient adds; the last layer's bias gradient */
    for (int i = 0; i < 5; i++) {
        int e = 4 - i;
        sn_ctx *ctx = sn_ctx_new();
        sn_tensor *a = sn_new_4d(ctx, B, ch[e], T, F[e + 1], SN_FLAG_NEEDS_GRAD, "a");
        sn_tensor *s = sn_new_4d(ctx, B, ch[e], T, F[e + 1], SN_FLAG_NEEDS_GRAD, "skip");
        if (fill(a, -1, 1) || fill(s, -1, 1)) return 1;
        int first = sn_ctx_count(ctx);
        sn_tensor *cat[2] = {a, s};
        sn_tensor *y = sn_concat(ctx, 2, cat, 1);
        if (!y) goto fail;
        sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 4, y->shape, 0, "dy");
        if (fill(dy, -0.01f, 0.01f)) return 1;
        sn_tensor *ds[SN_MAX_SRC] = {0};
        if (sn_grad_shape(ctx, y, dy, ds) != SN_OK || !sn_add(ctx, ds[1], a)) goto fail;
        if (i == 4) {
            int64_t shp[4] = {B, 1, T, 161}, one = 1;
            sn_tensor *d = sn_new_tensor(ctx, SN_F32, 4, shp, 0, "dout");
            if (fill(d, -0.01f, 0.01f)) return 1;
            sn_tensor *bg = sn_new_op(ctx, SN_OP_BIAS_GRAD, 1, &d, 1, &one);
            if (!bg) goto fail;
            bg->ip[0] = 1;
        }
        if (bench_alloc_nodes(ctx, first) || time_nodes(ctx, first)) goto fail;
        free_ctx(ctx);
    }
    /* the LSTM's layout changes: [B,256,T,4] -> [B,T,256,4] and back, forward and backward */
    {
        sn_ctx *ctx = sn_ctx_new();
        sn_tensor *x = sn_new_4d(ctx, B, 256, T, 4, 0, "x");
        if (fill(x, -1, 1)) return 1;
        int first = sn_ctx_count(ctx);
        int perm[4] = {0, 2, 1, 3};
        sn_tensor *y = sn_permute(ctx, x, perm);
        for (int k = 0; k < 3 && y; k++) y = sn_permute(ctx, y, perm);
        if (!y || bench_alloc_nodes(ctx, first) || time_nodes(ctx, first)) goto fail;
        free_ctx(ctx);
    }
    /* Adam over 17.6M parameters: the step's 14 multi-tensor ops (two LSTM layers' 8.4M
     * weights each, the rest in 12 ops of small tensors) */
    {
        sn_ctx *ctx = sn_ctx_new();
        static const int64_t big[4] = {4194304, 4194304, 4096, 4096};
        int64_t total = 2 * (big[0] + big[1] + big[2] + big[3]) + 12 * 65536, nh = SN_HYPER_N;
        sn_tensor *flat = sn_new_1d(ctx, total, 0, "flat"), *m = sn_new_1d(ctx, total, 0, "m");
        sn_tensor *v = sn_new_1d(ctx, total, 0, "v"), *h = sn_new_1d(ctx, nh, 0, "hyper");
        if (fill(flat, -1, 1) || fill(m, -0.1f, 0.1f) || fill(v, 0.01f, 0.1f) || fill(h, 0, 0)) return 1;
        float *hy = h->data;
        hy[SN_HYPER_LR] = 1e-3f;
        hy[SN_HYPER_BC1] = 0.1f;
        hy[SN_HYPER_BC2] = 0.001f;
        hy[SN_HYPER_STEP] = 1;
        int64_t off = 0;
        int first = sn_ctx_count(ctx);
        for (int op = 0; op < 14; op++) {
            sn_tensor *ps[4], *gs[4];
            int n = 4;
            for (int k = 0; k < n; k++) {
                int64_t sz = op < 2 ? big[k] : 16384;
                ps[k] = sn_new_1d(ctx, sz, 0, "p");
                sn_alias(ps[k], flat, off);
                ps[k]->data = (float *)flat->data + off;
                gs[k] = sn_new_1d(ctx, sz, 0, "g");
                if (fill(gs[k], -1, 1)) return 1;
                off += sz;
            }
            if (!sn_adam_multi(ctx, n, ps, gs, m, v, h, NULL, 0.9f, 0.999f, 1e-8f, 0, 0, false)) goto fail;
        }
        if (bench_alloc_nodes(ctx, first) || time_nodes(ctx, first)) goto fail;
        free_ctx(ctx);
    }
    printf("small ops of the CRN step, cpu f32, B=%lld T=%lld, threads=%d, %s of %d runs (ms per step)\n",
           (long long)B, (long long)T, sn_cpu_backend_threads(be), use_min ? "fastest" : "median", runs);
    double all = 0;
    for (int k = 0; k < K_N; k++) {
        printf("  %-18s %3d calls %8.2f\n", kname[k], calls[k], tot[k]);
        all += tot[k];
    }
    printf("  %-18s           %8.2f\n", "total", all);
    sn_backend_free(be);
    return 0;
fail:
    fprintf(stderr, "bench_ops: %s\n", sn_last_error());
    return 1;
}
