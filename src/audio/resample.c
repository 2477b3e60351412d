/* Sample-rate conversion with libsamplerate.
 *
 * SRC_SINC_BEST_QUALITY, not MEDIUM: MEDIUM keeps only ~90% of the band, so at
 * 16 kHz it would attenuate 7.2-8 kHz, the top bins the model predicts; files
 * are resampled once when read, so BEST's extra cost (a few x MEDIUM, still far
 * faster than real time) is paid rarely. */
#include "audio/audio_internal.h"

#include <stdlib.h>
#include <string.h>

#include <samplerate.h>

sn_status sn_resample_channels(const float *in, int64_t frames, int channels, int rate_in,
                               int rate_out, float **out, int64_t *n_out) {
    if (!out || !n_out) return sn_error(SN_ERR_INVALID_ARG, "sn_resample: out or n_out is NULL");
    *out = NULL;
    *n_out = 0;
    if (rate_in <= 0 || rate_out <= 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot resample from %d Hz to %d Hz: sample rates must be > 0", rate_in,
                        rate_out);
    double ratio = (double)rate_out / rate_in;
    if (!src_is_valid_ratio(ratio))
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot resample from %d Hz to %d Hz: the ratio %.6g is outside "
                        "libsamplerate's range [1/256, 256]; resample in two steps or fix the "
                        "file's rate",
                        rate_in, rate_out, ratio);
    if (frames < 0 || channels <= 0 || (!in && frames > 0))
        return sn_error(SN_ERR_INVALID_ARG, "sn_resample: bad input (%lld frames, %d channels)",
                        (long long)frames, channels);
    if (rate_in == rate_out || frames == 0) {
        size_t bytes = (size_t)(frames ? frames : 1) * channels * sizeof(float);
        *out = malloc(bytes);
        if (!*out) return sn_error(SN_ERR_NOMEM, "out of memory resampling");
        if (frames) memcpy(*out, in, (size_t)frames * channels * sizeof(float));
        *n_out = frames;
        return SN_OK;
    }
    if (frames > (int64_t)1 << 40 || (double)frames * ratio > (double)((int64_t)1 << 40))
        return sn_error(SN_ERR_INVALID_ARG, "sn_resample: input too long (%lld frames)",
                        (long long)frames);
    /* src_simple takes long counts; process in chunks through one converter so
     * any length works and the filter state carries across chunk boundaries. */
    int64_t cap = (int64_t)((double)frames * ratio) + 64;
    float *y = malloc((size_t)cap * channels * sizeof *y);
    int err = 0;
    SRC_STATE *src = src_new(SRC_SINC_BEST_QUALITY, channels, &err);
    if (!y || !src) {
        free(y);
        if (src) src_delete(src);
        return sn_error(SN_ERR_NOMEM, "cannot start the resampler: %s",
                        err ? src_strerror(err) : "out of memory");
    }
    const int64_t chunk = 1 << 16;
    int64_t ip = 0, op = 0;
    for (;;) {
        SRC_DATA d = {0};
        int64_t nin = frames - ip < chunk ? frames - ip : chunk;
        d.data_in = in + ip * channels;
        d.input_frames = (long)nin;
        d.data_out = y + op * channels;
        d.output_frames = (long)(cap - op);
        d.src_ratio = ratio;
        d.end_of_input = ip + nin >= frames;
        if ((err = src_process(src, &d))) break;
        ip += d.input_frames_used;
        op += d.output_frames_gen;
        if (d.end_of_input && d.output_frames_gen == 0 && ip >= frames) break;
        if (op >= cap) break;
    }
    src_delete(src);
    if (err) {
        free(y);
        return sn_error(SN_ERR_INTERNAL, "resampling %d -> %d Hz failed: %s", rate_in, rate_out,
                        src_strerror(err));
    }
    /* Keep the length a caller expects from the rate ratio. */
    int64_t want = (int64_t)((double)frames * ratio + 0.5);
    if (op > want) op = want;
    if (op < want) {
        memset(y + op * channels, 0, (size_t)(want - op) * channels * sizeof *y);
        op = want;
    }
    *out = y;
    *n_out = op;
    return SN_OK;
}

sn_status sn_resample(const float *in, int64_t n, int rate_in, int rate_out, float **out,
                      int64_t *n_out) {
    return sn_resample_channels(in, n, 1, rate_in, rate_out, out, n_out);
}

/* ---- streaming resampler ------------------------------------------------- */

/* libsamplerate's sinc converter keeps its position as a fraction reset every
 * output sample and reads the input through its own ring buffer, so what it
 * computes does not depend on how the input is split into calls: fed block by
 * block, the output equals sn_resample's (the tests check this). */
struct sn_resampler {
    SRC_STATE *src; /* NULL for equal rates (a copy) */
    int rate_in, rate_out;
    double ratio;
    int64_t n_in, n_out; /* samples fed and returned so far */
    int done;            /* the input has ended */
    float *buf;          /* output of the last call */
    int64_t cap;
};

