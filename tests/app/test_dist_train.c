/* Data-parallel training through the real launcher: `mpirun -np 2 sinter train` on the
 * CPU with a tiny CRN. With model.sync_bn the loss curve and the final weights equal one
 * process at twice the per-process batch; without it the run works and differs (per-rank
 * BatchNorm statistics); only rank 0 writes the run directory (one directory, the data
 * parallel facts in its config.yaml); a resume with another process count is refused; a
 * rank that is killed or hangs ends the job with a clear message in bounded time.
 * Skipped (77) when mpirun is not installed or sinter was built without MPI. */
#include <math.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "app_run.h"
#include "app_util.h"
#include "sinter/dist.h"
#include "sinter/safetensors.h"
#include "sn_test.h"

static char g_conf[400];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs argv (NULL-terminated) with stdout+stderr to `log`, killed (whole process group)
 * after timeout_s. Returns the exit code (128+signal when killed by one, -2 on timeout). */
static int run_cmd(const char *const *argv, const char *log, double timeout_s, double *secs) {
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int o = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(o, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (now_s() - t0 > timeout_s) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (secs) *secs = now_s() - t0;
            return -2;
        }
        usleep(20000);
    }
    if (secs) *secs = now_s() - t0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* mpirun -np np sinter train CONF args... (np 0: sinter alone) */
static int train(int np, const char *log, double timeout_s, double *secs, const char *a0, const char *a1,
                 const char *a2, const char *a3, const char *a4) {
    char bin[600];
    snprintf(bin, sizeof bin, "%s/sinter", SN_BINARY_DIR);
    const char *argv[40];
    int n = 0;
    char npb[16];
    snprintf(npb, sizeof npb, "%d", np);
    if (np > 0) {
        argv[n++] = SN_MPIRUN;
        argv[n++] = "--allow-run-as-root";
        argv[n++] = "--oversubscribe";
        argv[n++] = "--bind-to";
        argv[n++] = "none";
        argv[n++] = "-np";
        argv[n++] = npb;
    }
    argv[n++] = bin;
    argv[n++] = "train";
    argv[n++] = g_conf;
    argv[n++] = "--quiet";
    const char *extra[5] = {a0, a1, a2, a3, a4};
    for (int i = 0; i < 5; i++)
        if (extra[i]) argv[n++] = extra[i];
    argv[n] = NULL;
    return run_cmd(argv, log, timeout_s, secs);
}

/* the only entry of dir (a run directory), or fail */
static void only_run(const char *dir, char *out, size_t n) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            k++;
        }
    closedir(d);
    if (k != 1) fail_msg("%s holds %d entries, expected one run directory (written by rank 0 alone)", dir, k);
}

static void dump_log(const char *log) {
    char *s = app_slurp(log);
    print_message("---- %s ----\n%s\n", log, s);
    free(s);
}

/* max |a - b| over the F32 tensors of two checkpoints (same names) */
static double ckpt_diff(const char *ra, const char *rb) {
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/last.safetensors", ra);
    snprintf(pb, sizeof pb, "%s/last.safetensors", rb);
    sn_safetensors *fa = NULL, *fb = NULL;
    SN_ASSERT_OK(sn_st_open(pa, &fa));
    SN_ASSERT_OK(sn_st_open(pb, &fb));
    double worst = 0;
    int compared = 0;
    const char *wname = "";
    for (int i = 0; i < sn_st_count(fa); i++) {
        const sn_st_tensor *t = sn_st_get(fa, i);
        if (strcmp(t->dtype, "F32")) continue;
        size_t n = t->nbytes / 4;
        float *x = malloc(n * 4), *y = malloc(n * 4);
        SN_ASSERT_OK(sn_st_read_f32(fa, t->name, x, n));
        SN_ASSERT_OK(sn_st_read_f32(fb, t->name, y, n));
        for (size_t k = 0; k < n; k++) {
            double d = fabs((double)x[k] - y[k]);
            if (!(d <= worst)) { /* NaN counts as worst */
                worst = d;
                wname = t->name;
            }
        }
        compared++;
        free(x);
        free(y);
    }
    assert_true(compared > 10);
    print_message("checkpoints %s and %s: max |diff| %.3g in %s\n", ra, rb, worst, wname);
    assert_string_equal(sn_st_meta(fb, "sinter.world_size") ? sn_st_meta(fb, "sinter.world_size") : "?", "2");
    sn_st_close(fa);
    sn_st_close(fb);
    return worst;
}

