/* Metrics: SNR, SI-SDR, STOI/ESTOI (a C port of pystoi 0.4's algorithm, step
 * for step, so scores agree with the Python tools people compare against) and
 * an active speech level after ITU-T P.56 method B. All in double. */
#include "audio/audio_internal.h"

#include <float.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846
#define EPS DBL_EPSILON /* pystoi's EPS = np.finfo(float).eps */

double sn_snr(const float *ref, const float *est, int64_t n) {
    if (!ref || !est || n <= 0) return NAN;
    double s = 0, e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ref[i] - est[i];
        s += (double)ref[i] * ref[i];
        e += d * d;
    }
    return 10.0 * log10((s + EPS) / (e + EPS));
}

double sn_si_sdr(const float *ref, const float *est, int64_t n) {
    if (!ref || !est || n <= 0) return NAN;
    double mr = 0, me = 0;
    for (int64_t i = 0; i < n; i++) {
        mr += ref[i];
        me += est[i];
    }
    mr /= n;
    me /= n;
    double dot = 0, rr = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = ref[i] - mr, e = est[i] - me;
        dot += r * e;
        rr += r * r;
    }
    double a = (dot + EPS) / (rr + EPS), tt = 0, nn = 0;
    for (int64_t i = 0; i < n; i++) {
        double t = a * (ref[i] - mr), d = (est[i] - me) - t;
        tt += t * t;
        nn += d * d;
    }
    return 10.0 * log10((tt + EPS) / (nn + EPS));
}

double sn_si_sdr_improvement(const float *ref, const float *est, const float *mix, int64_t n) {
    return sn_si_sdr(ref, est, n) - sn_si_sdr(ref, mix, n);
}

/* ---- pystoi-compatible resampler ----------------------------------------
 * pystoi resamples with scipy.signal.resample_poly(x, p, q, window=h/sum(h)),
 * h a Kaiser-windowed sinc designed like Octave's resample.m. */

static double bessel_i0(double x) {
    double sum = 1, term = 1, q = x * x / 4;
    for (int k = 1; k < 500; k++) {
        term *= q / ((double)k * k);
        sum += term;
        if (term < sum * 1e-17) break;
    }
    return sum;
}

static long gcd_l(long a, long b) {
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

sn_status sn_resample_poly_oct(const double *in, int64_t n, int rate_out, int rate_in,
                               double **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (rate_in <= 0 || rate_out <= 0)
        return sn_error(SN_ERR_INVALID_ARG, "cannot resample %d Hz to %d Hz: rates must be > 0",
                        rate_in, rate_out);
    long g = gcd_l(rate_out, rate_in), p = rate_out / g, q = rate_in / g;
    long mx = p > q ? p : q;
    if (mx > 100000)
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot resample %d Hz to %d Hz for STOI: the rates have no small common "
                        "ratio (%ld/%ld); resample the files to 16 kHz first",
                        rate_in, rate_out, p, q);
    double cutoff = 1.0 / (2.0 * mx), roll = cutoff / 10, rej = 60.0;
    long L = (long)ceil((rej - 8) / (28.714 * roll));
    long len = 2 * L + 1;
    double *h = malloc((size_t)len * sizeof *h);
    int64_t no = (n * p) / q + ((n * p) % q != 0);
    double *y = malloc((size_t)(no ? no : 1) * sizeof *y);
    if (!h || !y) {
        free(h);
        free(y);
        return sn_error(SN_ERR_NOMEM, "out of memory resampling for STOI");
    }
    double beta = 0.1102 * (rej - 8.7), i0b = bessel_i0(beta), hs = 0;
    for (long j = 0; j < len; j++) {
        double t = (double)(j - L), a = 2 * cutoff * t;
        double sinc = t == 0 ? 1.0 : sin(PI * a) / (PI * a);
        double r = (double)(j - L) / L; /* numpy.kaiser: (n - alpha)/alpha */
        double w = bessel_i0(beta * sqrt(fmax(0.0, 1 - r * r))) / i0b;
        h[j] = w * 2 * p * cutoff * sinc;
        hs += h[j];
    }
    for (long j = 0; j < len; j++) h[j] = h[j] / hs * p;
    /* y[m] = sum_j h[j]·xu[m·q + L - j], xu the input upsampled by p with zeros. */
    for (int64_t m = 0; m < no; m++) {
        int64_t c = m * q + L;
        int64_t klo = c - 2 * L <= 0 ? 0 : (c - 2 * L + p - 1) / p, khi = c / p;
        if (khi > n - 1) khi = n - 1;
        double acc = 0;
        for (int64_t k = klo; k <= khi; k++) acc += h[c - k * p] * in[k];
        y[m] = acc;
    }
    free(h);
    *out = y;
    *n_out = no;
    return SN_OK;
}

