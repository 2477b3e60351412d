/* Deterministic speech-like test signals, the C twin of synth() in
 * gen_metrics_ref.py: the reference file stores only parameters and scores,
 * and both sides regenerate the same signals (equal up to libm rounding, which
 * the test checks through stored checksums). */
#ifndef SN_TEST_SYNTH_H
#define SN_TEST_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define SYN_PI 3.14159265358979323846

typedef struct {
    uint32_t s;
} syn_rng;

static double syn_uniform(syn_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 17;
    r->s ^= r->s << 5;
    return ((r->s >> 8) + 0.5) / 16777216.0;
}

/* n Gaussian values; Box-Muller on pairs of uniforms (one value per pair). */
static void syn_gauss(uint32_t seed, double *g, int64_t n) {
    syn_rng r = {seed ? seed : 1};
    for (int64_t i = 0; i < n; i++) {
        double u1 = syn_uniform(&r), u2 = syn_uniform(&r);
        g[i] = sqrt(-2.0 * log(u1)) * cos(2.0 * SYN_PI * u2);
    }
}

/* Voiced harmonics with moving formants and 3 syllables/s, every 4th silent. */
static void syn_speech(int fs, int64_t n, int variant, double *x) {
    double f0b = 110.0 + 20.0 * variant;
    int K = (int)floor(0.45 * fs / (f0b + 30.0));
    if (K > 20) K = 20;
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / fs;
        double f0 = f0b + 30.0 * sin(2 * SYN_PI * 0.5 * t);
        double ph = 2 * SYN_PI * (f0b * t - 30.0 / (2 * SYN_PI * 0.5) * cos(2 * SYN_PI * 0.5 * t));
        double F1 = 600.0 + 100.0 * sin(2 * SYN_PI * 1.3 * t);
        double F2 = 1700.0 + 300.0 * sin(2 * SYN_PI * 0.7 * t);
        double s = 0;
        for (int k = 1; k <= K; k++) {
            double fk = k * f0, d1 = (fk - F1) / 200.0, d2 = (fk - F2) / 300.0;
            double a = (1.0 / k) * (1.0 + 3.0 * exp(-d1 * d1) + 2.0 * exp(-d2 * d2));
            s += a * sin(k * ph);
        }
        double r = 3.0 * t, syl = floor(r), fr = r - syl, e = sin(SYN_PI * fr);
        e = e * e;
        if (fmod(syl, 4.0) == 3.0) e = 0;
        x[i] = 0.3 * e * s;
    }
}

/* kind 0 white, 1 low-passed (one pole 0.95), 2 white with 4 Hz modulation. */
static void syn_noise(int fs, int64_t n, int kind, uint32_t seed, double *v) {
    syn_gauss(seed, v, n);
    if (kind == 1) {
        double y = 0;
        for (int64_t i = 0; i < n; i++) v[i] = y = v[i] + 0.95 * y;
    } else if (kind == 2) {
        for (int64_t i = 0; i < n; i++) v[i] *= 1.0 + 0.9 * sin(2 * SYN_PI * 4.0 * i / fs);
    }
}

/* clean and est as float32; kind -1: est = clean, -2: est = noise only. */
static void syn_pair(int fs, int64_t n, int variant, int kind, uint32_t seed, double snr_db,
                     float *clean, float *est) {
    double *x = malloc(n * sizeof *x), *v = malloc(n * sizeof *v);
    syn_speech(fs, n, variant, x);
    if (kind == -1) {
        for (int64_t i = 0; i < n; i++) clean[i] = est[i] = (float)x[i];
    } else {
        syn_noise(fs, n, kind < 0 ? 0 : kind, seed, v);
        double px = 0, pv = 0;
        for (int64_t i = 0; i < n; i++) px += x[i] * x[i], pv += v[i] * v[i];
        double g = sqrt(px / (pv * pow(10.0, snr_db / 10.0)));
        for (int64_t i = 0; i < n; i++) {
            clean[i] = (float)x[i];
            est[i] = (float)(kind == -2 ? g * v[i] : x[i] + g * v[i]);
        }
    }
    free(x);
    free(v);
}

#endif
