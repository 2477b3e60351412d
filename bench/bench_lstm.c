/* Times the LSTM (or GRU) op forward + backward on one backend at the prototype size
 * (B=4, T=400, I=H=1024, 2 layers): median of a few runs after a warm-up.
 * Usage: bench_lstm [--device cpu|cuda:N|vulkan:N] [--gru] [--bf16|--f16] [runs=3] [threads=0 (all cores)]
 *                   [B T I H layers]
 * --bf16 / --f16: the backend's mixed-precision mode with that operand type
 * (train.mixed_precision; Vulkan has f16 only: f16 GEMMs and f16 recurrent weights). */
#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"
#include "sinter/backend.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>



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

/* gives every op node of ctx from `first` on its memory (views share their source's);
 * on a device backend every tensor, the leaves with their host values uploaded */
static int alloc_nodes(sn_backend *be, sn_ctx *ctx, int first) {
    for (int i = be->is_host ? first : 0; i < sn_ctx_count(ctx); i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (be->is_host && t->op == SN_OP_NONE) continue;
        if (t->view_src) {
            t->data = (char *)t->view_src->data + t->view_offs;
        } else if (be->is_host) {
            if (posix_memalign(&t->data, 256, sn_alloc_bytes(t)) != 0) return -1;
            memset(t->data, 0, sn_alloc_bytes(t));
        } else {
            void *d = NULL, *host = t->op == SN_OP_NONE ? t->data : NULL;
            if (be->i->alloc(be, sn_alloc_bytes(t), &d) != SN_OK || be->i->fill_zero(be, d, sn_alloc_bytes(t)) != SN_OK)
                return -1;
            if (host && (be->i->upload(be, d, host, sn_nbytes(t)) != SN_OK || be->i->synchronize(be) != SN_OK))
                return -1;
            free(host);
            t->data = d;
            t->backend = be;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *device = "cpu";
    bool gru = false, bf16 = false, f16 = false;
    char *pos[8] = {0};
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--gru")) gru = true;
        else if (!strcmp(argv[i], "--bf16")) bf16 = true;
        else if (!strcmp(argv[i], "--f16")) f16 = true;
        else if (np < 8) pos[np++] = argv[i];
    }
    int runs = np > 0 ? atoi(pos[0]) : 3, threads = np > 1 ? atoi(pos[1]) : 0;
    int64_t B = np > 2 ? atoll(pos[2]) : 4, T = np > 3 ? atoll(pos[3]) : 400;
    int64_t I = np > 4 ? atoll(pos[4]) : 1024, H = np > 5 ? atoll(pos[5]) : 1024;
    int L = np > 6 ? atoi(pos[6]) : 2, G = gru ? 3 : 4;
    if (runs < 1) runs = 1;
    sn_backend *be = NULL;
    if (sn_backend_open(device, threads, &be) != SN_OK) be = NULL;
    sn_ctx *ctx = sn_ctx_new();
    if (be && (bf16 || f16) && sn_backend_set_precision(be, &(sn_precision){.bf16 = bf16, .f16 = f16}) != SN_OK)
        be = NULL;
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
        w[4 * l] = sn_new_2d(ctx, G * H, in, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_ih");
        w[4 * l + 1] = sn_new_2d(ctx, G * H, H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w_hh");
        w[4 * l + 2] = sn_new_1d(ctx, G * H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_ih");
        w[4 * l + 3] = sn_new_1d(ctx, G * H, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b_hh");
        for (int k = 0; k < 4; k++) fill(w[4 * l + k], &seed, ws);
    }
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){B, T, H}, 0, "dy");
    fill(dy, &seed, 1e-3f);
    int first = sn_ctx_count(ctx);
    sn_tensor *y = gru ? sn_gru(ctx, x, L, (int)H, w) : sn_lstm(ctx, x, L, (int)H, w);
    sn_tensor *dsrc[SN_MAX_SRC] = {0};
    if (!y || sn_grad_rnn(ctx, y, dy, dsrc) != SN_OK || alloc_nodes(be, ctx, first) != 0) {
        fprintf(stderr, "bench_lstm: %s\n", sn_last_error());
        return 1;
    }
    sn_tensor *bwd = dsrc[0]->view_src;
    double *tf = calloc((size_t)runs, sizeof *tf), *tb = calloc((size_t)runs, sizeof *tb);
    double *tt = calloc((size_t)runs, sizeof *tt);
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up */
        double t0 = bench_now_ms();
        if (be->i->compute(be, &y, 1, NULL) != SN_OK || be->i->synchronize(be) != SN_OK) goto fail;
        double t1 = bench_now_ms();
        if (be->i->compute(be, &bwd, 1, NULL) != SN_OK || be->i->synchronize(be) != SN_OK) goto fail;
        double t2 = bench_now_ms();
        if (r >= 0) tf[r] = t1 - t0, tb[r] = t2 - t1, tt[r] = t2 - t0;
    }
    qsort(tf, (size_t)runs, sizeof *tf, bench_cmp_double);
    qsort(tb, (size_t)runs, sizeof *tb, bench_cmp_double);
    qsort(tt, (size_t)runs, sizeof *tt, bench_cmp_double);
    double fwd = 0, bw = 0;
    for (int l = 0; l < L; l++) {
        double in = l == 0 ? (double)I : (double)H;
        double proj = 2.0 * B * T * in * G * H, rec = 2.0 * B * (T - 1) * H * G * H;
        fwd += proj + rec;
        bw += 2 * proj + 2 * rec; /* dw_ih, dx_in; dw_hh, dh_{t-1} */
    }
    double mf = tf[runs / 2], mb = tb[runs / 2], mt = tt[runs / 2];
    printf("%s %s %s B=%lld T=%lld I=%lld H=%lld layers=%d threads=%d runs=%d (median)\n", gru ? "gru" : "lstm",
           sn_backend_name(be), bf16 ? "bf16" : f16 ? "f16" : "f32", (long long)B, (long long)T, (long long)I, (long long)H, L,
           be->is_host ? sn_cpu_backend_threads(be) : 0, runs);
    printf("  forward   %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mf, fwd / mf * 1e-6, fwd * 1e-9);
    printf("  backward  %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mb, bw / mb * 1e-6, bw * 1e-9);
    printf("  fwd+bwd   %9.1f ms  %7.1f GFLOP/s  (%.1f GFLOP)\n", mt, (fwd + bw) / mt * 1e-6, (fwd + bw) * 1e-9);
    return 0;
fail:
    fprintf(stderr, "bench_lstm: %s\n", sn_last_error());
    return 1;
}
