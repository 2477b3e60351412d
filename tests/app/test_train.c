/* The trainer end to end on a tiny corpus and model: the loss falls, resume is
 * bit-identical, SIGINT leaves a loadable checkpoint, NaN stops the run with
 * a message, an existing run directory is refused; LR schedules and the
 * config -> model/optimizer mapping. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "app_util.h"
#include "sinter/backend.h"
#include "sinter/safetensors.h"
#include "sn_test.h"

static void test_schedules(void **state) {
    (void)state;
    sn_config c;
    sn_config_defaults(&c);
    c.train.lr = 1e-3;
    assert_float_equal(sn_lr_at(&c, 0, 100), 1e-3, 1e-12);
    assert_float_equal(sn_lr_at(&c, 99, 100), 1e-3, 1e-12);
    strcpy(c.train.schedule, "cosine");
    c.train.warmup_steps = 10;
    assert_float_equal(sn_lr_at(&c, 0, 110), 1e-4, 1e-12);  /* warm-up: (0+1)/10 */
    assert_float_equal(sn_lr_at(&c, 9, 110), 1e-3, 1e-12);
    assert_float_equal(sn_lr_at(&c, 10, 110), 1e-3, 1e-12); /* cosine starts at the peak */
    assert_float_equal(sn_lr_at(&c, 60, 110), 0.5e-3, 1e-12);
    assert_float_equal(sn_lr_at(&c, 110, 110), 0.0, 1e-12);
    strcpy(c.train.schedule, "step");
    c.train.warmup_steps = 0;
    c.train.step_size = 10;
    c.train.gamma = 0.5;
    assert_float_equal(sn_lr_at(&c, 9, 100), 1e-3, 1e-12);
    assert_float_equal(sn_lr_at(&c, 10, 100), 0.5e-3, 1e-12);
    assert_float_equal(sn_lr_at(&c, 25, 100), 0.25e-3, 1e-12);
}

static void test_config_mapping(void **state) {
    (void)state;
    sn_config c;
    sn_config_defaults(&c);
    sn_crn_config cc;
    SN_ASSERT_OK(sn_crn_config_from(&c, &cc));
    assert_int_equal(cc.hidden, 1024);
    assert_int_equal(cc.channels[4], 256);
    assert_int_equal(cc.rnn, SN_RNN_LSTM);
    strcpy(c.model.rnn, "gru");
    SN_ASSERT_OK(sn_crn_config_from(&c, &cc));
    assert_int_equal(cc.rnn, SN_RNN_GRU);
    strcpy(c.model.rnn, "tcn");
    assert_int_equal(sn_crn_config_from(&c, &cc), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "model.rnn"));
    sn_optim_config oc;
    c.train.grad_clip = 5;
    strcpy(c.train.optimizer, "sgd");
    SN_ASSERT_OK(sn_optim_config_from(&c, &oc));
    assert_int_equal(oc.kind, SN_OPTIM_SGD);
    assert_float_equal(oc.grad_clip, 5.0, 1e-6);
}

/* train.mixed_precision on a CPU without AVX512-BF16 (simulated): a device error before
 * anything runs that names the missing feature and the fix */
static void test_mixed_precision_on_cpu(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    c.train.mixed_precision = SN_MP_AUTO;
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    char dir[400];
    o.run_dir = app_path(dir, sizeof dir, "run_mp");
    setenv("SN_CPU_NO_BF16", "1", 1);
    sn_status s = sn_train(&c, &o, NULL);
    unsetenv("SN_CPU_NO_BF16");
    assert_int_equal(s, SN_ERR_DEVICE);
    assert_non_null(strstr(sn_last_error(), "mixed_precision"));
    assert_non_null(strstr(sn_last_error(), "cpu"));
    assert_non_null(strstr(sn_last_error(), "AVX512-BF16"));
    assert_non_null(strstr(sn_last_error(), "train.mixed_precision=false"));
}

