/* Streaming audio: sn_resampler (block by block equals the whole-buffer
 * sn_resample) and the block writer sn_audio_writer (atomic: temp file, then
 * rename). */
#include "tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <sndfile.h>
#include <sys/stat.h>
#include <dirent.h>

#include "sinter/audio.h"

/* a chirp plus a deterministic pseudo-random noise: all bands busy */
static float *signal_new(int64_t n, int rate) {
    float *x = malloc((size_t)n * sizeof *x);
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double t = (double)i / rate, noise = (double)(s >> 40) / (double)(1 << 24) - 0.5;
        x[i] = (float)(0.4 * sin(2 * M_PI * (100 + 2000 * t) * t) + 0.1 * noise);
    }
    return x;
}

/* Feeds x in blocks of the sizes in `sizes` (cycled) and gathers the output. */
static float *stream_resample(const float *x, int64_t n, int rin, int rout, const int64_t *sizes,
                              int nsizes, int64_t *n_out) {
    sn_resampler *r = NULL;
    assert_int_equal(sn_resampler_new(rin, rout, &r), SN_OK);
    int64_t cap = (int64_t)((double)n * rout / rin) + 16, op = 0;
    float *y = malloc((size_t)cap * sizeof *y);
    for (int64_t ip = 0, k = 0;; k++) {
        int64_t b = sizes[k % nsizes];
        if (b > n - ip) b = n - ip;
        int last = ip + b == n;
        const float *o;
        int64_t no;
        assert_int_equal(sn_resampler_process(r, x + ip, b, last, &o, &no), SN_OK);
        assert_true(op + no <= cap);
        memcpy(y + op, o, (size_t)no * sizeof *y);
        op += no;
        ip += b;
        if (last) break;
    }
    /* after the end only reset or free */
    const float *o;
    int64_t no;
    assert_int_not_equal(sn_resampler_process(r, x, 1, 0, &o, &no), SN_OK);
    sn_resampler_free(r);
    *n_out = op;
    return y;
}

static void test_resampler_equals_whole(void **state) {
    (void)state;
    const int rates[][2] = {{44100, 16000}, {16000, 44100}, {48000, 16000}, {8000, 16000},
                            {16000, 16000}, {22050, 16000}};
    const int64_t odd[] = {1, 7, 160, 999, 3};
    const int64_t one[] = {65536 + 17};
    const int64_t mixed[] = {16384, 1, 0, 40000, 5};
    const int64_t *splits[] = {odd, one, mixed};
    const int nsplits[] = {5, 1, 5};
    for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        int rin = rates[k][0], rout = rates[k][1];
        int64_t n = rin * 3 / 2 + 13; /* 1.5 s, several internal pieces of 65536 for 44.1 kHz up */
        float *x = signal_new(n, rin), *ref = NULL;
        int64_t nref = 0;
        assert_int_equal(sn_resample(x, n, rin, rout, &ref, &nref), SN_OK);
        for (int s = 0; s < 3; s++) {
            if (s == 0 && rin == 16000 && rout == 44100) continue; /* 1-sample blocks: slow, covered below */
            int64_t ny = 0;
            float *y = stream_resample(x, n, rin, rout, splits[s], nsplits[s], &ny);
            assert_int_equal(ny, nref);
            double e = 0;
            for (int64_t i = 0; i < ny; i++) e = fmax(e, fabs((double)y[i] - ref[i]));
            printf("%5d -> %5d Hz, split %d: %lld samples, max |stream - whole| %.3g\n", rin, rout, s,
                   (long long)ny, e);
            /* libsamplerate's sinc converter reads the input through its own ring
             * buffer and keeps only a fractional position reset every output
             * sample, so the split does not change what it computes: measured
             * bit-identical (libsamplerate 0.2.2), and asserted so. A lost or
             * repeated sample would show as errors of ~0.1 here. */
            assert_memory_equal(y, ref, (size_t)ny * sizeof *y);
            free(y);
        }
        free(x), free(ref);
    }
}