sn_status sn_resampler_new(int rate_in, int rate_out, sn_resampler **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_resampler_new: out is NULL");
    *out = NULL;
    if (rate_in <= 0 || rate_out <= 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot resample from %d Hz to %d Hz: sample rates must be > 0", rate_in,
                        rate_out);
    double ratio = (double)rate_out / rate_in;
    if (!src_is_valid_ratio(ratio))
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot resample from %d Hz to %d Hz: the ratio %.6g is outside "
                        "libsamplerate's range [1/256, 256]; resample in two steps or fix the "
                        "file's rate",
                        rate_in, rate_out, ratio);
    sn_resampler *r = calloc(1, sizeof *r);
    if (!r) return sn_error(SN_ERR_NOMEM, "out of memory starting the resampler");
    r->rate_in = rate_in, r->rate_out = rate_out, r->ratio = ratio;
    if (rate_in != rate_out) {
        int err = 0;
        r->src = src_new(SRC_SINC_BEST_QUALITY, 1, &err);
        if (!r->src) {
            free(r);
            return sn_error(SN_ERR_NOMEM, "cannot start the resampler: %s",
                            err ? src_strerror(err) : "out of memory");
        }
    }
    *out = r;
    return SN_OK;
}

sn_status sn_resampler_reset(sn_resampler *r) {
    if (!r) return sn_error(SN_ERR_INVALID_ARG, "sn_resampler_reset: r is NULL");
    if (r->src) src_reset(r->src);
    r->n_in = r->n_out = 0;
    r->done = 0;
    return SN_OK;
}

void sn_resampler_free(sn_resampler *r) {
    if (!r) return;
    if (r->src) src_delete(r->src);
    free(r->buf);
    free(r);
}

static int grow(sn_resampler *r, int64_t need) {
    if (need <= r->cap) return 1;
    int64_t cap = r->cap * 2 > need ? r->cap * 2 : need;
    float *b = realloc(r->buf, (size_t)cap * sizeof *b);
    if (!b) return 0;
    r->buf = b, r->cap = cap;
    return 1;
}

sn_status sn_resampler_process(sn_resampler *r, const float *in, int64_t n, int last,
                               const float **out, int64_t *n_out) {
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (!r || !out || !n_out || n < 0 || (!in && n > 0))
        return sn_error(SN_ERR_INVALID_ARG, "sn_resampler_process: bad arguments");
    if (r->done)
        return sn_error(SN_ERR_INVALID_ARG, "sn_resampler_process: the input has already ended "
                                            "(call sn_resampler_reset to start a new signal)");
    if ((double)(r->n_in + n) * r->ratio > (double)((int64_t)1 << 40))
        return sn_error(SN_ERR_INVALID_ARG, "sn_resampler_process: input too long (%lld samples)",
                        (long long)(r->n_in + n));
    int64_t op = 0;
    if (!r->src) { /* equal rates */
        if (!grow(r, n ? n : 1)) return sn_error(SN_ERR_NOMEM, "out of memory resampling");
        if (n) memcpy(r->buf, in, (size_t)n * sizeof *in);
        op = n;
    } else {
        static const float none = 0; /* libsamplerate wants a data pointer even for 0 frames */
        const int64_t chunk = 1 << 16;
        int64_t ip = 0;
        for (;;) {
            /* room for this piece's output plus the filter's delay line */
            int64_t nin = n - ip < chunk ? n - ip : chunk;
            if (!grow(r, op + (int64_t)((double)(nin + 4096) * r->ratio) + 4096))
                return sn_error(SN_ERR_NOMEM, "out of memory resampling");
            SRC_DATA d = {0};
            d.data_in = nin ? in + ip : &none;
            d.input_frames = (long)nin;
            d.data_out = r->buf + op;
            d.output_frames = (long)(r->cap - op);
            d.src_ratio = r->ratio;
            d.end_of_input = last && ip + nin >= n;
            int err = src_process(r->src, &d);
            if (err)
                return sn_error(SN_ERR_INTERNAL, "resampling %d -> %d Hz failed: %s", r->rate_in,
                                r->rate_out, src_strerror(err));
            ip += d.input_frames_used;
            op += d.output_frames_gen;
            if (d.input_frames_used == 0 && d.output_frames_gen == 0) break;
        }
        if (ip < n)
            return sn_error(SN_ERR_INTERNAL, "resampling %d -> %d Hz stalled after %lld of %lld "
                                             "samples",
                            r->rate_in, r->rate_out, (long long)ip, (long long)n);
    }
    r->n_in += n;
    if (last) {
        /* the length sn_resample gives: round(n_in * ratio) */
        r->done = 1;
        int64_t want = (int64_t)((double)r->n_in * r->ratio + 0.5) - r->n_out;
        if (want < 0) want = 0;
        if (op > want) op = want;
        if (op < want) {
            if (!grow(r, want)) return sn_error(SN_ERR_NOMEM, "out of memory resampling");
            memset(r->buf + op, 0, (size_t)(want - op) * sizeof *r->buf);
            op = want;
        }
    }
    r->n_out += op;
    *out = r->buf;
    *n_out = op;
    return SN_OK;
}
