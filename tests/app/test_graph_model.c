/* Models described as data (model.name: graph): conf/models/crn.yaml and CRN
 * descriptions of every variant build the built-in CRN's graph (same state_dict
 * names, shapes and order, same initial weights, same ops, equal outputs,
 * gradients and Adam steps); streaming equals whole-sequence inference; the
 * YAML description round-trips; bad descriptions give errors naming the layer,
 * the argument and the shapes. */
#include "sn_test.h"
#include "sinter/config.h"
#include "sinter/stream.h"
#include "sinter/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the CRN as a layer list, for any variant ---- */

static void put(char **p, char *end, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*p, (size_t)(end - *p), fmt, ap);
    va_end(ap);
    if (n > 0) *p += n;
}

static char *crn_yaml(const char *rnn, int hidden, const int *chan) {
    size_t cap = 16384;
    char *buf = malloc(cap), *p = buf, *e = buf + cap;
    int ch[6] = {1, chan[0], chan[1], chan[2], chan[3], chan[4]};
    int F = 161;
    for (int i = 0; i < 5; i++) F = (F - 3) / 2 + 1;
    int W = ch[5] * F;
    put(&p, e, "layers:\n");
    for (int i = 0; i < 5; i++) {
        put(&p, e, "  - {type: zeropad2d, padding: [0, 0, 1, 0]}\n");
        put(&p, e, "  - {type: conv2d, name: enc.%d, in_channels: %d, out_channels: %d, kernel_size: [2, 3], stride: [1, 2]}\n",
            i, ch[i], ch[i + 1]);
        put(&p, e, "  - {type: batchnorm2d, name: ebn.%d, num_features: %d}\n", i, ch[i + 1]);
        put(&p, e, "  - {type: elu, name: skip%d}\n", i);
    }
    put(&p, e, "  - {type: permute, dims: [0, 2, 1, 3]}\n  - {type: flatten, start_dim: 2}\n");
    if (!strcmp(rnn, "attention")) {
        for (int l = 0; l < 2; l++)
            put(&p, e, "  - {type: transformer_encoder_layer, name: rnn.layers.%d, d_model: %d, nhead: 8, "
                "dim_feedforward: %d, norm_first: true, causal: true, dropout: 0}\n", l, W, 2 * W);
    } else {
        put(&p, e, "  - {type: %s, name: rnn, input_size: %d, hidden_size: %d, num_layers: 2}\n", rnn, W, hidden);
        if (hidden != W) put(&p, e, "  - {type: linear, name: proj, in_features: %d, out_features: %d}\n", hidden, W);
    }
    put(&p, e, "  - {type: unflatten, dim: 2, unflattened_size: [%d, %d]}\n  - {type: permute, dims: [0, 2, 1, 3]}\n",
        ch[5], F);
    int dch[6] = {ch[5], ch[4], ch[3], ch[2], ch[1], 1};
    for (int i = 0; i < 5; i++) {
        put(&p, e, "  - {type: concat, from: [-1, skip%d], dim: 1}\n", 4 - i);
        put(&p, e, "  - {type: conv_transpose2d, name: dec.%d, in_channels: %d, out_channels: %d, kernel_size: [2, 3], "
            "stride: [1, 2]%s}\n", i, 2 * dch[i], dch[i + 1], i == 3 ? ", output_padding: [0, 1]" : "");
        put(&p, e, "  - {type: slice, dim: 2, start: 0, end: -1}\n");
        if (i < 4) put(&p, e, "  - {type: batchnorm2d, name: dbn.%d, num_features: %d}\n  - {type: elu}\n", i, dch[i + 1]);
        else put(&p, e, "  - {type: softplus}\n");
    }
    return buf;
}

static sn_model *graph_from_text(const char *text, sn_backend *b) {
    sn_model_desc *d = malloc(sizeof *d);
    sn_model_desc_init(d);
    SN_ASSERT_OK(sn_model_desc_parse(text, "test.yaml", d));
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_graph_model_new(d, b, &m));
    free(d);
    return m;
}

