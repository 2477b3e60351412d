/* Times the LSTM op forward + backward on the CPU backend at the prototype size
 * (B=4, T=400, I=H=1024, 2 layers): median of a few runs after a warm-up.
 * Usage: bench_lstm [runs=3] [threads=0 (all cores)] [B T I H layers]
 * SN_BENCH_BF16=1: in the backend's bf16 mode (train.mixed_precision). */
#define _POSIX_C_SOURCE 200809L
#include "sinter/backend.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *fill(sn_tensor *t, unsigned *seed, float scale) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 256, sn_alloc_bytes(t)) != 0) return NULL;
    int64_t n = sn_nelem(t);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    t->data = p;
    return p;
}

/* gives every op node of ctx from `first` on its memory (views share their source's) */
static int alloc_nodes(sn_ctx *ctx, int first) {
    for (int i = first; i < sn_ctx_count(ctx); i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (t->op == SN_OP_NONE) continue;
        if (t->view_src) t->data = (char *)t->view_src->data + t->view_offs;
        else if (posix_memalign(&t->data, 256, sn_alloc_bytes(t)) != 0) return -1;
        else memset(t->data, 0, sn_alloc_bytes(t));
    }
    return 0;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 3, threads = argc > 2 ? atoi(argv[2]) : 0;
    int64_t B = argc > 3 ? atoll(argv[3]) : 4, T = argc > 4 ? atoll(argv[4]) : 400;
    int64_t I = argc > 5 ? atoll(argv[5]) : 1024, H = argc > 6 ? atoll(argv[6]) : 1024;
    int L = argc > 7 ? atoi(argv[7]) : 2;
    if (runs < 1) runs = 1;
    sn_backend *be = sn_cpu_backend_new(threads);
    sn_ctx *ctx = sn_ctx_new();
    const char *bf = getenv("SN_BENCH_BF16");
    if (be && bf && *bf == '1' && sn_backend_set_precision(be, &(sn_precision){.bf16 = true}) != SN_OK) be = NULL;
    if (!be || !ctx) {
        fprintf(stderr, "bench_lstm: %s\n", sn_last_error());
        return 1;
    }
    unsigned seed = 42;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){B, T, I}, SN_FLAG_NEEDS_GRAD, "x");
    fill(x, &seed, 1.0f);
    sn_tensor *w[SN_MAX_SRC];
    float ws = 1.0f / 32.0f; /* ~ PyTorch's init 1/sqrt(H) */
    for (int l = 0; l < L; l++) {
        int64_t in = l == 0 ? I : H;
        w[4 * l] = sn_new_2d(ctx, 4 * H, in, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_ih");
        w[4 * l + 1] = sn_new_2d(ctx, 4 * H, H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_hh");
        w[4 * l + 2] = sn_new_1d(ctx, 4 * H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_ih");
        w[4 * l + 3] = sn_new_1d(ctx, 4 * H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_hh");
        for (int k = 0; k < 4; k++) fill(w[4 * l + k], &seed, ws);
    }
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){B, T, H}, 0, "dy");
    fill(dy, &seed, 1e-3f);
    int first = sn_ctx_count(ctx);
    sn_tensor *y = sn_lstm(ctx, x, L, (int)H, w);
    sn_tensor *dsrc[SN_MAX_SRC] = {0};
    if (!y || sn_grad_rnn(ctx, y, dy, dsrc) != SN_OK || alloc_nodes(ctx, first) != 0) {
        fprintf(stderr, "bench_lstm: %s\n", sn_last_error());
        return 1;
    }
    sn_tensor *bwd = dsrc[0]->view_src;
    double *tf = calloc((size_t)runs, sizeof *tf), *tb = calloc((size_t)runs, sizeof *tb);
    double *tt = calloc((size_t)runs, sizeof *tt);
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up */
        double t0 = now_ms();
        if (be->i->compute(be, &y, 1, NULL) != SN_OK) goto fail;
        double t1 = now_ms();
        if (be->i->compute(be, &bwd, 1, NULL) != SN_OK) goto fail;
        double t2 = now_ms();
        if (r >= 0) tf[r] = t1 - t0, tb[r] = t2 - t1, tt[r] = t2 - t0;
    }
    qsort(tf, (size_t)runs, sizeof *tf, cmp_d);
    qsort(tb, (size_t)runs, sizeof *tb, cmp_d);
    qsort(tt, (size_t)runs, sizeof *tt, cmp_d);
    double fwd = 0, bw = 0;
    for (int l = 0; l < L; l++) {
        double in = l == 0 ? (double)I : (double)H;
        double proj = 2.0 * B * T * in * 4 * H, rec = 2.0 * B * (T - 1) * H * 4 * H;
        fwd += proj + rec;
        bw += 2 * proj + 2 * rec; /* dw_ih, dx_in; dw_hh, dh_{t-1} */
    }
    double mf = tf[runs / 2], mb = tb[runs / 2], mt = tt[runs / 2];
    printf("lstm B=%lld T=%lld I=%lld H=%lld layers=%d threads=%d runs=%d %s (median)\n", (long long)B, (long long)T,
           (long long)I, (long long)H, L, sn_cpu_backend_threads(be), runs, bf && *bf == '1' ? "bf16" : "f32");
    printf("  forward   %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mf, fwd / mf * 1e-6, fwd * 1e-9);
    printf("  backward  %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mb, bw / mb * 1e-6, bw * 1e-9);
    printf("  fwd+bwd   %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mt, (fwd + bw) / mt * 1e-6, (fwd + bw) * 1e-9);
    return 0;
fail:
    fprintf(stderr, "bench_lstm: %s\n", sn_last_error());
    return 1;
}
