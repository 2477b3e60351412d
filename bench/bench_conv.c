/* Times each convolution op of the prototype CRN (B=4, T=400, 161 bins) on one backend:
 * the five encoder Conv2d layers and the five decoder ConvTranspose2d layers (skip
 * concat doubles their input channels), forward, data gradient and weight gradient
 * each alone, median of a few runs after a warm-up.
 * Usage: bench_conv [--device cpu] [--bf16] [--min] [--cpu] [runs=5] [threads=0 (all cores)] [B T] [layer (0-9; all)]
 * --min: the fastest run instead of the median (steadier on a shared machine).
 * --cpu: process CPU time instead of wall time (with 1 thread: a shared machine's
 * other jobs do not count; with more, the pool's waits do).
 * SN_CONV_PROF=1 adds the CPU backend's breakdown. */
#define _POSIX_C_SOURCE 200809L
#include "bench_graph.h"
#include "bench_util.h"
#include "sinter/backend.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int fill(sn_tensor *t, unsigned *seed, float scale) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 256, sn_alloc_bytes(t)) != 0) return -1;
    int64_t n = sn_nelem(t);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    t->data = p;
    return 0;
}

int main(int argc, char **argv) {
    const char *device = "cpu";
    bool bf16 = false, use_min = false, use_cpu = false;
    char *pos[8] = {0};
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--bf16")) bf16 = true;
        else if (!strcmp(argv[i], "--min")) use_min = true;
        else if (!strcmp(argv[i], "--cpu")) use_cpu = true;
        else if (np < 8) pos[np++] = argv[i];
    }
    int runs = np > 0 ? atoi(pos[0]) : 5, threads = np > 1 ? atoi(pos[1]) : 0;
    int64_t B = np > 2 ? atoll(pos[2]) : 4, T = np > 3 ? atoll(pos[3]) : 400;
    int only = np > 4 ? atoi(pos[4]) : -1;
    if (runs < 1) runs = 1;
    sn_backend *be = NULL;
    if (sn_backend_open(device, threads, &be) != SN_OK) be = NULL;
    if (be && bf16 && sn_backend_set_precision(be, &(sn_precision){.bf16 = true}) != SN_OK) be = NULL;
    if (!be || !be->is_host) {
        fprintf(stderr, "bench_conv: %s\n", be ? "host backends only" : sn_last_error());
        return 1;
    }
    printf("conv ops of the CRN, %s %s, B=%lld T=%lld, threads=%d, %s of %d runs (%s ms; GFLOP/s)\n",
           sn_backend_name(be), bf16 ? "bf16" : "f32", (long long)B, (long long)T, sn_cpu_backend_threads(be),
           use_min ? "fastest" : "median", runs, use_cpu ? "CPU" : "wall");
    printf("  %-26s %16s %16s %16s\n", "layer", "forward", "data grad", "weight grad");
    static const int64_t ch[6] = {1, 16, 32, 64, 128, 256};
    int64_t F[6] = {161};
    for (int i = 0; i < 5; i++) F[i + 1] = (F[i] - 3) / 2 + 1;
    double tot[3] = {0};
    unsigned seed = 7;
    double *t = calloc((size_t)runs, sizeof *t);
    for (int layer = 0; layer < 10; layer++) {
        if (only >= 0 && layer != only) continue;
        bool tr = layer >= 5;
        int e = tr ? 9 - layer : layer; /* encoder index the layer pairs with */
        sn_ctx *ctx = sn_ctx_new();
        int64_t C = tr ? 2 * ch[e + 1] : ch[e], K = tr ? ch[e] : ch[e + 1], Fi = tr ? F[e + 1] : F[e];
        sn_tensor *x = sn_new_4d(ctx, B, C, T, Fi, SN_FLAG_NEEDS_GRAD, "x");
        sn_tensor *w = tr ? sn_new_4d(ctx, C, K, 2, 3, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w")
                          : sn_new_4d(ctx, K, C, 2, 3, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "w");
        sn_tensor *b = sn_new_1d(ctx, K, SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD, "b");
        if (fill(x, &seed, 1.0f) || fill(w, &seed, 0.2f) || fill(b, &seed, 0.1f)) return 1;
        int first = sn_ctx_count(ctx);
        int opw = tr && e == 3 ? 1 : 0; /* the decoder's output_padding (0,1) where F 39 -> 80 */
        sn_tensor *y = tr ? sn_conv_transpose2d_crop(ctx, x, w, b, 1, 2, 0, 0, 0, opw, 1, 0, SN_ACT_NONE, 0, 0)
                          : sn_conv2d_pad(ctx, x, w, b, 1, 2, 1, 0, 0, 0, SN_ACT_NONE, 0, 0);
        if (!y) goto fail;
        sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 4, y->shape, 0, "dy");
        if (fill(dy, &seed, 0.01f)) return 1;
        int gfirst = sn_ctx_count(ctx);
        sn_tensor *ds[SN_MAX_SRC] = {0};
        if (sn_grad_conv(ctx, y, dy, ds) != SN_OK || bench_alloc_nodes(ctx, first) != 0) goto fail;
        (void)gfirst;
        /* the CRN's first encoder layer takes no data gradient (its input is the features) */
        sn_tensor *ops[3] = {y, layer == 0 ? NULL : ds[0], ds[1]};
        double flop = 2.0 * (double)sn_nelem(tr ? x : y) * (double)(tr ? K : C) * 6.0;
        char name[64];
        snprintf(name, sizeof name, "%s.%d %lldx%lld F%lld", tr ? "dec" : "enc", tr ? layer - 5 : layer,
                 (long long)C, (long long)K, (long long)Fi);
        printf("  %-26s", name);
        for (int o = 0; o < 3; o++) {
            if (!ops[o]) {
                printf(" %16s", "-");
                continue;
            }
            for (int r = -1; r < runs; r++) {
                double t0 = use_cpu ? cpu_ms() : bench_now_ms();
                if (be->i->compute(be, &ops[o], 1, NULL) != SN_OK) goto fail;
                if (r >= 0) t[r] = (use_cpu ? cpu_ms() : bench_now_ms()) - t0;
            }
            double m = bench_median(t, runs);
            if (use_min) m = t[0]; /* sorted by bench_median */
            tot[o] += m;
            printf(" %7.2f (%6.1f)", m, flop / m * 1e-6);
        }
        printf("\n");
        for (int i = first; i < sn_ctx_count(ctx); i++) {
            sn_tensor *n = sn_ctx_tensor(ctx, i);
            if (n->op != SN_OP_NONE && !n->view_src) free(n->data);
        }
        free(x->data), free(w->data), free(b->data), free(dy->data);
        sn_ctx_free(ctx);
    }
    printf("  %-26s %16.2f %16.2f %16.2f   all %.2f ms\n", "total", tot[0], tot[1], tot[2], tot[0] + tot[1] + tot[2]);
    free(t);
    return 0;
fail:
    fprintf(stderr, "bench_conv: %s\n", sn_last_error());
    return 1;
}