/* ---- STOI ----------------------------------------------------------------- */

#define STOI_FS 10000
#define STOI_FRAME 256
#define STOI_HOP 128
#define STOI_NFFT 512
#define STOI_BINS 257
#define STOI_BANDS 15
#define STOI_N 30
#define STOI_DYN 40.0

/* np.hanning(258)[1:-1], MATLAB's hanning(256) */
static void stoi_window(double *w) {
    for (int i = 0; i < STOI_FRAME; i++) w[i] = 0.5 - 0.5 * cos(2 * PI * (i + 1) / (STOI_FRAME + 1));
}

static int64_t n_frames(int64_t len) { /* len(range(0, len - 256, 128)) */
    return len > STOI_FRAME ? (len - STOI_FRAME + STOI_HOP - 1) / STOI_HOP : 0;
}

/* Drops frames of x more than 40 dB below its loudest frame (and the same
 * frames of y), then overlap-adds the windowed frames back. */
static int64_t remove_silent(const double *x, const double *y, int64_t len, double *xo,
                             double *yo, const double *w) {
    int64_t nf = n_frames(len);
    if (nf == 0) return 0;
    double *e = malloc((size_t)nf * sizeof *e), emax = -INFINITY;
    if (!e) return -1;
    for (int64_t f = 0; f < nf; f++) {
        double s = 0;
        for (int i = 0; i < STOI_FRAME; i++) {
            double v = w[i] * x[f * STOI_HOP + i];
            s += v * v;
        }
        e[f] = 20 * log10(sqrt(s) + EPS);
        if (e[f] > emax) emax = e[f];
    }
    int64_t k = 0;
    for (int64_t f = 0; f < nf; f++) {
        if (!(emax - STOI_DYN - e[f] < 0)) continue;
        int64_t o = k * STOI_HOP;
        if (k == 0) {
            memset(xo, 0, STOI_FRAME * sizeof *xo);
            memset(yo, 0, STOI_FRAME * sizeof *yo);
        } else {
            memset(xo + o + STOI_HOP, 0, STOI_HOP * sizeof *xo);
            memset(yo + o + STOI_HOP, 0, STOI_HOP * sizeof *yo);
        }
        for (int i = 0; i < STOI_FRAME; i++) {
            xo[o + i] += w[i] * x[f * STOI_HOP + i];
            yo[o + i] += w[i] * y[f * STOI_HOP + i];
        }
        k++;
    }
    free(e);
    return (k - 1) * STOI_HOP + STOI_FRAME;
}

/* Band edges as FFT bin ranges [lo, hi), matched like pystoi.thirdoct. */
static void third_octaves(int *lo, int *hi) {
    for (int b = 0; b < STOI_BANDS; b++) {
        double fl = 150.0 * pow(2.0, (2.0 * b - 1) / 6), fh = 150.0 * pow(2.0, (2.0 * b + 1) / 6);
        int il = 0, ih = 0;
        double dl = INFINITY, dh = INFINITY;
        for (int k = 0; k < STOI_BINS; k++) {
            double f = (double)k * STOI_FS / STOI_NFFT;
            double a = (f - fl) * (f - fl), c = (f - fh) * (f - fh);
            if (a < dl) dl = a, il = k;
            if (c < dh) dh = c, ih = k;
        }
        lo[b] = il;
        hi[b] = ih;
    }
}