static void test_loss_falls(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    o.max_steps = 30;
    char dir[400];
    o.run_dir = app_path(dir, sizeof dir, "run_falls");
    sn_train_result r;
    SN_ASSERT_OK(sn_train(&c, &o, &r));
    assert_int_equal(r.steps, 30);
    double loss[64];
    long long step[64];
    int n = app_read_losses(dir, loss, step, 64);
    assert_int_equal(n, 30);
    double a = (loss[0] + loss[1] + loss[2]) / 3, b = (loss[27] + loss[28] + loss[29]) / 3;
    printf("loss: first 3 %.4f, last 3 %.4f\n", a, b);
    assert_true(b < 0.7 * a);
    assert_true(r.has_valid);
    assert_true(isfinite(r.valid.sisdr));
    /* every file the run directory promises */
    const char *files[] = {"config.yaml", "train.log", "metrics.csv", "loss.svg", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 6; i++) {
        char p[600];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (stat(p, &sb) != 0 || sb.st_size == 0) fail_msg("missing %s", p);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/events.out.tfevents.* > /dev/null", dir);
    assert_int_equal(system(cmd), 0);
    /* the checkpoint carries step, epoch and the config */
    sn_safetensors *f;
    char p[600];
    snprintf(p, sizeof p, "%s/last.safetensors", dir);
    SN_ASSERT_OK(sn_st_open(p, &f));
    assert_string_equal(sn_st_meta(f, "sinter.step"), "30");
    assert_string_equal(sn_st_meta(f, "sinter.format_version"), "1");
    assert_non_null(sn_st_meta(f, "sinter.config"));
    assert_non_null(sn_st_find(f, "optim.exp_avg.enc.0.weight"));
    const sn_st_tensor *nbt = sn_st_find(f, "ebn.0.num_batches_tracked");
    assert_non_null(nbt);
    assert_string_equal(nbt->dtype, "I64");
    assert_int_equal(nbt->ndim, 0);
    sn_st_close(f);
    /* the same directory again is refused */
    sn_status s = sn_train(&c, &o, NULL);
    assert_int_equal(s, SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "already exists"));
    assert_non_null(strstr(sn_last_error(), "--resume"));
}

static int same_tensors(const char *a, const char *b) {
    sn_safetensors *fa, *fb;
    if (sn_st_open(a, &fa) != SN_OK || sn_st_open(b, &fb) != SN_OK) return 0;
    int ok = sn_st_count(fa) == sn_st_count(fb);
    for (int i = 0; ok && i < sn_st_count(fa); i++) {
        const sn_st_tensor *ta = sn_st_get(fa, i), *tb = sn_st_find(fb, ta->name);
        ok = tb && ta->nbytes == tb->nbytes && !memcmp(sn_st_data(fa, ta), sn_st_data(fb, tb), ta->nbytes);
        if (!ok) fprintf(stderr, "tensor %s differs\n", ta->name);
    }
    sn_st_close(fa);
    sn_st_close(fb);
    return ok;
}

static void test_resume_bit_identical(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    char da[400], db[400];
    /* uninterrupted: 8 steps (3 per epoch: stops mid-epoch 3) */
    o.max_steps = 8;
    o.run_dir = app_path(da, sizeof da, "run_full");
    SN_ASSERT_OK(sn_train(&c, &o, NULL));
    /* 5 steps (mid-epoch), then resume to 8 */
    o.max_steps = 5;
    o.run_dir = app_path(db, sizeof db, "run_split");
    SN_ASSERT_OK(sn_train(&c, &o, NULL));
    o.max_steps = 8;
    o.run_dir = NULL;
    o.resume_dir = db;
    sn_train_result r;
    SN_ASSERT_OK(sn_train(&c, &o, &r));
    assert_int_equal(r.steps, 8);
    double la[16], lb[16];
    long long sa[16], sb[16];
    int na = app_read_losses(da, la, sa, 16), nb = app_read_losses(db, lb, sb, 16);
    assert_int_equal(na, 8);
    assert_int_equal(nb, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sa[i], sb[i]);
        if (la[i] != lb[i]) fail_msg("step %lld: loss %.9g uninterrupted, %.9g resumed", sa[i], la[i], lb[i]);
    }
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/last.safetensors", da);
    snprintf(pb, sizeof pb, "%s/last.safetensors", db);
    assert_true(same_tensors(pa, pb));
    /* resume of a missing directory */
    o.resume_dir = "/nonexistent/run";
    assert_int_equal(sn_train(&c, &o, NULL), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "/nonexistent/run"));
}

