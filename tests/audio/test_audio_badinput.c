/* Broken input: every case must give a clear error that names the file and
 * says what is wrong, and never crash. The broken files are made here, in a
 * temp dir, at run time. */
#include "tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <sndfile.h>
#include <sys/stat.h>

#include "sinter/audio.h"

static char g_good[512]; /* a valid 16-bit WAV, 1000 frames */
static unsigned char *g_good_bytes;
static size_t g_good_len;

static int setup(void **state) {
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = 0.3f * sinf(0.05f * i);
    if (sn_audio_write(tmppath(g_good, sizeof g_good, "good.wav"), x, 1000, 1, 16000, 0)) return -1;
    FILE *f = fopen(g_good, "rb");
    g_good_bytes = malloc(1 << 16);
    g_good_len = fread(g_good_bytes, 1, 1 << 16, f);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    free(g_good_bytes);
    return 0;
}

/* The read fails with st, the message names the file and contains what. */
static void expect_read_error(const char *path, sn_status st, const char *what) {
    sn_audio a;
    sn_status got = sn_audio_read(path, 16000, 1, &a);
    printf("  %-16s -> %s: %s\n", strrchr(path, '/') + 1, sn_status_name(got), sn_last_error());
    assert_int_equal(got, st);
    assert_null(a.data);
    assert_int_equal(a.frames, 0);
    assert_non_null(strstr(sn_last_error(), path));
    if (what) assert_non_null(strstr(sn_last_error(), what));
    /* the block reader and info take the same path to the same verdict */
    sn_audio_reader *r = (sn_audio_reader *)1;
    sn_status s2 = sn_audio_reader_open(path, &r, NULL, NULL);
    if (s2 == SN_OK) { /* header fine, data bad: reading must fail */
        float buf[4096];
        int64_t g;
        sn_status s3;
        do s3 = sn_audio_reader_read(r, buf, 4096, &g);
        while (s3 == SN_OK && g > 0);
        sn_audio_reader_close(r);
        assert_int_equal(s3, st);
    } else {
        assert_null(r);
        /* info reads the header only: a valid header with 0 frames is fine there */
        if (!what || !strstr(what, "no audio samples"))
            assert_int_equal(sn_audio_info(path, NULL, NULL, NULL, NULL), s2);
    }
    assert_non_null(strstr(sn_last_error(), path));
}

static void test_missing(void **state) {
    char p[512];
    expect_read_error(tmppath(p, sizeof p, "no_such_file.wav"), SN_ERR_IO, "No such file");
}

static void test_directory(void **state) {
    char p[512];
    tmppath(p, sizeof p, "adir.wav");
    mkdir(p, 0700);
    expect_read_error(p, SN_ERR_IO, "directory");
}

static void test_empty(void **state) {
    char p[512];
    write_bytes(tmppath(p, sizeof p, "empty.wav"), "", 0);
    expect_read_error(p, SN_ERR_FORMAT, "empty");
    sn_audio a;
    assert_int_equal(sn_audio_read_memory("", 0, "mem.wav", 0, 1, &a), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "mem.wav"));
}

static void test_text_renamed(void **state) {
    char p[512];
    const char *txt = "this is not audio, just a text file someone renamed to .wav\n";
    write_bytes(tmppath(p, sizeof p, "notes.wav"), txt, strlen(txt));
    expect_read_error(p, SN_ERR_FORMAT, "not a recognised audio file");
}

static void test_truncated_header(void **state) {
    char p[512];
    write_bytes(tmppath(p, sizeof p, "trunc_hdr.wav"), g_good_bytes, 30);
    sn_audio a;
    sn_status st = sn_audio_read(p, 0, 1, &a);
    printf("  trunc_hdr.wav -> %s: %s\n", sn_status_name(st), sn_last_error());
    assert_true(st == SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), p));
}

static void test_truncated_data(void **state) {
    /* Cut in the middle of the samples: libsndfile reads what is there, so the
     * result is the shorter audio (and a header-only file is "no samples"). */
    char p[512];
    write_bytes(tmppath(p, sizeof p, "trunc_data.wav"), g_good_bytes, g_good_len / 2);
    sn_audio a;
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_OK);
    assert_true(a.frames > 0 && a.frames < 1000);
    sn_audio_free(&a);
    write_bytes(tmppath(p, sizeof p, "header_only.wav"), g_good_bytes, 44);
    expect_read_error(p, SN_ERR_FORMAT, "no audio samples");
}