#define STEPS 6

static char g_single[900];

static int setup(void **state) {
    (void)state;
    if (!sn_dist_have_mpi() || !SN_MPIRUN[0] || access(SN_MPIRUN, X_OK) != 0) return 0;
    sn_config c;
    app_config(&c);
    c.train.batch_size = 2;
    c.train.num_workers = 1;
    c.train.audio_samples = 0;
    c.seed = 5;
    /* SGD, not Adam: a convolution bias right before a BatchNorm has an exactly zero
     * gradient, and Adam would turn its rounding noise (which differs with the
     * summation order) into full-size steps; SGD keeps every weight comparable */
    snprintf(c.train.optimizer, sizeof c.train.optimizer, "sgd");
    c.train.lr = 0.05;
    char *yaml = NULL;
    SN_ASSERT_OK(sn_config_to_yaml(&c, &yaml));
    app_path(g_conf, sizeof g_conf, "dist.yaml");
    FILE *f = fopen(g_conf, "w");
    fputs(yaml, f);
    fclose(f);
    free(yaml);
    /* the reference: one process at twice the per-process batch */
    char log[400], out[400], ov[600];
    app_path(log, sizeof log, "single.log");
    app_path(out, sizeof out, "runs_single");
    snprintf(ov, sizeof ov, "out_dir=%s", out);
    int rc = train(0, log, 120, NULL, ov, "train.batch_size=4", "--max-steps", "6", NULL);
    if (rc != 0) dump_log(log);
    assert_int_equal(rc, 0);
    only_run(out, g_single, sizeof g_single);
    return 0;
}

static bool have_mpirun(void) {
    if (!sn_dist_have_mpi()) {
        print_message("skipped: this sinter was built without MPI (install libopenmpi-dev openmpi-bin)\n");
        return false;
    }
    if (!SN_MPIRUN[0] || access(SN_MPIRUN, X_OK) != 0) {
        print_message("skipped: mpirun is not installed (Debian: openmpi-bin)\n");
        return false;
    }
    return true;
}

/* 2 processes x batch 2 with sync_bn == 1 process x batch 4 */
static void test_sync_bn_equals_single(void **state) {
    (void)state;
    char log[400], out[400], ov[600], run[900];
    app_path(log, sizeof log, "sync.log");
    app_path(out, sizeof out, "runs_sync");
    snprintf(ov, sizeof ov, "out_dir=%s", out);
    double secs = 0;
    int rc = train(2, log, 120, &secs, ov, "model.sync_bn=true", "--max-steps", "6", NULL);
    if (rc != 0) dump_log(log);
    assert_int_equal(rc, 0);
    only_run(out, run, sizeof run);
    double la[16], lb[16];
    long long sa[16], sb[16];
    int na = app_read_losses(g_single, la, sa, 16), nb = app_read_losses(run, lb, sb, 16);
    assert_int_equal(na, STEPS);
    assert_int_equal(nb, STEPS);
    for (int i = 0; i < na; i++) {
        assert_int_equal(sa[i], sb[i]);
        if (fabs(la[i] - lb[i]) > 1e-5 * fabs(la[i]) + 1e-7)
            fail_msg("step %lld: loss %.9g (2 processes, sync_bn) vs %.9g (1 process, batch 4)", sb[i], lb[i], la[i]);
    }
    double d = ckpt_diff(g_single, run);
    print_message("sync_bn: %d losses equal, weights max |diff| %.3g, %.1f s\n", na, d, secs);
    assert_true(d < 1e-5);
    /* the run's config.yaml says it was data parallel */
    char p[1300];
    snprintf(p, sizeof p, "%s/config.yaml", run);
    char *y = app_slurp(p);
    assert_non_null(strstr(y, "dist.world_size: 2"));
    assert_non_null(strstr(y, "dist.global_batch: 4"));
    assert_non_null(strstr(y, "sync_bn: true"));
    free(y);
    /* rank 0 speaks: the log names the group */
    snprintf(p, sizeof p, "%s/train.log", run);
    y = app_slurp(p);
    assert_non_null(strstr(y, "data parallel: 2 processes"));
    assert_non_null(strstr(y, "global batch 4"));
    free(y);

    /* a resume with another process count is refused, clearly */
    app_path(log, sizeof log, "resume1.log");
    char bin[600];
    snprintf(bin, sizeof bin, "%s/sinter", SN_BINARY_DIR);
    const char *a[] = {bin, "train", "--resume", run, "--max-steps", "8", "--quiet", NULL};
    rc = run_cmd(a, log, 60, NULL);
    char *msg = app_slurp(log);
    if (rc != 2 /* usage/config error */ || !strstr(msg, "trained by 2 processes")) {
        dump_log(log);
        fail_msg("resume with 1 process: exit %d", rc);
    }
    free(msg);
    /* the same world size continues */
    app_path(log, sizeof log, "resume2.log");
    rc = train(2, log, 120, NULL, "--resume", run, "--max-steps", "8", NULL);
    if (rc != 0) dump_log(log);
    assert_int_equal(rc, 0);
}

