/* CPU bf16 mixed precision (train.mixed_precision on the CPU): the bf16 GEMM against
 * float64 references (odd shapes, every transpose, alpha/beta; the AVX512-BF16 path,
 * the AMX-BF16 one where the CPU has it, and the AMX loop on emulated tiles), the packed bf16
 * recurrent kernel, CRN training steps in bf16 against f32, and the clear refusal on
 * a CPU without AVX512-BF16 (simulated with SN_CPU_NO_BF16=1), and the ping-pong walk of
 * the recurrent kernels bit-identical to the forward one.
 * Inputs are fresh each run (the seed is printed; SN_TEST_SEED=N repeats one). */
#include "sn_test.h"
#include "backends/cpu/cpu.h"
#include "backends/cpu/rnn_internal.h"
#include "sinter/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t g_seed;

static double bf(float x) { return sn_bf16_to_f32(sn_f32_to_bf16(x)); }

/* the fast path is there (else only the portable one is tested) */
static bool fast_bf16(void) { return sn_cpu_bf16_isa() != NULL; }

/* One product C = alpha op(A) op(B) + beta C0 through sn_bgemm (pool or serial),
 * checked two ways:
 *  - against float64 of the bf16-rounded inputs: only f32 accumulation error is
 *    allowed (K * 2^-22 of sum |a||b|): the rounding is bf16, nothing coarser, and
 *    an f32 GEMM of the unrounded inputs would fail it;
 *  - against float64 of the f32 inputs: the bf16 rounding error, a random walk of K
 *    terms a_k b_k (1 + e_k), |e_k| <= 2^-8, within 4 * 2^-8 * sqrt(K) * rms_k(a_k b_k)
 *    (about 10 standard deviations; the worst case 2^-8 * sum|a_k b_k| at K = 1). */
static void check_gemm(sn_pool *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2; /* padded leading dims */
    int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
    float *A = sn_test_rand_new(na > 0 ? na : 1, &g_seed, -1, 1), *B = sn_test_rand_new(nb > 0 ? nb : 1, &g_seed, -2, 2);
    float *C = sn_test_rand_new(nc, &g_seed, -1, 1), *C0 = malloc((size_t)nc * sizeof *C0);
    if (beta == 0.0f)
        for (int64_t i = 0; i < nc; i++) C[i] = NAN; /* beta 0 must not read C */
    memcpy(C0, C, (size_t)nc * sizeof *C);
    /* the whole-B and the B-streaming forms (SN_BGEMM_STREAM) give the same bits; the
     * references below check them */
    float *Cs = malloc((size_t)nc * sizeof *Cs);
    for (int form = 1; form >= 0; form--) {
        float *Cf = form ? Cs : C;
        memcpy(Cf, C0, (size_t)nc * sizeof *C);
        setenv("SN_BGEMM_STREAM", form ? "1" : "0", 1);
        if (p) sn_bgemm(p, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cf, ldc);
        else sn_bgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cf, ldc);
    }
    unsetenv("SN_BGEMM_STREAM");
    assert_memory_equal(Cs, C, (size_t)nc * sizeof *C);
    free(Cs);
    double worst_r = 0, worst_f = 0;
    /* op(A) as rows [M][K], op(B) as columns [N][K], f32 and bf16-rounded, so the
     * reference loop runs over contiguous memory */
    double *Ao = malloc((size_t)(M * K + 1) * sizeof *Ao), *Bo = malloc((size_t)(N * K + 1) * sizeof *Bo);
    double *Ar = malloc((size_t)(M * K + 1) * sizeof *Ar), *Br = malloc((size_t)(N * K + 1) * sizeof *Br);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            float a = ta ? A[k * lda + m] : A[m * lda + k];
            Ao[m * K + k] = a;
            Ar[m * K + k] = bf(a);
        }
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            float b = tb ? B[n * ldb + k] : B[k * ldb + n];
            Bo[n * K + k] = b;
            Br[n * K + k] = bf(b);
        }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double sr = 0, sf = 0, sabs = 0, ssq = 0;
            const double *ao = Ao + m * K, *ar = Ar + m * K, *bo = Bo + n * K, *br = Br + n * K;
            for (int64_t k = 0; k < K; k++) {
                double pr = ar[k] * br[k], pf = ao[k] * bo[k];
                sr += pr;
                sf += pf;
                sabs += fabs(pr);
                ssq += pf * pf;
            }
            double base = beta == 0.0f ? 0 : (double)beta * C0[m * ldc + n];
            double got = C[m * ldc + n];
            double er = fabs(got - (alpha * sr + base)), ef = fabs(got - (alpha * sf + base));
            double tol_r = fabs(alpha) * sabs * (K + 2) * ldexp(1, -22) + fabs(base) * ldexp(1, -22) + 1e-30;
            double tol_f = 4 * fabs(alpha) * ldexp(1, -8) * sqrt(ssq) + tol_r; /* sqrt(ssq) = sqrt(K) rms */
            if (!(er <= tol_r) || !(ef <= tol_f))
                fail_msg("bf16 GEMM ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: C[%lld,%lld] = %.9g, "
                         "bf16-input ref %.9g (err %.3g, tol %.3g), f32-input ref %.9g (err %.3g, tol %.3g); seed %llu",
                         ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, (long long)m, (long long)n,
                         got, alpha * sr + base, er, tol_r, alpha * sf + base, ef, tol_f, (unsigned long long)g_seed);
            worst_r = fmax(worst_r, er / tol_r);
            worst_f = fmax(worst_f, ef / tol_f);
        }
    /* the padding between rows stays untouched */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = N; n < ldc; n++) assert_true(memcmp(&C[m * ldc + n], &C0[m * ldc + n], sizeof *C) == 0);
    free(A);
    free(B);
    free(C);
    free(C0);
    free(Ao);
    free(Bo);
    free(Ar);
    free(Br);
}

