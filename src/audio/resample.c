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
