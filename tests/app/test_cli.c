/* The `sinter` binary (fork/exec): --help of every subcommand, --version,
 * `help <cmd>`, an unknown subcommand, devices (table and JSON), bench --quick
 * --json, metrics on two generated WAVs. */
#include "sn_test.h"
#include "sinter/audio.h"
#include "sinter/json.h"
#include "app_run.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512], out_txt[600], err_txt[600];
static char *out_s, *err_s; /* the last run's stdout / stderr */


/* Runs build/sinter with args (NULL-terminated); returns the exit code. */
static int run(const char *const *args) {
    int rc = app_run_sinter(args, out_txt, err_txt, NULL);
    if (rc < 0) fail_msg("sinter binary '%s/sinter' not built", SN_BINARY_DIR);
    free(out_s), free(err_s);
    out_s = app_slurp(out_txt);
    err_s = app_slurp(err_txt);
    return rc;
}

static int setup(void **st) {
    snprintf(dir, sizeof dir, "%s/test_cli_tmp_%d", SN_BINARY_DIR, (int)getpid());
    mkdir(dir, 0755);
    snprintf(out_txt, sizeof out_txt, "%s/stdout.txt", dir);
    snprintf(err_txt, sizeof err_txt, "%s/stderr.txt", dir);
    return 0;
}

static int teardown(void **st) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    free(out_s), free(err_s);
    return 0;
}

static void test_help(void **st) {
    const char *top[] = {"--help", NULL};
    assert_int_equal(run(top), 0);
    const char *cmds[] = {"devices", "train", "enhance", "eval", "bench", "data", "metrics"};
    for (int i = 0; i < 7; i++) {
        assert_non_null(strstr(out_s, cmds[i]));
    }
    assert_non_null(strstr(out_s, "exit codes"));
    for (int i = 0; i < 7; i++) {
        const char *a[] = {cmds[i], "--help", NULL};
        int rc = run(a);
        if (rc != 0 || !strstr(out_s, "usage")) fail_msg("sinter %s --help: exit %d, stdout: %s", cmds[i], rc, out_s);
        const char *h[] = {"help", cmds[i], NULL};
        rc = run(h);
        if (rc != 0 || !strstr(out_s, "usage")) fail_msg("sinter help %s: exit %d, stdout: %s", cmds[i], rc, out_s);
    }
    const char *v[] = {"--version", NULL};
    assert_int_equal(run(v), 0);
    assert_true(!strncmp(out_s, "sinter ", 7) && out_s[7] >= '0' && out_s[7] <= '9');
    const char *none[] = {NULL};
    assert_int_equal(run(none), 2);
    assert_non_null(strstr(err_s, "usage"));
}

static void test_unknown(void **st) {
    const char *a[] = {"trian", NULL};
    assert_int_equal(run(a), 2);
    assert_non_null(strstr(err_s, "did you mean 'train'"));
    const char *b[] = {"enhanse", "x", NULL};
    assert_int_equal(run(b), 2);
    assert_non_null(strstr(err_s, "did you mean 'enhance'"));
    const char *c[] = {"frobnicate", NULL};
    assert_int_equal(run(c), 2);
    assert_non_null(strstr(err_s, "unknown command 'frobnicate'"));
    const char *d[] = {"help", "devcies", NULL};
    assert_int_equal(run(d), 2);
    assert_non_null(strstr(err_s, "'devices'"));
    const char *e[] = {"--frob", NULL};
    assert_int_equal(run(e), 2);
    const char *f[] = {"devices", "--frob", NULL};
    assert_int_equal(run(f), 2);
    assert_non_null(strstr(err_s, "--frob"));
}