static void test_resampler_short_and_reset(void **state) {
    (void)state;
    sn_resampler *r = NULL;
    const float *o;
    int64_t no;
    /* bad arguments */
    assert_int_not_equal(sn_resampler_new(0, 16000, &r), SN_OK);
    assert_null(r);
    assert_int_not_equal(sn_resampler_new(16000, 16000 * 300, &r), SN_OK);
    assert_int_not_equal(sn_resampler_new(16000, 8000, NULL), SN_OK);
    assert_int_not_equal(sn_resampler_reset(NULL), SN_OK);
    sn_resampler_free(NULL);
    assert_int_equal(sn_resampler_new(44100, 16000, &r), SN_OK);
    assert_int_not_equal(sn_resampler_process(r, NULL, 5, 0, &o, &no), SN_OK);
    assert_int_not_equal(sn_resampler_process(r, NULL, -1, 0, &o, &no), SN_OK);
    /* an empty signal gives no samples; a 3-sample one round(3·16/44.1) = 1 */
    assert_int_equal(sn_resampler_process(r, NULL, 0, 1, &o, &no), SN_OK);
    assert_int_equal(no, 0);
    assert_int_equal(sn_resampler_reset(r), SN_OK);
    float three[3] = {0.5f, -0.5f, 0.25f};
    assert_int_equal(sn_resampler_process(r, three, 3, 1, &o, &no), SN_OK);
    assert_int_equal(no, 1);
    /* reset: a second signal gives the same as a fresh resampler */
    int64_t n = 30000;
    float *x = signal_new(n, 44100), *ref = NULL;
    int64_t nref;
    assert_int_equal(sn_resample(x, n, 44100, 16000, &ref, &nref), SN_OK);
    assert_int_equal(sn_resampler_reset(r), SN_OK);
    assert_int_equal(sn_resampler_process(r, x, n, 1, &o, &no), SN_OK);
    assert_int_equal(no, nref);
    assert_memory_equal(o, ref, (size_t)no * sizeof *o);
    sn_resampler_free(r);
    free(x), free(ref);
    /* 1-sample blocks upsampling: the filter lags, nothing is lost */
    n = 4000;
    x = signal_new(n, 16000);
    assert_int_equal(sn_resample(x, n, 16000, 44100, &ref, &nref), SN_OK);
    const int64_t ones[] = {1};
    int64_t ny;
    float *y = stream_resample(x, n, 16000, 44100, ones, 1, &ny);
    assert_int_equal(ny, nref);
    assert_memory_equal(y, ref, (size_t)ny * sizeof *y);
    free(x), free(ref), free(y);
}

static int count_tmp_files(void) {
    DIR *d = opendir(tmpdir());
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) k++;
    closedir(d);
    return k;
}

static void test_block_writer(void **state) {
    (void)state;
    char p[512], q[512];
    int64_t n = 150001;
    float *st = malloc(2 * (size_t)n * sizeof *st);
    for (int64_t i = 0; i < 2 * n; i++) st[i] = 0.5f * sinf(0.001f * (float)i);
    const int formats[] = {SF_FORMAT_WAV | SF_FORMAT_FLOAT, SF_FORMAT_WAV | SF_FORMAT_PCM_24,
                           SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 0};
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof name, "blocks%d.%s", f, f == 2 ? "flac" : "wav");
        tmppath(p, sizeof p, name);
        snprintf(name, sizeof name, "whole%d.%s", f, f == 2 ? "flac" : "wav");
        tmppath(q, sizeof q, name);
        sn_audio_writer *w = NULL;
        assert_int_equal(sn_audio_writer_open(p, 2, 22050, formats[f], &w), SN_OK);
        /* nothing at PATH until close */
        assert_int_not_equal(access(p, F_OK), 0);
        for (int64_t off = 0, b = 1; off < n; off += b, b = b * 3 + 1) {
            if (b > n - off) b = n - off;
            assert_int_equal(sn_audio_writer_write(w, st + 2 * off, b), SN_OK);
        }
        assert_int_equal(sn_audio_writer_write(w, st, 0), SN_OK);
        assert_int_equal(sn_audio_writer_close(w), SN_OK);
        assert_int_equal(sn_audio_write(q, st, n, 2, 22050, formats[f]), SN_OK);
        sn_audio a, b;
        assert_int_equal(sn_audio_read(p, 0, 0, &a), SN_OK);
        assert_int_equal(sn_audio_read(q, 0, 0, &b), SN_OK);
        assert_int_equal(a.frames, n);
        assert_int_equal(a.channels, 2);
        assert_int_equal(a.sample_rate, 22050);
        assert_int_equal(a.format, b.format);
        assert_int_equal(a.format, formats[f] ? formats[f] : SF_FORMAT_WAV | SF_FORMAT_PCM_16);
        assert_memory_equal(a.data, b.data, (size_t)n * 2 * sizeof(float));
        sn_audio_free(&a);
        sn_audio_free(&b);
    }
    assert_int_equal(count_tmp_files(), 0);
    free(st);
}