static sn_model *builtin(const char *rnn, int hidden, const int *ch, sn_backend *b) {
    sn_crn_config c;
    sn_crn_config_default(&c);
    c.rnn = !strcmp(rnn, "gru") ? SN_RNN_GRU : !strcmp(rnn, "attention") ? SN_RNN_ATTENTION : SN_RNN_LSTM;
    c.hidden = hidden;
    memcpy(c.channels, ch, sizeof c.channels);
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(&c, b, &m));
    return m;
}

static float *get(const sn_tensor *t) {
    int64_t n = sn_nelem(t);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    SN_ASSERT_OK(sn_tensor_get(t, v, n));
    return v;
}

static double max_diff(const float *a, const float *b, int64_t n, double *scale) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;
        m = fmax(m, fabs((double)b[i]));
    }
    if (scale) *scale = m;
    return d;
}

/* same state_dict (names, shapes, order, trainable), same initial weights */
static void same_state(sn_model *g, sn_model *c) {
    assert_int_equal(g->n, c->n);
    assert_int_equal(g->nparams, c->nparams);
    assert_int_equal(g->nflat, c->nflat);
    for (int i = 0; i < c->n; i++) {
        if (strcmp(g->t[i]->name, c->t[i]->name))
            fail_msg("state_dict entry %d: graph '%s', crn '%s'", i, g->t[i]->name, c->t[i]->name);
        assert_int_equal(g->t[i]->ndim, c->t[i]->ndim);
        for (int d = 0; d < c->t[i]->ndim; d++) assert_int_equal(g->t[i]->shape[d], c->t[i]->shape[d]);
        assert_int_equal(g->trainable[i], c->trainable[i]);
    }
    SN_ASSERT_OK(sn_model_init(g, 17));
    SN_ASSERT_OK(sn_model_init(c, 17));
    for (int i = 0; i < c->n; i++) {
        float *a = get(g->t[i]), *b = get(c->t[i]);
        if (memcmp(a, b, sizeof(float) * (size_t)sn_nelem(c->t[i])))
            fail_msg("initial '%s' differs (init rules of the described layer)", c->t[i]->name);
        free(a), free(b);
    }
}

/* the training forward graphs hold the same ops in the same order */
static void same_ops(sn_model *g, sn_model *c, int B, int T) {
    sn_tensor *xg = sn_new_4d(g->ctx, B, 1, T, 161, SN_FLAG_PERSIST | SN_FLAG_INPUT, "x");
    sn_tensor *xc = sn_new_4d(c->ctx, B, 1, T, 161, SN_FLAG_PERSIST | SN_FLAG_INPUT, "x");
    sn_tensor *yg = sn_model_forward(g, xg, true), *yc = sn_model_forward(c, xc, true);
    assert_non_null(yg), assert_non_null(yc);
    sn_graph *gg = sn_graph_new(g->ctx), *gc = sn_graph_new(c->ctx);
    SN_ASSERT_OK(sn_graph_add(gg, yg));
    SN_ASSERT_OK(sn_graph_add(gc, yc));
    int ng = 0, nc = 0;
    for (int i = 0; i < gg->n; i++) ng += gg->nodes[i]->op != SN_OP_NONE;
    for (int i = 0; i < gc->n; i++) nc += gc->nodes[i]->op != SN_OP_NONE;
    assert_int_equal(ng, nc);
    for (int i = 0, j = 0; i < gg->n && j < gc->n; i++, j++) {
        while (i < gg->n && gg->nodes[i]->op == SN_OP_NONE) i++;
        while (j < gc->n && gc->nodes[j]->op == SN_OP_NONE) j++;
        if (i >= gg->n || j >= gc->n) break;
        const sn_tensor *a = gg->nodes[i], *b = gc->nodes[j];
        if (a->op != b->op || !sn_same_shape(a, b) || memcmp(a->ip, b->ip, sizeof a->ip) || memcmp(a->fp, b->fp, sizeof a->fp))
            fail_msg("forward node %d: graph %s, crn %s", i, sn_op_name(a->op), sn_op_name(b->op));
    }
    print_message("forward graphs: %d ops each, the same ops\n", ng);
    sn_graph_free(gg), sn_graph_free(gc);
}

