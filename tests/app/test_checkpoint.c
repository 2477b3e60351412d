/* Checkpoints: save/load round trip (weights, optimizer state, run state,
 * config), plain state_dicts, bad files (missing, truncated, another model,
 * wrong dtype), a full disk keeping the previous file, and PyTorch golden
 * files (a torch state_dict -> sinter inference gives torch's output). */
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "app_util.h"
#include "sinter/backend.h"
#include "sinter/safetensors.h"
#include "sn_test.h"

static sn_backend *g_b;

static void tiny_config(sn_config *c, int hidden) {
    sn_config_defaults(c);
    c->model.hidden = hidden;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(c->model.channels, ch, sizeof ch);
}

/* A model with 2 optimizer steps taken on random data. */
static void trained(const sn_config *c, sn_model **m, sn_step **s) {
    sn_crn_config cc;
    sn_optim_config oc;
    SN_ASSERT_OK(sn_crn_config_from(c, &cc));
    SN_ASSERT_OK(sn_optim_config_from(c, &oc));
    SN_ASSERT_OK(sn_crn_new(&cc, g_b, m));
    SN_ASSERT_OK(sn_model_init(*m, 3));
    SN_ASSERT_OK(sn_step_new(*m, g_b, g_b, 2, 9, &oc, s));
    uint64_t seed = 5;
    float *x = sn_test_rand_new(2 * 9 * 161, &seed, 0, 1), *y = sn_test_rand_new(2 * 9 * 161, &seed, 0, 1);
    float loss;
    for (int i = 0; i < 2; i++) SN_ASSERT_OK(sn_step_run(*s, x, y, 1e-3f, &loss));
    free(x);
    free(y);
}

static float *get_all(const sn_tensor *t) {
    int64_t n = sn_nelem(t);
    float *v = malloc((size_t)n * sizeof *v);
    SN_ASSERT_OK(sn_tensor_get(t, v, n));
    return v;
}

static void assert_same_tensor(const sn_tensor *a, const sn_tensor *b) {
    assert_int_equal(sn_nelem(a), sn_nelem(b));
    float *x = get_all(a), *y = get_all(b);
    if (memcmp(x, y, (size_t)sn_nelem(a) * sizeof *x)) fail_msg("%s differs after the round trip", a->name);
    free(x);
    free(y);
}

static void test_round_trip(void **state) {
    (void)state;
    sn_config c;
    tiny_config(&c, 32);
    sn_model *m;
    sn_step *s;
    trained(&c, &m, &s);
    char p[400];
    app_path(p, sizeof p, "rt.safetensors");
    sn_ckpt_state st = {.step = 2, .epoch = 1, .epoch_step = 7, .best_valid_loss = 0.25, .seed = 42};
    SN_ASSERT_OK(sn_ckpt_save(m, s, &st, &c, p));

    sn_model *m2;
    sn_config c2;
    sn_ckpt_state st2;
    SN_ASSERT_OK(sn_ckpt_load(p, NULL, g_b, &c2, &m2, &st2));
    assert_int_equal(st2.step, 2);
    assert_int_equal(st2.epoch, 1);
    assert_int_equal(st2.epoch_step, 7);
    assert_int_equal(st2.seed, 42);
    assert_float_equal(st2.best_valid_loss, 0.25, 0);
    assert_int_equal(c2.model.hidden, 32);
    assert_int_equal(c2.model.channels[4], 16);
    assert_int_equal(m2->n, m->n);
    for (int i = 0; i < m->n; i++) {
        assert_string_equal(m->t[i]->name, m2->t[i]->name);
        assert_same_tensor(m->t[i], m2->t[i]);
    }
    sn_optim_config oc;
    SN_ASSERT_OK(sn_optim_config_from(&c2, &oc));
    sn_step *s2;
    SN_ASSERT_OK(sn_step_new(m2, g_b, g_b, 2, 9, &oc, &s2));
    SN_ASSERT_OK(sn_ckpt_load_optim(p, s2));
    assert_int_equal(s2->t, 2);
    assert_same_tensor(s->opt_state[0], s2->opt_state[0]);
    assert_same_tensor(s->opt_state[1], s2->opt_state[1]);
    /* per-parameter names and shapes as PyTorch would have them */
    sn_safetensors *f;
    SN_ASSERT_OK(sn_st_open(p, &f));
    const sn_st_tensor *t = sn_st_find(f, "optim.exp_avg_sq.rnn.weight_hh_l1");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 4 * 32);
    assert_null(sn_st_find(f, "optim.exp_avg.ebn.0.running_mean")); /* buffers have no state */
    sn_st_close(f);
    /* weights only (no optimizer): loads, but cannot resume */
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, &c, p));
    SN_ASSERT_OK(sn_ckpt_load_weights(p, m2));
    assert_int_equal(sn_ckpt_load_optim(p, s2), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "optimizer state"));
    sn_step_free(s2);
    sn_model_free(m2);
    sn_step_free(s);
    sn_model_free(m);
}