/* A 512-point radix-2 FFT in double (sinter links FFTW single precision only;
 * STOI is computed in double like pystoi). */
static double g_cw[STOI_NFFT / 2], g_sw[STOI_NFFT / 2];
static pthread_once_t g_tw_once = PTHREAD_ONCE_INIT;
static void make_twiddles(void) {
    for (int i = 0; i < STOI_NFFT / 2; i++) {
        g_cw[i] = cos(2 * PI * i / STOI_NFFT);
        g_sw[i] = -sin(2 * PI * i / STOI_NFFT);
    }
}

static void fft512(double *re, double *im) {
    pthread_once(&g_tw_once, make_twiddles);
    const double *cw = g_cw, *sw = g_sw;
    for (int i = 1, j = 0; i < STOI_NFFT; i++) {
        int bit = STOI_NFFT >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j], re[j] = t;
            t = im[i];
            im[i] = im[j], im[j] = t;
        }
    }
    for (int len = 2; len <= STOI_NFFT; len <<= 1) {
        int step = STOI_NFFT / len;
        for (int i = 0; i < STOI_NFFT; i += len)
            for (int k = 0; k < len / 2; k++) {
                double wr = cw[k * step], wi = sw[k * step];
                int a = i + k, b = i + k + len / 2;
                double tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr, im[b] = im[a] - ti;
                re[a] += tr, im[a] += ti;
            }
    }
}

static void band_envelopes(const double *x, int64_t nf, const double *w, const int *lo,
                           const int *hi, double *tob /* [15][nf] */) {
    double re[STOI_NFFT], im[STOI_NFFT];
    for (int64_t f = 0; f < nf; f++) {
        for (int i = 0; i < STOI_FRAME; i++) re[i] = w[i] * x[f * STOI_HOP + i];
        for (int i = STOI_FRAME; i < STOI_NFFT; i++) re[i] = 0;
        memset(im, 0, sizeof im);
        fft512(re, im);
        for (int b = 0; b < STOI_BANDS; b++) {
            double s = 0;
            for (int k = lo[b]; k < hi[b]; k++) s += re[k] * re[k] + im[k] * im[k];
            tob[b * nf + f] = sqrt(s);
        }
    }
}

static double stoi_classic(const double *xt, const double *yt, int64_t nf) {
    const double clip = 1 + pow(10.0, 15.0 / 20);
    int64_t J = nf - STOI_N + 1;
    double sum = 0, yp[STOI_N];
    for (int64_t j = 0; j < J; j++) {
        for (int b = 0; b < STOI_BANDS; b++) {
            const double *xs = xt + b * nf + j, *ys = yt + b * nf + j;
            double nx = 0, ny = 0;
            for (int i = 0; i < STOI_N; i++) nx += xs[i] * xs[i], ny += ys[i] * ys[i];
            double a = sqrt(nx) / (sqrt(ny) + EPS), mx = 0, my = 0;
            for (int i = 0; i < STOI_N; i++) {
                double v = ys[i] * a, c = xs[i] * clip;
                yp[i] = v < c ? v : c;
                my += yp[i];
                mx += xs[i];
            }
            mx /= STOI_N;
            my /= STOI_N;
            double sxx = 0, syy = 0, sxy = 0;
            for (int i = 0; i < STOI_N; i++) {
                double dx = xs[i] - mx, dy = yp[i] - my;
                sxx += dx * dx, syy += dy * dy, sxy += dx * dy;
            }
            sum += sxy / ((sqrt(sxx) + EPS) * (sqrt(syy) + EPS));
        }
    }
    return sum / ((double)J * STOI_BANDS);
}

/* Row (band) then column (frame) mean/norm normalisation of one 15x30 segment.
 * pystoi adds EPS-sized noise first so an all-zero row cannot divide by zero;
 * here such a row or column is left at zero instead. */