static void rand_input(float *x, float *y, int64_t n, uint64_t seed) {
    sn_test_rand(x, n, &seed, 0.0f, 1.0f);
    sn_test_rand(y, n, &seed, 0.0f, 1.0f);
}

/* one Adam step on both: same loss, output, gradients; then the same weights */
static void same_step(sn_model *g, sn_model *c, sn_backend *be, int B, int T) {
    sn_optim_config o;
    sn_optim_config_default(&o);
    o.keep_grads = true;
    sn_step *sg = NULL, *sc = NULL;
    SN_ASSERT_OK(sn_step_new(g, be, be, B, T, &o, &sg));
    SN_ASSERT_OK(sn_step_new(c, be, be, B, T, &o, &sc));
    assert_int_equal(sg->g->n, sc->g->n);
    assert_int_equal(sn_step_peak(sg), sn_step_peak(sc));
    int64_t n = (int64_t)B * T * 161;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    rand_input(x, y, n, 5);
    float lg, lc;
    SN_ASSERT_OK(sn_step_run(sg, x, y, o.lr, &lg));
    SN_ASSERT_OK(sn_step_run(sc, x, y, o.lr, &lc));
    float *og = get(sg->out), *oc = get(sc->out);
    double sc0, d = max_diff(og, oc, n, &sc0);
    print_message("loss graph %.9g crn %.9g, output max diff %.3g\n", lg, lc, d);
    assert_true(d <= 1e-6 * fmax(1.0, sc0));
    assert_true(fabs((double)lg - lc) <= 1e-6 * fmax(1.0, fabs(lc)));
    double worst = 0;
    for (int i = 0; i < c->n; i++) {
        if (!c->trainable[i]) continue;
        float *a = get(g->t[i]->grad), *b = get(c->t[i]->grad);
        double s, e = max_diff(a, b, sn_nelem(c->t[i]), &s);
        if (e > 1e-6 * fmax(s, 1e-3)) fail_msg("gradient of '%s' differs by %.3g (max %.3g)", c->t[i]->name, e, s);
        worst = fmax(worst, e);
        free(a), free(b);
    }
    print_message("gradients: max diff %.3g\n", worst);
    float *pg = get(g->flat), *pc = get(c->flat);
    double s, e = max_diff(pg, pc, g->nflat, &s);
    assert_true(e <= 1e-6 * fmax(1.0, s));
    free(pg), free(pc), free(og), free(oc), free(x), free(y);
    sn_step_free(sg), sn_step_free(sc);
}

static void same_infer(sn_model *g, sn_model *c, sn_backend *be, int B, int T) {
    sn_infer *fg = NULL, *fc = NULL;
    SN_ASSERT_OK(sn_infer_new(g, be, be, B, T, &fg));
    SN_ASSERT_OK(sn_infer_new(c, be, be, B, T, &fc));
    int64_t n = (int64_t)B * T * 161;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n),
          *b = malloc(sizeof(float) * n);
    rand_input(x, y, n, 9);
    SN_ASSERT_OK(sn_infer_run(fg, x, a));
    SN_ASSERT_OK(sn_infer_run(fc, x, b));
    double s, d = max_diff(a, b, n, &s);
    print_message("inference: max diff %.3g (max |y| %.3g)\n", d, s);
    assert_true(d <= 1e-6 * fmax(1.0, s));
    free(x), free(y), free(a), free(b);
    sn_infer_free(fg), sn_infer_free(fc);
}

