/* safetensors reader/writer: round trips, every validation error, atomic
 * save under failure, interop with Python's layout. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sinter/safetensors.h"
#include "sn_pyref.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif

static char g_dir[256];

static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/sn_test_st_%ld", (long)getpid());
    mkdir(g_dir, 0755);
    return 0;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : 0;
}

/* A file from a header string (padded to 8 unless pad=0) and `data_len` bytes of data. */
static unsigned char *mkfile(const char *header, size_t data_len, size_t *len) {
    size_t h = strlen(header);
    size_t hp = h + ((8 - h % 8) % 8);
    *len = 8 + hp + data_len;
    unsigned char *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(((uint64_t)hp >> (8 * i)) & 0xFF);
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    for (size_t i = 0; i < data_len; i++) b[8 + hp + i] = (unsigned char)i;
    return b;
}

static void expect_bad_buf(const void *buf, size_t len, sn_status code, const char *needle) {
    sn_safetensors *f = (sn_safetensors *)1;
    sn_status st = sn_st_parse(buf, len, "bad.safetensors", &f);
    if (st != code || !strstr(sn_last_error(), needle)) {
        print_error("status %s, message '%s'; wanted %s with '%s'\n", sn_status_name(st), sn_last_error(),
                    sn_status_name(code), needle);
        fail();
    }
    assert_null(f);
    assert_non_null(strstr(sn_last_error(), "'bad.safetensors'"));
}

static void expect_bad(const char *header, size_t data_len, sn_status code, const char *needle) {
    size_t len;
    unsigned char *b = mkfile(header, data_len, &len);
    expect_bad_buf(b, len, code, needle);
    free(b);
}

static void test_roundtrip(void **state) {
    sn_st_writer *w = sn_st_writer_new();
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t sa[2] = {2, 3};
    int64_t step = 1234567890123LL;
    uint16_t h[2] = {0x3C00, 0x3800}; /* 1.0, 0.5 */
    int64_t sh[1] = {2}, se[2] = {0, 5};
    assert_int_equal(sn_st_add(w, "b.weight", "F32", 2, sa, a), SN_OK);
    a[0] = 99; /* data was copied */
    assert_int_equal(sn_st_add(w, "a.step", "I64", 0, NULL, &step), SN_OK);
    assert_int_equal(sn_st_add(w, "c.half", "F16", 1, sh, h), SN_OK);
    assert_int_equal(sn_st_add(w, "empty", "F32", 2, se, NULL), SN_OK);
    assert_int_equal(sn_st_set_meta(w, "config", "train:\n  lr: 0.001\n"), SN_OK);
    assert_int_equal(sn_st_set_meta(w, "step", "1"), SN_OK);
    assert_int_equal(sn_st_set_meta(w, "step", "2"), SN_OK); /* replaces */
    /* writer errors */
    assert_int_equal(sn_st_add(w, "b.weight", "F32", 2, sa, a), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "already added"));
    assert_int_equal(sn_st_add(w, "x", "F99", 2, sa, a), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "unknown dtype"));
    int64_t neg[1] = {-1};
    assert_int_equal(sn_st_add(w, "x", "F32", 1, neg, a), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_st_add(w, "__metadata__", "F32", 1, sh, a), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_st_add(w, "", "F32", 1, sh, a), SN_ERR_INVALID_ARG);

    char path[300];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    assert_int_equal(sn_st_save(w, path), SN_OK);
    sn_st_writer_free(w);

    sn_safetensors *f = NULL;
    assert_int_equal(sn_st_open(path, &f), SN_OK);
    assert_int_equal(sn_st_count(f), 4);
    /* file order = order added */
    assert_string_equal(sn_st_get(f, 0)->name, "b.weight");
    assert_string_equal(sn_st_get(f, 1)->name, "a.step");
    assert_null(sn_st_get(f, 4));
    assert_null(sn_st_get(f, -1));
    const sn_st_tensor *t = sn_st_find(f, "b.weight");
    assert_non_null(t);
    assert_string_equal(t->dtype, "F32");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(((uintptr_t)sn_st_data(f, t)) % 64, 0);
    float out[6];
    assert_int_equal(sn_st_read_f32(f, "b.weight", out, 6), SN_OK);
    assert_true(out[0] == 1.0f && out[5] == 6.0f);
    double d[6];
    assert_int_equal(sn_st_read_f64(f, "b.weight", d, 6), SN_OK);
    assert_true(d[2] == 3.0);
    assert_int_equal(sn_st_read_f64(f, "a.step", d, 1), SN_OK);
    assert_true(d[0] == 1234567890123.0);
    assert_int_equal(sn_st_read_f32(f, "c.half", out, 2), SN_OK);
    assert_true(out[0] == 1.0f && out[1] == 0.5f);
    assert_int_equal(sn_st_read_f32(f, "empty", out, 0), SN_OK);
    assert_int_equal(sn_st_numel(sn_st_find(f, "a.step")), 1);
    /* count mismatch names the tensor, shape and expected count */
    assert_int_equal(sn_st_read_f32(f, "b.weight", out, 5), SN_ERR_SHAPE);
    assert_non_null(strstr(sn_last_error(), "'b.weight' has shape [2, 3] (6 elements) but 5 were expected"));
    assert_int_equal(sn_st_read_f32(f, "nope", out, 1), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "no tensor named 'nope'"));
    assert_null(sn_st_find(f, "nope"));
    assert_string_equal(sn_st_meta(f, "config"), "train:\n  lr: 0.001\n");
    assert_string_equal(sn_st_meta(f, "step"), "2");
    assert_null(sn_st_meta(f, "x"));
    assert_int_equal(sn_st_meta_count(f), 2);
    assert_string_equal(sn_st_meta_key(f, 0), "config");
    assert_null(sn_st_meta_key(f, 2));
    sn_st_close(f);

    /* header padded so data starts 8-byte aligned, like Python's writer */
    FILE *fp = fopen(path, "rb");
    unsigned char hl[8];
    assert_int_equal(fread(hl, 1, 8, fp), 8);
    fclose(fp);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | hl[i];
    assert_int_equal((8 + n) % 8, 0);
    /* no temp file left behind */
    DIR *dir = opendir(g_dir);
    struct dirent *de;
    while ((de = readdir(dir))) assert_null(strstr(de->d_name, ".tmp."));
    closedir(dir);
}