/* A safetensors file with just the state_dict (what torch's save_file writes). */
static void save_plain(const sn_model *m, const char *path, const char *bad_name, const char *bad_dtype) {
    sn_st_writer *w = sn_st_writer_new();
    for (int i = 0; i < m->n; i++) {
        const sn_tensor *t = m->t[i];
        float *v = get_all(t);
        if (strstr(t->name, "num_batches_tracked")) {
            int64_t z = 0;
            SN_ASSERT_OK(sn_st_add(w, t->name, "I64", 0, NULL, &z));
        } else if (bad_name && !strcmp(t->name, bad_name)) {
            int32_t *iv = calloc((size_t)sn_nelem(t), sizeof *iv);
            SN_ASSERT_OK(sn_st_add(w, t->name, bad_dtype, t->ndim, t->shape, iv));
            free(iv);
        } else {
            SN_ASSERT_OK(sn_st_add(w, t->name, "F32", t->ndim, t->shape, v));
        }
        free(v);
    }
    SN_ASSERT_OK(sn_st_save(w, path));
    sn_st_writer_free(w);
}

static void test_plain_state_dict(void **state) {
    (void)state;
    sn_config c;
    tiny_config(&c, 32);
    sn_model *m;
    sn_step *s;
    trained(&c, &m, &s);
    char p[400];
    app_path(p, sizeof p, "plain.safetensors");
    save_plain(m, p, NULL, NULL);
    sn_model *m2 = NULL;
    assert_int_equal(sn_ckpt_load(p, NULL, g_b, NULL, &m2, NULL), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "no sinter config"));
    SN_ASSERT_OK(sn_ckpt_load(p, &c, g_b, NULL, &m2, NULL));
    for (int i = 0; i < m->n; i++)
        if (!strstr(m->t[i]->name, "num_batches")) assert_same_tensor(m->t[i], m2->t[i]);
    sn_model_free(m2);
    /* wrong dtype */
    save_plain(m, p, "enc.2.weight", "I32");
    assert_int_equal(sn_ckpt_load(p, &c, g_b, NULL, &m2, NULL), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "'enc.2.weight' has dtype I32"));
    sn_step_free(s);
    sn_model_free(m);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    sn_config c;
    tiny_config(&c, 32);
    sn_model *m, *m2 = NULL;
    sn_step *s;
    trained(&c, &m, &s);
    char p[400], q[400];
    app_path(p, sizeof p, "good.safetensors");
    SN_ASSERT_OK(sn_ckpt_save(m, s, NULL, &c, p));
    /* missing */
    app_path(q, sizeof q, "nope.safetensors");
    assert_int_equal(sn_ckpt_load(q, NULL, g_b, NULL, &m2, NULL), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "nope.safetensors"));
    assert_null(m2);
    /* truncated */
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    app_path(q, sizeof q, "trunc.safetensors");
    f = fopen(q, "wb");
    fwrite(buf, 1, (size_t)n / 2, f);
    fclose(f);
    sn_status st = sn_ckpt_load(q, NULL, g_b, NULL, &m2, NULL);
    assert_int_equal(st, SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "trunc.safetensors"));
    /* garbage */
    f = fopen(q, "wb");
    fputs("not a checkpoint at all", f);
    fclose(f);
    assert_int_not_equal(sn_ckpt_load(q, NULL, g_b, NULL, &m2, NULL), SN_OK);
    free(buf);
    /* another model: hidden 16 and another rnn, given as the config of a plain load */
    sn_model *other;
    SN_ASSERT_OK(sn_ckpt_load(p, NULL, g_b, NULL, &other, NULL));
    sn_model_free(other);
    sn_config c16;
    tiny_config(&c16, 16);
    sn_crn_config cc;
    SN_ASSERT_OK(sn_crn_config_from(&c16, &cc));
    SN_ASSERT_OK(sn_crn_new(&cc, g_b, &other));
    st = sn_ckpt_load_weights(p, other);
    assert_int_equal(st, SN_ERR_FORMAT);
    printf("mismatch message: %s\n", sn_last_error());
    assert_non_null(strstr(sn_last_error(), "'rnn.weight_ih_l0' has shape [128,64] in the file, the model needs [64,64]"));
    sn_model_free(other);
    strcpy(c16.model.rnn, "gru");
    c16.model.hidden = 32;
    SN_ASSERT_OK(sn_crn_config_from(&c16, &cc));
    SN_ASSERT_OK(sn_crn_new(&cc, g_b, &other));
    assert_int_equal(sn_ckpt_load_weights(p, other), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "another shape"));
    sn_model_free(other);
    c16.model.layers = 1;
    strcpy(c16.model.rnn, "lstm");
    SN_ASSERT_OK(sn_crn_config_from(&c16, &cc));
    SN_ASSERT_OK(sn_crn_new(&cc, g_b, &other));
    assert_int_equal(sn_ckpt_load_weights(p, other), SN_ERR_FORMAT);
    assert_non_null(strstr(sn_last_error(), "unexpected 'rnn.weight_ih_l1'"));
    sn_model_free(other);
    sn_step_free(s);
    sn_model_free(m);
}

