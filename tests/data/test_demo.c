/* Demo corpus: same seed -> identical files (pure-C speech, and espeak-ng when
 * installed), the corpus opens as a dataset, and the CLI's exit codes. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "sinter/data.h"

static char g_root[256];

static void rm_rf(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", p);
}

static int same_tree(const char *a, const char *b) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "diff -r -q '%s' '%s' >/dev/null", a, b);
    return system(cmd) == 0;
}

static int count_wavs(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '\\.wav$'", dir);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (f) { if (fscanf(f, "%d", &n) != 1) n = 0; pclose(f); }
    return n;
}

static void check_same_seed(int synth) {
    char a[300], b[300], c[300], sub[400];
    snprintf(a, sizeof a, "%s/%s_a", g_root, synth ? "synth" : "espeak");
    snprintf(b, sizeof b, "%s/%s_b", g_root, synth ? "synth" : "espeak");
    snprintf(c, sizeof c, "%s/%s_c", g_root, synth ? "synth" : "espeak");
    sn_demo_options o = {.force_synth = synth, .jobs = 2};
    int used = -1;
    assert_int_equal(sn_demo_corpus(a, 0.25, 42, &o, &used), SN_OK);
    assert_int_equal(used, !synth);
    assert_int_equal(sn_demo_corpus(b, 0.25, 42, &o, NULL), SN_OK);
    assert_true(same_tree(a, b));
    assert_int_equal(sn_demo_corpus(c, 0.25, 43, &o, NULL), SN_OK);
    assert_false(same_tree(a, c));
    snprintf(sub, sizeof sub, "%s/clean", a);
    assert_true(count_wavs(sub) >= 3);
    snprintf(sub, sizeof sub, "%s/noise", a);
    assert_int_equal(count_wavs(sub), 7);
    snprintf(sub, sizeof sub, "%s/valid/clean", a);
    assert_true(count_wavs(sub) >= 3);

    /* the corpus is a dataset */
    char cd[400], nd[400], vd[400];
    snprintf(cd, sizeof cd, "%s/clean", a);
    snprintf(nd, sizeof nd, "%s/noise", a);
    snprintf(vd, sizeof vd, "%s/valid", a);
    sn_data_config cfg;
    sn_data_config_default(&cfg);
    cfg.clean_dir = cd;
    cfg.noise_dir = nd;
    cfg.valid_dir = vd;
    cfg.segment_seconds = 2.0;
    sn_dataset *tr = NULL, *va = NULL;
    assert_int_equal(sn_dataset_open(&cfg, &tr, &va), SN_OK);
    assert_true(sn_dataset_len(tr) >= 3);
    assert_non_null(va);
    sn_dataset_free(tr);
    sn_dataset_free(va);
    rm_rf(a); rm_rf(b); rm_rf(c);
}

static void test_synth_deterministic(void **state) { (void)state; check_same_seed(1); }

static int have_espeak(void) { return system("command -v espeak-ng >/dev/null 2>&1") == 0; }

static void test_espeak_deterministic(void **state) {
    (void)state;
    if (!have_espeak()) skip();
    check_same_seed(0);
}

static void test_cli(void **state) {
    (void)state;
    char out[300];
    snprintf(out, sizeof out, "%s/cli", g_root);
    char *help[] = {"data", "demo", "--help"};
    assert_int_equal(sn_cmd_data(3, help), 0);
    char *none[] = {"data"};
    assert_int_equal(sn_cmd_data(1, none), 2);
    char *noout[] = {"data", "demo"};
    assert_int_equal(sn_cmd_data(2, noout), 2);
    char *badnum[] = {"data", "demo", "--out", out, "--minutes", "abc"};
    assert_int_equal(sn_cmd_data(6, badnum), 2);
    char *badopt[] = {"data", "demo", "--frobnicate"};
    assert_int_equal(sn_cmd_data(3, badopt), 2);
    char *unk[] = {"data", "make"};
    assert_int_equal(sn_cmd_data(2, unk), 2);
    char *badout[] = {"data", "demo", "--out", "/proc/sinter_cannot_write_here", "--synth", "--minutes", "0.05"};
    assert_int_equal(sn_cmd_data(7, badout), 3);
    char *ok[] = {"data", "demo", "--out", out, "--synth", "--minutes", "0.05", "--seed", "5"};
    assert_int_equal(sn_cmd_data(9, ok), 0);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/sn_test_demo_XXXXXX");
    if (!mkdtemp(g_root)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_deterministic),
        cmocka_unit_test(test_espeak_deterministic),
        cmocka_unit_test(test_cli),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(g_root);
    return rc;
}
