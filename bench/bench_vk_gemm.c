/* The Vulkan GEMM shaders (SN_VK_GEMM variants) on the prototype CRN's shapes: the LSTM's
 * input projection (NT), weight gradient (TN) and input gradient (NN) at batch 4, T 400,
 * 1024 -> 4x1024, and the encoder convolutions' im2col products (forward per image, and
 * the split-K weight gradient).
 *   bench_vk_gemm [--small] [--device N] [--runs R] [--reps P] [--variants tiled,big,...]
 * Each (shape, variant): one segment of P back-to-back GEMMs (sn_vk_gemm, the backend's
 * entry point) submitted R times after a warm-up; the median GPU time (timestamps; wall
 * time without them) over P. One JSON line each: ms per GEMM, GFLOP/s, the shader the
 * variant ran, its largest difference from the first variant's result (relative to the
 * result's scale) and from a float64 reference at 64 sampled outputs (relative to
 * sum |a b|; beyond fp32's bound the exit status is 1).
 * Variants: SN_VK_GEMM's values (tiled; big: the big tile the shape favours; big128x128,
 * big128x64, big64x128; direct), auto (the backend's own choice) and f16 (train.mixed_precision's
 * cooperative-matrix GEMM, checked against f16's bound; skipped on a device without it).
 * --small: shapes lavapipe runs in seconds. */
#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"
#include "core/core.h"
#include "backends/registry.h"
#include "backends/vulkan/vk_gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    bool ta, tb;
    int64_t M, N, K, batch;
    int64_t ldb_mul; /* conv forward: B's images side by side, ldb = batch * N */
} shape;

static const shape g_full[] = {
    {"lstm_in_proj_nt", false, true, 1600, 4096, 1024, 1, 0},   /* x W_ih^T */
    {"lstm_dw_tn", true, false, 4096, 1024, 1600, 1, 0},        /* dG^T x */
    {"lstm_dx_nn", false, false, 1600, 1024, 4096, 1, 0},       /* dG W_ih */
    {"conv_enc3_fwd_nn", false, false, 128, 3600, 384, 4, 1},   /* W col_n, 64 -> 128 channels, 9 bins */
    {"conv_enc2_fwd_nn", false, false, 64, 7600, 192, 4, 1},    /* 32 -> 64 channels, 19 bins */
    {"conv_enc3_dw_nt", false, true, 128, 384, 14400, 1, 0},    /* dY col^T: split-K */
};
static const shape g_small[] = {
    {"lstm_in_proj_nt", false, true, 96, 256, 64, 1, 0},
    {"lstm_dw_tn", true, false, 256, 64, 96, 1, 0},
    {"lstm_dx_nn", false, false, 96, 64, 256, 1, 0},
    {"conv_enc3_fwd_nn", false, false, 32, 300, 48, 2, 1},
    {"conv_enc3_dw_nt", false, true, 32, 48, 4200, 1, 0},
};

typedef struct {
    sn_vk_gemm_args g;
    int reps;
} job;

static sn_status run_job(sn_vk *vk, void *arg) {
    job *j = arg;
    for (int r = 0; r < j->reps; r++) SN_VK_TRY(sn_vk_gemm(vk, &j->g, "bench"));
    return SN_OK;
}

/* uniform in [-0.5, 0.5) */
static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / 16777216.0 - 0.5);
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

static int usage(void) {
    fprintf(stderr, "usage: bench_vk_gemm [--small] [--device N] [--runs R (1..64)] [--reps P (1..1000)] "
                    "[--variants tiled,big,big128x128,big128x64,big64x128,direct,auto]\n");
    return 2;
}

