/* SNR / SI-SDR against float64 numpy and STOI / ESTOI against pystoi
 * (data/metrics_ref.txt, made by gen_metrics_ref.py, and pystoi itself run from
 * .venv on other signals), plus the active level. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/audio.h"
#include "sn_pyref.h"
#include "sn_test.h"
#include "synth.h"
#include "tmpdir.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif

/* pystoi agreement: the resampler and every step are ported, so differences
 * are rounding (float64 in both, different summation order). */
#define STOI_TOL 1e-4

static void test_against_references(void **state) {
    const char *path = SN_SOURCE_DIR "/tests/audio/data/metrics_ref.txt";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int cases = 0;
    double worst_stoi = 0, worst_estoi = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char name[64];
        int fs, var, kind;
        long long n;
        unsigned seed;
        double snr_db, sx, sy, syy, rstoi, restoi, rsnr, rsisdr;
        int k = sscanf(line, "%63s %d %lld %d %d %u %lf %lf %lf %lf %lf %lf %lf %lf", name, &fs, &n,
                       &var, &kind, &seed, &snr_db, &sx, &sy, &syy, &rstoi, &restoi, &rsnr, &rsisdr);
        assert_int_equal(k, 14);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        syn_pair(fs, n, var, kind, seed, snr_db, x, y);
        double cx = 0, cy = 0, cyy = 0;
        for (long long i = 0; i < n; i++) cx += x[i], cy += y[i], cyy += (double)y[i] * y[i];
        /* the same signals as the generator made (up to libm ulps) */
        assert_true(fabs(cx - sx) < 1e-6 * (1 + fabs(sx)) + 1e-7 * n);
        assert_true(fabs(cy - sy) < 1e-6 * (1 + fabs(sy)) + 1e-7 * n);
        assert_true(fabs(cyy - syy) < 1e-6 * syy);
        double snr = sn_snr(x, y, n), sisdr = sn_si_sdr(x, y, n), st, es;
        assert_int_equal(sn_stoi(x, y, n, fs, 0, &st), SN_OK);
        assert_int_equal(sn_stoi(x, y, n, fs, 1, &es), SN_OK);
        printf("%-18s fs %5d  STOI %.6f (pystoi %.6f, %+.1e)  ESTOI %.6f (%.6f, %+.1e)  "
               "SNR %.4f (%.4f)  SI-SDR %.4f (%.4f)\n",
               name, fs, st, rstoi, st - rstoi, es, restoi, es - restoi, snr, rsnr, sisdr, rsisdr);
        assert_true(fabs(snr - rsnr) < 1e-4 * (1 + fabs(rsnr)));
        assert_true(fabs(sisdr - rsisdr) < 1e-4 * (1 + fabs(rsisdr)));
        assert_true(fabs(st - rstoi) < STOI_TOL);
        assert_true(fabs(es - restoi) < STOI_TOL);
        if (fabs(st - rstoi) > worst_stoi) worst_stoi = fabs(st - rstoi);
        if (fabs(es - restoi) > worst_estoi) worst_estoi = fabs(es - restoi);
        free(x);
        free(y);
        cases++;
    }
    fclose(f);
    printf("%d cases; worst |STOI - pystoi| %.2e, worst |ESTOI - pystoi| %.2e\n", cases, worst_stoi,
           worst_estoi);
    assert_true(cases >= 10);
}

/* pystoi run now on signals the stored file does not hold (other seeds, rates,
 * lengths): catches a reference file that has gone stale against pystoi. */
