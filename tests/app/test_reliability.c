/* The defects of issue 11, one test each, through the built binary: enhance
 * never writes two inputs to one file; a run directory is locked; a failed
 * write (full disk) stops training with exit 3 and a message naming the file;
 * run names stay below out_dir; configs are bounded in size and depth; resume
 * checks the checkpoint's metadata and optimizer shapes; a failed start leaves
 * no run directory; resume removes stale temporary files and marks the resume
 * in the TensorBoard file. */
#include "sn_test.h"
#include "sinter/audio.h"
#include "app_util.h"
#include "app_run.h"
#include "app_cli.h"
#include "sn_pyref.h"

#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

static char g_conf[400];

/* The tiny config as a file, with a few train.* changes. */
static const char *conf_with(int64_t valid_every, int64_t ckpt_every, int audio_samples) {
    sn_config c;
    app_config(&c);
    c.train.valid_every = valid_every;
    c.train.ckpt_every = ckpt_every;
    c.train.audio_samples = audio_samples;
    return cli_write_conf(&c, "conf.yaml", g_conf, sizeof g_conf);
}

static const char *dir_of(const char *name) {
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    return app_path(buf[k], sizeof buf[k], name);
}

static pid_t g_bg; /* a background sinter, killed if a test fails while it runs */
static void kill_bg(void) {
    if (g_bg > 0) kill(g_bg, SIGKILL), waitpid(g_bg, NULL, 0);
    g_bg = 0;
}

/* Starts `sinter args...` in the background; returns its PID. */
static pid_t spawn(const char *const *args, rlim_t fsize_limit) {
    char bin[600];
    snprintf(bin, sizeof bin, "%s/sinter", SN_BINARY_DIR);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (; *args && n < 31; args++) argv[n++] = *args;
    argv[n] = NULL;
    app_path(g_cli_out, sizeof g_cli_out, "bg_stdout.txt");
    app_path(g_cli_err, sizeof g_cli_err, "bg_stderr.txt");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(g_cli_out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(g_cli_err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(e, 2);
        if (fsize_limit) {
            /* a file system that fills up, per file: writes past the limit fail with EFBIG */
            struct rlimit rl = {fsize_limit, fsize_limit};
            signal(SIGXFSZ, SIG_IGN);
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    g_bg = pid;
    return pid;
}

static int wait_rc(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    if (pid == g_bg) g_bg = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int64_t ckpt_step(const char *path) {
    sn_ckpt_state st;
    if (sn_ckpt_read_state(path, &st) != SN_OK) return -1;
    return st.step;
}

/* 1. Two inputs with one name into one folder: each keeps its folder; the same file twice is refused. */
static void test_enhance_same_names(void **state) {
    (void)state;
    char ck[400], p1[400], p2[400], out[400], o1[420], o2[420], o[420];
    app_path(ck, sizeof ck, "enh.safetensors");
    sn_config c;
    app_config(&c);
    sn_backend *b = sn_cpu_backend_new(1);
    sn_crn_config cc;
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_config_from(&c, &cc));
    SN_ASSERT_OK(sn_crn_new(&cc, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 3));
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, &c, ck));
    sn_model_free(m);
    sn_backend_free(b);
    app_path(p1, sizeof p1, "p1");
    app_path(p2, sizeof p2, "p2");
    mkdir(p1, 0755), mkdir(p2, 0755);
    float x[8000];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 8000; i++) x[i] = 0.3f * sinf((float)i * (k ? 0.11f : 0.05f));
        char p[420];
        snprintf(p, sizeof p, "%s/s.wav", k ? p2 : p1);
        SN_ASSERT_OK(sn_audio_write(p, x, 8000, 1, 16000, 0));
    }
    strcat(p1, "/s.wav"), strcat(p2, "/s.wav");
    app_path(out, sizeof out, "enh_out");
    const char *a[] = {"enhance", "--ckpt", ck, "--device", "cpu", p1, p2, "-o", out, NULL};
    cli_expect(cli_run(a), 0, "enhanced 2 files");
    snprintf(o1, sizeof o1, "%s/p1/s.wav", out);
    snprintf(o2, sizeof o2, "%s/p2/s.wav", out);
    snprintf(o, sizeof o, "%s/s.wav", out);
    assert_true(cli_exists(o1));
    assert_true(cli_exists(o2));
    assert_false(cli_exists(o));
    /* the two outputs are the two inputs' enhancements, not one twice */
    sn_audio y1, y2;
    SN_ASSERT_OK(sn_audio_read(o1, 0, 1, &y1));
    SN_ASSERT_OK(sn_audio_read(o2, 0, 1, &y2));
    assert_int_equal(y1.frames, 8000);
    assert_true(memcmp(y1.data, y2.data, 8000 * sizeof(float)) != 0);
    sn_audio_free(&y1);
    sn_audio_free(&y2);
    /* the same file twice: refused before anything is written */
    char out2[400];
    app_path(out2, sizeof out2, "enh_out2");
    const char *b2[] = {"enhance", "--ckpt", ck, "--device", "cpu", p1, p1, "-o", out2, NULL};
    cli_expect(cli_run(b2), 2, "would both be written");
    assert_true(cli_err_has(p1));
    assert_true(cli_count_entries(out2) <= 0);
}