static volatile sig_atomic_t g_stop;
static void on_sigint(int s) { (void)s; g_stop = 1; }

static void test_sigint_checkpoint(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    app_corpus(); /* before the fork */
    char dir[400];
    app_path(dir, sizeof dir, "run_sigint");
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGINT, on_sigint);
        sn_train_opts o;
        sn_train_opts_default(&o);
        o.quiet = 1;
        o.max_steps = 100000;
        o.run_dir = dir;
        o.stop = &g_stop;
        sn_train_result r;
        sn_status s = sn_train(&c, &o, &r);
        _exit(s != SN_OK ? 3 : r.interrupted ? 130 : 0);
    }
    /* wait for a few logged steps, then interrupt */
    char csv[600];
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    for (int i = 0; i < 600; i++) {
        double l[8];
        long long st[8];
        if (app_read_losses(dir, l, st, 8) >= 4) break;
        usleep(50000);
    }
    kill(pid, SIGINT);
    int ws = 0;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 130);
    char p[600];
    snprintf(p, sizeof p, "%s/last.safetensors", dir);
    sn_backend *b = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    sn_ckpt_state st;
    sn_config got;
    SN_ASSERT_OK(sn_ckpt_load(p, NULL, b, &got, &m, &st));
    assert_true(st.step >= 4);
    assert_int_equal(got.model.hidden, 32);
    sn_model_free(m);
    sn_backend_free(b);
    /* and it resumes */
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    o.resume_dir = dir;
    o.max_steps = st.step + 2;
    sn_train_result r;
    SN_ASSERT_OK(sn_train(&c, &o, &r));
    assert_int_equal(r.steps, st.step + 2);
}

static void test_nan_stops(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    c.train.ckpt_every = 2;
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    o.max_steps = 50;
    o.nan_at_step = 5;
    char dir[400];
    o.run_dir = app_path(dir, sizeof dir, "run_nan");
    sn_status s = sn_train(&c, &o, NULL);
    assert_int_equal(s, SN_ERR_NUMERIC);
    const char *e = sn_last_error();
    printf("NaN message: %s\n", e);
    assert_non_null(strstr(e, "NaN at step 5"));
    assert_non_null(strstr(e, "last.safetensors (step 4)"));
    /* the log has it too */
    char p[600], buf[8192] = {0};
    snprintf(p, sizeof p, "%s/train.log", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "NaN"));
}

static void test_evaluate(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    sn_data_config dc;
    sn_data_config_default(&dc);
    dc.clean_dir = c.data.clean_dir;
    dc.noise_dir = c.data.noise_dir;
    dc.valid_dir = c.data.valid_dir;
    dc.segment_seconds = 0.5;
    sn_dataset *tr = NULL, *va = NULL;
    SN_ASSERT_OK(sn_dataset_open(&dc, &tr, &va));
    sn_backend *b = sn_cpu_backend_new(0);
    sn_crn_config cc;
    SN_ASSERT_OK(sn_crn_config_from(&c, &cc));
    sn_model *m;
    SN_ASSERT_OK(sn_crn_new(&cc, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 1));
    sn_eval_result r;
    SN_ASSERT_OK(sn_evaluate(m, b, va, 3, 1, &r));
    assert_int_equal(r.items, sn_dataset_len(va));
    assert_true(isfinite(r.loss) && r.loss > 0);
    assert_true(isfinite(r.sisdr_in) && isfinite(r.stoi_in));
    assert_float_equal(r.sisdri, r.sisdr - r.sisdr_in, 1e-9);
    assert_true(r.stoi_in > 0.3 && r.stoi_in <= 1.0);
    assert_int_equal(sn_evaluate(m, b, va, 0, 1, &r), SN_ERR_INVALID_ARG);
    sn_model_free(m);
    sn_backend_free(b);
    sn_dataset_free(tr);
    sn_dataset_free(va);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_config_mapping),
        cmocka_unit_test(test_mixed_precision_on_cpu),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_loss_falls),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_sigint_checkpoint),
        cmocka_unit_test(test_nan_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