static void test_devices(void **st) {
    const char *a[] = {"devices", NULL};
    assert_int_equal(run(a), 0);
    assert_non_null(strstr(out_s, "cpu"));
    assert_non_null(strstr(out_s, "device=auto uses"));
    const char *b[] = {"devices", "--json", NULL};
    assert_int_equal(run(b), 0);
    sn_json *j = NULL;
    SN_ASSERT_OK(sn_json_parse(out_s, strlen(out_s), "devices --json", &j));
    const sn_json *devs = sn_json_get(j, "devices"), *autod = sn_json_get(j, "auto");
    assert_non_null(devs);
    assert_int_equal(devs->type, SN_JSON_ARRAY);
    assert_true(devs->n >= 1);
    const sn_json *kind = sn_json_get(devs->items[0], "kind");
    assert_string_equal(kind->str, "cpu");
    assert_non_null(sn_json_get(devs->items[0], "mem_total"));
    assert_non_null(sn_json_get(devs->items[0], "compute_units"));
    assert_non_null(autod);
    assert_int_equal(autod->type, SN_JSON_STRING);
    assert_true(strlen(sn_json_get(j, "version")->str) > 0);
    sn_json_free(j);
}

static void test_bench_quick(void **st) {
    const char *a[] = {"bench", "--quick", "--json", "--device", "cpu", NULL};
    int rc = run(a);
    if (rc != 0) fail_msg("bench --quick --json: exit %d: %s", rc, err_s);
    sn_json *j = NULL;
    SN_ASSERT_OK(sn_json_parse(out_s, strlen(out_s), "bench --json", &j));
    const sn_json *r = sn_json_get(j, "results");
    assert_non_null(r);
    assert_int_equal(r->type, SN_JSON_ARRAY);
    assert_int_equal(r->n, 5);
    const char *want[] = {"matmul", "matmul", "conv2d", "lstm", "train step"};
    for (size_t i = 0; i < r->n; i++) {
        const sn_json *row = r->items[i];
        assert_string_equal(sn_json_get(row, "device")->str, "cpu");
        assert_non_null(strstr(sn_json_get(row, "bench")->str, want[i]));
        assert_true(sn_json_get(row, "ok")->boolean);
        const sn_json *ms = sn_json_get(row, "ms"), *gf = sn_json_get(row, "gflops");
        assert_true(ms->number > 0);
        assert_true(gf->number > 0);
        assert_true(fabs(sn_json_get(row, "speedup")->number - 1.0) < 1e-9);
    }
    sn_json_free(j);
    /* a device that does not exist: exit 4 */
    const char *b[] = {"bench", "--quick", "--device", "cuda:9", NULL};
    assert_int_equal(run(b), 4);
    assert_non_null(strstr(err_s, "cuda:9"));
}

static void test_metrics(void **st) {
    int64_t n = 16000;
    float *clean = malloc(sizeof(float) * n), *noisy = malloc(sizeof(float) * n);
    uint64_t seed = 5;
    sn_test_rand(noisy, n, &seed, -0.05f, 0.05f);
    for (int64_t i = 0; i < n; i++) {
        clean[i] = (float)(0.3 * sin(2 * M_PI * 200 * i / 16000.0) * (0.6 + 0.4 * sin(2 * M_PI * 3 * i / 16000.0)));
        noisy[i] += clean[i];
    }
    char cp[700], np[700];
    snprintf(cp, sizeof cp, "%s/clean.wav", dir);
    snprintf(np, sizeof np, "%s/noisy.wav", dir);
    SN_ASSERT_OK(sn_audio_write(cp, clean, n, 1, 16000, 0));
    SN_ASSERT_OK(sn_audio_write(np, noisy, n, 1, 16000, 0));
    free(clean), free(noisy);
    const char *a[] = {"metrics", cp, np, "--json", NULL};
    int rc = run(a);
    if (rc != 0) fail_msg("metrics: exit %d: %s", rc, err_s);
    sn_json *j = NULL;
    SN_ASSERT_OK(sn_json_parse(out_s, strlen(out_s), "metrics --json", &j));
    double snr = sn_json_get(j, "snr_db")->number;
    print_message("metrics: SNR %.2f dB\n", snr);
    assert_true(snr > 5 && snr < 25);
    assert_non_null(sn_json_get(j, "stoi"));
    sn_json_free(j);
    const char *b[] = {"metrics", cp, NULL};
    assert_int_equal(run(b), 2);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.wav", dir);
    const char *c[] = {"metrics", cp, missing, NULL};
    assert_int_equal(run(c), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_bench_quick),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
