/* SVG loss plot: well-formed file, N polyline points, markers, log axis,
 * escaping, atomic write errors. */
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
#include <unistd.h>

#include "sinter/plot.h"

static char g_path[256];

static int setup(void **state) {
    snprintf(g_path, sizeof g_path, "/tmp/sn_test_plot_%ld.svg", (long)getpid());
    return 0;
}

static int teardown(void **state) {
    unlink(g_path);
    return 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Points in the first polyline's points="..." attribute. */
static int polyline_points(const char *svg) {
    const char *p = strstr(svg, "<polyline");
    assert_non_null(p);
    p = strstr(p, "points=\"");
    assert_non_null(p);
    p += 8;
    const char *e = strchr(p, '"');
    assert_non_null(e);
    int n = 0;
    for (const char *q = p; q < e; q++)
        if (*q == ',') n++;
    return n;
}

/* Loose well-formedness: starts with <svg, ends with </svg>, tags balance. */
static void check_wellformed(const char *svg) {
    assert_true(strncmp(svg, "<svg ", 5) == 0);
    size_t n = strlen(svg);
    assert_true(n > 7 && strcmp(svg + n - 7, "</svg>\n") == 0);
    assert_int_equal(count(svg, "<g"), count(svg, "</g>"));
    assert_int_equal(count(svg, "<text"), count(svg, "</text>"));
    assert_int_equal(count(svg, "<"), count(svg, ">"));
    assert_null(strstr(svg, "nan"));
    assert_null(strstr(svg, "inf"));
}

static void test_loss_curve(void **state) {
    enum { N = 57, M = 5 };
    int64_t st[N], sv[M];
    double lt[N], lv[M];
    for (int i = 0; i < N; i++) {
        st[i] = 50 * i;
        lt[i] = 2.0 * exp(-i / 20.0) + 0.05;
    }
    for (int i = 0; i < M; i++) {
        sv[i] = 500 * (i + 1);
        lv[i] = 1.0 / (i + 2);
    }
    assert_int_equal(sn_plot_loss_svg(g_path, "run <crn> & \"x\"", st, lt, N, sv, lv, M, 0), SN_OK);
    char *svg = slurp(g_path);
    check_wellformed(svg);
    assert_int_equal(polyline_points(svg), N);
    assert_int_equal(count(svg, "<circle"), M + 1); /* + legend marker */
    assert_non_null(strstr(svg, "run &lt;crn&gt; &amp; &quot;x&quot;"));
    assert_non_null(strstr(svg, ">train loss</text>"));
    assert_non_null(strstr(svg, ">validation loss</text>"));
    assert_non_null(strstr(svg, ">2800</text>") ? "x" : strstr(svg, ">2500</text>")); /* an x tick label */
    assert_true(count(svg, "text-anchor=\"end\"") >= 3);                                 /* y tick labels */
    free(svg);
}

static void test_log_and_bad_values(void **state) {
    int64_t x[6] = {0, 1, 2, 3, 4, 5};
    double y[6] = {100, 10, NAN, 0, -1, 0.01};
    sn_plot_series s = {"loss", x, y, 6, 0, NULL};
    sn_plot_opts o = {"step", "mse", 1, 0, 0};
    assert_int_equal(sn_plot_svg(g_path, "log", &s, 1, &o), SN_OK);
    char *svg = slurp(g_path);
    check_wellformed(svg);
    assert_int_equal(polyline_points(svg), 3); /* NaN, 0 and -1 skipped on a log axis */
    assert_non_null(strstr(svg, ">100</text>"));
    assert_non_null(strstr(svg, ">0.01</text>"));
    assert_non_null(strstr(svg, "(log scale)"));
    free(svg);
    /* linear axis keeps 0 and -1 */
    o.log_y = 0;
    assert_int_equal(sn_plot_svg(g_path, "lin", &s, 1, &o), SN_OK);
    svg = slurp(g_path);
    check_wellformed(svg);
    assert_int_equal(polyline_points(svg), 5);
    free(svg);
}

static void test_degenerate(void **state) {
    /* no data, one point, huge steps: still a valid file, no endless tick loop */
    assert_int_equal(sn_plot_loss_svg(g_path, "empty", NULL, NULL, 0, NULL, NULL, 0, 0), SN_OK);
    char *svg = slurp(g_path);
    check_wellformed(svg);
    assert_non_null(strstr(svg, "no data yet"));
    free(svg);
    int64_t x[2] = {INT64_C(4000000000000000000), INT64_C(4000000000000000001)};
    double y[2] = {1, 1};
    assert_int_equal(sn_plot_loss_svg(g_path, "one", x, y, 2, NULL, NULL, 0, 1), SN_OK);
    svg = slurp(g_path);
    check_wellformed(svg);
    assert_int_equal(polyline_points(svg), 2);
    free(svg);
}

static void test_errors(void **state) {
    int64_t x[1] = {0};
    double y[1] = {1};
    assert_int_equal(sn_plot_loss_svg("/nonexistent_sn/p.svg", "t", x, y, 1, NULL, NULL, 0, 0), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "cannot write plot '/nonexistent_sn/p.svg'"));
    sn_plot_series s = {"x", NULL, NULL, 3, 0, NULL};
    assert_int_equal(sn_plot_svg(g_path, "t", &s, 1, NULL), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_plot_svg(NULL, "t", &s, 1, NULL), SN_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_curve),
        cmocka_unit_test(test_log_and_bad_values),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