static void test_empty_file_ok(void **state) {
    sn_st_writer *w = sn_st_writer_new();
    void *buf;
    size_t len;
    assert_int_equal(sn_st_serialize(w, &buf, &len), SN_OK);
    sn_st_writer_free(w);
    sn_safetensors *f;
    assert_int_equal(sn_st_parse(buf, len, "e", &f), SN_OK);
    assert_int_equal(sn_st_count(f), 0);
    sn_st_close(f);
    free(buf);
    /* the header alone, unpadded, also parses */
    unsigned char raw[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(sn_st_parse(raw, sizeof raw, "e", &f), SN_OK);
    sn_st_close(f);
}

static void test_bad_length(void **state) {
    unsigned char b[16] = {0};
    expect_bad_buf(b, 7, SN_ERR_FORMAT, "7 bytes, shorter than the 8-byte header length");
    expect_bad_buf(b, 0, SN_ERR_FORMAT, "0 bytes");
    b[0] = 100;
    expect_bad_buf(b, 16, SN_ERR_FORMAT, "header length 100 runs past the end of the file (16 bytes)");
    memset(b, 0xFF, 8);
    expect_bad_buf(b, 16, SN_ERR_FORMAT, "larger than the 100000000-byte limit");
    memset(b, 0, 8);
    b[0] = 0x01;
    b[3] = 0x06; /* ~100.6 MB */
    expect_bad_buf(b, 16, SN_ERR_FORMAT, "limit");
}

static void test_bad_header(void **state) {
    expect_bad("{\"a\":", 0, SN_ERR_FORMAT, "invalid JSON at byte");
    expect_bad("[1,2]", 0, SN_ERR_FORMAT, "header is an array, expected a JSON object");
    expect_bad("\"x\"", 0, SN_ERR_FORMAT, "header is a string");
    expect_bad("{\"a\":[1]}", 0, SN_ERR_FORMAT, "tensor 'a': header entry is an array");
    expect_bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT, "tensor 'a': header entry has no \"dtype\"");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT, "no \"shape\"");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SN_ERR_FORMAT, "no \"data_offsets\"");
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SN_ERR_UNSUPPORTED,
               "tensor 'a': unknown dtype \"F33\"");
    expect_bad("{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT, "dtype is a number");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT,
               "shape[0] is -1; dimensions must be non-negative integers");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT,
               "shape[0] is 1.5");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT,
               "shape[0] is a string");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT, "shape is a number");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, SN_ERR_UNSUPPORTED,
               "9 dimensions");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               SN_ERR_FORMAT, "too large");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT,
               "duplicate field 'dtype'");
}