/* conf/models/crn.yaml is the prototype (hidden 1024, channels 16..256) */
static void test_crn_yaml_equals_builtin(void **st) {
    (void)st;
    sn_config *cfg = malloc(sizeof *cfg);
    sn_config_defaults(cfg);
    SN_ASSERT_OK(sn_config_override(cfg, "model.file=" SN_SOURCE_DIR "/conf/models/crn.yaml"));
    SN_ASSERT_OK(sn_config_validate(cfg));
    assert_string_equal(cfg->model.name, "graph");
    sn_backend *be = sn_cpu_backend_new(0);
    sn_model *g = NULL;
    SN_ASSERT_OK(sn_model_from_config(cfg, be, &g));
    int ch[5] = {16, 32, 64, 128, 256};
    sn_model *c = builtin("lstm", 1024, ch, be);
    assert_int_equal(g->nparams, 17579457);
    same_state(g, c);
    same_ops(g, c, 2, 7);
    same_infer(g, c, be, 1, 5);
    char why[200];
    assert_true(sn_model_streamable(g, why, sizeof why));
    sn_model_free(g), sn_model_free(c);
    sn_backend_free(be);
    free(cfg);
}

static void variant(const char *rnn, int hidden, const int *ch) {
    sn_backend *be = sn_cpu_backend_new(1);
    char *y = crn_yaml(rnn, hidden, ch);
    sn_model *g = graph_from_text(y, be), *c = builtin(rnn, hidden, ch, be);
    free(y);
    same_state(g, c);
    same_ops(g, c, 2, 6);
    same_step(g, c, be, 2, 6);
    same_infer(g, c, be, 2, 6);
    sn_model_free(g), sn_model_free(c);
    sn_backend_free(be);
}

static void test_crn_lstm_proj(void **st) { (void)st; int ch[5] = {4, 8, 8, 8, 16}; variant("lstm", 24, ch); }
static void test_crn_gru(void **st) { (void)st; int ch[5] = {4, 4, 8, 8, 8}; variant("gru", 32, ch); }
static void test_crn_attention(void **st) { (void)st; int ch[5] = {4, 4, 8, 8, 8}; variant("attention", 32, ch); }

/* chunked streaming of a described CRN equals its whole-sequence inference and the built-in stream */
static void test_stream(void **st) {
    (void)st;
    sn_backend *be = sn_cpu_backend_new(1);
    int ch[5] = {4, 8, 8, 8, 16};
    char *y = crn_yaml("gru", 24, ch);
    sn_model *g = graph_from_text(y, be), *c = builtin("gru", 24, ch, be);
    free(y);
    SN_ASSERT_OK(sn_model_init(g, 3));
    SN_ASSERT_OK(sn_model_init(c, 3));
    int T = 23, Tc = 5;
    int64_t n = (int64_t)T * 161;
    float *x = malloc(sizeof(float) * n), *z = malloc(sizeof(float) * n), *whole = malloc(sizeof(float) * n),
          *sg = malloc(sizeof(float) * n), *sc = malloc(sizeof(float) * n);
    rand_input(x, z, n, 4);
    sn_infer *f = NULL;
    SN_ASSERT_OK(sn_infer_new(g, be, be, 1, T, &f));
    SN_ASSERT_OK(sn_infer_run(f, x, whole));
    sn_stream *a = NULL, *b = NULL;
    SN_ASSERT_OK(sn_stream_new(g, be, be, 1, Tc, &a));
    SN_ASSERT_OK(sn_stream_new(c, be, be, 1, Tc, &b));
    for (int t = 0; t < T; t += Tc) {
        int k = T - t < Tc ? T - t : Tc;
        SN_ASSERT_OK(sn_stream_run(a, x + (int64_t)t * 161, k, sg + (int64_t)t * 161));
        SN_ASSERT_OK(sn_stream_run(b, x + (int64_t)t * 161, k, sc + (int64_t)t * 161));
    }
    double s, d1 = max_diff(sg, whole, n, &s), d2 = max_diff(sg, sc, n, NULL);
    print_message("stream vs whole %.3g, vs built-in stream %.3g (max |y| %.3g)\n", d1, d2, s);
    assert_true(d1 <= 1e-5 * fmax(1.0, s));
    assert_true(d2 <= 1e-6 * fmax(1.0, s));
    sn_stream_free(a), sn_stream_free(b), sn_infer_free(f);
    free(x), free(z), free(whole), free(sg), free(sc);
    sn_model_free(g), sn_model_free(c);
    sn_backend_free(be);
}

