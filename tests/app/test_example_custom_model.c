/* examples/custom_model.c, built by CMake, runs: it builds its network with the
 * public C API, trains it briefly with the trainer on the tiny corpus, and the
 * run it leaves behind (config with the layer list, checkpoints) works with the
 * sinter commands. */
#include "sn_test.h"
#include "app_run.h"
#include "app_util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void test_custom_model(void **st) {
    (void)st;
    char bin[600], run[400], out[600], err[600], p[3000];
    snprintf(bin, sizeof bin, "%s/custom_model", SN_BINARY_DIR);
    if (access(bin, X_OK) != 0) fail_msg("%s is not built (cmake --build build --target custom_model)", bin);
    app_path(run, sizeof run, "custom_run");
    app_path(out, sizeof out, "out.txt");
    app_path(err, sizeof err, "err.txt");
    snprintf(p, sizeof p, "%s %s %s --steps 12 > %s 2> %s", bin, app_corpus(), run, out, err);
    int rc = system(p);
    char *o = app_slurp(out), *e = app_slurp(err);
    if (rc != 0) fail_msg("custom_model exit %d\nstdout: %s\nstderr: %s", rc, o, e);
    print_message("%s", o);
    assert_non_null(strstr(o, "gru      gru"));
    assert_non_null(strstr(o, "trained 12 steps"));
    free(o), free(e);
    /* the run's resolved config carries the model: `sinter model` and the checkpoint use it */
    snprintf(p, sizeof p, "%s/config.yaml", run);
    const char *args[] = {"model", p, NULL};
    rc = app_run_sinter(args, out, err, NULL);
    if (rc < 0) skip();
    o = app_slurp(out);
    if (rc != 0) fail_msg("sinter model on the run's config: exit %d: %s", rc, app_slurp(err));
    assert_non_null(strstr(o, "gru (gru)"));
    free(o);
    snprintf(p, sizeof p, "%s/last.safetensors", run);
    sn_backend *be = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_ckpt_load(p, NULL, be, NULL, &m, NULL));
    assert_non_null(sn_model_find(m, "conv.weight"));
    assert_non_null(sn_model_find(m, "out.bias"));
    sn_model_free(m);
    sn_backend_free(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_custom_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
