/* The example models described in YAML (conf/models/fc_mask.yaml, unet_gru.yaml at
 * tiny widths) against hand-written PyTorch modules with the same attribute names
 * (tests/golden/model_*.safetensors, written by tests/golden/gen_models.py in
 * float64): the state_dict loads by name both ways, and the training-mode output,
 * the loss (L1 with a mask; MSE with a mapping), every gradient, the losses of 5
 * Adam steps and every state_dict entry after them agree. The causal U-Net also
 * streams chunk by chunk to its whole-sequence output.
 *
 * Metric (as test_golden_crn.c): max |a - ref| / max(max |ref|, floor). After 5
 * steps the tolerance is max(1e-4, 4x) PyTorch's own float32 error, stored by the
 * generator (a conv bias before a training-mode BatchNorm gets noise gradients). */
#include "sn_test.h"
#include "sn_golden.h"
#include "sinter/config.h"
#include "sinter/safetensors.h"
#include "sinter/stream.h"
#include "sinter/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_FWD 1e-4
#define TOL_GRAD 1e-3

static double tol_after5(const sn_safetensors *f, const char *what) {
    char key[64];
    snprintf(key, sizeof key, "torch_f32_err.%s", what);
    const char *v = sn_st_meta(f, key);
    if (!v) fail_msg("golden file: metadata '%s' missing", key);
    return fmax(TOL_FWD, 4.0 * atof(v));
}

static bool is_extra(const char *n) {
    return !strcmp(n, "x") || !strcmp(n, "target") || !strcmp(n, "output") || !strcmp(n, "loss") ||
           !strcmp(n, "adam_losses") || !strncmp(n, "grad.", 5) || !strncmp(n, "after5.", 7);
}

/* the model file of the golden's metadata, under model: */
static sn_model *model_of(const sn_safetensors *f, sn_backend *be) {
    const char *y = sn_st_meta(f, "model_yaml");
    assert_non_null(y);
    size_t cap = strlen(y) * 2 + 64;
    char *text = malloc(cap), *p = text;
    p += sprintf(p, "model:\n  ");
    for (const char *q = y; *q; q++) {
        *p++ = *q;
        if (*q == '\n' && q[1]) *p++ = ' ', *p++ = ' ';
    }
    *p = 0;
    sn_config *c = malloc(sizeof *c);
    SN_ASSERT_OK(sn_config_from_yaml_string(text, "golden model_yaml", c));
    SN_ASSERT_OK(sn_config_validate(c));
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_model_from_config(c, be, &m));
    free(text), free(c);
    return m;
}

static const char *g_spec = "cpu"; /* `test_golden_models KIND`: another backend, the CPU as fallback */
static sn_backend *g_fb;

