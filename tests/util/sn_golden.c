#include "sn_golden.h"
#include "sn_test.h"

#include <math.h>
#include <stdlib.h>

double sn_golden_err(const float *a, const float *ref, int64_t n, double floor) {
    double m = floor, d = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)ref[i]) / m;
        if (!(e <= d)) d = e; /* NaN is the maximum */
    }
    return d;
}

float *sn_golden_read(const sn_safetensors *f, const char *name, int64_t *n) {
    const sn_st_tensor *t = sn_st_find(f, name);
    if (!t) fail_msg("golden file %s has no tensor '%s'", sn_st_label(f), name);
    *n = (int64_t)sn_st_numel(t);
    float *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    SN_ASSERT_OK(sn_st_read_f32(f, name, v, (size_t)*n));
    return v;
}

float *sn_golden_host(const sn_tensor *t) {
    int64_t n = sn_nelem(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    SN_ASSERT_OK(sn_tensor_get(t, v, n));
    return v;
}

int sn_golden_meta_int(const sn_safetensors *f, const char *key) {
    const char *v = sn_st_meta(f, key);
    if (!v) fail_msg("golden file %s: metadata '%s' missing", sn_st_label(f), key);
    return atoi(v);
}