static const int64_t k_shapes[][3] = {
    {1, 1, 1}, {7, 5, 1}, {1, 200, 3}, {13, 49, 2}, {8, 48, 384}, {17, 97, 385}, {9, 47, 600}, {100, 130, 777},
    {200, 50, 33}, {16, 96, 3000}, {5, 7, 2001}, /* the last two: K split over the threads */
    /* AMX edges: M, N not multiples of 16 / 32 / 48, odd K, an odd strip count in a
     * C tile, two C tiles each way, two K blocks (the last one short); K split */
    {33, 65, 31}, {99, 200, 545}, {20, 40, 4099},
};

static void run_shapes(sn_pool *p) {
    for (size_t s = 0; s < sizeof k_shapes / sizeof *k_shapes; s++)
        for (int t = 0; t < 4; t++) {
            float alpha = t == 3 ? -0.5f : 1.0f, beta = t == 1 ? 0.5f : t == 2 ? 1.0f : 0.0f;
            check_gemm(p, t & 1, t >> 1, k_shapes[s][0], k_shapes[s][1], k_shapes[s][2], alpha, beta);
        }
}

static void run_all(void) {
    sn_pool *p = sn_pool_new(2);
    run_shapes(p);
    run_shapes(NULL);
    /* K = 0: C = beta C */
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {0}, B[1] = {0};
    sn_bgemm(p, false, false, 2, 3, 0, 1.0f, A, 1, B, 3, 2.0f, C, 3);
    assert_true(C[5] == 12.0f);
    sn_pool_free(p);
}

/* AVX512-BF16 (SN_CPU_AMX=0 keeps an AMX CPU off its tiles) */
static void test_gemm_fast(void **st) {
    if (!fast_bf16()) skip();
    unsetenv("SN_CPU_AMX_EMULATE");
    setenv("SN_CPU_AMX", "0", 1);
    assert_string_equal(sn_cpu_bgemm_path(), "AVX512-BF16");
    run_all();
    unsetenv("SN_CPU_AMX");
}