/* models that cannot stream say which layer prevents it */
static void test_stream_reasons(void **st) {
    (void)st;
    static const struct { const char *yaml, *why; } cases[] = {
        {"- {type: conv2d, name: c, in_channels: 1, out_channels: 1, kernel_size: 3, padding: 1}\n",
         "layer 0 'c' (conv2d): a kernel of 3 frames is causal only after a zeropad2d of 2 frames"},
        {"- {type: flatten, start_dim: 1}\n- {type: unflatten, dim: 1, unflattened_size: [1, -1, 161]}\n",
         "layer 0 '0' (flatten): it merges the time dim"},
        {"- {type: slice, dim: 2, start: 1}\n", "layer 0 '0' (slice): it cuts the time dim"},
        {"- {type: zeropad2d, padding: [0, 0, 2, 0]}\n"
         "- {type: conv2d, name: c, in_channels: 1, out_channels: 1, kernel_size: [2, 1]}\n",
         "layer 0 '0' (zeropad2d): padding in time is causal only"},
        {"- {type: permute, dims: [0, 1, 3, 2]}\n- {type: linear, name: fc, in_features: 99, out_features: 99}\n",
         "layer 1 'fc' (linear): time is its feature (last) dim"},
    };
    sn_backend *be = sn_cpu_backend_new(1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sn_model *m = graph_from_text(cases[i].yaml, be);
        char why[400];
        assert_false(sn_model_streamable(m, why, sizeof why));
        if (!strstr(why, cases[i].why)) fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].why);
        sn_stream *s = NULL;
        assert_int_equal(sn_stream_new(m, be, be, 1, 4, &s), SN_ERR_UNSUPPORTED);
        assert_non_null(strstr(sn_last_error(), cases[i].why));
        sn_model_free(m);
    }
    sn_backend_free(be);
}

/* ---- the YAML description ---- */

static void test_roundtrip(void **st) {
    (void)st;
    sn_config *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    sn_config_defaults(a);
    SN_ASSERT_OK(sn_config_override(a, "model.file=" SN_SOURCE_DIR "/conf/models/crn.yaml"));
    char *y1 = NULL, *y2 = NULL;
    SN_ASSERT_OK(sn_config_to_yaml(a, &y1));
    SN_ASSERT_OK(sn_config_from_yaml_string(y1, "dump", b));
    SN_ASSERT_OK(sn_config_to_yaml(b, &y2));
    assert_string_equal(y1, y2);
    assert_int_equal(a->model.graph.n, b->model.graph.n);
    for (int i = 0; i < a->model.graph.n; i++) {
        const sn_layer_desc *la = &a->model.graph.layer[i], *lb = &b->model.graph.layer[i];
        bool same = la->type == lb->type && !strcmp(la->name, lb->name) && la->nfrom == lb->nfrom &&
                    !memcmp(la->from, lb->from, sizeof la->from) && la->in == lb->in && la->out == lb->out &&
                    !memcmp(la->kernel, lb->kernel, sizeof la->kernel) && !memcmp(la->stride, lb->stride, sizeof la->stride) &&
                    !memcmp(la->padding, lb->padding, sizeof la->padding) &&
                    !memcmp(la->output_padding, lb->output_padding, sizeof la->output_padding) &&
                    la->num_layers == lb->num_layers && la->bias == lb->bias && la->dim == lb->dim &&
                    la->end_dim == lb->end_dim && la->start == lb->start && la->end == lb->end && la->nlist == lb->nlist &&
                    !memcmp(la->list, lb->list, sizeof la->list) && la->eps == lb->eps && la->alpha == lb->alpha &&
                    la->beta == lb->beta && la->threshold == lb->threshold && la->momentum == lb->momentum;
        if (!same) fail_msg("layer %d differs after the round trip", i);
    }
    assert_string_equal(b->model.name, "graph");
    free(y1), free(y2), free(a), free(b);
}

