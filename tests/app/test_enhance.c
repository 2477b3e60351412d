/* `sinter enhance` end to end (the built binary, fork/exec): chunked equals
 * whole-file output (at 16 kHz and through the resamplers), memory stays
 * constant on a long file, formats and rates round-trip, folders, plain
 * PyTorch state_dicts, and every bad input gives a clear error and the right
 * exit code. */
#include "sn_test.h"
#include "sinter/audio.h"
#include "sinter/config.h"
#include "sinter/safetensors.h"
#include "sinter/train.h"
#include "app_run.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];     /* scratch folder of this test run */
static char ckpt[600];    /* tiny LSTM checkpoint (sinter format, config inside) */
static char plain[600];   /* the same weights as a plain state_dict (no metadata) */
static char out_txt[600], err_txt[600];
static long child_maxrss_kb; /* peak RSS of the last run_sinter child */

static const char *P(const char *name) {
    static char buf[8][700];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Runs build/sinter with args (NULL-terminated); stdout/stderr go to files. */
static int run_sinter(const char *const *args) {
    int rc = app_run_sinter(args, out_txt, err_txt, &child_maxrss_kb);
    if (rc < 0) print_message("sinter binary '%s/sinter' not built\n", SN_BINARY_DIR);
    return rc;
}

static void expect_err(int rc, int want, const char *needle) {
    char *e = app_slurp(err_txt);
    if (rc != want || (needle && !strstr(e, needle)))
        fail_msg("exit %d (want %d), stderr: %s (want '%s')", rc, want, e, needle ? needle : "");
    free(e);
}

static void tiny_config(sn_config *c, const char *rnn) {
    sn_config_defaults(c);
    char kv[64];
    snprintf(kv, sizeof kv, "model.rnn=%s", rnn);
    SN_ASSERT_OK(sn_config_override(c, kv));
    SN_ASSERT_OK(sn_config_override(c, "model.hidden=32"));
    SN_ASSERT_OK(sn_config_override(c, "model.channels=[4, 8, 8, 8, 16]"));
}

static sn_model *tiny_model(sn_backend *cpu, const sn_config *cfg) {
    sn_crn_config cc;
    SN_ASSERT_OK(sn_crn_config_from(cfg, &cc));
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(&cc, cpu, &m));
    SN_ASSERT_OK(sn_model_init(m, 5));
    return m;
}

/* speech-like test signal: a few harmonics with a wobbling pitch, plus noise */
static float *test_signal(int64_t n, int rate, uint64_t seed) {
    float *x = malloc(sizeof(float) * n);
    sn_test_rand(x, n, &seed, -0.05f, 0.05f);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / rate, f0 = 140 + 30 * sin(2 * M_PI * 3 * t);
        for (int h = 1; h <= 4; h++) x[i] += (float)(0.1 / h * sin(2 * M_PI * f0 * h * t));
    }
    return x;
}

static void write_wav(const char *path, int64_t frames, int channels, int rate, int format) {
    float *x = test_signal(frames * channels, rate, 9);
    SN_ASSERT_OK(sn_audio_write(path, x, frames, channels, rate, format));
    free(x);
}