/* without sync_bn: per-rank statistics, a working run that differs from one process */
static void test_per_rank_bn_differs(void **state) {
    (void)state;
    char log[400], out[400], ov[600], run[900];
    app_path(log, sizeof log, "nosync.log");
    app_path(out, sizeof out, "runs_nosync");
    snprintf(ov, sizeof ov, "out_dir=%s", out);
    int rc = train(2, log, 120, NULL, ov, "--max-steps", "6", NULL, NULL);
    if (rc != 0) dump_log(log);
    assert_int_equal(rc, 0);
    only_run(out, run, sizeof run);
    double la[16], lb[16];
    long long sa[16], sb[16];
    int na = app_read_losses(g_single, la, sa, 16), nb = app_read_losses(run, lb, sb, 16);
    assert_int_equal(nb, STEPS);
    (void)na;
    for (int i = 0; i < nb; i++) assert_true(isfinite(lb[i]));
    /* the first step already normalises with other statistics */
    if (fabs(la[0] - lb[0]) < 1e-6 * fabs(la[0]))
        fail_msg("per-rank BatchNorm gave the single-process loss %.9g at step 1", lb[0]);
    double d = ckpt_diff(g_single, run);
    print_message("per-rank BatchNorm: step-1 loss %.6f vs %.6f, weights max |diff| %.3g\n", lb[0], la[0], d);
    assert_true(d > 1e-6);
}

static void expect_fault(const char *fault, const char *timeout, const char *needle) {
    char log[400], out[400], ov[600];
    app_path(log, sizeof log, "fault.log");
    app_path(out, sizeof out, "runs_fault");
    snprintf(ov, sizeof ov, "out_dir=%s", out);
    setenv("SINTER_DIST_FAULT", fault, 1);
    if (timeout) setenv("SINTER_DIST_TIMEOUT", timeout, 1);
    double secs = 0;
    int rc = train(2, log, 60, &secs, ov, "--max-steps", "50", NULL, NULL);
    unsetenv("SINTER_DIST_FAULT");
    unsetenv("SINTER_DIST_TIMEOUT");
    char *msg = app_slurp(log);
    bool ok = rc != 0 && rc != -2 && strstr(msg, needle);
    print_message("%s: exit %d after %.1f s\n", fault, rc, secs);
    if (!ok) {
        dump_log(log);
        fail_msg("%s: expected a failed job naming '%s' (exit %d, %s)", fault, needle, rc,
                 rc == -2 ? "still running after 60 s" : "finished");
    }
    free(msg);
}

static void test_killed_rank_ends_job(void **state) {
    (void)state;
    expect_fault("kill:1:3", NULL, "exited on signal 9");
}

static void test_hung_rank_times_out(void **state) {
    (void)state;
    expect_fault("hang:1:3", "3", "no progress for");
}

int main(void) {
    if (!have_mpirun()) return 77;
    /* Open MPI's own allocations are not ours to report (sanitizer builds); shared
     * memory without single-copy in containers */
    const char *ao = getenv("ASAN_OPTIONS");
    char asan[512];
    snprintf(asan, sizeof asan, "%s%sdetect_leaks=0", ao ? ao : "", ao && *ao ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_bn_equals_single),
        cmocka_unit_test(test_per_rank_bn_differs),
        cmocka_unit_test(test_killed_rank_ends_job),
        cmocka_unit_test(test_hung_rank_times_out),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