/* 2. A run directory in use: a second train or --resume gets exit 3 naming the
 * PID; kill -9 leaves no stale lock. */
static void test_run_lock(void **state) {
    (void)state;
    const char *conf = conf_with(0, 1, 0);
    const char *dir = dir_of("run_lock");
    char last[500];
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "1000000", "--threads", "1", "--quiet", NULL};
    pid_t pid = spawn(a, 0);
    for (int i = 0; i < 400 && ckpt_step(last) < 2; i++) usleep(25000);
    assert_true(ckpt_step(last) >= 2);
    char pidtxt[32];
    snprintf(pidtxt, sizeof pidtxt, "process %ld", (long)pid);
    const char *r[] = {"train", "--resume", dir, "--max-steps", "1", "--quiet", NULL};
    cli_expect(cli_run(r), 3, "is in use");
    assert_true(cli_err_has(pidtxt));
    const char *n[] = {"train", conf, "--run-dir", dir, "--quiet", NULL};
    cli_expect(cli_run(n), 3, pidtxt);
    assert_false(cli_err_has("--resume")); /* not while it trains */
    kill(pid, SIGKILL);
    assert_int_equal(wait_rc(pid), 128 + SIGKILL);
    int64_t s = ckpt_step(last);
    assert_true(s >= 2);
    char ms[32];
    snprintf(ms, sizeof ms, "%lld", (long long)s + 2);
    const char *r2[] = {"train", "--resume", dir, "--max-steps", ms, "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(r2), 0, NULL);
    assert_int_equal(ckpt_step(last), s + 2);
    /* a finished run is no longer in use: "already exists", with --resume suggested */
    cli_expect(cli_run(n), 2, "already exists");
    assert_true(cli_err_has("--resume"));
}

/* 3a. The event file hits the size limit mid-run: exit 3 naming it and the free
 * space, a last checkpoint written, no torn record or line, no temp files. */
static void test_full_disk_events(void **state) {
    (void)state;
    const char *conf = conf_with(1, 1000, 2);
    const char *dir = dir_of("run_full_ev");
    /* checkpoints (~360 KB) fit, the event file (~100 KB a validation) grows past */
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "50", "--threads", "1", "--quiet", NULL};
    int rc = wait_rc(spawn(a, 450 * 1024));
    cli_expect(rc, 3, "events.out.tfevents");
    assert_true(cli_err_has("free on its file system"));
    assert_true(cli_err_has("Training stopped at step"));
    char last[500], ev[600], p[600];
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    int64_t s = ckpt_step(last);
    assert_true(s >= 1 && s < 50); /* the last attempt at the checkpoint, at the failing step */
    assert_true(cli_event_file(dir, ev, sizeof ev));
    assert_true(cli_event_records(ev, NULL) > 0); /* whole records only */
    assert_int_equal(cli_count_tmp(dir), 0);
    snprintf(p, sizeof p, "%s/train.log", dir);
    assert_true(cli_ends_with_newline(p));
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    assert_true(cli_ends_with_newline(p));
}

