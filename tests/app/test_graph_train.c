/* A described model (model.name: graph) through every command, as the CRN goes:
 * `sinter train` learns on the tiny corpus and writes checkpoints whose config
 * holds the layer list; the checkpoint loads back into the same model; `sinter
 * enhance` streams it chunk by chunk to its whole-file result; a model that cannot
 * stream (attention) processes whole files with a note; `sinter eval` scores it;
 * `sinter model` prints the summary and its errors. */
#include "sn_test.h"
#include "sinter/audio.h"
#include "sinter/config.h"
#include "sinter/train.h"
#include "app_run.h"
#include "app_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char run_dir[400], ckpt[600], out_txt[600], err_txt[600];

/* a small causal U-Net + GRU (the unet_gru template at tiny widths) */
static const char *k_unet =
    "name: graph\n"
    "output: mapping\n"
    "output_activation: softplus\n"
    "loss: l1\n"
    "layers:\n"
    "  - {type: zeropad2d, padding: [1, 1, 1, 0]}\n"
    "  - {type: conv2d, name: enc1, in_channels: 1, out_channels: 4, kernel_size: [2, 3], stride: [1, 2]}\n"
    "  - {type: batchnorm2d, name: bn1, num_features: 4}\n"
    "  - {type: elu, name: e1}\n"
    "  - {type: permute, dims: [0, 2, 1, 3]}\n"
    "  - {type: flatten, start_dim: 2}\n"
    "  - {type: gru, name: gru, input_size: 324, hidden_size: 24}\n"
    "  - {type: linear, name: proj, in_features: 24, out_features: 324}\n"
    "  - {type: unflatten, dim: 2, unflattened_size: [4, 81]}\n"
    "  - {type: permute, dims: [0, 2, 1, 3]}\n"
    "  - {type: concat, from: [-1, e1], dim: 1}\n"
    "  - {type: conv_transpose2d, name: dec1, in_channels: 8, out_channels: 1, kernel_size: [2, 3], stride: [1, 2], "
    "padding: [0, 1]}\n"
    "  - {type: slice, dim: 2, start: 0, end: -1}\n";

