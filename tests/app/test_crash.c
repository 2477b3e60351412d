/* Crash test: `sinter train` (CPU, tiny model) killed with SIGKILL at 20
 * random instants, then resumed. Each time: every checkpoint left behind
 * loads; the resumed run ends bit-identical to an uninterrupted run (training
 * is deterministic, so the uninterrupted run from step 0 passes through the
 * same checkpoint); metrics.csv has every step once; no temporary file is left.
 * SN_CRASH_SEED=N repeats a sequence of instants. */
#include "sn_test.h"
#include "app_util.h"
#include "app_run.h"
#include "app_cli.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define KILLS 20
#define STEPS 12

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pid_t g_child;
static void kill_child(void) {
    if (g_child > 0) kill(g_child, SIGKILL), waitpid(g_child, NULL, 0);
}

static pid_t spawn(const char *const *args) {
    char bin[600], out[400], err[400];
    snprintf(bin, sizeof bin, "%s/sinter", SN_BINARY_DIR);
    app_path(out, sizeof out, "crash_stdout.txt");
    app_path(err, sizeof err, "crash_stderr.txt");
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (; *args && n < 31; args++) argv[n++] = *args;
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    g_child = pid;
    return pid;
}

/* Every tensor of a and b byte-identical. */
static int same_tensors(const char *a, const char *b) {
    sn_safetensors *fa, *fb;
    if (sn_st_open(a, &fa) != SN_OK) return 0;
    if (sn_st_open(b, &fb) != SN_OK) {
        sn_st_close(fa);
        return 0;
    }
    int ok = sn_st_count(fa) == sn_st_count(fb);
    for (int i = 0; ok && i < sn_st_count(fa); i++) {
        const sn_st_tensor *ta = sn_st_get(fa, i), *tb = sn_st_find(fb, ta->name);
        ok = tb && ta->nbytes == tb->nbytes && !memcmp(sn_st_data(fa, ta), sn_st_data(fb, tb), ta->nbytes);
        if (!ok) print_message("tensor %s differs\n", ta->name);
    }
    sn_st_close(fa);
    sn_st_close(fb);
    return ok;
}

/* A checkpoint, if present, loads with its model and run state. */
static void loadable(const char *path) {
    if (!cli_exists(path)) return;
    sn_backend *b = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    sn_ckpt_state st;
    sn_status s = sn_ckpt_load(path, NULL, b, NULL, &m, &st);
    if (s != SN_OK) fail_msg("checkpoint %s does not load after kill -9: %s", path, sn_last_error());
    sn_model_free(m);
    sn_backend_free(b);
}

/* The train rows of metrics.csv as "step,epoch,loss" lines (timings differ between runs). */
static int train_rows(const char *dir, char rows[][96], int max) {
    char p[600], line[1024];
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (!strncmp(line, "step", 4)) continue;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL, *c3 = c2 ? strchr(c2 + 1, ',') : NULL;
        if (!c3 || c2[1] == ',') continue; /* a validation row */
        snprintf(rows[n++], 96, "%.*s", (int)(c3 - line), line);
    }
    fclose(f);
    return n;
}