static int setup(void **st) {
    snprintf(dir, sizeof dir, "%s/test_enhance_tmp_%d", SN_BINARY_DIR, (int)getpid());
    mkdir(dir, 0755);
    snprintf(ckpt, sizeof ckpt, "%s/tiny.safetensors", dir);
    snprintf(plain, sizeof plain, "%s/plain.safetensors", dir);
    snprintf(out_txt, sizeof out_txt, "%s/stdout.txt", dir);
    snprintf(err_txt, sizeof err_txt, "%s/stderr.txt", dir);
    sn_backend *cpu = sn_cpu_backend_new(1);
    sn_config cfg;
    tiny_config(&cfg, "lstm");
    sn_model *m = tiny_model(cpu, &cfg);
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, &cfg, ckpt));
    /* the same weights with no metadata, as safetensors.torch.save_file(model.state_dict()) writes */
    sn_st_writer *w = sn_st_writer_new();
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = m->t[i];
        int64_t n = sn_nelem(t);
        float *v = malloc(sizeof(float) * (n ? n : 1));
        SN_ASSERT_OK(sn_tensor_get(t, v, n));
        if (strstr(t->name, "num_batches_tracked")) {
            int64_t zero = 0;
            SN_ASSERT_OK(sn_st_add(w, t->name, "I64", 0, t->shape, &zero));
        } else {
            SN_ASSERT_OK(sn_st_add(w, t->name, "F32", t->ndim, t->shape, v));
        }
        free(v);
    }
    SN_ASSERT_OK(sn_st_save(w, plain));
    sn_st_writer_free(w);
    sn_model_free(m);
    sn_backend_free(cpu);
    write_wav(P("float16k.wav"), 52800, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT); /* 3.3 s */
    return 0;
}

static int teardown(void **st) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    return 0;
}

static void test_chunked_equals_whole(void **st) {
    const char *a1[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("whole.wav"), "--chunk-seconds", "0",
                        "--device", "cpu", NULL};
    int rc = run_sinter(a1);
    expect_err(rc, 0, NULL);
    const char *a2[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("chunked.wav"), "--chunk-seconds", "0.5",
                        NULL};
    rc = run_sinter(a2);
    expect_err(rc, 0, NULL);
    char *o = app_slurp(out_txt);
    assert_non_null(strstr(o, "real-time factor"));
    free(o);
    sn_audio a = {0}, b = {0};
    SN_ASSERT_OK(sn_audio_read(P("whole.wav"), 0, 0, &a));
    SN_ASSERT_OK(sn_audio_read(P("chunked.wav"), 0, 0, &b));
    assert_int_equal(a.frames, 52800);
    assert_int_equal(b.frames, 52800);
    assert_int_equal(a.sample_rate, 16000);
    assert_int_equal(b.format & SF_FORMAT_SUBMASK, SF_FORMAT_FLOAT); /* a float WAV stays float */
    double maxd = 0, maxv = 0;
    for (int64_t i = 0; i < a.frames; i++) {
        double d = fabs((double)a.data[i] - b.data[i]);
        if (d > maxd) maxd = d;
        if (fabs(a.data[i]) > maxv) maxv = fabs(a.data[i]);
    }
    print_message("whole vs chunked 0.5 s: max diff %.3g, max |y| %.3g\n", maxd, maxv);
    assert_true(maxv > 1e-4);
    /* 1e-5, relative to the peak when the (untrained) model's output exceeds 1:
     * float32 WAV samples near 90 are 7.6e-6 apart */
    assert_true(maxd <= 1e-5 * fmax(1.0, maxv));
    /* a chunk that does not divide the file, and one frame per chunk */
    const char *a3[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("chunk1.wav"), "--chunk-seconds", "0.01",
                        "-q", NULL};
    expect_err(run_sinter(a3), 0, NULL);
    sn_audio_free(&b);
    SN_ASSERT_OK(sn_audio_read(P("chunk1.wav"), 0, 0, &b));
    for (int64_t i = 0; i < a.frames; i++) assert_true(fabs((double)a.data[i] - b.data[i]) <= 1e-5 * fmax(1.0, maxv));
    sn_audio_free(&a);
    sn_audio_free(&b);
}

static double max_abs_diff(const float *a, const float *b, int64_t n, double *peak) {
    double d = 0, v = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        v = fmax(v, fabs((double)a[i]));
    }
    if (peak) *peak = v;
    return d;
}