static const char *write_file(const char *name, const char *text) {
    static char p[8][600];
    static int k;
    k = (k + 1) % 8;
    app_path(p[k], sizeof p[k], name);
    FILE *f = fopen(p[k], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p[k];
}

static int run_sinter(const char *const *args) { return app_run_sinter(args, out_txt, err_txt, NULL); }

static int setup(void **st) {
    (void)st;
    app_path(out_txt, sizeof out_txt, "stdout.txt");
    app_path(err_txt, sizeof err_txt, "stderr.txt");
    /* 2 s of noise and a tone */
    char wav[600];
    app_path(wav, sizeof wav, "in.wav");
    int64_t N = 16000 * 2;
    float *x = malloc(sizeof(float) * N);
    uint64_t seed = 3;
    sn_test_rand(x, N, &seed, -0.3f, 0.3f);
    for (int64_t i = 0; i < N; i++) x[i] += 0.3f * (float)sin(0.05 * (double)i);
    sn_status s = sn_audio_write(wav, x, N, 1, 16000, 0);
    free(x);
    return s == SN_OK ? 0 : -1;
}

static void test_train_resume_load(void **st) {
    (void)st;
    sn_config *c = malloc(sizeof *c);
    app_config(c);
    char kv[700];
    snprintf(kv, sizeof kv, "model.file=%s", write_file("unet.yaml", k_unet));
    SN_ASSERT_OK(sn_config_override(c, kv));
    SN_ASSERT_OK(sn_config_validate(c));
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.quiet = 1;
    o.max_steps = 25;
    o.run_dir = app_path(run_dir, sizeof run_dir, "run_graph");
    sn_train_result r;
    SN_ASSERT_OK(sn_train(c, &o, &r));
    assert_int_equal(r.steps, 25);
    double loss[64];
    long long step[64];
    int n = app_read_losses(run_dir, loss, step, 64);
    assert_int_equal(n, 25);
    double a = (loss[0] + loss[1] + loss[2]) / 3, b = (loss[22] + loss[23] + loss[24]) / 3;
    print_message("graph model: L1 loss first 3 %.4f, last 3 %.4f; valid SI-SDR %.2f dB\n", a, b, r.valid.sisdr);
    assert_true(b < 0.7 * a);
    assert_true(r.has_valid && isfinite(r.valid.loss));
    /* the checkpoint's config holds the layer list: it builds the same model */
    snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", run_dir);
    sn_backend *be = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    sn_config *used = malloc(sizeof *used);
    SN_ASSERT_OK(sn_ckpt_load(ckpt, NULL, be, used, &m, NULL));
    assert_string_equal(used->model.name, "graph");
    assert_int_equal(used->model.graph.n, c->model.graph.n);
    assert_non_null(sn_model_find(m, "gru.weight_hh_l0"));
    assert_non_null(sn_model_find(m, "bn1.num_batches_tracked"));
    assert_int_equal(m->loss, SN_LOSS_L1);
    assert_int_equal(sn_model_get_desc(m)->output_act, SN_ACT_SOFTPLUS);
    sn_model_free(m);
    sn_backend_free(be);
    /* the run continues from its checkpoint */
    o.resume_dir = run_dir;
    o.run_dir = NULL;
    o.max_steps = 27;
    SN_ASSERT_OK(sn_train(c, &o, &r));
    assert_int_equal(r.steps, 27);
    free(c), free(used);
}

static void test_enhance_eval(void **st) {
    (void)st;
    if (!ckpt[0]) skip();
    char wav[600], whole[600], chunk[600];
    app_path(wav, sizeof wav, "in.wav");
    app_path(whole, sizeof whole, "whole.wav");
    app_path(chunk, sizeof chunk, "chunk.wav");
    const char *a1[] = {"enhance", "--ckpt", ckpt, wav, "-o", whole, "--chunk-seconds", "0", NULL};
    const char *a2[] = {"enhance", "--ckpt", ckpt, wav, "-o", chunk, "--chunk-seconds", "0.3", NULL};
    int rc = run_sinter(a1);
    if (rc < 0) skip();
    if (rc != 0) fail_msg("enhance (whole) exit %d: %s", rc, app_slurp(err_txt));
    rc = run_sinter(a2);
    if (rc != 0) fail_msg("enhance (chunked) exit %d: %s", rc, app_slurp(err_txt));
    char *out = app_slurp(out_txt);
    assert_non_null(strstr(out, "chunked"));
    assert_non_null(strstr(out, "graph ("));
    free(out);
    sn_audio a, b;
    SN_ASSERT_OK(sn_audio_read(whole, 0, 0, &a));
    SN_ASSERT_OK(sn_audio_read(chunk, 0, 0, &b));
    assert_int_equal(a.frames, b.frames);
    double d = 0, mv = 0;
    for (int64_t i = 0; i < a.frames; i++) d = fmax(d, fabs(a.data[i] - b.data[i])), mv = fmax(mv, fabs(a.data[i]));
    print_message("enhance: chunked vs whole max diff %.3g (max |y| %.3g)\n", d, mv);
    assert_true(mv > 0 && d < 1e-4);
    sn_audio_free(&a), sn_audio_free(&b);
    const char *a3[] = {"eval", "--ckpt", ckpt, "--json", NULL};
    rc = run_sinter(a3);
    if (rc != 0) fail_msg("eval exit %d: %s", rc, app_slurp(err_txt));
    out = app_slurp(out_txt);
    assert_non_null(strstr(out, "\"si_sdr\""));
    free(out);
}

/* attention has no chunked form: whole files, with a note naming the layer */
static void test_attention_whole_files(void **st) {
    (void)st;
    sn_config *c = malloc(sizeof *c);
    sn_config_defaults(c);
    char kv[700];
    snprintf(kv, sizeof kv, "model.file=%s",
             write_file("attn.yaml", "layers:\n"
                                     "  - {type: permute, dims: [0, 2, 1, 3]}\n  - {type: flatten, start_dim: 2}\n"
                                     "  - {type: transformer_encoder_layer, name: att, d_model: 161, nhead: 7, "
                                     "dim_feedforward: 32, causal: true, norm_first: true}\n"
                                     "  - {type: unflatten, dim: 2, unflattened_size: [1, 161]}\n"
                                     "  - {type: permute, dims: [0, 2, 1, 3]}\n  - {type: softplus}\n"));
    SN_ASSERT_OK(sn_config_override(c, kv));
    sn_backend *be = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_model_from_config(c, be, &m));
    SN_ASSERT_OK(sn_model_init(m, 1));
    char p[600];
    app_path(p, sizeof p, "attn.safetensors");
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, c, p));
    char why[300];
    assert_false(sn_model_streamable(m, why, sizeof why));
    assert_non_null(strstr(why, "layer 2 'att' (transformer_encoder_layer)"));
    sn_model_free(m);
    sn_backend_free(be);
    free(c);
    char wav[600], out[600];
    app_path(wav, sizeof wav, "in.wav");
    app_path(out, sizeof out, "attn_out.wav");
    const char *a[] = {"enhance", "--ckpt", p, wav, "-o", out, NULL};
    int rc = run_sinter(a);
    if (rc < 0) skip();
    if (rc != 0) fail_msg("enhance exit %d: %s", rc, app_slurp(err_txt));
    char *o = app_slurp(out_txt);
    assert_non_null(strstr(o, "no exact chunked form"));
    assert_non_null(strstr(o, "processing whole files"));
    free(o);
}