static void test_full_disk_keeps_previous(void **state) {
    (void)state;
    sn_config c;
    tiny_config(&c, 32);
    sn_model *m;
    sn_step *s;
    trained(&c, &m, &s);
    char p[400];
    app_path(p, sizeof p, "keep.safetensors");
    sn_ckpt_state st = {.step = 1};
    SN_ASSERT_OK(sn_ckpt_save(m, s, &st, &c, p));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        sn_ckpt_state st2 = {.step = 2};
        sn_status r = sn_ckpt_save(m, s, &st2, &c, p);
        if (r != SN_OK) fprintf(stderr, "expected failure: %s\n", sn_last_error());
        _exit(r == SN_OK ? 0 : r == SN_ERR_IO ? 10 : 11);
    }
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 10);
    sn_ckpt_state back;
    SN_ASSERT_OK(sn_ckpt_read_state(p, &back));
    assert_int_equal(back.step, 1);
    sn_model *m2;
    SN_ASSERT_OK(sn_ckpt_load(p, NULL, g_b, NULL, &m2, NULL));
    sn_model_free(m2);
    /* no temp files left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/keep.safetensors.tmp* 2>/dev/null | grep -q .", app_tmp());
    assert_int_not_equal(system(cmd), 0);
    /* an unwritable directory (skipped as root: root writes anyway) */
    if (geteuid() != 0) {
        char d[400], q[500];
        app_path(d, sizeof d, "ro");
        mkdir(d, 0755);
        snprintf(q, sizeof q, "%s/x.safetensors", d);
        SN_ASSERT_OK(sn_ckpt_save(m, s, &st, &c, q));
        chmod(d, 0555);
        assert_int_equal(sn_ckpt_save(m, s, &st, &c, q), SN_ERR_IO);
        chmod(d, 0755);
        SN_ASSERT_OK(sn_ckpt_read_state(q, &back));
    }
    sn_step_free(s);
    sn_model_free(m);
}

/* tests/app/golden/crn_tiny_*.safetensors come from gen_interop_golden.py:
 * a PyTorch CRN's state_dict (eval mode, trained BN statistics) and its
 * output on a fixed input. */
static void test_torch_golden(void **state) {
    (void)state;
    const char *dir = SN_SOURCE_DIR "/tests/app/golden";
    char sd[600], io[600];
    snprintf(sd, sizeof sd, "%s/crn_tiny_state.safetensors", dir);
    snprintf(io, sizeof io, "%s/crn_tiny_io.safetensors", dir);
    sn_safetensors *f;
    SN_ASSERT_OK(sn_st_open(io, &f));
    const sn_st_tensor *x = sn_st_find(f, "input"), *y = sn_st_find(f, "output");
    assert_non_null(x);
    assert_non_null(y);
    sn_config c;
    tiny_config(&c, atoi(sn_st_meta(f, "hidden")));
    strcpy(c.model.rnn, sn_st_meta(f, "rnn"));
    sn_model *m;
    SN_ASSERT_OK(sn_ckpt_load(sd, &c, g_b, NULL, &m, NULL));
    int B = (int)x->shape[0], T = (int)x->shape[2];
    sn_infer *inf;
    SN_ASSERT_OK(sn_infer_new(m, g_b, g_b, B, T, &inf));
    size_t n = sn_st_numel(x);
    float *xin = malloc(n * sizeof *xin), *ref = malloc(n * sizeof *ref), *out = malloc(n * sizeof *out);
    SN_ASSERT_OK(sn_st_read_f32(f, "input", xin, n));
    SN_ASSERT_OK(sn_st_read_f32(f, "output", ref, n));
    SN_ASSERT_OK(sn_infer_run(inf, xin, out));
    double e = sn_test_rel_err_f(out, ref, (int64_t)n, 1e-3);
    printf("sinter vs PyTorch (%s): max rel err %.3g\n", c.model.rnn, e);
    assert_true(e < 1e-4);
    free(xin);
    free(ref);
    free(out);
    sn_infer_free(inf);
    sn_model_free(m);
    sn_st_close(f);
}

static int setup(void **state) {
    (void)state;
    g_b = sn_cpu_backend_new(0);
    return g_b ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    sn_backend_free(g_b);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_plain_state_dict),
        cmocka_unit_test(test_bad_checkpoints),
        cmocka_unit_test(test_full_disk_keeps_previous),
        cmocka_unit_test(test_torch_golden),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
