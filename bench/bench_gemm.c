/* sgemm (the BLAS) against sinter's bf16 GEMM (sn_bgemm: AMX-BF16 or AVX512-BF16; SN_CPU_AMX=0 forces the latter) on the CPU, on
 * the prototype's LSTM shapes (B*T = 1600, H = 1024, 4H = 4096) and a conv shape.
 *   bench_gemm [threads=0 (all cores)] [runs=5]
 * Prints one line per shape: ms (median) and GFLOP/s of each, and the ratio. */
#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"
#include "backends/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>



typedef void (*gemm_fn)(sn_pool *, bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                        const float *, int64_t, float, float *, int64_t);

static double time_it(gemm_fn f, sn_pool *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                      const float *B, float *C, int runs) {
    double t[32];
    f(p, ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N); /* warm-up */
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now_ms();
        f(p, ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
        t[r] = bench_now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp_double);
    return t[runs / 2];
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, runs = argc > 2 ? atoi(argv[2]) : 5;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (runs < 1 || runs > 32) runs = 5;
    sn_pool *p = sn_pool_new(threads);
    sn_blas_set_threads(threads);
    printf("bench_gemm: %d threads, BLAS %s, bf16 ISA %s, bf16 GEMM path %s\n", threads, sn_blas_name(),
           sn_cpu_bf16_isa() ? sn_cpu_bf16_isa() : "none (portable C: slow)", sn_cpu_bgemm_path());
    struct {
        const char *what;
        bool ta, tb;
        int64_t M, N, K;
    } shapes[] = {
        {"LSTM input proj  x W_ih^T", false, true, 1600, 4096, 1024},
        {"LSTM dx          dG W_ih", false, false, 1600, 1024, 4096},
        {"LSTM dW_ih       dG^T x", true, false, 4096, 1024, 1600},
        {"conv enc.2       W col", false, false, 64, 30400, 192},
        {"conv enc.2 dW    dY col^T", false, true, 64, 192, 30400},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(K * N) * sizeof *B);
        float *C = malloc((size_t)(M * N) * sizeof *C);
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (int64_t i = 0; i < K * N; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        double ts = time_it(sn_sgemm, p, shapes[s].ta, shapes[s].tb, M, N, K, A, B, C, runs);
        double tb = time_it(sn_bgemm, p, shapes[s].ta, shapes[s].tb, M, N, K, A, B, C, runs);
        double gf = 2.0 * M * N * K * 1e-6;
        printf("%-28s M %5lld N %5lld K %5lld  f32 %8.2f ms %6.1f GFLOP/s  bf16 %8.2f ms %6.1f GFLOP/s  bf16/f32 %.2f\n",
               shapes[s].what, (long long)M, (long long)N, (long long)K, ts, gf / ts, tb, gf / tb, tb / ts);
        free(A);
        free(B);
        free(C);
    }
    sn_pool_free(p);
    return 0;
}