static void test_bad_offsets(void **state) {
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, SN_ERR_FORMAT,
               "data_offsets [0, 8] run past the end of the data region (4 bytes)");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, SN_ERR_FORMAT,
               "data_offsets [4, 0] end before they begin");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SN_ERR_FORMAT,
               "data_offsets must be an array of two non-negative integers");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-1,3]}}", 4, SN_ERR_FORMAT,
               "two non-negative integers");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT,
               "hold 4 bytes but dtype F32 with shape [2] needs 8");
    /* overlap */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, SN_ERR_FORMAT, "tensor 'b' (bytes [4, 8)) overlaps tensor 'a'");
    /* gap */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, SN_ERR_FORMAT, "bytes [4, 8) of the data region belong to no tensor (gap before 'b')");
    /* gap at the start */
    expect_bad("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, SN_ERR_FORMAT,
               "bytes [0, 4)");
    /* trailing bytes */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, SN_ERR_FORMAT,
               "data region has 6 bytes but the tensors cover only 4");
    /* header order need not be file order */
    size_t len;
    unsigned char *b = mkfile("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                              "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                              4, &len);
    sn_safetensors *f;
    assert_int_equal(sn_st_parse(b, len, "x", &f), SN_OK);
    assert_string_equal(sn_st_get(f, 0)->name, "a");
    assert_string_equal(sn_st_find(f, "b")->name, "b");
    assert_int_equal(((const unsigned char *)sn_st_data(f, sn_st_find(f, "b")))[0], 2);
    sn_st_close(f);
    free(b);
}

static void test_bad_names_meta(void **state) {
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, SN_ERR_FORMAT, "tensor name 'a' appears twice");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, SN_ERR_FORMAT, "__metadata__ entry 'k' is a number; metadata values must be strings");
    expect_bad("{\"__metadata__\":[\"k\"]}", 0, SN_ERR_FORMAT, "__metadata__ is an array, expected an object of string to string");
    expect_bad("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, SN_ERR_FORMAT, "key 'k' appears twice");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, SN_ERR_FORMAT, "appears twice");
    expect_bad("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SN_ERR_FORMAT, "NUL");
    /* null metadata is accepted (as by the reference reader) */
    size_t len;
    unsigned char *b = mkfile("{\"__metadata__\":null}", 0, &len);
    sn_safetensors *f;
    assert_int_equal(sn_st_parse(b, len, "x", &f), SN_OK);
    assert_int_equal(sn_st_meta_count(f), 0);
    sn_st_close(f);
    free(b);
}

static void test_open_errors(void **state) {
    sn_safetensors *f = (sn_safetensors *)1;
    assert_int_equal(sn_st_open("/nonexistent/x.safetensors", &f), SN_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(sn_last_error(), "cannot open '/nonexistent/x.safetensors'"));
    assert_int_equal(sn_st_open(g_dir, &f), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "not a regular file"));
    char path[300];
    snprintf(path, sizeof path, "%s/trunc.safetensors", g_dir);
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\0\0\0", 1, 4, fp);
    fclose(fp);
    assert_int_equal(sn_st_open(path, &f), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), path));
    assert_non_null(strstr(sn_last_error(), "4 bytes"));
}

static sn_st_writer *big_writer(size_t n) {
    sn_st_writer *w = sn_st_writer_new();
    float *x = calloc(n, sizeof *x);
    int64_t s[1] = {(int64_t)n};
    assert_int_equal(sn_st_add(w, "x", "F32", 1, s, x), SN_OK);
    free(x);
    return w;
}