static void test_kill_and_resume(void **state) {
    (void)state;
    sn_config c;
    app_config(&c);
    c.train.ckpt_every = 2;
    c.train.valid_every = 0; /* at each epoch's end, with best.safetensors */
    c.train.audio_samples = 1;
    char conf[400];
    cli_write_conf(&c, "crash.yaml", conf, sizeof conf);
    char ref[400], steps[16];
    snprintf(steps, sizeof steps, "%d", STEPS);
    app_path(ref, sizeof ref, "crash_ref");
    const char *ra[] = {"train", conf, "--run-dir", ref, "--max-steps", steps, "--threads", "1", "--quiet", NULL};
    char ref_last[500];
    snprintf(ref_last, sizeof ref_last, "%s/last.safetensors", ref);
    double t0 = now_s(), t_first = 0;
    int st = 0;
    pid_t rp = spawn(ra);
    while (waitpid(rp, &st, WNOHANG) == 0) { /* when the first checkpoint appears */
        if (!t_first && cli_exists(ref_last)) t_first = now_s() - t0;
        usleep(2000);
    }
    g_child = 0;
    double t_ref = now_s() - t0;
    if (!t_first) t_first = t_ref;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char ref_rows[STEPS + 4][96];
    assert_int_equal(train_rows(ref, ref_rows, STEPS + 4), STEPS);

    const char *es = getenv("SN_CRASH_SEED");
    unsigned seed = es ? (unsigned)strtoul(es, NULL, 10) : (unsigned)time(NULL);
    print_message("uninterrupted run %.2f s, first checkpoint at %.2f s; kill instants from SN_CRASH_SEED=%u\n",
                  t_ref, t_first, seed);
    srand(seed);
    int resumed = 0, early = 0;
    for (int k = 0; k < KILLS; k++) {
        char dir[400], name[32], last[500], best[500];
        snprintf(name, sizeof name, "crash_%02d", k);
        app_path(dir, sizeof dir, name);
        snprintf(last, sizeof last, "%s/last.safetensors", dir);
        snprintf(best, sizeof best, "%s/best.safetensors", dir);
        const char *a[] = {"train", conf, "--run-dir", dir, "--max-steps", steps, "--threads", "1", "--quiet", NULL};
        /* the first few anywhere in the run (start-up included), the rest once a checkpoint exists */
        double u = rand() / (double)RAND_MAX, when;
        pid_t pid = spawn(a);
        if (k < 4) {
            when = t_ref * u;
            usleep((useconds_t)(when * 1e6));
        } else {
            double s0 = now_s();
            while (!cli_exists(last) && now_s() - s0 < 30) usleep(1000);
            when = (now_s() - s0) + (t_ref - t_first) * u;
            usleep((useconds_t)((t_ref - t_first) * u * 1e6));
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        g_child = 0;
        /* what the kill left: every checkpoint loads */
        loadable(last);
        loadable(best);
        if (!cli_exists(last)) {
            /* killed before the first checkpoint: nothing to resume, and it says so */
            early++;
            if (cli_exists(dir)) {
                const char *r[] = {"train", "--resume", dir, "--quiet", NULL};
                int rc = cli_run(r);
                if (!(rc == 3 && (cli_err_has("no last.safetensors") || cli_err_has("not a sinter run")))) {
                    char *e = app_slurp(g_cli_err);
                    fail_msg("kill %d at %.3f s: resume without a checkpoint gave exit %d: %s", k, when, rc, e);
                }
            }
            continue;
        }
        const char *r[] = {"train", "--resume", dir, "--max-steps", steps, "--threads", "1", "--quiet", NULL};
        int rc = cli_run(r);
        if (rc != 0) {
            char *e = app_slurp(g_cli_err);
            fail_msg("kill %d at %.3f s: resume gave exit %d: %s", k, when, rc, e);
        }
        resumed++;
        if (!same_tensors(last, ref_last)) fail_msg("kill %d at %.3f s: the resumed run differs", k, when);
        char rows[STEPS + 4][96];
        int n = train_rows(dir, rows, STEPS + 4);
        if (n != STEPS) fail_msg("kill %d at %.3f s: metrics.csv has %d train rows, want %d", k, when, n, STEPS);
        for (int i = 0; i < STEPS; i++)
            if (strcmp(rows[i], ref_rows[i]))
                fail_msg("kill %d: metrics.csv row %d is '%s', uninterrupted '%s'", k, i, rows[i], ref_rows[i]);
        assert_int_equal(cli_count_tmp(dir), 0);
        loadable(best);
    }
    print_message("%d kills: %d resumed to the end bit-identical, %d before the first checkpoint\n", KILLS, resumed,
                  early);
    assert_true(resumed >= KILLS - 4);
}

int main(void) {
    app_corpus();
    atexit(kill_child);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