/* state_dict order: submodules in the order their attribute first appears */
static void test_param_order(void **st) {
    (void)st;
    sn_backend *be = sn_cpu_backend_new(1);
    sn_model *m = graph_from_text(
        "- {type: linear, name: a.0, in_features: 161, out_features: 8}\n"
        "- {type: layernorm, name: b.0, normalized_shape: 8}\n"
        "- {type: linear, name: a.1, in_features: 8, out_features: 8, bias: false}\n"
        "- {type: linear, in_features: 8, out_features: 161}\n"
        "- {type: sigmoid}\n",
        be);
    const char *want[] = {"a.0.weight", "a.0.bias", "a.1.weight", "b.0.weight", "b.0.bias", "3.weight", "3.bias"};
    assert_int_equal(m->n, 7);
    for (int i = 0; i < 7; i++) assert_string_equal(m->t[i]->name, want[i]);
    sn_model_free(m);
    sn_backend_free(be);
}

/* ---- bad descriptions ---- */

typedef struct bad_case {
    const char *yaml;
    const char *needle[3];
} bad_case;

/* parse, build, then shapes at batch 4, 99 frames */
static sn_status try_desc(const char *yaml) {
    sn_model_desc *d = malloc(sizeof *d);
    sn_model_desc_init(d);
    sn_status s = sn_model_desc_parse(yaml, "bad.yaml", d);
    sn_model *m = NULL;
    sn_backend *be = NULL;
    if (s == SN_OK) {
        be = sn_cpu_backend_new(1);
        s = sn_graph_model_new(d, be, &m);
    }
    if (s == SN_OK) {
        sn_layer_info *info = calloc((size_t)d->n, sizeof *info);
        s = sn_graph_model_summary(m, 4, 99, info);
        free(info);
    }
    sn_model_free(m);
    if (be) sn_backend_free(be);
    free(d);
    return s;
}

#define CONV(n) "- {type: conv2d, name: " n ", in_channels: 1, out_channels: 4, kernel_size: 3, padding: 1}\n"