/* AMX-BF16 tiles, where the CPU has them (the same float64 references: the tiles sum
 * in their own order, within the same f32 accumulation bound) */
static void test_gemm_amx(void **st) {
    const char *isa = sn_cpu_bf16_isa();
    if (!isa || !strstr(isa, "AMX")) skip();
    unsetenv("SN_CPU_AMX_EMULATE");
    unsetenv("SN_CPU_AMX");
    printf("bf16 GEMM path: %s\n", sn_cpu_bgemm_path());
    assert_string_equal(sn_cpu_bgemm_path(), "AMX-BF16"); /* else the kernel refused the tile state: logged */
    run_all();
}

/* the AMX loop (packing layout, edges, K blocks, K split) on emulated tiles, so CPUs
 * without AMX test it too */
static void test_gemm_amx_emulated(void **st) {
    setenv("SN_CPU_AMX_EMULATE", "1", 1);
    assert_non_null(strstr(sn_cpu_bgemm_path(), "emulated"));
    run_all();
    unsetenv("SN_CPU_AMX_EMULATE");
}

/* the portable C path that runs where AVX512-BF16 is missing: the same rounding */
static void test_gemm_portable(void **st) {
    unsetenv("SN_CPU_AMX_EMULATE");
    setenv("SN_CPU_NO_BF16", "1", 1);
    sn_pool *p = sn_pool_new(2);
    run_shapes(p);
    sn_pool_free(p);
    unsetenv("SN_CPU_NO_BF16");
}

