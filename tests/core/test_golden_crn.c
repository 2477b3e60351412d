/* The whole CRN training step against PyTorch (tests/golden/crn_*.safetensors,
 * written by tests/golden/gen_golden.py in float64 from float32 inputs): the
 * training-mode output, the MSE loss, every parameter's gradient, the losses of
 * 5 Adam steps, the BatchNorm running statistics after them and the eval-mode
 * output of the inference plan (before and after the 5 steps).
 *
 * One metric everywhere (golden_err): max_i |a_i - ref_i| / max(max_i |ref_i|, floor),
 * i.e. the worst absolute error relative to the largest magnitude of the
 * reference tensor.
 *
 * The 5 Adam steps use the file's eps ("adam_eps", 1e-4; gen_golden.py ADAM_EPS says why):
 * with the default 1e-8, rounding noise in the exactly-zero gradients of the conv biases
 * before BatchNorm turns into Adam steps of up to lr, and the eval output after 5 steps
 * spreads over ~5e-3 between float32 runs. The checks after the 5 steps allow
 * max(1e-4, 4x) PyTorch's own float32 error (torch_f32_err.* metadata).
 *
 * `test_golden_crn [KIND]` runs it on another backend (cuda, vulkan; the CPU is the
 * fallback); ctest runs it once per backend built in. Exit 77 without that device. */
#include "sn_test.h"
#include "sn_golden.h"
#include "sinter/nn.h"
#include "sinter/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sn_backend *g_fb; /* the CPU: fallback for ops the backend under test lacks */
static const char *g_spec = "cpu";

#define TOL_FWD 1e-4   /* outputs, the loss, the 5 losses, running stats */
#define TOL_GRAD 1e-3  /* gradients */

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static double meta_double(const sn_safetensors *f, const char *key) {
    const char *v = sn_st_meta(f, key);
    if (!v) fail_msg("golden file %s: metadata '%s' missing", sn_st_label(f), key);
    return atof(v);
}

/* Tolerance of a quantity after the 5 steps: as close as PyTorch float32 (x4), at least TOL_FWD. */
static double tol_after5(const sn_safetensors *f, const char *what) {
    char key[64];
    snprintf(key, sizeof key, "torch_f32_err.%s", what);
    return fmax(TOL_FWD, 4.0 * meta_double(f, key));
}

static bool is_extra(const char *name) {
    static const char *names[] = {"x", "target", "output", "loss", "adam_losses", "eval_output", "eval_output0"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i])) return true;
    return !strncmp(name, "grad.", 5) || !strncmp(name, "after5.", 7);
}

/* the golden state_dict into m: same names, same shapes, both ways */
static void load_state(const sn_safetensors *f, sn_model *m) {
    int nstate = 0;
    for (int i = 0; i < sn_st_count(f); i++) {
        const sn_st_tensor *st = sn_st_get(f, i);
        if (is_extra(st->name)) continue;
        nstate++;
        sn_tensor *t = sn_model_find(m, st->name);
        if (!t) fail_msg("%s: state_dict entry '%s' is not in the sinter model", sn_st_label(f), st->name);
        assert_int_equal(st->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(st->shape[d], t->shape[d]);
        int64_t n;
        float *v = sn_golden_read(f, st->name, &n);
        SN_ASSERT_OK(sn_tensor_set(t, v, n));
        free(v);
    }
    assert_int_equal(nstate, m->n);
}

/* The default step (each large param updated when its gradient completes, the rest by
 * multi-tensor updates at the end) must give the keep_grads step's losses and weights:
 * the same element arithmetic, only grouped into other launches. */
static void check_default_step(const sn_safetensors *f, const sn_crn_config *cfg, sn_backend *be, int B, int T,
                               const float *x, const float *y, const float *loss5, const float *flat5) {
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(cfg, be, &m));
    load_state(f, m);
    sn_optim_config opt;
    sn_optim_config_default(&opt);
    opt.eps = (float)meta_double(f, "adam_eps");
    sn_step *s = NULL;
    SN_ASSERT_OK(sn_step_new(m, be, g_fb, B, T, &opt, &s));
    int nmt = 0, nsingle = 0;
    for (int i = 0; i < s->g->n; i++) {
        sn_op op = s->g->nodes[i]->op;
        nmt += op == SN_OP_ADAM_MT;
        nsingle += op == SN_OP_ADAM;
    }
    assert_int_equal(nsingle, 0);
    assert_true(nmt >= 1 && nmt <= 2 + (m->n + SN_OPTIM_MT_MAX - 1) / SN_OPTIM_MT_MAX);
    float loss[5];
    for (int k = 0; k < 5; k++) SN_ASSERT_OK(sn_step_run(s, x, y, opt.lr, &loss[k]));
    for (int k = 0; k < 5; k++)
        if (loss[k] != loss5[k]) fail_msg("default step loss %d: %.9g, keep_grads step %.9g", k, loss[k], loss5[k]);
    float *flat = sn_golden_host(m->flat);
    int64_t n = sn_nelem(m->flat);
    for (int64_t i = 0; i < n; i++)
        if (flat[i] != flat5[i]) fail_msg("default step: flat param %lld is %.9g, keep_grads step %.9g", (long long)i,
                                          flat[i], flat5[i]);
    print_message("%s: default step (%d multi-tensor updates) equals the keep_grads step\n", sn_st_label(f), nmt);
    free(flat);
    sn_step_free(s);
    sn_model_free(m);
}