static const bad_case k_bad[] = {
    /* 0 */ {"- {type: conv2, in_channels: 1, out_channels: 4, kernel_size: 3}\n",
             {"bad.yaml:1", "layer 0: unknown type 'conv2'; did you mean 'conv2d'?"}},
    /* 1 */ {"- {type: conv2d, name: enc.0, in_channels: 1, out_channels: 4, kernel: 3}\n",
             {"layer 0 'enc.0' (conv2d)", "unknown argument 'kernel'; did you mean 'kernel_size'?"}},
    /* 2 */ {"- {type: conv2d, in_channels: 1, out_channels: 4, kernel_size: 3, hidden_size: 3}\n",
             {"'hidden_size' is not an argument of conv2d"}},
    /* 3 */ {"- {type: conv2d, name: c, in_channels: 1, out_channels: 4}\n", {"layer 0 'c' (conv2d)", "missing argument 'kernel_size'"}},
    /* 4 */ {CONV("enc.0") "- {type: relu, from: enc.1}\n",
             {"layer 1 '1' (relu)", "no earlier layer is named 'enc.1'; did you mean 'enc.0'?"}},
    /* 5 */ {CONV("a") "- {type: relu, from: b}\n" "- {type: relu, name: b}\n", {"layer 1 '1' (relu)", "from: no earlier layer is named 'b'"}},
    /* 6 */ {CONV("a") "- {type: relu, name: a}\n", {"layer 1 'a' (relu)", "names must be unique"}},
    /* 7 */ {"- {type: conv2d, name: c0, in_channels: 1, out_channels: 64, kernel_size: [1, 3], stride: [1, 2]}\n"
             "- {type: conv2d, name: c1, in_channels: 64, out_channels: 64, kernel_size: [1, 3], stride: [1, 2]}\n"
             "- {type: conv2d, name: c2, in_channels: 64, out_channels: 64, kernel_size: [1, 3], stride: [1, 2]}\n"
             "- {type: relu}\n"
             "- {type: conv2d, from: c1, in_channels: 64, out_channels: 64, kernel_size: 1, stride: [1, 2]}\n"
             "- {type: relu}\n"
             "- {type: tanh}\n"
             "- {type: concat, name: dec.2, from: [3, 6], dim: 1}\n",
             {"layer 7 'dec.2' (concat", "shapes [4,64,99,19] and [4,64,99,20] differ in dim 3"}},
    /* 8 */ {CONV("a") "- {type: conv2d, name: b, in_channels: 8, out_channels: 1, kernel_size: 1}\n",
             {"layer 1 'b' (conv2d", "the input [4,4,99,161] has 4 channels but in_channels is 8"}},
    /* 9 */ {"- {type: linear, name: fc, in_features: 160, out_features: 161}\n",
             {"layer 0 'fc' (linear", "[4,1,99,161] has 161 features in its last dim but in_features is 160"}},
    /* 10 */ {"- {type: lstm, name: rnn, input_size: 161, hidden_size: 8}\n",
              {"layer 0 'rnn' (lstm", "the input has 4 dims; this layer takes [batch, time, features]"}},
    /* 11 */ {"- {type: linear, name: fc, in_features: 161, out_features: 80}\n",
              {"the model's output (layer 0 'fc') is [4,1,99,80]; it must have the input's shape [4,1,99,161]"}},
    /* 12 */ {"- {type: conv_transpose2d, name: d, in_channels: 1, out_channels: 1, kernel_size: 3, stride: [1, 2], "
              "output_padding: [0, 2]}\n",
              {"layer 0 'd' (conv_transpose2d", "output_padding = (0, 2) must be >= 0 and smaller than stride = (1, 2)"}},
    /* 13 */ {"- {type: permute, dims: [0, 2, 1, 3]}\n- {type: flatten, start_dim: 2}\n"
              "- {type: transformer_encoder_layer, name: t, d_model: 161, nhead: 3}\n",
              {"layer 2 't' (transformer_encoder_layer", "nhead = 3 does not divide d_model = 161"}},
    /* 14 */ {"- {type: permute, dims: [0, 2, 1, 3]}\n- {type: flatten, start_dim: 2}\n"
              "- {type: lstm, name: rnn, input_size: 161, hidden_size: 8, bidirectional: true}\n",
              {"layer 2 'rnn' (lstm)", "bidirectional = true is not supported"}},
    /* 15 */ {"- {type: permute, dims: [0, 2, 2, 3]}\n", {"layer 0 '0' (permute", "dims is not a permutation of 0..3"}},
    /* 16 */ {CONV("a") "- {type: concat, from: a, dim: 1}\n", {"layer 1 '1' (concat", "needs at least two inputs"}},
    /* 17 */ {"- {type: conv2d, in_channels: 1, out_channels: 4, kernel_size: abc}\n",
              {"kernel_size: expected an integer or a list of them, got 'abc'"}},
    /* 18 */ {CONV("enc") CONV("enc.0"), {"layer 1 'enc.0' (conv2d", "nests inside 'enc' (layer 0), which has parameters"}},
    /* 19 */ {"- {type: reshape, shape: [0, 0, 10, -1]}\n", {"layer 0 '0' (reshape", "has 63756 elements, which shape does not hold"}},
    /* 20 */ {"- {type: slice, dim: 2, start: 99}\n", {"layer 0 '0' (slice", "leave nothing of dim 2 (size 99)"}},
    /* 21 */ {"- {type: conv2d, name: big, in_channels: 1, out_channels: 1, kernel_size: [200, 3]}\n",
              {"layer 0 'big' (conv2d", "kernel_size = (200, 3) is out of range"}},
    /* 22 */ {"- {type: slice, dim: 2, start: 0, end: 2}\n"
              "- {type: conv2d, name: big, in_channels: 1, out_channels: 1, kernel_size: 3}\n",
              {"layer 1 'big' (conv2d", "kernel_size (3, 3) is larger than the padded input (2 x 161)"}},
    /* 23 */ {"- {type: conv2d, in_channels: 1, out_channels: 4, kernel_size: 3, kernel_size: 1}\n", {"argument 'kernel_size' appears twice"}},
    /* 24 */ {"- {type: add, from: [input, 5]}\n", {"layer 0 '0' (add)", "from: 5 refers to layer 5"}},
    /* 25 */ {"- {type: gru, input_size: 161, hiden_size: 8}\n", {"unknown argument 'hiden_size'; did you mean 'hidden_size'?"}},
    /* 26 */ {"[]\n", {"model.layers is empty"}},
};