static void row_col_normalize(const double *t, int64_t nf, int64_t j, double m[STOI_BANDS][STOI_N]) {
    for (int b = 0; b < STOI_BANDS; b++) {
        double mu = 0, ss = 0;
        for (int i = 0; i < STOI_N; i++) mu += t[b * nf + j + i];
        mu /= STOI_N;
        for (int i = 0; i < STOI_N; i++) {
            m[b][i] = t[b * nf + j + i] - mu;
            ss += m[b][i] * m[b][i];
        }
        double inv = ss > 0 ? 1 / sqrt(ss) : 0;
        for (int i = 0; i < STOI_N; i++) m[b][i] *= inv;
    }
    for (int i = 0; i < STOI_N; i++) {
        double mu = 0, ss = 0;
        for (int b = 0; b < STOI_BANDS; b++) mu += m[b][i];
        mu /= STOI_BANDS;
        for (int b = 0; b < STOI_BANDS; b++) {
            m[b][i] -= mu;
            ss += m[b][i] * m[b][i];
        }
        double inv = ss > 0 ? 1 / sqrt(ss) : 0;
        for (int b = 0; b < STOI_BANDS; b++) m[b][i] *= inv;
    }
}

static double stoi_extended(const double *xt, const double *yt, int64_t nf) {
    int64_t J = nf - STOI_N + 1;
    double sum = 0, xm[STOI_BANDS][STOI_N], ym[STOI_BANDS][STOI_N];
    for (int64_t j = 0; j < J; j++) {
        row_col_normalize(xt, nf, j, xm);
        row_col_normalize(yt, nf, j, ym);
        for (int b = 0; b < STOI_BANDS; b++)
            for (int i = 0; i < STOI_N; i++) sum += xm[b][i] * ym[b][i] / STOI_N;
    }
    return sum / J;
}

sn_status sn_stoi(const float *ref, const float *est, int64_t n, int sample_rate, int extended,
                  double *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_stoi: out is NULL");
    *out = NAN;
    if (!ref || !est || n < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stoi: ref or est is NULL or n < 0");
    if (sample_rate <= 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_stoi: sample rate %d Hz must be > 0", sample_rate);
    sn_status st = SN_OK;
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x), *y = malloc((size_t)(n ? n : 1) * sizeof *y);
    double *xr = NULL, *yr = NULL, *xs = NULL, *ys = NULL, *xt = NULL, *yt = NULL;
    if (!x || !y) {
        st = sn_error(SN_ERR_NOMEM, "out of memory computing STOI");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        x[i] = ref[i];
        y[i] = est[i];
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            st = sn_error(SN_ERR_NUMERIC, "sn_stoi: non-finite sample at index %lld", (long long)i);
            goto done;
        }
    }
    int64_t len = n;
    if (sample_rate != STOI_FS) {
        int64_t n2;
        if ((st = sn_resample_poly_oct(x, n, STOI_FS, sample_rate, &xr, &len))) goto done;
        if ((st = sn_resample_poly_oct(y, n, STOI_FS, sample_rate, &yr, &n2))) goto done;
    } else {
        xr = x, yr = y;
        x = y = NULL;
    }
    double w[STOI_FRAME];
    stoi_window(w);
    xs = malloc((size_t)(len + STOI_FRAME) * sizeof *xs);
    ys = malloc((size_t)(len + STOI_FRAME) * sizeof *ys);
    if (!xs || !ys) {
        st = sn_error(SN_ERR_NOMEM, "out of memory computing STOI");
        goto done;
    }
    int64_t ls = remove_silent(xr, yr, len, xs, ys, w);
    if (ls < 0) {
        st = sn_error(SN_ERR_NOMEM, "out of memory computing STOI");
        goto done;
    }
    int64_t nf = n_frames(ls);
    if (nf < STOI_N) {
        sn_log(SN_LOG_WARN,
               "STOI: only %lld frames left after removing silent frames (need %d, about 0.4 s "
               "of speech); returning 1e-5 like pystoi",
               (long long)nf, STOI_N);
        *out = 1e-5;
        goto done;
    }
    int lo[STOI_BANDS], hi[STOI_BANDS];
    third_octaves(lo, hi);
    xt = malloc((size_t)nf * STOI_BANDS * sizeof *xt);
    yt = malloc((size_t)nf * STOI_BANDS * sizeof *yt);
    if (!xt || !yt) {
        st = sn_error(SN_ERR_NOMEM, "out of memory computing STOI");
        goto done;
    }
    band_envelopes(xs, nf, w, lo, hi, xt);
    band_envelopes(ys, nf, w, lo, hi, yt);
    *out = extended ? stoi_extended(xt, yt, nf) : stoi_classic(xt, yt, nf);
done:
    free(x);
    free(y);
    free(xr);
    free(yr);
    free(xs);
    free(ys);
    free(xt);
    free(yt);
    return st;
}