static void run_crn(const char *file, sn_rnn_kind kind) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/%s", SN_SOURCE_DIR, file);
    sn_safetensors *f = NULL;
    SN_ASSERT_OK(sn_st_open(path, &f));
    assert_string_equal(sn_st_meta(f, "rnn"), sn_rnn_kind_name(kind));

    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.rnn = kind;
    cfg.hidden = sn_golden_meta_int(f, "hidden");
    cfg.layers = sn_golden_meta_int(f, "layers");
    cfg.freq_bins = sn_golden_meta_int(f, "freq_bins");
    assert_int_equal(sscanf(sn_st_meta(f, "channels"), "%d,%d,%d,%d,%d", &cfg.channels[0], &cfg.channels[1],
                            &cfg.channels[2], &cfg.channels[3], &cfg.channels[4]),
                     5);
    int B = sn_golden_meta_int(f, "batch"), T = sn_golden_meta_int(f, "frames");

    sn_backend *be = NULL;
    SN_ASSERT_OK(sn_backend_open(g_spec, 0, &be));
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(&cfg, be, &m));
    assert_int_equal((int64_t)sn_golden_meta_int(f, "params"), m->nparams);

    load_state(f, m);

    sn_optim_config opt;
    sn_optim_config_default(&opt);
    opt.keep_grads = true; /* the gradients are compared below */
    opt.eps = (float)meta_double(f, "adam_eps");
    sn_step *s = NULL;
    SN_ASSERT_OK(sn_step_new(m, be, g_fb, B, T, &opt, &s));
    int64_t nx, ny, n;
    float *x = sn_golden_read(f, "x", &nx), *y = sn_golden_read(f, "target", &ny);
    assert_int_equal(nx, (int64_t)B * T * cfg.freq_bins);

    /* the inference plan on the loaded weights, before any step */
    sn_infer *inf = NULL;
    SN_ASSERT_OK(sn_infer_new(m, be, g_fb, B, T, &inf));
    float *ref = sn_golden_read(f, "eval_output0", &n);
    assert_int_equal(n, sn_nelem(inf->out));
    float *got = malloc((size_t)n * sizeof *got);
    SN_ASSERT_OK(sn_infer_run(inf, x, got));
    double e_eval0 = sn_golden_err(got, ref, n, 1e-30);
    print_message("%s: eval output (initial weights) err %.3g\n", file, e_eval0);
    free(ref), free(got);

    /* step 1: output, loss, gradients */
    float loss[5];
    SN_ASSERT_OK(sn_step_run(s, x, y, opt.lr, &loss[0]));
    ref = sn_golden_read(f, "output", &n), got = sn_golden_host(s->out);
    assert_int_equal(n, sn_nelem(s->out));
    double e_out = sn_golden_err(got, ref, n, 1e-30);
    free(ref), free(got);
    float *ref_loss = sn_golden_read(f, "loss", &n);
    double e_loss = sn_golden_err(&loss[0], ref_loss, 1, 1e-30);
    free(ref_loss);
    print_message("%s: output err %.3g, loss %.7g err %.3g\n", file, e_out, loss[0], e_loss);

    double e_grad = 0;
    const char *worst = "";
    int ngrad = 0;
    for (int i = 0; i < m->n; i++) {
        if (!m->trainable[i]) continue;
        sn_tensor *t = m->t[i];
        char gname[SN_NAME_LEN + 8], wname[SN_NAME_LEN + 8];
        snprintf(gname, sizeof gname, "grad.%s", t->name);
        assert_non_null(t->grad);
        float *r = sn_golden_read(f, gname, &n);
        assert_int_equal(n, sn_nelem(t));
        float *g = sn_golden_host(t->grad);
        double floor = 1e-30;
        /* A conv bias followed by a training-mode BatchNorm has an analytic gradient of
         * zero (the reference holds rounding noise ~1e-17): measure it against the
         * gradient scale of the layer's weight instead. */
        size_t L = strlen(t->name);
        if (L > 5 && !strcmp(t->name + L - 5, ".bias")) {
            snprintf(wname, sizeof wname, "grad.%.*s.weight", (int)(L - 5), t->name);
            if (sn_st_find(f, wname)) {
                int64_t nw;
                float *rw = sn_golden_read(f, wname, &nw);
                double sw = max_abs(rw, nw);
                if (max_abs(r, n) < 1e-6 * sw) floor = sw;
                free(rw);
            }
        }
        double e = sn_golden_err(g, r, n, floor);
        if (!(e <= TOL_GRAD)) print_message("  %s: grad err %.3g (max |ref| %.3g)\n", t->name, e, max_abs(r, n));
        if (!(e <= e_grad)) e_grad = e, worst = t->name;
        ngrad++;
        free(r), free(g);
    }
    print_message("%s: %d gradients, max err %.3g (%s)\n", file, ngrad, e_grad, worst);

    /* steps 2..5 */
    for (int k = 1; k < 5; k++) SN_ASSERT_OK(sn_step_run(s, x, y, opt.lr, &loss[k]));
    float *ref_losses = sn_golden_read(f, "adam_losses", &n);
    assert_int_equal(n, 5);
    double e_losses = 0;
    for (int k = 0; k < 5; k++) e_losses = fmax(e_losses, sn_golden_err(&loss[k], &ref_losses[k], 1, 1e-30));
    print_message("%s: losses %.7g %.7g %.7g %.7g %.7g (ref %.7g .. %.7g) max err %.3g\n", file, loss[0], loss[1],
                  loss[2], loss[3], loss[4], ref_losses[0], ref_losses[4], e_losses);
    free(ref_losses);

    double e_mean = 0, e_var = 0;
    int nbt_bad = 0;
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = m->t[i];
        if (m->trainable[i]) continue;
        char aname[SN_NAME_LEN + 8];
        snprintf(aname, sizeof aname, "after5.%s", t->name);
        float *r = sn_golden_read(f, aname, &n), *g = sn_golden_host(t);
        assert_int_equal(n, sn_nelem(t));
        double e = sn_golden_err(g, r, n, 1e-30);
        if (strstr(t->name, "num_batches_tracked")) {
            if (g[0] != r[0]) {
                if (!nbt_bad) print_message("  %s = %g, PyTorch %g\n", t->name, g[0], r[0]);
                nbt_bad++;
            }
        } else if (strstr(t->name, "running_mean")) {
            e_mean = fmax(e_mean, e);
        } else {
            e_var = fmax(e_var, e);
        }
        free(r), free(g);
    }
    double tol_mean = tol_after5(f, "running_mean"), tol_var = tol_after5(f, "running_var");
    print_message("%s: after 5 steps running_mean err %.3g (tol %.3g), running_var err %.3g (tol %.3g), "
                  "%d num_batches_tracked differ\n", file, e_mean, tol_mean, e_var, tol_var, nbt_bad);

    /* the inference plan after the 5 steps */
    ref = sn_golden_read(f, "eval_output", &n);
    got = malloc((size_t)n * sizeof *got);
    SN_ASSERT_OK(sn_infer_run(inf, x, got));
    double e_eval = sn_golden_err(got, ref, n, 1e-30), tol_eval = tol_after5(f, "eval_output");
    print_message("%s: eval output after 5 steps err %.3g (tol %.3g)\n", file, e_eval, tol_eval);
    free(ref), free(got);

    float *flat5 = sn_golden_host(m->flat);
    check_default_step(f, &cfg, be, B, T, x, y, loss, flat5);
    free(flat5);

    sn_infer_free(inf);
    sn_step_free(s);
    sn_model_free(m);
    sn_backend_free(be);
    free(x), free(y);

    assert_true(e_out < TOL_FWD);
    assert_true(e_loss < TOL_FWD);
    assert_true(e_grad < TOL_GRAD);
    assert_true(e_eval0 < TOL_FWD);
    assert_true(e_losses < tol_after5(f, "losses"));
    assert_true(e_mean < tol_mean);
    assert_true(e_var < tol_var);
    assert_true(e_eval < tol_eval);
    /* PyTorch counts BatchNorm calls in training mode (a state_dict entry) */
    assert_int_equal(nbt_bad, 0);
    sn_st_close(f);
}

static void test_crn_lstm(void **st) { (void)st; run_crn("crn_lstm.safetensors", SN_RNN_LSTM); }
static void test_crn_gru(void **st) { (void)st; run_crn("crn_gru.safetensors", SN_RNN_GRU); }
static void test_crn_attention(void **st) { (void)st; run_crn("crn_attention.safetensors", SN_RNN_ATTENTION); }

int main(int argc, char **argv) {
    if (argc > 1) g_spec = argv[1];
    sn_backend *probe = NULL;
    if (sn_backend_open(g_spec, 0, &probe) != SN_OK) {
        printf("device '%s' not available here (%s): skipped\n", g_spec, sn_last_error());
        return 77;
    }
    sn_backend_free(probe);
    g_fb = sn_cpu_backend_new(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crn_lstm),
        cmocka_unit_test(test_crn_gru),
        cmocka_unit_test(test_crn_attention),
    };
    int r = cmocka_run_group_tests_name(g_spec, tests, NULL, NULL);
    sn_backend_free(g_fb);
    return r;
}
