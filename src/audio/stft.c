/* STFT / iSTFT of DESIGN.md on the CPU with FFTW single precision.
 *
 * One r2c and one c2r plan of size 320 serve the whole process: FFTW's planner
 * is not thread-safe, so they are made once under a mutex; execution through
 * the new-array API (fftwf_execute_dft_r2c/c2r) is thread-safe, and each call
 * uses its own fftwf_malloc'd scratch (same alignment as at planning time). */
#include "sinter/audio.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>

struct sn_stft {
    float window[SN_NFFT];
    double window2[SN_NFFT]; /* w^2 for the WOLA denominator */
};

static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;
static fftwf_plan g_r2c, g_c2r;

static sn_status make_plans(void) {
    sn_status st = SN_OK;
    pthread_mutex_lock(&g_plan_lock);
    if (!g_r2c) {
        float *buf = fftwf_malloc(SN_NFFT * sizeof(float));
        fftwf_complex *spec = fftwf_malloc(SN_NBINS * sizeof(fftwf_complex));
        /* FFTW_ESTIMATE: deterministic plans (MEASURE can pick a different
         * algorithm per run and so change the last bits), and n=320 is tiny. */
        if (buf && spec) {
            g_r2c = fftwf_plan_dft_r2c_1d(SN_NFFT, buf, spec, FFTW_ESTIMATE);
            g_c2r = fftwf_plan_dft_c2r_1d(SN_NFFT, spec, buf, FFTW_ESTIMATE);
        }
        if (!g_r2c || !g_c2r) st = sn_error(SN_ERR_INTERNAL, "FFTW could not make STFT plans");
        fftwf_free(buf);
        fftwf_free(spec);
    }
    pthread_mutex_unlock(&g_plan_lock);
    return st;
}

int64_t sn_stft_frames(int64_t n) { return n < SN_NFFT ? 0 : 1 + (n - SN_NFFT) / SN_HOP; }

sn_status sn_stft_new(sn_stft **s) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "sn_stft_new: s is NULL");
    *s = NULL;
    sn_status st = make_plans();
    if (st) return st;
    sn_stft *o = malloc(sizeof *o);
    if (!o) return sn_error(SN_ERR_NOMEM, "out of memory for the STFT");
    for (int i = 0; i < SN_NFFT; i++) {
        double w = 0.5 - 0.5 * cos(2.0 * 3.14159265358979323846 * i / SN_NFFT); /* periodic Hann */
        o->window[i] = (float)w;
        o->window2[i] = (double)o->window[i] * o->window[i];
    }
    *s = o;
    return SN_OK;
}

void sn_stft_free(sn_stft *s) { free(s); }

typedef struct {
    float *buf;
    fftwf_complex *spec;
} scratch;

static sn_status scratch_new(scratch *sc) {
    sc->buf = fftwf_malloc(SN_NFFT * sizeof(float));
    sc->spec = fftwf_malloc(SN_NBINS * sizeof(fftwf_complex));
    if (!sc->buf || !sc->spec) {
        fftwf_free(sc->buf);
        fftwf_free(sc->spec);
        return sn_error(SN_ERR_NOMEM, "out of memory for STFT scratch");
    }
    return SN_OK;
}

static void scratch_free(scratch *sc) {
    fftwf_free(sc->buf);
    fftwf_free(sc->spec);
}

static void frame_fft(const sn_stft *s, scratch *sc, const float *x) {
    for (int i = 0; i < SN_NFFT; i++) sc->buf[i] = x[i] * s->window[i];
    fftwf_execute_dft_r2c(g_r2c, sc->buf, sc->spec);
}

sn_status sn_stft_forward(sn_stft *s, const float *x, int64_t n, float *re, float *im) {
    if (!s || (!x && n > 0) || n < 0 || !re || !im)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stft_forward: bad arguments");
    int64_t T = sn_stft_frames(n);
    scratch sc;
    sn_status st = scratch_new(&sc);
    if (st) return st;
    for (int64_t t = 0; t < T; t++) {
        frame_fft(s, &sc, x + t * SN_HOP);
        for (int k = 0; k < SN_NBINS; k++) {
            re[t * SN_NBINS + k] = sc.spec[k][0];
            im[t * SN_NBINS + k] = sc.spec[k][1];
        }
    }
    scratch_free(&sc);
    return SN_OK;
}

sn_status sn_stft_mag_phase(sn_stft *s, const float *x, int64_t n, float *mag, float *phase) {
    if (!s || (!x && n > 0) || n < 0 || !mag)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stft_mag_phase: bad arguments");
    int64_t T = sn_stft_frames(n);
    scratch sc;
    sn_status st = scratch_new(&sc);
    if (st) return st;
    for (int64_t t = 0; t < T; t++) {
        frame_fft(s, &sc, x + t * SN_HOP);
        for (int k = 0; k < SN_NBINS; k++) {
            float a = sc.spec[k][0], b = sc.spec[k][1];
            mag[t * SN_NBINS + k] = hypotf(a, b);
            if (phase) phase[t * SN_NBINS + k] = atan2f(b, a);
        }
    }
    scratch_free(&sc);
    return SN_OK;
}

/* Shared WOLA; spectrum of frame t comes from get(t, spec). */
typedef void (*get_spec_fn)(const void *ctx, int64_t t, fftwf_complex *spec);

