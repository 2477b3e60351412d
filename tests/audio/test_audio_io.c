/* Audio file I/O: round trips in WAV/FLAC/OGG, subtypes, mixdown, resampling,
 * the block reader and reading from memory. */
#include "tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <sndfile.h>

#include "sinter/audio.h"

#define PI 3.14159265358979f

static float *sine(int64_t n, int rate, float f, float amp) {
    float *x = malloc(n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = amp * sinf(2 * PI * f * (float)i / rate);
    return x;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > e) e = fabs((double)a[i] - b[i]);
    return e;
}

static void roundtrip(const char *name, int format, int expect_format, double tol) {
    char p[512];
    tmppath(p, sizeof p, name);
    int64_t n = 12345;
    float *x = sine(n, 16000, 440, 0.5f);
    assert_int_equal(sn_audio_write(p, x, n, 1, 16000, format), SN_OK);
    int rate, ch, fmt;
    int64_t frames;
    assert_int_equal(sn_audio_info(p, &rate, &frames, &ch, &fmt), SN_OK);
    assert_int_equal(rate, 16000);
    assert_int_equal(ch, 1);
    assert_int_equal(fmt, expect_format);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    assert_int_equal(a.frames, n);
    assert_int_equal(a.format, expect_format);
    double e = max_abs_diff(a.data, x, n);
    printf("%-12s max abs err %.2e\n", name, e);
    assert_true(e <= tol);
    /* write back in the source's own format */
    char q[600];
    snprintf(q, sizeof q, "%s.copy", p);
    assert_int_equal(sn_audio_write(q, a.data, a.frames, 1, a.sample_rate, a.format), SN_OK);
    assert_int_equal(sn_audio_info(q, NULL, NULL, NULL, &fmt), SN_OK);
    assert_int_equal(fmt, expect_format);
    sn_audio_free(&a);
    assert_null(a.data);
    free(x);
}