static void test_rounding(void **st) {
    assert_int_equal(sn_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(sn_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);              /* tie: to even */
    assert_int_equal(sn_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82);          /* tie: to even, up */
    assert_int_equal(sn_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81); /* above the tie */
    assert_true(isnan(sn_bf16_to_f32(sn_f32_to_bf16(NAN))));
    assert_true(isinf(sn_bf16_to_f32(sn_f32_to_bf16(INFINITY))));
    uint32_t pr[3];
    float x[5] = {1, 2, 3, 4, 5};
    sn_bf16_pairs(pr, x, 5);
    assert_int_equal(pr[0], 0x40003f80u);
    assert_int_equal(pr[2], 0x000040a0u); /* the odd tail pairs with 0 */
}

/* the modes of the recurrent product to test: AVX512-BF16, the AMX tiles where the CPU
 * has them, and their emulation */
static int amx_modes(int *modes) {
    int n = 0;
    modes[n++] = 0;
    if (sn_bgemm_amx_mode() == 1) modes[n++] = 1;
    modes[n++] = 2;
    return n;
}

static void recurrent_kernel_cases(int mode) {
    sn_backend *be = sn_cpu_backend_new(2);
    sn_cpu *c = be->ctx;
    const int64_t Bs[] = {1, 4, 5, 11, 16, 17, 37}, Ns[] = {16, 37, 130}, Ks[] = {1, 16, 33, 200, 32, 63, 96};
    for (size_t ib = 0; ib < 7; ib++)
        for (size_t in = 0; in < 3; in++)
            for (size_t ik = 0; ik < 7; ik++) {
                int64_t B = Bs[ib], N = Ns[in], K = Ks[ik], lda = K + 5;
                float *A = sn_test_rand_new(B * lda, &g_seed, -1, 1), *W = sn_test_rand_new(N * K, &g_seed, -1, 1);
                float *C = sn_test_rand_new(B * N, &g_seed, -1, 1), *C0 = malloc((size_t)(B * N) * sizeof *C0);
                memcpy(C0, C, (size_t)(B * N) * sizeof *C);
                uint32_t *P = NULL, *a16 = malloc((size_t)(B * ((K + 1) / 2)) * sizeof *a16);
                assert_int_equal(posix_memalign((void **)&P, 64, (size_t)sn_rnn_packed16_words(N, K) * 4), 0);
                sn_rnn_pack_panels_bf16(c, P, W, N, K, K, 1);
                { /* the k-major source (the backward's w_hh^T) packs to the same bits, and so does
                   * the generic loop (the fast paths' conversion is the same rounding; no
                   * subnormals among these inputs, which vcvtne2ps2bf16 flushes) */
                    float *Wt = malloc((size_t)(N * K) * sizeof *Wt);
                    uint32_t *Pt = NULL;
                    assert_int_equal(posix_memalign((void **)&Pt, 64, (size_t)sn_rnn_packed16_words(N, K) * 4), 0);
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t k = 0; k < K; k++) Wt[k * N + n] = W[n * K + k];
                    sn_rnn_pack_panels_bf16(c, Pt, Wt, N, K, 1, N);
                    assert_memory_equal(P, Pt, (size_t)sn_rnn_packed16_words(N, K) * 4);
                    setenv("SN_CPU_NO_BF16", "1", 1); /* and the portable packing (the generic loop), both layouts */
                    sn_rnn_pack_panels_bf16(c, Pt, W, N, K, K, 1);
                    assert_memory_equal(P, Pt, (size_t)sn_rnn_packed16_words(N, K) * 4);
                    sn_rnn_pack_panels_bf16(c, Pt, Wt, N, K, 1, N);
                    unsetenv("SN_CPU_NO_BF16");
                    assert_memory_equal(P, Pt, (size_t)sn_rnn_packed16_words(N, K) * 4);
                    free(Wt);
                    free(Pt);
                }
                bool acc = ik & 1;
                sn_rnn_step_gemm_p16(c, B, N, K, A, lda, P, C, N, acc, a16);
                int64_t KP = (K + 1) / 2;
                if (mode && B <= 16 && KP % 16 == 0) { /* a16 holds A's k-pairs now */
                    float *Ct = malloc((size_t)(B * N) * sizeof *Ct);
                    memcpy(Ct, C0, (size_t)(B * N) * sizeof *Ct);
                    assert_true(sn_rnn_skinny_amx(mode, a16, KP, B, P, KP, Ct, N, 0, N, acc));
                    assert_memory_equal(Ct, C, (size_t)(B * N) * sizeof *Ct);
                    free(Ct);
                } else if (mode)
                    assert_false(sn_rnn_skinny_amx(mode, a16, KP, B, P, KP, C0, N, 0, N, acc));
                for (int64_t b = 0; b < B; b++)
                    for (int64_t n = 0; n < N; n++) {
                        double s = 0, sa = 0;
                        for (int64_t k = 0; k < K; k++) {
                            s += bf(A[b * lda + k]) * bf(W[n * K + k]);
                            sa += fabs(bf(A[b * lda + k]) * bf(W[n * K + k]));
                        }
                        if (acc) s += C0[b * N + n];
                        double err = fabs(C[b * N + n] - s), tol = (sa + fabs(C0[b * N + n])) * (K + 2) * ldexp(1, -22);
                        if (!(err <= tol + 1e-30))
                            fail_msg("recurrent bf16 B=%lld N=%lld K=%lld: [%lld,%lld] = %.9g vs %.9g; seed %llu",
                                     (long long)B, (long long)N, (long long)K, (long long)b, (long long)n,
                                     C[b * N + n], s, (unsigned long long)g_seed);
                    }
                free(A);
                free(W);
                free(C);
                free(C0);
                free(P);
                free(a16);
            }
    sn_backend_free(be);
}

/* the packed recurrent product against float64 of the rounded inputs, any batch, on
 * each path; where the AMX tiles take the shape (B <= 16, K/2 a multiple of 16) they
 * must (sn_rnn_skinny_amx returns true) and give the bits of the dispatched call */
static void test_recurrent_kernel(void **st) {
    if (!fast_bf16()) skip();
    int modes[3], nm = amx_modes(modes);
    for (int im = 0; im < nm; im++) {
        sn_rnn_amx_set(modes[im]);
        printf("recurrent kernel, AMX mode %d\n", modes[im]);
        recurrent_kernel_cases(modes[im]);
    }
    sn_rnn_amx_set(-1);
}