static void put32(unsigned char *b, uint32_t v) {
    b[0] = v, b[1] = v >> 8, b[2] = v >> 16, b[3] = v >> 24;
}

static void test_corrupt_header(void **state) {
    char p[512];
    unsigned char b[2048];
    memcpy(b, g_good_bytes, g_good_len < sizeof b ? g_good_len : sizeof b);
    b[22] = 0, b[23] = 0; /* channels = 0 */
    write_bytes(tmppath(p, sizeof p, "zero_channels.wav"), b, sizeof b);
    expect_read_error(p, SN_ERR_FORMAT, NULL);
    memcpy(b, g_good_bytes, sizeof b);
    put32(b + 16, 0x7fffffff); /* fmt chunk size far beyond the file */
    write_bytes(tmppath(p, sizeof p, "bad_fmt_size.wav"), b, sizeof b);
    expect_read_error(p, SN_ERR_FORMAT, NULL);
    memcpy(b, g_good_bytes, sizeof b);
    memset(b + 12, 0xA5, 200); /* chunks garbled */
    write_bytes(tmppath(p, sizeof p, "garbled.wav"), b, sizeof b);
    expect_read_error(p, SN_ERR_FORMAT, NULL);
}

static void test_unsupported_encoding(void **state) {
    char p[512];
    unsigned char b[2048];
    memcpy(b, g_good_bytes, sizeof b);
    b[20] = 0x34, b[21] = 0x12; /* WAVE format tag 0x1234: no codec */
    write_bytes(tmppath(p, sizeof p, "codec1234.wav"), b, sizeof b);
    sn_audio a;
    sn_status st = sn_audio_read(p, 0, 1, &a);
    printf("  codec1234.wav -> %s: %s\n", sn_status_name(st), sn_last_error());
    assert_true(st == SN_ERR_UNSUPPORTED || st == SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), p));
    /* writing: FLAC cannot hold float samples */
    float x[10] = {0};
    tmppath(p, sizeof p, "float.flac");
    assert_int_equal(sn_audio_write(p, x, 10, 1, 16000, SF_FORMAT_FLAC | SF_FORMAT_FLOAT),
                     SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), p));
    assert_non_null(strstr(sn_last_error(), "does not support"));
}

/* Writes a float WAV with raw libsndfile (sn_audio_write refuses NaN). */
static void write_float_wav(const char *path, const float *x, int64_t frames, int ch) {
    SF_INFO info = {.samplerate = 16000, .channels = ch, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    assert_int_equal(sf_writef_float(sf, x, frames), frames);
    sf_close(sf);
}

static void test_nan_inf(void **state) {
    char p[512];
    enum { N = 100000 };
    float *x = calloc(2 * N, sizeof *x);
    x[2 * 77777 + 1] = NAN;
    write_float_wav(tmppath(p, sizeof p, "nan.wav"), x, N, 2);
    expect_read_error(p, SN_ERR_NUMERIC, "(NaN) at frame 77777, channel 1");
    x[2 * 77777 + 1] = 0;
    x[2 * 5] = -INFINITY;
    write_float_wav(tmppath(p, sizeof p, "inf.wav"), x, N, 2);
    expect_read_error(p, SN_ERR_NUMERIC, "(Inf) at frame 5, channel 0");
    /* writing NaN is refused too */
    x[3] = NAN;
    assert_int_equal(sn_audio_write(tmppath(p, sizeof p, "out_nan.wav"), x, N, 2, 16000, 0),
                     SN_ERR_NUMERIC);
    assert_non_null(strstr(sn_last_error(), "out_nan.wav"));
    free(x);
}

static void test_bad_rates(void **state) {
    float x[1000] = {0}, *y = (float *)1;
    int64_t m = 5;
    struct {
        int in, out;
    } bad[] = {{0, 16000}, {16000, 0}, {-8000, 16000}, {16000, -1}, {100, 16000 * 100}, {16000 * 300, 16000}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sn_resample(x, 1000, bad[i].in, bad[i].out, &y, &m), SN_ERR_INVALID_ARG);
        assert_null(y);
        assert_int_equal(m, 0);
        printf("  %d -> %d Hz: %s\n", bad[i].in, bad[i].out, sn_last_error());
        char want[32];
        snprintf(want, sizeof want, "%d Hz", bad[i].in);
        assert_non_null(strstr(sn_last_error(), want));
    }
    sn_audio a;
    assert_int_equal(sn_audio_read(g_good, -5, 1, &a), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), g_good));
    /* a valid file whose rate is too far from the target */
    assert_int_equal(sn_audio_read(g_good, 16000 * 257, 1, &a), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), g_good));
    assert_non_null(strstr(sn_last_error(), "ratio"));
    assert_null(a.data);
    /* a file at a rate no speech has */
    char p[512];
    tmppath(p, sizeof p, "rate500.wav");
    assert_int_equal(sn_audio_write(p, x, 1000, 1, 500, 0), SN_OK);
    assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), "500 Hz"));
}