static void run(const char *file, bool stream) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/%s", SN_SOURCE_DIR, file);
    sn_safetensors *f = NULL;
    SN_ASSERT_OK(sn_st_open(path, &f));
    sn_backend *be = NULL;
    SN_ASSERT_OK(sn_backend_open(g_spec, 1, &be));
    sn_model *m = model_of(f, be);
    assert_int_equal(m->nparams, sn_golden_meta_int(f, "params"));
    int B = sn_golden_meta_int(f, "batch"), T = sn_golden_meta_int(f, "frames");
    /* the state_dict by name, both ways */
    int nstate = 0;
    for (int i = 0; i < sn_st_count(f); i++) {
        const sn_st_tensor *e = sn_st_get(f, i);
        if (is_extra(e->name)) continue;
        nstate++;
        sn_tensor *t = sn_model_find(m, e->name);
        if (!t) fail_msg("%s: '%s' is not in the sinter model", file, e->name);
        assert_int_equal(e->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(e->shape[d], t->shape[d]);
        int64_t n;
        float *v = sn_golden_read(f, e->name, &n);
        SN_ASSERT_OK(sn_tensor_set(t, v, n));
        free(v);
    }
    assert_int_equal(nstate, m->n);

    int64_t n, nx;
    float *x = sn_golden_read(f, "x", &nx), *y = sn_golden_read(f, "target", &n);
    if (stream) {
        /* chunks of 4 frames (the last one short) against the whole sequence, eval mode */
        sn_infer *inf = NULL;
        sn_stream *s = NULL;
        char why[200];
        assert_true(sn_model_streamable(m, why, sizeof why));
        SN_ASSERT_OK(sn_infer_new(m, be, g_fb, 1, T, &inf));
        SN_ASSERT_OK(sn_stream_new(m, be, g_fb, 1, 4, &s));
        float *whole = malloc(sizeof(float) * T * 161), *part = malloc(sizeof(float) * T * 161);
        SN_ASSERT_OK(sn_infer_run(inf, x, whole));
        for (int t = 0; t < T; t += 4)
            SN_ASSERT_OK(sn_stream_run(s, x + (int64_t)t * 161, T - t < 4 ? T - t : 4, part + (int64_t)t * 161));
        double e = sn_golden_err(part, whole, (int64_t)T * 161, 1e-30);
        print_message("%s: streamed (chunks of 4) vs whole err %.3g\n", file, e);
        assert_true(e < 1e-5);
        free(whole), free(part);
        sn_stream_free(s), sn_infer_free(inf);
    }

    sn_optim_config opt;
    sn_optim_config_default(&opt);
    opt.keep_grads = true;
    sn_step *s = NULL;
    SN_ASSERT_OK(sn_step_new(m, be, g_fb, B, T, &opt, &s));
    float loss[5];
    SN_ASSERT_OK(sn_step_run(s, x, y, opt.lr, &loss[0]));
    float *ref = sn_golden_read(f, "output", &n), *got = sn_golden_host(s->out);
    double e_out = sn_golden_err(got, ref, n, 1e-30);
    free(ref), free(got);
    ref = sn_golden_read(f, "loss", &n);
    double e_loss = sn_golden_err(&loss[0], ref, 1, 1e-30);
    free(ref);
    double e_grad = 0;
    const char *worst = "";
    for (int i = 0; i < m->n; i++) {
        if (!m->trainable[i]) continue;
        sn_tensor *t = m->t[i];
        char gname[SN_NAME_LEN + 8];
        snprintf(gname, sizeof gname, "grad.%s", t->name);
        float *r = sn_golden_read(f, gname, &n), *g = sn_golden_host(t->grad);
        double floor = 1e-30;
        /* a conv bias before a training-mode BatchNorm has an exact gradient of 0 */
        if (!strcmp(t->name, "enc1.bias")) floor = 1e-3;
        double e = sn_golden_err(g, r, n, floor);
        if (!(e <= e_grad)) e_grad = e, worst = t->name;
        free(r), free(g);
    }
    print_message("%s: output err %.3g, loss %.7g err %.3g, gradients max err %.3g (%s)\n", file, e_out, loss[0], e_loss,
                  e_grad, worst);
    for (int k = 1; k < 5; k++) SN_ASSERT_OK(sn_step_run(s, x, y, opt.lr, &loss[k]));
    ref = sn_golden_read(f, "adam_losses", &n);
    double e_losses = 0;
    for (int k = 0; k < 5; k++) e_losses = fmax(e_losses, sn_golden_err(&loss[k], &ref[k], 1, 1e-30));
    free(ref);
    double e_after = 0;
    const char *worst5 = "";
    int nbt_bad = 0;
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = m->t[i];
        char an[SN_NAME_LEN + 8];
        snprintf(an, sizeof an, "after5.%s", t->name);
        float *r = sn_golden_read(f, an, &n), *g = sn_golden_host(t);
        if (strstr(t->name, "num_batches_tracked")) nbt_bad += g[0] != r[0];
        else {
            double e = sn_golden_err(g, r, n, 1e-30);
            if (!(e <= e_after)) e_after = e, worst5 = t->name;
        }
        free(r), free(g);
    }
    print_message("%s: 5 Adam steps: losses err %.3g (tol %.3g), state_dict err %.3g (%s; tol %.3g)\n", file, e_losses,
                  tol_after5(f, "losses"), e_after, worst5, tol_after5(f, "params"));
    assert_true(e_out < TOL_FWD);
    assert_true(e_loss < TOL_FWD);
    assert_true(e_grad < TOL_GRAD);
    assert_true(e_losses < tol_after5(f, "losses"));
    assert_true(e_after < tol_after5(f, "params"));
    assert_int_equal(nbt_bad, 0);
    free(x), free(y);
    sn_step_free(s);
    sn_model_free(m);
    sn_backend_free(be);
    sn_st_close(f);
}

static void test_fc_mask(void **st) { (void)st; run("model_fc_mask.safetensors", false); }
static void test_unet_gru(void **st) { (void)st; run("model_unet_gru.safetensors", true); }

/* the example files themselves build, with the templates' structure */
static void test_conf_examples(void **st) {
    (void)st;
    const char *files[] = {"fc_mask", "unet_gru", "crn"};
    sn_backend *be = sn_cpu_backend_new(1);
    for (int i = 0; i < 3; i++) {
        char kv[1200];
        snprintf(kv, sizeof kv, "model.file=%s/conf/models/%s.yaml", SN_SOURCE_DIR, files[i]);
        sn_config *c = malloc(sizeof *c);
        sn_config_defaults(c);
        SN_ASSERT_OK(sn_config_override(c, kv));
        SN_ASSERT_OK(sn_config_validate(c));
        sn_model *m = NULL;
        SN_ASSERT_OK(sn_model_from_config(c, be, &m));
        sn_layer_info *info = calloc((size_t)c->model.graph.n, sizeof *info);
        SN_ASSERT_OK(sn_graph_model_summary(m, 2, 50, info));
        char why[300];
        bool streams = sn_model_streamable(m, why, sizeof why);
        print_message("%s: %lld parameters, %d layers, %s%s\n", files[i], (long long)m->nparams, c->model.graph.n,
                      streams ? "streams" : "whole files: ", why);
        assert_true(streams);
        free(info), free(c);
        sn_model_free(m);
    }
    sn_backend_free(be);
}

int main(int argc, char **argv) {
    if (argc > 1) g_spec = argv[1];
    sn_backend *probe = NULL;
    if (sn_backend_open(g_spec, 1, &probe) != SN_OK) {
        printf("device '%s' not available here (%s): skipped\n", g_spec, sn_last_error());
        return 77;
    }
    sn_backend_free(probe);
    g_fb = sn_cpu_backend_new(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fc_mask),
        cmocka_unit_test(test_unet_gru),
        cmocka_unit_test(test_conf_examples),
    };
    int r = cmocka_run_group_tests_name(g_spec, tests, NULL, NULL);
    sn_backend_free(g_fb);
    return r;
}