static void test_save_failures(void **state) {
    sn_st_writer *w = big_writer(4);
    assert_int_equal(sn_st_save(w, "/nonexistent_dir_sn/x.safetensors"), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "cannot save '/nonexistent_dir_sn/x.safetensors'"));
    assert_non_null(strstr(sn_last_error(), "unchanged"));
    sn_st_writer_free(w);

    /* A full disk, simulated with a file-size limit in a child process:
     * the old file must survive intact and the temp file must be gone. */
    char path[300];
    snprintf(path, sizeof path, "%s/keep.safetensors", g_dir);
    w = big_writer(4);
    assert_int_equal(sn_st_save(w, path), SN_OK);
    sn_st_writer_free(w);
    struct stat before;
    assert_int_equal(stat(path, &before), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        sn_st_writer *bw = big_writer(1 << 16);
        sn_status st = sn_st_save(bw, path);
        int ok = st == SN_ERR_IO && strstr(sn_last_error(), "write of temporary file") &&
                 strstr(sn_last_error(), "removed");
        if (!ok) fprintf(stderr, "child: %s\n", sn_last_error());
        _exit(ok ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    sn_safetensors *f;
    assert_int_equal(sn_st_open(path, &f), SN_OK);
    assert_int_equal(sn_st_find(f, "x")->shape[0], 4);
    sn_st_close(f);
    DIR *dir = opendir(g_dir);
    struct dirent *de;
    while ((de = readdir(dir))) assert_null(strstr(de->d_name, ".tmp."));
    closedir(dir);
}

/* A Python-written file: by hand (pkg 0, has BF16) or by the safetensors package (pkg 1). */
static void check_python_file(const char *py, int pkg) {
    char path[300], cmd[1400];
    snprintf(path, sizeof path, "%s/py%d.safetensors", g_dir, pkg);
    snprintf(cmd, sizeof cmd, "%s '%s/tests/io/st_interop.py' %s '%s'", py, SN_SOURCE_DIR,
             pkg ? "write-pkg" : "write", path);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
    sn_safetensors *f;
    sn_status st = sn_st_open(path, &f);
    if (st) print_error("%s\n", sn_last_error());
    assert_int_equal(st, SN_OK);
    assert_int_equal(sn_st_count(f), pkg ? 5 : 6);
    float x[6];
    assert_int_equal(sn_st_read_f32(f, "enc.0.weight", x, 6), SN_OK);
    assert_true(x[0] == 1 && x[1] == -2 && x[2] == 3.5f && x[5] == 6);
    double d[3];
    assert_int_equal(sn_st_read_f64(f, "ebn.0.num_batches_tracked", d, 1), SN_OK);
    assert_true(d[0] == 123456789012.0);
    assert_int_equal(sn_st_find(f, "ebn.0.num_batches_tracked")->ndim, 0);
    assert_int_equal(sn_st_read_f64(f, "half", d, 3), SN_OK);
    assert_true(d[0] == 1.0 && d[1] == -2.0 && d[2] == 1.0 / 16777216.0);
    if (!pkg) {
        assert_int_equal(sn_st_read_f32(f, "bf", x, 2), SN_OK);
        assert_true(x[0] == 1.0f && x[1] == 3.140625f);
    }
    assert_int_equal(sn_st_read_f64(f, "d", d, 1), SN_OK);
    assert_true(d[0] == 0.1);
    assert_int_equal(sn_st_find(f, "empty")->nbytes, 0);
    assert_string_equal(sn_st_meta(f, "format"), "pt");
    assert_string_equal(sn_st_meta(f, "step"), "42");
    sn_st_close(f);
}

static void test_python_interop(void **state) {
    const char *py = sn_pyref("safetensors, numpy");
    if (!py) skip();
    check_python_file(py, 0);
    check_python_file(py, 1);
    char path[300], cmd[1400];

    /* and the other way: Python reads what we write */
    sn_st_writer *w = sn_st_writer_new();
    float wv[6] = {1, 2, 3, 4, 5, 6};
    int64_t s[2] = {2, 3};
    int64_t step = 7;
    sn_st_add(w, "w", "F32", 2, s, wv);
    sn_st_add(w, "step", "I64", 0, NULL, &step);
    sn_st_set_meta(w, "config", "a: 1\nb: \"x\"\n");
    sn_st_set_meta(w, "unicode", "\xc3\xa9\xe6\xbc\xa2");
    snprintf(path, sizeof path, "%s/ours.safetensors", g_dir);
    assert_int_equal(sn_st_save(w, path), SN_OK);
    sn_st_writer_free(w);
    snprintf(cmd, sizeof cmd, "%s '%s/tests/io/st_interop.py' check '%s'", py, SN_SOURCE_DIR, path);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_empty_file_ok),
        cmocka_unit_test(test_bad_length),     cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_offsets),    cmocka_unit_test(test_bad_names_meta),
        cmocka_unit_test(test_open_errors),    cmocka_unit_test(test_save_failures),
        cmocka_unit_test(test_python_interop),
    };
    return sn_pyref_exit(cmocka_run_group_tests(tests, setup, teardown));
}
