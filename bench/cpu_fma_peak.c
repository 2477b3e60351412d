#include <immintrin.h>
#include <stdio.h>
#include <time.h>
/* AVX-512 FMA throughput of one core: 16 independent accumulator chains (bench/cpu_fma_peak.sh) */
__attribute__((target("avx512f"))) static double run(long iters) {
    __m512 a[16], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float s = 0;
    for (int i = 0; i < 16; i++) s += _mm512_reduce_add_ps(a[i]);
    double dt = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "(%g)\n", s);
    return 16.0 * 16 * 2 * iters / dt / 1e9;
}
int main(void) {
    for (int r = 0; r < 2; r++) printf("%.1f\n", run(200000000L));
    return 0;
}