static void test_unwritable(void **state) {
    char p[600];
    float x[10] = {0};
    tmppath(p, sizeof p, "no_such_dir/out.wav");
    assert_int_equal(sn_audio_write(p, x, 10, 1, 16000, 0), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), p));
    printf("  %s\n", sn_last_error());
    /* a path through a regular file: not a directory (works even as root) */
    snprintf(p, sizeof p, "%s/out.wav", g_good);
    assert_int_equal(sn_audio_write(p, x, 10, 1, 16000, 0), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), p));
    assert_non_null(strstr(sn_last_error(), "Not a directory")); /* the reason, not libsndfile's "System error." */
    if (geteuid() != 0) {
        char d[400];
        tmppath(d, sizeof d, "readonly");
        mkdir(d, 0500);
        snprintf(p, sizeof p, "%s/out.wav", d);
        assert_int_equal(sn_audio_write(p, x, 10, 1, 16000, 0), SN_ERR_IO);
        assert_non_null(strstr(sn_last_error(), p));
        assert_non_null(strstr(sn_last_error(), "Permission denied"));
        chmod(d, 0700);
        /* an unreadable input says so too */
        tmppath(p, sizeof p, "unreadable.wav");
        assert_int_equal(sn_audio_write(p, x, 10, 1, 16000, 0), SN_OK);
        chmod(p, 0200);
        sn_audio a;
        assert_int_equal(sn_audio_read(p, 0, 1, &a), SN_ERR_IO);
        assert_non_null(strstr(sn_last_error(), "Permission denied"));
        chmod(p, 0600);
    }
    /* bad arguments */
    assert_int_equal(sn_audio_write(p, x, 10, 0, 16000, 0), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_audio_write(p, x, 10, 1, -3, 0), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_audio_write(p, NULL, 10, 1, 16000, 0), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_audio_read(NULL, 0, 1, NULL), SN_ERR_INVALID_ARG);
}

/* Random byte flips of a valid file: any verdict, never a crash. */
static void test_mutations(void **state) {
    unsigned char *b = malloc(g_good_len);
    unsigned r = 12345;
    for (int it = 0; it < 2000; it++) {
        memcpy(b, g_good_bytes, g_good_len);
        int flips = 1 + it % 8;
        for (int k = 0; k < flips; k++) {
            r = r * 1103515245u + 12345u;
            size_t pos = (r >> 8) % (it % 2 ? 64 : g_good_len);
            r = r * 1103515245u + 12345u;
            b[pos] = (unsigned char)(r >> 16);
        }
        size_t len = it % 3 ? g_good_len : (r >> 4) % g_good_len;
        sn_audio a;
        if (sn_audio_read_memory(b, len, "mut.wav", it % 5 ? 0 : 8000, 1, &a) == SN_OK)
            sn_audio_free(&a);
        else
            assert_non_null(strstr(sn_last_error(), "mut.wav"));
    }
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing),          cmocka_unit_test(test_directory),
        cmocka_unit_test(test_empty),            cmocka_unit_test(test_text_renamed),
        cmocka_unit_test(test_truncated_header), cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_corrupt_header),   cmocka_unit_test(test_unsupported_encoding),
        cmocka_unit_test(test_nan_inf),          cmocka_unit_test(test_bad_rates),
        cmocka_unit_test(test_unwritable),       cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