static void test_block_writer_errors(void **state) {
    (void)state;
    char p[512], bad[600];
    sn_audio_writer *w = (sn_audio_writer *)1;
    tmppath(p, sizeof p, "err.wav");
    float x[4] = {0.1f, 0.2f, NAN, 0.3f};
    /* bad arguments, an unsupported format, a missing folder */
    assert_int_not_equal(sn_audio_writer_open(p, 0, 16000, 0, &w), SN_OK);
    assert_null(w);
    assert_int_not_equal(sn_audio_writer_open(NULL, 1, 16000, 0, &w), SN_OK);
    assert_int_not_equal(sn_audio_writer_open(p, 1, 16000, 0, NULL), SN_OK);
    assert_int_equal(sn_audio_writer_open(p, 1, 16000, SF_FORMAT_FLAC | SF_FORMAT_FLOAT, &w),
                     SN_ERR_UNSUPPORTED);
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.wav", tmpdir());
    assert_int_equal(sn_audio_writer_open(bad, 1, 16000, 0, &w), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "no/such/dir"));
    assert_int_not_equal(sn_audio_writer_write(NULL, x, 1), SN_OK);
    assert_int_equal(sn_audio_writer_close(NULL), SN_OK);
    sn_audio_writer_abort(NULL);
    /* NaN: refused with the frame, the writer then fails on close and leaves nothing */
    assert_int_equal(sn_audio_writer_open(p, 1, 16000, 0, &w), SN_OK);
    assert_int_equal(sn_audio_writer_write(w, x, 2), SN_OK);
    assert_int_equal(sn_audio_writer_write(w, x, 4), SN_ERR_NUMERIC);
    assert_non_null(strstr(sn_last_error(), "frame 4"));
    assert_int_not_equal(sn_audio_writer_write(w, x, 1), SN_OK);
    assert_int_not_equal(sn_audio_writer_close(w), SN_OK);
    assert_int_not_equal(access(p, F_OK), 0);
    /* abort: PATH keeps its old content, no temp file remains */
    assert_int_equal(sn_audio_write(p, x, 2, 1, 16000, 0), SN_OK);
    assert_int_equal(sn_audio_writer_open(p, 1, 8000, 0, &w), SN_OK);
    assert_int_equal(sn_audio_writer_write(w, x, 1), SN_OK);
    sn_audio_writer_abort(w);
    int rate;
    int64_t frames;
    assert_int_equal(sn_audio_info(p, &rate, &frames, NULL, NULL), SN_OK);
    assert_int_equal(rate, 16000);
    assert_int_equal(frames, 2);
    /* two writers of one process to the same path do not share a temp file */
    sn_audio_writer *w2 = NULL;
    assert_int_equal(sn_audio_writer_open(p, 1, 16000, 0, &w), SN_OK);
    assert_int_equal(sn_audio_writer_open(p, 1, 16000, 0, &w2), SN_OK);
    assert_int_equal(sn_audio_writer_write(w, x, 1), SN_OK);
    assert_int_equal(sn_audio_writer_write(w2, x, 2), SN_OK);
    assert_int_equal(sn_audio_writer_close(w2), SN_OK);
    assert_int_equal(sn_audio_writer_close(w), SN_OK);
    assert_int_equal(sn_audio_info(p, NULL, &frames, NULL, NULL), SN_OK);
    assert_int_equal(frames, 1); /* the last to close wins */
    assert_int_equal(count_tmp_files(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resampler_equals_whole),
        cmocka_unit_test(test_resampler_short_and_reset),
        cmocka_unit_test(test_block_writer),
        cmocka_unit_test(test_block_writer_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