/* 3b. The checkpoint itself does not fit: exit 3 naming it; no temp file left. */
static void test_full_disk_checkpoint(void **state) {
    (void)state;
    const char *conf = conf_with(1, 1000, 1);
    const char *dir = dir_of("run_full_ck");
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "50", "--threads", "1", "--quiet", NULL};
    int rc = wait_rc(spawn(a, 200 * 1024));
    cli_expect(rc, 3, "best.safetensors");
    assert_true(cli_err_has("free on its file system"));
    assert_true(cli_err_has("intact"));
    assert_int_equal(cli_count_tmp(dir), 0);
}

/* 3c. train.log on a full device (/dev/full) at resume: exit 3 naming it; the checkpoint untouched. */
static void test_full_disk_log(void **state) {
    (void)state;
    const char *conf = conf_with(0, 2, 0);
    const char *dir = dir_of("run_full_log");
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "2", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(a), 0, NULL);
    char log[500], last[500];
    snprintf(log, sizeof log, "%s/train.log", dir);
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    unlink(log);
    if (symlink("/dev/full", log) != 0) skip();
    const char *r[] = {"train", "--resume", dir, "--max-steps", "4", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(r), 3, "train.log");
    assert_true(cli_err_has("No space left on device"));
    assert_int_equal(ckpt_step(last), 2);
}

/* 4. A run name is one safe path component. */
static void test_name_escape(void **state) {
    (void)state;
    const char *conf = conf_with(0, 0, 0);
    const char *a[] = {"train", conf, "name=../../escape", "--max-steps", "1", "--quiet", NULL};
    cli_expect(cli_run(a), 2, "name");
    assert_true(cli_err_has("not a valid run name"));
    assert_false(cli_exists(dir_of("../escape-")));
    char p[400];
    app_path(p, sizeof p, "name.yaml");
    cli_write_file(p, "name: a/b\n");
    const char *b[] = {"train", p, NULL};
    cli_expect(cli_run(b), 2, "name.yaml:1: name = 'a/b'");
    const char *c[] = {"train", conf, "name=..", NULL};
    cli_expect(cli_run(c), 2, "not a valid run name");
}

/* 5. 100,000 nested '[' and a 2 MB file are refused at once. */
static void test_yaml_bounds(void **state) {
    (void)state;
    char p[400];
    app_path(p, sizeof p, "deep.yaml");
    FILE *f = fopen(p, "w");
    for (int i = 0; i < 100000; i++) fputc('[', f);
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *a[] = {"train", p, NULL};
    cli_expect(cli_run(a), 2, "nested deeper than 64");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    assert_true(dt < 2.0);
    app_path(p, sizeof p, "big.yaml");
    f = fopen(p, "w");
    for (int i = 0; i < 2 * 1024 * 1024 / 32; i++) fputs("# a comment line of 32 bytes...\n", f);
    fclose(f);
    const char *b[] = {"train", p, NULL};
    cli_expect(cli_run(b), 2, "larger than 1048576 bytes");
    /* an override value too */
    char ov[300] = "data.snr_db=";
    for (int i = 0; i < 100; i++) strcat(ov, "[");
    const char *c[] = {"train", conf_with(0, 0, 0), ov, NULL};
    cli_expect(cli_run(c), 2, "nested deeper than 64");
}

/* Copies checkpoint src to dst with one metadata value replaced (NULL: removed)
 * and, when reshape names a tensor, that tensor's shape flattened to 1-D. */