/* A 44.1 kHz stereo input: the streamed pipeline (block reader, resamplers
 * carried across blocks, chunked model) equals the whole-buffer one: the
 * file read whole and resampled with sn_resample, enhanced whole at 16 kHz,
 * resampled back whole. Both resamplers are bit-identical to sn_resample
 * (tests/audio/test_audio_stream.c), so the bound is the chunking's 1e-5. */
static void test_resampled_equals_whole(void **st) {
    write_wav(P("st44k.wav"), 88200 + 77, 2, 44100, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    /* the reference path, step by step */
    sn_audio a16 = {0};
    SN_ASSERT_OK(sn_audio_read(P("st44k.wav"), 16000, 1, &a16));
    SN_ASSERT_OK(sn_audio_write(P("ref16k.wav"), a16.data, a16.frames, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT));
    const char *a1[] = {"enhance", "--ckpt", ckpt, P("ref16k.wav"), "-o", P("ref16k_out.wav"), "--chunk-seconds", "0",
                        "-q", NULL};
    expect_err(run_sinter(a1), 0, NULL);
    sn_audio y16 = {0}, got = {0};
    SN_ASSERT_OK(sn_audio_read(P("ref16k_out.wav"), 0, 0, &y16));
    float *ref = NULL;
    int64_t nref = 0;
    SN_ASSERT_OK(sn_resample(y16.data, y16.frames, 16000, 44100, &ref, &nref));
    /* the streamed path, chunks of 0.5 s (not dividing the file) */
    const char *a2[] = {"enhance", "--ckpt", ckpt, P("st44k.wav"), "-o", P("st44k_out.wav"), "--chunk-seconds", "0.5",
                        "-q", NULL};
    expect_err(run_sinter(a2), 0, NULL);
    SN_ASSERT_OK(sn_audio_read(P("st44k_out.wav"), 0, 0, &got));
    assert_int_equal(got.frames, 88200 + 77);
    assert_int_equal(got.sample_rate, 44100);
    assert_int_equal(got.format, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    assert_true(nref <= got.frames); /* past nref the output is zero padding */
    double peak = 0, d = max_abs_diff(ref, got.data, nref, &peak);
    for (int64_t i = nref; i < got.frames; i++) assert_true(got.data[i] == 0.0f);
    print_message("44.1 kHz streamed vs whole: max diff %.3g, max |y| %.3g\n", d, peak);
    assert_true(peak > 1e-4);
    assert_true(d <= 1e-5 * fmax(1.0, peak));
    free(ref);
    sn_audio_free(&a16);
    sn_audio_free(&y16);
    sn_audio_free(&got);
}

/* Constant memory: 10 minutes at 16 kHz (9.6 M samples, 38 MB as float).
 * Reading it whole costs 38 MB in + 38 MB out, plus the resampling copies
 * (the pipeline before streaming peaked at 187 MB here). The streamed
 * pipeline holds a read block, one 10 s chunk and the model: measured ~34 MB
 * peak RSS in all, mostly the binary, libraries and FFTW. 80 MB leaves more
 * than 2x margin over that, and anything that keeps even one input and one
 * output copy of the file (76 MB of floats plus that ~30 MB base) exceeds it. */
static void test_long_file_memory(void **st) {
    const int rate = 16000;
    const int64_t n = (int64_t)600 * rate;
    sn_audio_writer *w = NULL;
    SN_ASSERT_OK(sn_audio_writer_open(P("long.wav"), 1, rate, SF_FORMAT_WAV | SF_FORMAT_PCM_16, &w));
    const int64_t B = 1 << 16;
    float *blk = malloc(sizeof(float) * B);
    uint64_t seed = 3;
    for (int64_t off = 0; off < n; off += B) {
        int64_t k = n - off < B ? n - off : B;
        sn_test_rand(blk, k, &seed, -0.05f, 0.05f);
        for (int64_t i = 0; i < k; i++) blk[i] += (float)(0.2 * sin(2 * M_PI * 150.0 * (double)(off + i) / rate));
        SN_ASSERT_OK(sn_audio_writer_write(w, blk, k));
    }
    SN_ASSERT_OK(sn_audio_writer_close(w));
    free(blk);
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    /* the program's own footprint before any audio (with CUDA built in, loading cuBLAS
     * alone maps ~200 MB): the bound is on what enhancing adds to it */
    const char *ver[] = {"--version", NULL};
    expect_err(run_sinter(ver), 0, NULL);
    long base_kb = child_maxrss_kb;
    const char *args[] = {"enhance", "--ckpt", ckpt, P("long.wav"), "-o", P("long_out.wav"), "--device", "cpu", "-q",
                          NULL};
    expect_err(run_sinter(args), 0, NULL);
    /* ru_maxrss of the child counts the test process's own peak too (fork before
     * exec), which is printed here and is far below the bound */
    print_message("10 min at 16 kHz: peak RSS of sinter enhance %.1f MB, of sinter --version %.1f MB (test process "
                  "%.1f MB)\n", child_maxrss_kb / 1024.0, base_kb / 1024.0, self.ru_maxrss / 1024.0);
    assert_true(child_maxrss_kb > 0);
    /* whole-file processing would add 2 x 38 MB of float audio plus resampling copies.
     * (Under ASan freed memory sits in a quarantine and shadow memory grows with
     * every allocation: the bound means nothing there.) */
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(child_maxrss_kb - base_kb < 60 * 1024);
#endif
    int r = 0;
    int64_t frames = 0;
    SN_ASSERT_OK(sn_audio_info(P("long_out.wav"), &r, &frames, NULL, NULL));
    assert_int_equal(r, rate);
    assert_int_equal(frames, n);
    /* the end of the file went through the model too: not silent */
    sn_audio_reader *rd = NULL;
    SN_ASSERT_OK(sn_audio_reader_open(P("long_out.wav"), &rd, NULL, NULL));
    SN_ASSERT_OK(sn_audio_reader_seek(rd, n - rate));
    float *tail = malloc(sizeof(float) * rate);
    int64_t got = 0;
    SN_ASSERT_OK(sn_audio_reader_read(rd, tail, rate, &got));
    assert_int_equal(got, rate);
    double e = 0;
    for (int64_t i = 0; i < rate; i++) e += (double)tail[i] * tail[i];
    assert_true(e > 0);
    free(tail);
    sn_audio_reader_close(rd);
    unlink(P("long.wav"));
    unlink(P("long_out.wav"));
}

/* A bad sample mid-file is found while streaming: the error is the reader's,
 * and neither the output nor a temp file is left behind. */
static void test_stream_error_leaves_nothing(void **st) {
    SF_INFO info = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(P("nan.wav"), SFM_WRITE, &info);
    assert_non_null(sf);
    float *x = test_signal(100000, 16000, 4);
    x[90000] = NAN;
    assert_int_equal(sf_writef_float(sf, x, 100000), 100000);
    sf_close(sf);
    free(x);
    mkdir(P("nan_out"), 0755);
    const char *args[] = {"enhance", "--ckpt", ckpt, P("nan.wav"), "-o", P("nan_out/y.wav"), "--chunk-seconds", "1",
                          NULL};
    expect_err(run_sinter(args), 3, "frame 90000"); /* NaN in an input is bad input: 3, as in metrics */
    assert_int_not_equal(access(P("nan_out/y.wav"), F_OK), 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", P("nan_out"));
    assert_int_equal(system(cmd), 0);
}

static void test_rate_and_channels(void **st) {
    write_wav(P("stereo44k.wav"), 44100, 2, 44100, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    const char *args[] = {"enhance", "--ckpt", ckpt, P("stereo44k.wav"), "-o", P("out44k.wav"), NULL};
    expect_err(run_sinter(args), 0, NULL);
    int rate = 0, ch = 0, fmt = 0;
    int64_t frames = 0;
    SN_ASSERT_OK(sn_audio_info(P("out44k.wav"), &rate, &frames, &ch, &fmt));
    assert_int_equal(rate, 44100);
    assert_int_equal(frames, 44100);
    assert_int_equal(ch, 1); /* mixed down */
    assert_int_equal(fmt, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    /* FLAC in, FLAC out */
    write_wav(P("in.flac"), 8000, 1, 8000, SF_FORMAT_FLAC | SF_FORMAT_PCM_24);
    const char *a2[] = {"enhance", "--ckpt", ckpt, P("in.flac"), "-o", P("out.flac"), NULL};
    expect_err(run_sinter(a2), 0, NULL);
    SN_ASSERT_OK(sn_audio_info(P("out.flac"), &rate, &frames, &ch, &fmt));
    assert_int_equal(rate, 8000);
    assert_int_equal(frames, 8000);
    assert_int_equal(fmt, SF_FORMAT_FLAC | SF_FORMAT_PCM_24);
}

static void test_folders(void **st) {
    mkdir(P("tree"), 0755);
    mkdir(P("tree/sub"), 0755);
    write_wav(P("tree/a.wav"), 16000, 1, 16000, 0);
    write_wav(P("tree/sub/b.wav"), 12000, 1, 16000, 0);
    FILE *f = fopen(P("tree/readme.txt"), "w");
    fputs("not audio\n", f);
    fclose(f);
    const char *args[] = {"enhance", "--ckpt", ckpt, P("tree"), "-o", P("tree_out"), NULL};
    expect_err(run_sinter(args), 0, NULL);
    int64_t frames = 0;
    SN_ASSERT_OK(sn_audio_info(P("tree_out/a.wav"), NULL, &frames, NULL, NULL));
    assert_int_equal(frames, 16000);
    SN_ASSERT_OK(sn_audio_info(P("tree_out/sub/b.wav"), NULL, &frames, NULL, NULL));
    assert_int_equal(frames, 12000);
    assert_int_not_equal(access(P("tree_out/readme.txt"), F_OK), 0);
    /* two files -> OUT is a folder */
    const char *a2[] = {"enhance", "--ckpt", ckpt, P("tree/a.wav"), P("tree/sub/b.wav"), "-o", P("two"), NULL};
    expect_err(run_sinter(a2), 0, NULL);
    assert_int_equal(access(P("two/a.wav"), F_OK), 0);
    assert_int_equal(access(P("two/b.wav"), F_OK), 0);
}

static void test_plain_state_dict(void **st) {
    /* no config inside: the model comes from overrides */
    const char *a1[] = {"enhance", "--ckpt", plain, "model.hidden=32", "model.channels=[4,8,8,8,16]",
                        P("float16k.wav"), "-o", P("plain.wav"), NULL};
    expect_err(run_sinter(a1), 0, NULL);
    sn_audio a = {0}, b = {0};
    SN_ASSERT_OK(sn_audio_read(P("plain.wav"), 0, 0, &a));
    const char *a0[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("same.wav"), NULL};
    expect_err(run_sinter(a0), 0, NULL);
    SN_ASSERT_OK(sn_audio_read(P("same.wav"), 0, 0, &b));
    for (int64_t i = 0; i < a.frames; i++) assert_true(a.data[i] == b.data[i]);
    sn_audio_free(&a);
    sn_audio_free(&b);
    /* without the model settings: a config error that says what to give */
    const char *a2[] = {"enhance", "--ckpt", plain, P("float16k.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a2), 2, "config");
    /* settings of another model: a file error naming the mismatch */
    const char *a3[] = {"enhance", "--ckpt", plain, "model.hidden=64", "model.channels=[4,8,8,8,16]",
                        P("float16k.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a3), 3, "rnn.");
    /* a bad override */
    const char *a4[] = {"enhance", "--ckpt", plain, "model.hiden=32", P("float16k.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a4), 2, "model.hidden");
}

/* The same plain state_dict on every other backend with a device (Vulkan on lavapipe in
 * CI): the output equals the CPU's to a relative error below 1e-4. */
static void test_plain_state_dict_devices(void **st) {
    const char *cpu_args[] = {"enhance", "--ckpt", plain, "model.hidden=32", "model.channels=[4,8,8,8,16]",
                              "--device", "cpu", P("float16k.wav"), "-o", P("plain_cpu.wav"), NULL};
    expect_err(run_sinter(cpu_args), 0, NULL);
    sn_audio ref = {0};
    SN_ASSERT_OK(sn_audio_read(P("plain_cpu.wav"), 0, 0, &ref));
    int ran = 0;
    for (int r = 0; r < sn_backend_reg_count(); r++) {
        const sn_backend_reg *reg = sn_backend_reg_get(r);
        if (!strcmp(reg->kind, "cpu") || reg->count() == 0) continue;
        char spec[32];
        snprintf(spec, sizeof spec, "%s:0", reg->kind);
        const char *a[] = {"enhance", "--ckpt", plain, "model.hidden=32", "model.channels=[4,8,8,8,16]",
                           "--device", spec, P("float16k.wav"), "-o", P("plain_dev.wav"), NULL};
        expect_err(run_sinter(a), 0, NULL);
        sn_audio got = {0};
        SN_ASSERT_OK(sn_audio_read(P("plain_dev.wav"), 0, 0, &got));
        assert_int_equal(got.frames, ref.frames);
        double m = 0, e = 0;
        for (int64_t i = 0; i < ref.frames; i++) m = fmax(m, fabs((double)ref.data[i]));
        for (int64_t i = 0; i < ref.frames; i++) {
            double d = fabs((double)got.data[i] - (double)ref.data[i]);
            if (!(d <= e)) e = d;
        }
        printf("enhance on %s vs cpu: relative error %.3g\n", spec, e / m);
        assert_true(m > 0 && e / m < 1e-4);
        sn_audio_free(&got);
        ran++;
    }
    sn_audio_free(&ref);
    if (!ran) skip();
}

static void test_attention_whole(void **st) {
    sn_backend *cpu = sn_cpu_backend_new(1);
    sn_config cfg;
    tiny_config(&cfg, "attention");
    sn_model *m = tiny_model(cpu, &cfg);
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, &cfg, P("attn.safetensors")));
    sn_model_free(m);
    sn_backend_free(cpu);
    const char *args[] = {"enhance", "--ckpt", P("attn.safetensors"), P("float16k.wav"), "-o", P("attn.wav"), NULL};
    expect_err(run_sinter(args), 0, NULL);
    char *o = app_slurp(out_txt);
    assert_non_null(strstr(o, "whole files"));
    free(o);
}

static void test_errors(void **st) {
    const char *a1[] = {"enhance", "--ckpt", P("nope.safetensors"), P("float16k.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a1), 3, "nope.safetensors");
    const char *a2[] = {"enhance", "--ckpt", ckpt, P("missing.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a2), 3, "missing.wav");
    /* output under a regular file: the folder cannot be created */
    const char *a3[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("stdout.txt/sub/x.wav"), NULL};
    expect_err(run_sinter(a3), 3, "stdout.txt");
    write_wav(P("second.wav"), 1600, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    const char *a3b[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), P("second.wav"), "-o", P("stdout.txt"), NULL};
    expect_err(run_sinter(a3b), 3, "stdout.txt");
    /* not a checkpoint at all */
    const char *a4[] = {"enhance", "--ckpt", P("float16k.wav"), P("float16k.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a4), 3, "float16k.wav");
    /* an input that is not audio */
    FILE *f = fopen(P("bad.wav"), "w");
    fputs("RIFF garbage", f);
    fclose(f);
    const char *a5[] = {"enhance", "--ckpt", ckpt, P("bad.wav"), "-o", P("x.wav"), NULL};
    expect_err(run_sinter(a5), 3, "bad.wav");
    const char *a6[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), NULL};
    expect_err(run_sinter(a6), 2, "-o");
    const char *a7[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("x.wav"), "--device", "cuda:7", NULL};
    expect_err(run_sinter(a7), 4, "cuda:7");
    const char *a8[] = {"enhance", "--bogus", NULL};
    expect_err(run_sinter(a8), 2, "--bogus");
    const char *a9[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("float16k.wav"), NULL};
    expect_err(run_sinter(a9), 2, "input");
    const char *a10[] = {"enhance", "--ckpt", ckpt, P("float16k.wav"), "-o", P("x.wav"), "--chunk-seconds", "abc",
                         NULL};
    expect_err(run_sinter(a10), 2, "abc");
    const char *h[] = {"enhance", "--help", NULL};
    assert_int_equal(run_sinter(h), 0);
    char *o = app_slurp(out_txt);
    assert_non_null(strstr(o, "attention"));
    free(o);
}

/* The library entry point the CLI calls: same output as the binary, and bad calls refused. */
static void test_library(void **st) {
    (void)st;
    sn_enhance_opts o;
    sn_enhance_opts_default(&o);
    o.device = "cpu";
    o.cpu_threads = 1;
    o.chunk_seconds = 0.5;
    sn_enhancer *e = NULL;
    SN_ASSERT_OK(sn_enhancer_open(ckpt, NULL, &o, &e));
    assert_int_equal(sn_enhancer_chunk_frames(e), 50);
    assert_int_equal(sn_enhancer_model(e)->cfg.hidden, 32);
    assert_string_equal(sn_enhancer_config(e)->model.rnn, "lstm");
    double dur = 0;
    SN_ASSERT_OK(sn_enhance_file(e, P("float16k.wav"), P("lib/out.wav"), &dur));
    assert_float_equal(dur, 3.3, 1e-9);
    const char *a[] = {"enhance", "--ckpt", ckpt, "--device", "cpu", "--threads", "1", "--chunk-seconds", "0.5", P("float16k.wav"), "-o",
                       P("lib/cli.wav"), NULL};
    assert_int_equal(run_sinter(a), 0);
    sn_audio x, y;
    SN_ASSERT_OK(sn_audio_read(P("lib/out.wav"), 0, 1, &x));
    SN_ASSERT_OK(sn_audio_read(P("lib/cli.wav"), 0, 1, &y));
    assert_int_equal(x.frames, 52800);
    assert_int_equal(y.frames, x.frames);
    assert_memory_equal(x.data, y.data, (size_t)x.frames * sizeof(float));
    sn_audio_free(&x);
    sn_audio_free(&y);
    assert_int_equal(sn_enhance_file(e, P("missing.wav"), P("lib/m.wav"), NULL), SN_ERR_IO);
    assert_int_equal(sn_enhance_file(NULL, P("float16k.wav"), P("lib/m.wav"), NULL), SN_ERR_INVALID_ARG);
    sn_enhancer_free(e);
    /* a plain state_dict needs a config; a device that does not exist is a device error */
    assert_int_equal(sn_enhancer_open(plain, NULL, &o, &e), SN_ERR_CONFIG);
    assert_null(e);
    o.device = "cuda:7";
    assert_int_equal(sn_enhancer_open(ckpt, NULL, &o, &e), SN_ERR_DEVICE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library),
        cmocka_unit_test(test_chunked_equals_whole),
        cmocka_unit_test(test_resampled_equals_whole),
        cmocka_unit_test(test_long_file_memory),
        cmocka_unit_test(test_stream_error_leaves_nothing),
        cmocka_unit_test(test_rate_and_channels),
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_plain_state_dict),
        cmocka_unit_test(test_plain_state_dict_devices),
        cmocka_unit_test(test_attention_whole),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
