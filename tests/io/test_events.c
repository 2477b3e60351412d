/* TensorBoard event writer: CRC32C, TFRecord framing, and a read-back with
 * tensorboard's EventAccumulator (from .venv: sn_pyref.h). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sinter/events.h"
#include "sn_pyref.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif

static char g_dir[256];

static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/sn_test_ev_%ld/run/tb", (long)getpid());
    return 0;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/sn_test_ev_%ld", (long)getpid());
    return system(cmd) == 0 ? 0 : 0;
}

static void test_crc(void **state) {
    assert_int_equal(sn_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(sn_crc32c("", 0), 0);
    uint32_t c = 0xE3069283u;
    assert_int_equal(sn_crc32c_masked("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
    /* 32 zero bytes: RFC 3720 test vector */
    unsigned char z[32] = {0};
    assert_int_equal(sn_crc32c(z, 32), 0x8A9136AAu);
}

static void test_wav(void **state) {
    float x[4] = {0, 1, -1, 2};
    unsigned char *w;
    size_t n;
    assert_int_equal(sn_wav16_encode(x, 4, 8000, &w, &n), SN_OK);
    assert_int_equal(n, 52);
    assert_memory_equal(w, "RIFF", 4);
    assert_memory_equal(w + 8, "WAVEfmt ", 8);
    assert_int_equal(w[24] | (w[25] << 8), 8000);
    assert_int_equal((int16_t)(w[46] | (w[47] << 8)), 32767);
    assert_int_equal((int16_t)(w[48] | (w[49] << 8)), -32767);
    assert_int_equal((int16_t)(w[50] | (w[51] << 8)), 32767); /* clipped */
    free(w);
    assert_int_equal(sn_wav16_encode(x, 4, 0, &w, &n), SN_ERR_INVALID_ARG);
}

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void test_write_and_frame(void **state) {
    sn_events *ev;
    assert_int_equal(sn_events_open(g_dir, &ev), SN_OK);
    const char *path = sn_events_path(ev);
    assert_non_null(strstr(path, "/events.out.tfevents."));
    for (int s = 0; s < 100; s += 10) assert_int_equal(sn_events_scalar(ev, "loss/train", s, 1.0 / (1 + s)), SN_OK);
    assert_int_equal(sn_events_scalar(ev, "loss/valid", 50, 0.25), SN_OK);
    assert_int_equal(sn_events_scalar(ev, "loss/valid", 3000000000LL, 0.125), SN_OK);
    float *x = malloc(1600 * sizeof *x);
    for (int i = 0; i < 1600; i++) x[i] = 0.5f * sinf(2 * 3.14159265f * 440 * i / 16000.0f);
    assert_int_equal(sn_events_audio(ev, "valid/enhanced_0", 50, x, 1600, 16000), SN_OK);
    assert_int_equal(sn_events_audio(ev, "valid/enhanced_0", 100, x, 1600, 16000), SN_OK);
    free(x);
    assert_int_equal(sn_events_scalar(ev, "", 1, 1), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_events_audio(ev, "a", 1, NULL, 5, 16000), SN_ERR_INVALID_ARG);

    /* Before close: everything is already in the file (flushed per record). */
    size_t len;
    unsigned char *b = read_all(path, &len);
    size_t off = 0;
    int records = 0;
    while (off < len) {
        assert_true(off + 12 <= len);
        uint64_t n = rd_le(b + off, 8);
        assert_int_equal(rd_le(b + off + 8, 4), sn_crc32c_masked(b + off, 8));
        assert_true(off + 12 + n + 4 <= len);
        assert_int_equal(rd_le(b + off + 12 + n, 4), sn_crc32c_masked(b + off + 12, (size_t)n));
        if (records == 0) {
            /* field 1 (wall_time, fixed64) then field 3 "brain.Event:2" */
            assert_int_equal(b[off + 12], 0x09);
            assert_int_equal(b[off + 12 + 9], 0x1a);
            assert_int_equal(b[off + 12 + 10], 13);
            assert_memory_equal(b + off + 12 + 11, "brain.Event:2", 13);
        }
        off += 12 + n + 4;
        records++;
    }
    assert_int_equal(records, 1 + 10 + 2 + 2);
    free(b);

    /* A second writer in the same second gets its own file. */
    sn_events *ev2;
    assert_int_equal(sn_events_open(g_dir, &ev2), SN_OK);
    assert_string_not_equal(sn_events_path(ev2), path);
    char p2[512];
    snprintf(p2, sizeof p2, "%s", sn_events_path(ev2));
    sn_events_close(ev2);
    unlink(p2);
    sn_events_close(ev);

    /* tensorboard's own reader */
    const char *py = sn_pyref("tensorboard");
    if (!py) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/io/tb_read.py' '%s'", py, SN_SOURCE_DIR, g_dir);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
}

static void test_open_errors(void **state) {
    sn_events *ev = (sn_events *)1;
    assert_int_equal(sn_events_open("/proc/sn_no/x", &ev), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "cannot create directory"));
    assert_int_equal(sn_events_open("/dev/null", &ev), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "not a directory"));
    assert_int_equal(sn_events_open("", &ev), SN_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),
        cmocka_unit_test(test_wav),
        cmocka_unit_test(test_write_and_frame),
        cmocka_unit_test(test_open_errors),
    };
    return sn_pyref_exit(cmocka_run_group_tests(tests, setup, teardown));
}