static void forge(const char *src, const char *dst, const char *key, const char *value, const char *reshape) {
    sn_safetensors *f;
    SN_ASSERT_OK(sn_st_open(src, &f));
    sn_st_writer *w = sn_st_writer_new();
    for (int i = 0; i < sn_st_count(f); i++) {
        const sn_st_tensor *t = sn_st_get(f, i);
        int64_t flat = (int64_t)(t->nbytes / sn_st_dtype_size(t->dtype));
        int is = reshape && !strcmp(t->name, reshape);
        SN_ASSERT_OK(sn_st_add(w, t->name, t->dtype, is ? 1 : t->ndim, is ? &flat : t->shape, sn_st_data(f, t)));
    }
    for (int i = 0; i < sn_st_meta_count(f); i++) {
        const char *k = sn_st_meta_key(f, i);
        if (key && !strcmp(k, key)) continue;
        SN_ASSERT_OK(sn_st_set_meta(w, k, sn_st_meta(f, k)));
    }
    if (key && value) SN_ASSERT_OK(sn_st_set_meta(w, key, value));
    SN_ASSERT_OK(sn_st_save(w, dst));
    sn_st_writer_free(w);
    sn_st_close(f);
}

/* 6. Resume refuses forged metadata and optimizer tensors of another shape. */
static void test_forged_checkpoint(void **state) {
    (void)state;
    const char *conf = conf_with(0, 2, 0);
    const char *dir = dir_of("run_forge");
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "2", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(a), 0, NULL);
    char last[500], good[500];
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    snprintf(good, sizeof good, "%s/good.st", dir);
    assert_int_equal(rename(last, good), 0);
    static const struct { const char *key, *value, *reshape, *phrase; } cases[] = {
        {"sinter.step", "-5", NULL, "sinter.step = '-5'"},
        {"sinter.step", "abc", NULL, "sinter.step = 'abc'"},
        {"sinter.step", "2x", NULL, "sinter.step = '2x'"},
        {"sinter.step", NULL, NULL, "sinter.step = '(missing)'"},
        {"sinter.epoch", "99999999999999999999", NULL, "sinter.epoch"},
        {"sinter.epoch_step", "1000", NULL, "sinter.epoch_step"},
        {"sinter.seed", "-1", NULL, "sinter.seed"},
        {"sinter.best_valid_loss", "nan", NULL, "sinter.best_valid_loss"},
        {"sinter.optim_step", "-3", NULL, "sinter.optim_step"},
        {"sinter.optimizer", "lbfgs", NULL, "sinter.optimizer"},
        {NULL, NULL, "optim.exp_avg.enc.0.weight", "optimizer state 'optim.exp_avg.enc.0.weight'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        forge(good, last, cases[i].key, cases[i].value, cases[i].reshape);
        const char *r[] = {"train", "--resume", dir, "--max-steps", "4", "--threads", "1", "--quiet", NULL};
        cli_expect(cli_run(r), 3, cases[i].phrase);
    }
    /* a damaged config inside a checkpoint is a file error (3), in enhance too */
    forge(good, last, "sinter.config", "model: [", NULL);
    char wav[400], out[400];
    app_path(wav, sizeof wav, "forge.wav");
    app_path(out, sizeof out, "forge_out.wav");
    float x[4000] = {0};
    x[100] = 0.5f;
    SN_ASSERT_OK(sn_audio_write(wav, x, 4000, 1, 16000, 0));
    const char *e[] = {"enhance", "--ckpt", last, wav, "-o", out, NULL};
    cli_expect(cli_run(e), 3, "sinter.config");
    /* and the untouched file still resumes */
    rename(good, last);
    const char *r[] = {"train", "--resume", dir, "--max-steps", "3", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(r), 0, NULL);
}

/* 7. A start that fails (missing data, no such device) leaves no run directory,
 * so a retry reports the real error again, not "already exists". */