static sn_status wola(sn_stft *s, get_spec_fn get, const void *ctx, int64_t T, float *y,
                      int64_t n) {
    if (!s || T < 0 || n < 0 || (!y && n > 0))
        return sn_error(SN_ERR_INVALID_ARG, "sn_istft: bad arguments (T=%lld, n=%lld)",
                        (long long)T, (long long)n);
    if (n == 0) return SN_OK;
    double *acc = calloc((size_t)n * 2, sizeof *acc);
    if (!acc) return sn_error(SN_ERR_NOMEM, "out of memory for the iSTFT (%lld samples)",
                              (long long)n);
    double *den = acc + n;
    scratch sc;
    sn_status st = scratch_new(&sc);
    if (st) {
        free(acc);
        return st;
    }
    const double inv_n = 1.0 / SN_NFFT; /* FFTW's c2r is unnormalised */
    for (int64_t t = 0; t < T && t * SN_HOP < n; t++) {
        get(ctx, t, sc.spec);
        fftwf_execute_dft_c2r(g_c2r, sc.spec, sc.buf);
        int64_t off = t * SN_HOP;
        int len = n - off < SN_NFFT ? (int)(n - off) : SN_NFFT;
        for (int i = 0; i < len; i++) {
            acc[off + i] += (double)s->window[i] * sc.buf[i] * inv_n;
            den[off + i] += s->window2[i];
        }
    }
    for (int64_t i = 0; i < n; i++) y[i] = den[i] > 1e-8 ? (float)(acc[i] / den[i]) : 0.0f;
    scratch_free(&sc);
    free(acc);
    return SN_OK;
}

typedef struct {
    const float *a, *b;
} two_arrays;

static void get_reim(const void *ctx, int64_t t, fftwf_complex *spec) {
    const two_arrays *c = ctx;
    for (int k = 0; k < SN_NBINS; k++) {
        spec[k][0] = c->a[t * SN_NBINS + k];
        spec[k][1] = c->b[t * SN_NBINS + k];
    }
}

static void get_magphase(const void *ctx, int64_t t, fftwf_complex *spec) {
    const two_arrays *c = ctx;
    for (int k = 0; k < SN_NBINS; k++) {
        float m = c->a[t * SN_NBINS + k], p = c->b[t * SN_NBINS + k];
        spec[k][0] = m * cosf(p);
        spec[k][1] = m * sinf(p);
    }
}

sn_status sn_istft(sn_stft *s, const float *re, const float *im, int64_t T, float *y, int64_t n) {
    if (T > 0 && (!re || !im)) return sn_error(SN_ERR_INVALID_ARG, "sn_istft: re or im is NULL");
    two_arrays c = {re, im};
    return wola(s, get_reim, &c, T, y, n);
}

sn_status sn_istft_mag_phase(sn_stft *s, const float *mag, const float *phase, int64_t T,
                             float *y, int64_t n) {
    if (T > 0 && (!mag || !phase))
        return sn_error(SN_ERR_INVALID_ARG, "sn_istft_mag_phase: mag or phase is NULL");
    two_arrays c = {mag, phase};
    return wola(s, get_magphase, &c, T, y, n);
}

sn_status sn_stft_mag_phase_batch(sn_stft *s, const float *x, int batch, int64_t n, float *mag,
                                  float *phase) {
    if (batch < 0 || (batch > 0 && (!x || !mag)))
        return sn_error(SN_ERR_INVALID_ARG, "sn_stft_mag_phase_batch: bad arguments");
    int64_t T = sn_stft_frames(n);
    for (int b = 0; b < batch; b++) {
        sn_status st = sn_stft_mag_phase(s, x + (int64_t)b * n, n, mag + (int64_t)b * T * SN_NBINS,
                                         phase ? phase + (int64_t)b * T * SN_NBINS : NULL);
        if (st) return st;
    }
    return SN_OK;
}

sn_status sn_istft_mag_phase_batch(sn_stft *s, const float *mag, const float *phase, int batch,
                                   int64_t T, float *y, int64_t n) {
    if (batch < 0 || (batch > 0 && (!mag || !phase || !y)))
        return sn_error(SN_ERR_INVALID_ARG, "sn_istft_mag_phase_batch: bad arguments");
    for (int b = 0; b < batch; b++) {
        sn_status st = sn_istft_mag_phase(s, mag + (int64_t)b * T * SN_NBINS,
                                          phase + (int64_t)b * T * SN_NBINS, T,
                                          y + (int64_t)b * n, n);
        if (st) return st;
    }
    return SN_OK;
}

/* See audio.h: the first and last hop, where one window covers a sample, fade
 * instead of being divided by a near-zero window-square sum. */
void sn_istft_fade_edges(const sn_stft *s, float *y, int64_t n, int64_t T) {
    if (!s || !y || T <= 0) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t first = i >= SN_NFFT ? (i - SN_NFFT) / SN_HOP + 1 : 0, last = i / SN_HOP;
        if (last > T - 1) last = T - 1;
        double den = 0;
        for (int64_t t = first; t <= last; t++) den += s->window2[i - t * SN_HOP];
        if (den > 1e-8 && den < SN_ISTFT_EDGE_FLOOR) y[i] = (float)(y[i] * den / SN_ISTFT_EDGE_FLOOR);
        /* between the first and the last hop two windows always overlap (sum >= 0.5) */
        if (i == SN_HOP && T > 3 && (T - 1) * SN_HOP - 1 > i) i = (T - 1) * SN_HOP - 1;
    }
}