int main(int argc, char **argv) {
    bool small = false;
    int dev = 0, runs = 7, reps = 0;
    char variants[256] = "tiled,big,big128x128,big128x64,big64x128,auto,f16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small")) small = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--variants") && i + 1 < argc) snprintf(variants, sizeof variants, "%s", argv[++i]);
        else return usage();
    }
    if (runs < 1 || runs > 64 || reps < 0 || reps > 1000) return usage();
    if (reps == 0) reps = small ? 2 : 10;
    if (sn_vulkan_reg.count() == 0) {
        fprintf(stderr, "bench_vk_gemm: no Vulkan device (or no loader/driver)\n");
        return 77;
    }
    sn_backend *b = NULL;
    if (sn_vulkan_reg.open(dev, 0, &b) != SN_OK) {
        fprintf(stderr, "bench_vk_gemm: %s\n", sn_last_error());
        return 1;
    }
    sn_vk *vk = b->ctx;
    const shape *shapes = small ? g_small : g_full;
    size_t nshapes = small ? sizeof g_small / sizeof *g_small : sizeof g_full / sizeof *g_full;
    uint64_t seed = 0x1234567ull;
    int rc = 0;
    for (size_t si = 0; si < nshapes && rc == 0; si++) {
        const shape *s = &shapes[si];
        int64_t ar = s->ta ? s->K : s->M, ac = s->ta ? s->M : s->K;
        int64_t ldb = s->ldb_mul ? s->batch * s->N : (s->tb ? s->K : s->N), br = s->tb ? s->N : s->K;
        int64_t na = ar * ac, nb = br * ldb, nc = s->batch * s->M * s->N;
        float *hA = malloc((size_t)na * sizeof(float)), *hB = malloc((size_t)nb * sizeof(float));
        float *ref = malloc((size_t)nc * sizeof(float)), *got = malloc((size_t)nc * sizeof(float));
        void *dA = NULL, *dB = NULL, *dC = NULL;
        if (!hA || !hB || !ref || !got || b->i->alloc(b, (size_t)na * 4, &dA) != SN_OK ||
            b->i->alloc(b, (size_t)nb * 4, &dB) != SN_OK || b->i->alloc(b, (size_t)nc * 4, &dC) != SN_OK) {
            fprintf(stderr, "bench_vk_gemm: %s: out of memory (%s)\n", s->name, sn_last_error());
            return 1;
        }
        for (int64_t i = 0; i < na; i++) hA[i] = urand(&seed);
        for (int64_t i = 0; i < nb; i++) hB[i] = urand(&seed);
        if (b->i->upload(b, dA, hA, (size_t)na * 4) != SN_OK || b->i->upload(b, dB, hB, (size_t)nb * 4) != SN_OK) {
            fprintf(stderr, "bench_vk_gemm: upload: %s\n", sn_last_error());
            return 1;
        }
        job j = {.reps = reps};
        j.g = (sn_vk_gemm_args){.ta = s->ta, .tb = s->tb, .M = s->M, .N = s->N, .K = s->K, .alpha = 1.0f,
                                .A = (uint64_t)(uintptr_t)dA, .B = (uint64_t)(uintptr_t)dB, .C = (uint64_t)(uintptr_t)dC,
                                .lda = ac, .ldb = ldb, .ldc = s->N, .batch = s->batch, .binner = 1};
        if (s->batch > 1) {
            j.g.sB[0] = s->N; /* conv: image n's columns of col */
            j.g.sC[0] = s->M * s->N;
        }
        double gflop = 2.0 * (double)s->M * (double)s->N * (double)s->K * (double)s->batch * 1e-9;
        bool have_ref = false;
        char vlist[256];
        snprintf(vlist, sizeof vlist, "%s", variants);
        for (char *save = NULL, *v = strtok_r(vlist, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
            const bool f16 = !strcmp(v, "f16");
            if (!strcmp(v, "auto") || f16) unsetenv("SN_VK_GEMM");
            else setenv("SN_VK_GEMM", v, 1);
            if (f16 && sn_backend_set_precision(b, &(sn_precision){.f16 = true}) != SN_OK) {
                static bool said;
                if (!said) fprintf(stderr, "bench_vk_gemm: f16 skipped: %s\n", sn_last_error());
                said = true;
                continue;
            }
            double t[65];
            int sh = sn_vk_gemm_shader(vk, &j.g);
            sn_status st = b->i->fill_zero(b, dC, (size_t)nc * 4);
            if (st == SN_OK) st = sn_vk_run(vk, run_job, &j, runs + 1, t);
            if (st == SN_OK) st = b->i->download(b, got, dC, (size_t)nc * 4);
            if (f16) sn_backend_set_precision(b, &(sn_precision){0});
            if (st != SN_OK) {
                fprintf(stderr, "bench_vk_gemm: %s %s: %s\n", s->name, v, sn_last_error());
                rc = 1;
                break;
            }
            double ms = bench_median(t + 1, runs) / reps; /* t[0]: warm-up */
            double err = 0, scale = 0;
            if (!have_ref && !f16) memcpy(ref, got, (size_t)nc * 4);
            for (int64_t i = 0; i < nc; i++) {
                double d = fabs((double)got[i] - (double)ref[i]);
                if (!(d <= err)) err = d;
                if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
            }
            have_ref = have_ref || !f16;
            double sample_err = 0; /* float64 at sampled outputs */
            for (int q = 0; q < 64; q++) {
                int64_t z = q % s->batch, m = (q * 7919) % s->M, n = (q * 104729) % s->N;
                double acc = 0, mag = 0;
                for (int64_t k = 0; k < s->K; k++) {
                    double x = s->ta ? hA[k * ac + m] : hA[m * ac + k];
                    double y = s->tb ? hB[n * ldb + k] : hB[k * ldb + z * j.g.sB[0] + n];
                    acc += x * y;
                    mag += fabs(x * y);
                }
                double e = fabs((double)got[z * s->M * s->N + m * s->N + n] - acc) / (mag > 0 ? mag : 1);
                if (!(e <= sample_err)) sample_err = e;
            }
            printf("{\"bench\":\"vk_gemm\",\"device\":");
            json_str(sn_vk_device_name(vk));
            printf(",\"shape\":\"%s\",\"ta\":%d,\"tb\":%d,\"M\":%lld,\"N\":%lld,\"K\":%lld,\"batch\":%lld,"
                   "\"variant\":\"%s\",\"shader\":\"%s\",\"ms\":%.4f,\"gflops\":%.1f,\"reps\":%d,\"runs\":%d,"
                   "\"timer\":\"%s\",\"err_vs_first\":%.3g,\"err_f64\":%.3g}\n",
                   s->name, s->ta, s->tb, (long long)s->M, (long long)s->N, (long long)s->K, (long long)s->batch, v,
                   sn_vk_shaders[sh].name, ms, gflop / (ms * 1e-3), reps, runs,
                   sn_vk_has_timestamps(vk) ? "gpu" : "wall", scale > 0 ? err / scale : err, sample_err);
            fflush(stdout);
            /* beyond fp32's worst case (f16: two operands rounded to 2^-11) a wrong result */
            if (!(sample_err <= (f16 ? 1.1e-3 : 0) + 6e-8 * (double)(s->K + 4))) {
                fprintf(stderr, "bench_vk_gemm: %s %s: wrong result (%.3g from float64)\n", s->name, v, sample_err);
                rc = 1;
            }
        }
        unsetenv("SN_VK_GEMM");
        b->i->release(b, dA);
        b->i->release(b, dB);
        b->i->release(b, dC);
        free(hA);
        free(hB);
        free(ref);
        free(got);
    }
    sn_backend_free(b);
    return rc;
}