/* the ping-pong traversal (sn_rnn_pingpong): the packed kernels with their 64-column
 * blocks last first give exactly the bits of the forward walk (only the visiting order
 * of independent output columns changes), f32 and bf16, ranges that start past 0 and
 * end in a partial block and a partial panel, batches of 4 and over */
static void test_pingpong_kernels(void **st) {
    if (sn_rnn_skinny_level() != 2) skip(); /* no AVX-512: the packed kernels never run */
#ifdef SN_SKINNY_X86
    sn_backend *be = sn_cpu_backend_new(2);
    sn_cpu *c = be->ctx;
    int modes[3], nm = amx_modes(modes);
    const int64_t N = 229, Ks[] = {37, 64}, ranges[][2] = {{0, 229}, {16, 229}, {64, 200}, {32, 96}, {48, 64}};
    for (int im = 0; im < nm; im++)
    for (int ik = 0; ik < 2; ik++)
    for (int64_t B = 1; B <= 9; B += 4)
        for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++)
            for (int acc = 0; acc < 2; acc++) {
                int64_t n0 = ranges[r][0], n1 = ranges[r][1], K = Ks[ik], KP = (K + 1) / 2;
                sn_rnn_amx_set(modes[im]);
                float *A = sn_test_rand_new(B * K, &g_seed, -1, 1), *W = sn_test_rand_new(N * K, &g_seed, -1, 1);
                float *C0 = sn_test_rand_new(B * N, &g_seed, -1, 1), *Cf = malloc((size_t)(B * N) * sizeof *Cf);
                float *Cr = malloc((size_t)(B * N) * sizeof *Cr), *P = NULL;
                uint32_t *P16 = NULL, *a16 = malloc((size_t)(B * KP) * sizeof *a16);
                assert_int_equal(posix_memalign((void **)&P, 64, (size_t)sn_rnn_packed_floats(N, K) * 4), 0);
                assert_int_equal(posix_memalign((void **)&P16, 64, (size_t)sn_rnn_packed16_words(N, K) * 4), 0);
                sn_rnn_pack_panels(c, P, W, N, K, K, 1);
                memcpy(Cf, C0, (size_t)(B * N) * sizeof *Cf);
                memcpy(Cr, C0, (size_t)(B * N) * sizeof *Cr);
                sn_rnn_skinny_packed_dir(A, K, B, P, K, Cf, N, n0, n1, acc, false);
                sn_rnn_skinny_packed_dir(A, K, B, P, K, Cr, N, n0, n1, acc, true);
                assert_memory_equal(Cf, Cr, (size_t)(B * N) * sizeof *Cf);
                if (fast_bf16()) {
                    sn_rnn_pack_panels_bf16(c, P16, W, N, K, K, 1);
                    for (int64_t b = 0; b < B; b++) sn_bf16_pairs(a16 + b * KP, A + b * K, K);
                    memcpy(Cf, C0, (size_t)(B * N) * sizeof *Cf);
                    memcpy(Cr, C0, (size_t)(B * N) * sizeof *Cr);
                    sn_rnn_skinny_packed_bf16_dir(a16, KP, B, P16, KP, Cf, N, n0, n1, acc, false);
                    sn_rnn_skinny_packed_bf16_dir(a16, KP, B, P16, KP, Cr, N, n0, n1, acc, true);
                    assert_memory_equal(Cf, Cr, (size_t)(B * N) * sizeof *Cf);
                }
                /* and the columns outside [n0, n1) untouched */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t n = 0; n < N; n++)
                        if (n < n0 || n >= n1) assert_true(memcmp(&Cr[b * N + n], &C0[b * N + n], sizeof *Cr) == 0);
                free(A);
                free(W);
                free(C0);
                free(Cf);
                free(Cr);
                free(P);
                free(P16);
                free(a16);
            }
    sn_rnn_amx_set(-1);
    sn_backend_free(be);