static void test_roundtrips(void **state) {
    roundtrip("pcm16.wav", 0, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1.0 / 32768);
    roundtrip("pcm24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, SF_FORMAT_WAV | SF_FORMAT_PCM_24, 1e-6);
    roundtrip("float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 0);
    roundtrip("u8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 1.0 / 128);
    roundtrip("a.flac", SF_FORMAT_FLAC, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1.0 / 32768);
    roundtrip("b.flac", SF_FORMAT_PCM_24, SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 1e-6); /* major from ext */
    roundtrip("c.ogg", SF_FORMAT_OGG, SF_FORMAT_OGG | SF_FORMAT_VORBIS, 0.05);     /* lossy */
}

static void test_clipping(void **state) {
    char p[512];
    float x[4] = {2.0f, -2.0f, 0.5f, 1.0f};
    assert_int_equal(sn_audio_write(tmppath(p, sizeof p, "clip.wav"), x, 4, 1, 8000, 0), SN_OK);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    assert_true(a.data[0] > 0.99f); /* clipped, not wrapped to negative */
    assert_true(a.data[1] < -0.99f);
    sn_audio_free(&a);
}

static void test_stereo_mixdown(void **state) {
    char p[512];
    int64_t n = 1000;
    float *st = malloc(2 * n * sizeof *st);
    for (int64_t i = 0; i < n; i++) st[2 * i] = 0.5f, st[2 * i + 1] = -0.25f + i * 1e-4f;
    tmppath(p, sizeof p, "stereo.wav");
    assert_int_equal(sn_audio_write(p, st, n, 2, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT), SN_OK);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    assert_int_equal(a.channels, 1);
    for (int64_t i = 0; i < n; i++) assert_true(fabsf(a.data[i] - (st[2 * i] + st[2 * i + 1]) / 2) < 1e-7f);
    sn_audio_free(&a);
    assert_int_equal(sn_audio_read(p, 0, 0, &a), SN_OK);
    assert_int_equal(a.channels, 2);
    assert_memory_equal(a.data, st, 2 * n * sizeof *st);
    sn_audio_free(&a);
    /* multichannel kept and resampled */
    assert_int_equal(sn_audio_read(p, 8000, 0, &a), SN_OK);
    assert_int_equal(a.channels, 2);
    assert_int_equal(a.frames, 500);
    assert_true(fabsf(a.data[2 * 250] - 0.5f) < 1e-3f);
    sn_audio_free(&a);
    free(st);
}

static void test_resample(void **state) {
    int64_t n = 48000;
    float *x = sine(n, 48000, 1000, 0.5f), *y;
    int64_t m;
    assert_int_equal(sn_resample(x, n, 48000, 16000, &y, &m), SN_OK);
    assert_int_equal(m, 16000);
    float *ref = sine(m, 16000, 1000, 0.5f);
    double e = 0;
    for (int64_t i = 1000; i < m - 1000; i++)
        if (fabs(y[i] - ref[i]) > e) e = fabs(y[i] - ref[i]);
    printf("48k->16k 1 kHz sine: max err %.2e (interior)\n", e);
    assert_true(e < 1e-3);
    free(y);
    /* 44.1k -> 16k length, and upsampling */
    assert_int_equal(sn_resample(x, 44100, 44100, 16000, &y, &m), SN_OK);
    assert_int_equal(m, 16000);
    free(y);
    assert_int_equal(sn_resample(x, 8000, 8000, 16000, &y, &m), SN_OK);
    assert_int_equal(m, 16000);
    free(y);
    /* same rate: a copy */
    assert_int_equal(sn_resample(x, 100, 16000, 16000, &y, &m), SN_OK);
    assert_int_equal(m, 100);
    assert_memory_equal(x, y, 100 * sizeof *x);
    free(y);
    /* via sn_audio_read */
    char p[512];
    assert_int_equal(sn_audio_write(tmppath(p, sizeof p, "48k.wav"), x, n, 1, 48000,
                                    SF_FORMAT_WAV | SF_FORMAT_FLOAT), SN_OK);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 16000, 1, &a), SN_OK);
    assert_int_equal(a.sample_rate, 16000);
    assert_int_equal(a.frames, 16000);
    sn_audio_free(&a);
    free(x);
    free(ref);
}

static void test_block_reader(void **state) {
    char p[512];
    int64_t n = 200000; /* several internal blocks */
    float *st = malloc(2 * n * sizeof *st);
    for (int64_t i = 0; i < 2 * n; i++) st[i] = sinf(0.001f * i) * 0.5f;
    tmppath(p, sizeof p, "long.wav");
    assert_int_equal(sn_audio_write(p, st, n, 2, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT), SN_OK);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    sn_audio_reader *r;
    int rate;
    int64_t frames, got, total = 0;
    assert_int_equal(sn_audio_reader_open(p, &r, &rate, &frames), SN_OK);
    assert_int_equal(rate, 16000);
    assert_int_equal(frames, n);
    float *buf = malloc(70001 * sizeof *buf);
    for (;;) {
        assert_int_equal(sn_audio_reader_read(r, buf, 70001, &got), SN_OK);
        if (!got) break;
        assert_memory_equal(buf, a.data + total, got * sizeof *buf);
        total += got;
    }
    assert_int_equal(total, n);
    assert_int_equal(sn_audio_reader_seek(r, 12345), SN_OK);
    assert_int_equal(sn_audio_reader_read(r, buf, 10, &got), SN_OK);
    assert_int_equal(got, 10);
    assert_memory_equal(buf, a.data + 12345, 10 * sizeof *buf);
    assert_int_not_equal(sn_audio_reader_seek(r, -1), SN_OK);
    sn_audio_reader_close(r);
    sn_audio_reader_close(NULL);
    free(buf);
    free(st);
    sn_audio_free(&a);
}

static void test_read_memory(void **state) {
    char p[512];
    float *x = sine(5000, 16000, 300, 0.3f);
    tmppath(p, sizeof p, "mem.flac");
    assert_int_equal(sn_audio_write(p, x, 5000, 1, 16000, SF_FORMAT_FLAC | SF_FORMAT_PCM_16), SN_OK);
    FILE *f = fopen(p, "rb");
    char *bytes = malloc(1 << 20);
    size_t len = fread(bytes, 1, 1 << 20, f);
    fclose(f);
    sn_audio a, b;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    assert_int_equal(sn_audio_read_memory(bytes, len, "mem.flac", 0, 1, &b), SN_OK);
    assert_int_equal(a.frames, b.frames);
    assert_int_equal(a.format, b.format);
    assert_memory_equal(a.data, b.data, a.frames * sizeof(float));
    sn_audio_free(&a);
    sn_audio_free(&b);
    free(bytes);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),   cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_stereo_mixdown), cmocka_unit_test(test_resample),
        cmocka_unit_test(test_block_reader), cmocka_unit_test(test_read_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