static void test_model_command(void **st) {
    (void)st;
    const char *a1[] = {"model", SN_SOURCE_DIR "/conf/models/crn.yaml", "device=cpu", "train.batch_size=2", NULL};
    int rc = run_sinter(a1);
    if (rc < 0) skip();
    char *o = app_slurp(out_txt);
    if (rc != 0) fail_msg("sinter model exit %d: %s", rc, app_slurp(err_txt));
    assert_non_null(strstr(o, "Total params: 17,579,457"));
    assert_non_null(strstr(o, "rnn (lstm)"));
    assert_non_null(strstr(o, "[2, 1024, 399, 4]") ? strstr(o, "[2, 1024, 399, 4]") : strstr(o, "[2, 399, 1024]"));
    assert_non_null(strstr(o, "working arena"));
    free(o);
    /* the built-in CRN: totals only */
    const char *a2[] = {"model", SN_SOURCE_DIR "/conf/prototype.yaml", "device=cpu", NULL};
    rc = run_sinter(a2);
    o = app_slurp(out_txt);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o, "Total params: 17,579,457"));
    free(o);
    /* a bad description: exit 2 and the layer named */
    const char *bad = write_file("bad.yaml", "layers:\n  - {type: linear, name: fc, in_features: 161, out_features: 80}\n");
    const char *a3[] = {"model", bad, "device=cpu", NULL};
    rc = run_sinter(a3);
    char *e = app_slurp(err_txt);
    if (rc != 2 || !strstr(e, "the model's output (layer 0 'fc') is [4,1,399,80]"))
        fail_msg("exit %d, stderr %s", rc, e);
    free(e);
    const char *bad2 = write_file("bad2.yaml", "layers:\n  - {type: lineer, in_features: 161, out_features: 161}\n");
    const char *a4[] = {"model", bad2, NULL};
    rc = run_sinter(a4);
    e = app_slurp(err_txt);
    if (rc != 2 || !strstr(e, "unknown type 'lineer'; did you mean 'linear'?")) fail_msg("exit %d, stderr %s", rc, e);
    free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_command),
        cmocka_unit_test(test_train_resume_load),
        cmocka_unit_test(test_enhance_eval),
        cmocka_unit_test(test_attention_whole_files),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