#endif
}

/* ---- training: the CRN in bf16 follows the f32 loss curve */
static int g_crn_hidden = 64;
static int g_crn_ch[5] = {8, 16, 16, 32, 32};
static void run_crn(sn_rnn_kind kind, bool bf16, int B, float *losses, int steps) {
    sn_backend *b = sn_cpu_backend_new(2);
    if (bf16) SN_ASSERT_OK(sn_backend_set_precision(b, &(sn_precision){.bf16 = true}));
    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.rnn = kind;
    cfg.hidden = g_crn_hidden;
    memcpy(cfg.channels, g_crn_ch, sizeof g_crn_ch);
    sn_model *m;
    SN_ASSERT_OK(sn_crn_new(&cfg, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 42));
    sn_step *s;
    const int T = 25;
    SN_ASSERT_OK(sn_step_new(m, b, b, B, T, NULL, &s));
    int64_t n = (int64_t)B * T * cfg.freq_bins;
    uint64_t seed = 5; /* the same batches in both precisions */
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int k = 0; k < steps; k++) {
        sn_test_rand(x, n, &seed, 0, 2);
        for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * x[i];
        SN_ASSERT_OK(sn_step_run(s, x, y, 1e-3f, &losses[k]));
    }
    free(x);
    free(y);
    sn_step_free(s);
    sn_model_free(m);
    sn_backend_free(b);
}

/* 20 Adam steps from the same weights on the same batches: every bf16 loss within 1%
 * of the f32 one (bf16 rounding moves single losses by ~0.1% here), the curve falls as
 * much, and it is not the f32 curve itself (the bf16 path really ran) */
static void check_curve(sn_rnn_kind kind, int B) {
    enum { STEPS = 20 };
    float f32[STEPS], b16[STEPS];
    run_crn(kind, false, B, f32, STEPS);
    run_crn(kind, true, B, b16, STEPS);
    double worst = 0, diff = 0;
    for (int i = 0; i < STEPS; i++) {
        double r = fabs((double)b16[i] - f32[i]) / fabs((double)f32[i]);
        worst = fmax(worst, r);
        diff += fabs((double)b16[i] - f32[i]);
    }
    printf("CRN %s batch %d: loss f32 %.5f -> %.5f, bf16 %.5f -> %.5f, worst relative gap %.2e\n",
           kind == SN_RNN_GRU ? "gru" : kind == SN_RNN_ATTENTION ? "attention" : "lstm", B, f32[0], f32[STEPS - 1],
           b16[0], b16[STEPS - 1], worst);
    assert_true(worst < 0.01);
    assert_true(b16[STEPS - 1] < 0.8 * b16[0]);
    assert_true(diff > 0);
}

static void test_train_lstm(void **st) {
    if (!fast_bf16()) skip();
    check_curve(SN_RNN_LSTM, 3);  /* the region path */
    check_curve(SN_RNN_LSTM, 20); /* the region path, AMX tiles in two row groups */
    sn_rnn_skinny_max_b_set(8);
    check_curve(SN_RNN_LSTM, 10); /* past the skinny limit: one pool_for per step */
    sn_rnn_skinny_max_b_set(-1);
}

/* bf16 mode's two convolution forms (one bf16 GEMM; the f32 direct kernels where the
 * GEMM has no AMX or a layer has fewer than 64 channels): the same curve condition
 * with each forced, then by default with channels that give layers of both kinds */
