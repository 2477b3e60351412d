#include "sn_test.h"
#include "backends/registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sn_test_rand(float *x, int64_t n, uint64_t *seed, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)((splitmix(seed) >> 40) * (1.0 / 16777216.0));
}

float *sn_test_rand_new(int64_t n, uint64_t *seed, float lo, float hi) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    sn_test_rand(x, n, seed, lo, hi);
    return x;
}

double sn_test_rel_err(const float *a, const double *ref, int64_t n, double floor) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]) / fmax(fabs(ref[i]), floor);
        if (!(d <= m)) m = d; /* NaN propagates as the maximum */
    }
    return m;
}

double sn_test_rel_err_f(const float *a, const float *ref, int64_t n, double floor) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]) / fmax(fabs((double)ref[i]), floor);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* tensors whose memory this file allocated */
#define OWNED (1u << 30)

sn_status sn_test_eval(sn_ctx *ctx, sn_backend *b) {
    int n = sn_ctx_count(ctx);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (t->data) continue;
        if (t->view_src) {
            if (!t->view_src->data) return sn_error(SN_ERR_INVALID_ARG, "sn_test_eval: '%s' views an unset tensor", t->name);
            t->data = (char *)t->view_src->data + t->view_offs;
        } else if (t->op == SN_OP_NONE) {
            return sn_error(SN_ERR_INVALID_ARG, "sn_test_eval: leaf '%s' has no data", t->name);
        } else {
            size_t bytes = sn_alloc_bytes(t);
            t->data = calloc(1, bytes);
            t->flags |= OWNED;
        }
        if (t->op != SN_OP_NONE && t->op != SN_OP_VIEW) {
            sn_status s = b->i->compute(b, &t, 1, NULL);
            if (s != SN_OK) return s;
        }
    }
    return SN_OK;
}

float *sn_test_leaf(sn_tensor *t, uint64_t *seed, float lo, float hi) {
    float *x = calloc(1, sn_alloc_bytes(t));
    sn_test_rand(x, sn_nelem(t), seed, lo, hi);
    t->data = x;
    t->flags |= OWNED;
    return x;
}

void sn_test_free_data(sn_ctx *ctx) {
    int n = sn_ctx_count(ctx);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (t->flags & OWNED) free(t->data);
        t->flags &= ~OWNED;
        t->data = NULL;
    }
}

int sn_test_vk_open(int *dev, sn_backend **vk) {
#ifdef SN_HAVE_VULKAN
    if (sn_vulkan_reg.count() > 0) {
        const char *e = getenv("SN_VK_DEVICE");
        *dev = e ? atoi(e) : 0;
        if (sn_vulkan_reg.open(*dev, 0, vk) != SN_OK) {
            fprintf(stderr, "Vulkan backend: %s\n", sn_last_error());
            return 1;
        }
        return 0;
    }
#endif
    (void)dev;
    (void)vk;
    printf("no Vulkan device (or no loader/driver): Vulkan tests skipped\n");
    return 77;
}