static void test_bad_descriptions(void **st) {
    (void)st;
    int n = (int)(sizeof k_bad / sizeof k_bad[0]);
    for (int i = 0; i < n; i++) {
        sn_status s = try_desc(k_bad[i].yaml);
        const char *msg = sn_last_error();
        if (s == SN_OK) fail_msg("bad case %d was accepted:\n%s", i, k_bad[i].yaml);
        for (int k = 0; k < 3 && k_bad[i].needle[k]; k++)
            if (!strstr(msg, k_bad[i].needle[k]))
                fail_msg("bad case %d: message\n  %s\nlacks\n  %s", i, msg, k_bad[i].needle[k]);
        print_message("%2d: %s\n", i, msg);
    }
    assert_true(n >= 15);
}

/* the config around the list: file:line of the model file, name/list consistency */
static void test_config_errors(void **st) {
    (void)st;
    sn_config *c = malloc(sizeof *c);
    sn_config_defaults(c);
    assert_int_equal(sn_config_from_yaml_string("model:\n  name: graph\n", "c.yaml", c), SN_OK);
    assert_int_equal(sn_config_validate(c), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "no layers are given"));
    assert_int_equal(sn_config_from_yaml_string("model:\n  layers:\n    - {type: relu}\n  name: crn\n", "c.yaml", c), SN_OK);
    assert_int_equal(sn_config_validate(c), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "set model.name: graph"));
    assert_int_equal(sn_config_from_yaml_string("model:\n  name: graph\n  layers:\n    - {type: relu}\n"
                                                "    - {type: lstn, input_size: 3}\n", "c.yaml", c), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "c.yaml:5: layer 1: unknown type 'lstn'; did you mean 'lstm'?"));
    assert_int_equal(sn_config_override(c, "model.file=/nonexistent/m.yaml"), SN_ERR_IO);
    assert_non_null(strstr(sn_last_error(), "cannot open model.file '/nonexistent/m.yaml'"));
    assert_int_equal(sn_config_override(c, "model.output=maks"), SN_ERR_CONFIG);
    /* the built-in CRN still takes model.layers as a number */
    sn_config_defaults(c);
    SN_ASSERT_OK(sn_config_override(c, "model.layers=3"));
    assert_int_equal(c->model.layers, 3);
    SN_ASSERT_OK(sn_config_override(c, "model.layers=[{type: relu}]"));
    assert_string_equal(c->model.name, "graph");
    assert_int_equal(c->model.graph.n, 1);
    free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_order),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_descriptions),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_crn_lstm_proj),
        cmocka_unit_test(test_crn_gru),
        cmocka_unit_test(test_crn_attention),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_reasons),
        cmocka_unit_test(test_crn_yaml_equals_builtin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