static void test_train_conv_forms(void **st) {
    if (!fast_bf16()) skip();
    const char *forms[] = {"gemm", "f32"};
    for (int i = 0; i < 2; i++) {
        setenv("SN_CONV_BF16", forms[i], 1);
        printf("SN_CONV_BF16=%s: ", forms[i]);
        check_curve(SN_RNN_LSTM, 3);
    }
    unsetenv("SN_CONV_BF16");
    int narrow[5], wide[5] = {8, 16, 64, 64, 64};
    memcpy(narrow, g_crn_ch, sizeof narrow);
    memcpy(g_crn_ch, wide, sizeof wide);
    printf("default, channels 8-16-64-64-64: ");
    check_curve(SN_RNN_LSTM, 3);
    memcpy(g_crn_ch, narrow, sizeof narrow);
}

static void test_train_gru_attention(void **st) {
    if (!fast_bf16()) skip();
    check_curve(SN_RNN_GRU, 3);
    check_curve(SN_RNN_ATTENTION, 3);
}

/* whole training steps with the ping-pong on and off: the same losses to the bit, f32
 * and bf16 (hidden 256: each of the 2 threads owns 128 units, two 64-column blocks,
 * so the odd steps really run backward) */
static void test_pingpong_train(void **st) {
    enum { STEPS = 3 };
    g_crn_hidden = 256;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        if (bf16 && !fast_bf16()) break;
        float on[STEPS], off[STEPS];
        sn_rnn_pingpong_set(1);
        run_crn(SN_RNN_LSTM, bf16, 3, on, STEPS);
        sn_rnn_pingpong_set(0);
        run_crn(SN_RNN_LSTM, bf16, 3, off, STEPS);
        sn_rnn_pingpong_set(-1);
        printf("ping-pong %s: losses %.9g %.9g %.9g (on) vs %.9g %.9g %.9g (off)\n", bf16 ? "bf16" : "f32", on[0],
               on[1], on[2], off[0], off[1], off[2]);
        assert_memory_equal(on, off, sizeof on);
    }
    g_crn_hidden = 64;
}

/* a CPU without AVX512-BF16: set_precision refuses, naming the feature and the fix */
static void test_missing_feature(void **st) {
    setenv("SN_CPU_NO_BF16", "1", 1);
    sn_backend *b = sn_cpu_backend_new(1);
    sn_device_info info;
    SN_ASSERT_OK(sn_backend_info(b, &info));
    assert_false(info.bf16);
    assert_int_equal(sn_backend_set_precision(b, &(sn_precision){.bf16 = true}), SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), "AVX512-BF16"));
    assert_non_null(strstr(sn_last_error(), "train.mixed_precision=false"));
    assert_int_equal(sn_backend_set_precision(b, &(sn_precision){.f16 = true}), SN_ERR_UNSUPPORTED);
    SN_ASSERT_OK(sn_backend_set_precision(b, &(sn_precision){0}));
    sn_backend_free(b);
    unsetenv("SN_CPU_NO_BF16");
    if (!fast_bf16()) return;
    b = sn_cpu_backend_new(1);
    SN_ASSERT_OK(sn_backend_info(b, &info));
    assert_true(info.bf16);
    assert_non_null(strstr(info.features, "AVX512_BF16"));
    SN_ASSERT_OK(sn_backend_set_precision(b, &(sn_precision){.bf16 = true}));
    sn_backend_free(b);
}

int main(void) {
    const char *e = getenv("SN_TEST_SEED");
    g_seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("test_cpu_bf16: seed %llu (SN_TEST_SEED=%llu repeats it)%s\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed, fast_bf16() ? "" : "; no AVX512-BF16 here: the fast paths are skipped");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),          cmocka_unit_test(test_gemm_fast),
        cmocka_unit_test(test_gemm_amx),          cmocka_unit_test(test_gemm_amx_emulated),
        cmocka_unit_test(test_gemm_portable),     cmocka_unit_test(test_recurrent_kernel),
        cmocka_unit_test(test_train_lstm),        cmocka_unit_test(test_train_conv_forms),
        cmocka_unit_test(test_train_gru_attention), cmocka_unit_test(test_missing_feature),
        cmocka_unit_test(test_pingpong_kernels),
        cmocka_unit_test(test_pingpong_train),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