static void test_failed_start_no_dir(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    char out_dir[400], conf[400];
    app_path(out_dir, sizeof out_dir, "runs_fail");
    snprintf(c.out_dir, sizeof c.out_dir, "%s", out_dir);
    cli_write_conf(&c, "fail.yaml", conf, sizeof conf);
    const char *a[] = {"train", conf, "data.clean_dir=/nonexistent/clean", "--quiet", NULL};
    for (int k = 0; k < 2; k++) {
        cli_expect(cli_run(a), 3, "/nonexistent/clean");
        assert_false(cli_err_has("already exists"));
        assert_true(cli_count_entries(out_dir) <= 0);
    }
    const char *b[] = {"train", conf, "device=cuda:3", "--quiet", NULL};
    cli_expect(cli_run(b), 4, "cuda");
    assert_true(cli_count_entries(out_dir) <= 0);
    /* a memory refusal: ~1 TB of parameters */
    const char *d[] = {"train", conf, "model.hidden=65536", "model.layers=8", "--quiet", NULL};
    setenv("ASAN_OPTIONS", "allocator_may_return_null=1", 1); /* a refused malloc, not an ASan abort */
    int rc = cli_run(d);
    unsetenv("ASAN_OPTIONS");
    cli_expect(rc, 4, "cannot allocate");
    assert_true(cli_count_entries(out_dir) <= 0);
}

/* 8. --resume removes the temporary files a killed process left, and the event
 * file marks the resume (TensorBoard then drops the redone steps). */
static void test_resume_cleans_and_marks(void **state) {
    (void)state;
    const char *conf = conf_with(0, 4, 0);
    const char *dir = dir_of("run_marks");
    const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", "6", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(a), 0, NULL);
    /* as if killed after step 6 with its last checkpoint at step 4 */
    char last[500], keep[500], p[600];
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    snprintf(keep, sizeof keep, "%s/step4.st", dir);
    const char *a4[] = {"train", conf, "--run-dir", dir_of("run_marks4"), "--max-steps", "4", "--threads", "1",
                        "--quiet", NULL};
    cli_expect(cli_run(a4), 0, NULL);
    snprintf(p, sizeof p, "%s/last.safetensors", dir_of("run_marks4"));
    assert_int_equal(rename(p, last), 0);
    assert_int_equal(ckpt_step(last), 4);
    (void)keep;
    const char *junk[] = {"last.safetensors.tmp.99999", "loss.svg.tmp.1234", "samples/clean_0.wav.tmp77.0"};
    snprintf(p, sizeof p, "%s/samples", dir);
    mkdir(p, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, junk[i]);
        cli_write_file(p, "");
    }
    assert_int_equal(cli_count_tmp(dir), 3);
    sleep(1); /* a new event file name (one per second) */
    const char *r[] = {"train", "--resume", dir, "--max-steps", "8", "--threads", "1", "--quiet", NULL};
    cli_expect(cli_run(r), 0, NULL);
    assert_int_equal(cli_count_tmp(dir), 0);
    snprintf(p, sizeof p, "%s/train.log", dir);
    char *log = app_slurp(p);
    assert_non_null(strstr(log, "removed 3 temporary files"));
    free(log);
    char ev[600];
    int64_t start = -1;
    assert_true(cli_event_file(dir, ev, sizeof ev));
    assert_true(cli_event_records(ev, &start) > 0);
    assert_int_equal(start, 5);
    /* metrics.csv: steps 1..8 once each */
    double loss[16];
    long long st[16];
    assert_int_equal(app_read_losses(dir, loss, st, 16), 8);
    for (int i = 0; i < 8; i++) assert_int_equal(st[i], i + 1);
    /* tensorboard's own reader: each step once, with the resumed run's values */
    const char *py = sn_pyref("tensorboard");
    if (!py) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/app/tb_resume.py' '%s'", py, SN_SOURCE_DIR, dir);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
}

static int teardown_bg(void **state) {
    (void)state;
    kill_bg();
    return 0;
}

int main(void) {
    app_corpus();
    atexit(kill_bg);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enhance_same_names),
        cmocka_unit_test_teardown(test_run_lock, teardown_bg),
        cmocka_unit_test(test_full_disk_events),
        cmocka_unit_test(test_full_disk_checkpoint),
        cmocka_unit_test(test_full_disk_log),
        cmocka_unit_test(test_name_escape),
        cmocka_unit_test(test_yaml_bounds),
        cmocka_unit_test(test_forged_checkpoint),
        cmocka_unit_test(test_failed_start_no_dir),
        cmocka_unit_test(test_resume_cleans_and_marks),
    };
    return sn_pyref_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
