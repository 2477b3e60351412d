/* Timing helpers shared by the benchmark programs. */
#ifndef SN_BENCH_UTIL_H
#define SN_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/* monotonic seconds */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double bench_now_ms(void) { return 1e3 * bench_now(); }

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* sorts t[0..n) in place; the median (the upper one for even n) */
static inline double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    return n > 0 ? t[n / 2] : 0.0;
}

#endif