/* ---- active speech level (ITU-T P.56 method B) ---------------------------
 * A sample counts as active for threshold c when the envelope q reached c
 * within the last 200 ms (P.56's hangover), i.e. when the sliding maximum of q
 * over 200 ms is >= c. One pass for that maximum plus a histogram gives the
 * active count for every threshold at once. */

#define AL_LO (-160.0)
#define AL_HI 40.0
#define AL_STEP 0.1
#define AL_NB ((int)((AL_HI - AL_LO) / AL_STEP) + 1)

double sn_active_level(const float *x, int64_t n, int sample_rate) {
    if (!x || sample_rate <= 0) return NAN;
    if (n <= 0) return -100.0;
    double g = exp(-1.0 / (sample_rate * 0.03)), p = 0, q = 0, sq = 0;
    int64_t I = (int64_t)ceil(sample_rate * 0.2);
    double *env = malloc((size_t)n * sizeof *env);
    int64_t *dq = malloc((size_t)n * sizeof *dq); /* monotone deque of indices */
    int64_t *hist = calloc(AL_NB, sizeof *hist);
    double level = -100.0;
    if (!env || !dq || !hist) goto done;
    int64_t head = 0, tail = 0;
    for (int64_t k = 0; k < n; k++) {
        p = g * p + (1 - g) * fabs((double)x[k]);
        q = g * q + (1 - g) * p;
        sq += (double)x[k] * x[k];
        env[k] = q;
        while (tail > head && env[dq[tail - 1]] <= q) tail--;
        dq[tail++] = k;
        if (dq[head] < k - I) head++;
        double m = env[dq[head]];
        if (m <= 0) continue;
        double db = 20 * log10(m);
        int bi = (int)floor((db - AL_LO) / AL_STEP);
        if (bi < 0) continue;
        if (bi >= AL_NB) bi = AL_NB - 1;
        hist[bi]++;
    }
    if (sq <= 0) goto done;
    /* a(c_j) = samples whose sliding max >= c_j: a reverse cumulative sum. */
    int64_t cum = 0;
    for (int b = AL_NB - 1; b >= 0; b--) {
        cum += hist[b];
        hist[b] = cum;
    }
    const double M = 15.9;
    double prev_a = NAN, prev_d = NAN;
    for (int b = 0; b < AL_NB; b++) {
        if (hist[b] == 0) break;
        double adb = 10 * log10(sq / hist[b]), cdb = AL_LO + b * AL_STEP, d = adb - cdb;
        if (d <= M) {
            if (isnan(prev_d)) {
                level = adb;
            } else {
                double f = (prev_d - M) / (prev_d - d);
                level = prev_a + f * (adb - prev_a);
            }
            goto done;
        }
        prev_a = adb;
        prev_d = d;
    }
    /* No crossing (very peaky input): fall back to the loudest threshold's level. */
    if (!isnan(prev_a)) level = prev_a;
done:
    free(env);
    free(dq);
    free(hist);
    return level;
}
