/* `sinter metrics` (sn_cmd_metrics): output, JSON, exit codes 0/2/3. */
#include "tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <sndfile.h>

#include "cli/cli.h"
#include "sinter/audio.h"
#include "synth.h"

static char g_ref[512], g_est[512], g_out[512], g_buf[8192];

/* Runs sn_cmd_metrics with stdout captured into g_buf. */
static int run(int argc, char **argv) {
    fflush(stdout);
    int saved = dup(1), fd = open(g_out, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    dup2(fd, 1);
    close(fd);
    int rc = sn_cmd_metrics(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *f = fopen(g_out, "r");
    size_t n = fread(g_buf, 1, sizeof g_buf - 1, f);
    g_buf[n] = 0;
    fclose(f);
    return rc;
}

static int setup(void **state) {
    enum { FS = 16000, N = 3 * FS };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    syn_pair(FS, N, 0, 0, 11, 10.0, x, y);
    tmppath(g_out, sizeof g_out, "stdout.txt");
    const int fmt = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    int bad = sn_audio_write(tmppath(g_ref, sizeof g_ref, "ref.wav"), x, N, 1, FS, fmt) ||
              sn_audio_write(tmppath(g_est, sizeof g_est, "est.wav"), y, N, 1, FS, fmt);
    free(x);
    free(y);
    return bad ? -1 : 0;
}

static void test_table(void **state) {
    char *argv[] = {"metrics", g_ref, g_est};
    assert_int_equal(run(3, argv), 0);
    printf("%s", g_buf);
    assert_non_null(strstr(g_buf, "SNR"));
    assert_non_null(strstr(g_buf, "SI-SDR"));
    /* same signals as the white16k_snr10 reference case: pystoi 0.888895 */
    assert_non_null(strstr(g_buf, "STOI      0.8889"));
    assert_non_null(strstr(g_buf, "ESTOI     0.4327"));
}

static void test_json(void **state) {
    char *argv[] = {"metrics", g_ref, g_est, "--json"};
    assert_int_equal(run(4, argv), 0);
    printf("%s", g_buf);
    assert_non_null(strstr(g_buf, "\"snr_db\": 10.000"));
    assert_non_null(strstr(g_buf, "\"stoi\": 0.888895"));
    assert_non_null(strstr(g_buf, "\"estoi\": 0.432729"));
    assert_true(g_buf[0] == '{');
}

static void test_usage_errors(void **state) {
    char *a1[] = {"metrics"};
    assert_int_equal(run(1, a1), 2);
    char *a2[] = {"metrics", g_ref};
    assert_int_equal(run(2, a2), 2);
    char *a3[] = {"metrics", g_ref, g_est, "--bogus"};
    assert_int_equal(run(4, a3), 2);
    char *a4[] = {"metrics", g_ref, g_est, g_est};
    assert_int_equal(run(4, a4), 2);
    char *a5[] = {"metrics", "--help"};
    assert_int_equal(run(2, a5), 0);
    assert_non_null(strstr(g_buf, "usage: sinter metrics"));
}

static void test_file_errors(void **state) {
    char missing[512], text[512];
    tmppath(missing, sizeof missing, "missing.wav");
    char *a1[] = {"metrics", missing, g_est};
    assert_int_equal(run(3, a1), 3);
    write_bytes(tmppath(text, sizeof text, "text.wav"), "hello", 5);
    char *a2[] = {"metrics", g_ref, text};
    assert_int_equal(run(3, a2), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