static void test_against_pystoi(void **state) {
    static const struct {
        int fs;
        double sec;
        int var, kind;
        unsigned seed;
        double snr_db;
    } cases[] = {
        {16000, 2.0, 2, 0, 31, 3.0},   /* white */
        {8000, 2.5, 1, 1, 32, -3.0},   /* low-passed, below 10 kHz: upsampled */
        {48000, 1.5, 0, 2, 33, 8.0},   /* modulated, 48 kHz: resampled down */
        {12000, 1.7, 1, 0, 34, 12.0},  /* odd rate and length */
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    const char *py = sn_pyref("pystoi, numpy");
    if (!py) skip();
    char cmd[4096], path[512];
    int len = snprintf(cmd, sizeof cmd, "%s '%s/tests/audio/pystoi_ref.py'", py, SN_SOURCE_DIR);
    double st[NC][2];
    for (int c = 0; c < NC; c++) {
        long long n = (long long)(cases[c].sec * cases[c].fs + 0.5);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        syn_pair(cases[c].fs, n, cases[c].var, cases[c].kind, cases[c].seed, cases[c].snr_db, x, y);
        SN_ASSERT_OK(sn_stoi(x, y, n, cases[c].fs, 0, &st[c][0]));
        SN_ASSERT_OK(sn_stoi(x, y, n, cases[c].fs, 1, &st[c][1]));
        char name[32];
        snprintf(name, sizeof name, "clean%d.f32", c);
        write_bytes(tmppath(path, sizeof path, name), x, n * sizeof *x);
        len += snprintf(cmd + len, sizeof cmd - len, " %d '%s'", cases[c].fs, path);
        snprintf(name, sizeof name, "est%d.f32", c);
        write_bytes(tmppath(path, sizeof path, name), y, n * sizeof *y);
        len += snprintf(cmd + len, sizeof cmd - len, " '%s'", path);
        free(x);
        free(y);
    }
    assert_true(len < (int)sizeof cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    for (int c = 0; c < NC; c++) {
        double rs, re;
        assert_int_equal(fscanf(p, "%lf %lf", &rs, &re), 2);
        printf("live pystoi fs %5d: STOI %.6f (pystoi %.6f, %+.1e)  ESTOI %.6f (%.6f, %+.1e)\n", cases[c].fs,
               st[c][0], rs, st[c][0] - rs, st[c][1], re, st[c][1] - re);
        assert_true(fabs(st[c][0] - rs) < STOI_TOL);
        assert_true(fabs(st[c][1] - re) < STOI_TOL);
    }
    assert_int_equal(pclose(p), 0);
}

static void test_snr_sisdr_properties(void **state) {
    enum { N = 8000 };
    float x[N], y[N], z[N];
    for (int i = 0; i < N; i++) {
        x[i] = sinf(0.01f * i) + 0.3f * sinf(0.173f * i);
        y[i] = x[i] + 0.1f * sinf(0.5f * i + 1);
        z[i] = 3.0f * y[i] + 0.2f; /* scaled + DC: SI-SDR unchanged */
    }
    assert_true(fabs(sn_si_sdr(x, y, N) - sn_si_sdr(x, z, N)) < 1e-3);
    assert_true(sn_snr(x, z, N) < sn_snr(x, y, N));
    /* improvement of y over a noisier mixture is positive and consistent */
    float mix[N];
    for (int i = 0; i < N; i++) mix[i] = x[i] + 0.5f * sinf(0.5f * i + 1);
    double imp = sn_si_sdr_improvement(x, y, mix, N);
    assert_true(fabs(imp - (sn_si_sdr(x, y, N) - sn_si_sdr(x, mix, N))) < 1e-12);
    assert_true(imp > 10);
    assert_true(isnan(sn_snr(NULL, y, N)));
    assert_true(isnan(sn_si_sdr(x, y, 0)));
}

static void test_stoi_errors(void **state) {
    float x[100] = {0};
    double v;
    assert_int_equal(sn_stoi(x, x, 100, 0, 0, &v), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "sample rate"));
    assert_int_equal(sn_stoi(NULL, x, 100, 16000, 0, &v), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stoi(x, x, 100, 16000, 0, NULL), SN_ERR_INVALID_ARG);
    /* too short / empty: pystoi's 1e-5, no crash */
    assert_int_equal(sn_stoi(x, x, 100, 16000, 0, &v), SN_OK);
    assert_true(v == 1e-5);
    assert_int_equal(sn_stoi(x, x, 0, 16000, 1, &v), SN_OK);
    assert_true(v == 1e-5);
    x[5] = NAN;
    assert_int_equal(sn_stoi(x, x, 100, 16000, 0, &v), SN_ERR_NUMERIC);
}

static void test_active_level(void **state) {
    enum { FS = 16000, N = 8 * FS };
    float *x = malloc(N * sizeof *x);
    /* a continuous sine of amplitude 0.5: mean square 0.125 = -9.03 dB */
    for (int i = 0; i < N; i++) x[i] = 0.5f * sinf(2 * 3.14159265f * 440 * i / FS);
    double full = sn_active_level(x, N, FS);
    printf("active level: continuous sine %.2f dB (expect -9.03)\n", full);
    assert_true(fabs(full - (-9.03)) < 0.5);
    /* the same sine on half the time (2 s on, 2 s off): the plain RMS drops 3 dB,
     * the active level only by the 200 ms hangover's share (~0.4 dB) */
    for (int i = 0; i < N; i++)
        if ((i / (2 * FS)) % 2) x[i] = 0;
    double half = sn_active_level(x, N, FS);
    printf("active level: sine on 50%% of the time %.2f dB\n", half);
    assert_true(fabs(half - full) < 0.8);
    /* scaling by 0.1 lowers the level by 20 dB */
    for (int i = 0; i < N; i++) x[i] *= 0.1f;
    assert_true(fabs(sn_active_level(x, N, FS) - (half - 20)) < 0.2);
    memset(x, 0, N * sizeof *x);
    assert_true(sn_active_level(x, N, FS) == -100.0);
    assert_true(sn_active_level(x, 0, FS) == -100.0);
    assert_true(isnan(sn_active_level(x, N, 0)));
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_references),
        cmocka_unit_test(test_against_pystoi),
        cmocka_unit_test(test_snr_sisdr_properties),
        cmocka_unit_test(test_stoi_errors),
        cmocka_unit_test(test_active_level),
    };
    return sn_pyref_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
