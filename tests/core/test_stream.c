/* Streaming CRN inference (stream.h): chunked output with carried state equals
 * whole-sequence inference, for the LSTM and the GRU model; bad arguments. */
#include "sn_test.h"
#include "sinter/stream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define B 2
#define T 37
#define TC 8
#define F 161

/* A tiny CRN with random weights and non-trivial BatchNorm running statistics. */
static sn_model *tiny(sn_backend *cpu, sn_rnn_kind kind, uint64_t seed) {
    sn_crn_config c;
    sn_crn_config_default(&c);
    c.rnn = kind;
    c.hidden = 32;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(c.channels, ch, sizeof ch);
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_new(&c, cpu, &m));
    SN_ASSERT_OK(sn_model_init(m, seed));
    uint64_t rs = seed + 7;
    for (int i = 0; i < m->n; i++) {
        const char *nm = m->t[i]->name;
        int mean = strstr(nm, "running_mean") != NULL, var = strstr(nm, "running_var") != NULL;
        if (!mean && !var) continue;
        int64_t n = sn_nelem(m->t[i]);
        float *v = sn_test_rand_new(n, &rs, mean ? -0.3f : 0.5f, mean ? 0.3f : 1.5f);
        SN_ASSERT_OK(sn_tensor_set(m->t[i], v, n));
        free(v);
    }
    return m;
}

/* dev: where the model and both graphs run (the CPU, or a GPU with CPU fallback) */
static void check_kind_on(sn_rnn_kind kind, sn_backend *dev) {
    sn_backend *cpu = sn_cpu_backend_new(0);
    if (!dev) dev = cpu;
    sn_model *m = tiny(dev, kind, 11);
    uint64_t seed = 3;
    float *x = sn_test_rand_new((int64_t)B * T * F, &seed, 0.0f, 2.0f);
    float *whole = calloc((size_t)B * T * F, sizeof(float));
    float *streamed = calloc((size_t)B * T * F, sizeof(float));
    float *cx = malloc(sizeof(float) * B * TC * F), *cy = malloc(sizeof(float) * B * TC * F);
    sn_infer *inf = NULL;
    SN_ASSERT_OK(sn_infer_new(m, dev, cpu, B, T, &inf));
    SN_ASSERT_OK(sn_infer_run(inf, x, whole));
    sn_stream *s = NULL;
    SN_ASSERT_OK(sn_stream_new(m, dev, cpu, B, TC, &s));
    for (int pass = 0; pass < 2; pass++) { /* the second pass checks sn_stream_reset */
        SN_ASSERT_OK(sn_stream_reset(s));
        for (int t0 = 0; t0 < T; t0 += TC) {
            int n = T - t0 < TC ? T - t0 : TC;
            for (int b = 0; b < B; b++)
                memcpy(cx + (int64_t)b * n * F, x + ((int64_t)b * T + t0) * F, sizeof(float) * n * F);
            SN_ASSERT_OK(sn_stream_run(s, cx, n, cy));
            for (int b = 0; b < B; b++)
                memcpy(streamed + ((int64_t)b * T + t0) * F, cy + (int64_t)b * n * F, sizeof(float) * n * F);
        }
        double maxd = 0, maxv = 0;
        for (int64_t i = 0; i < (int64_t)B * T * F; i++) {
            double d = fabs((double)whole[i] - streamed[i]);
            if (d > maxd) maxd = d;
            if (fabs(whole[i]) > maxv) maxv = fabs(whole[i]);
        }
        print_message("%s on %s, pass %d: max |whole - streamed| = %.3g (max |y| = %.3g)\n", sn_rnn_kind_name(kind), sn_backend_name(dev), pass,
                      maxd, maxv);
        assert_true(maxv > 1e-3); /* a non-trivial output */
        assert_true(maxd <= 1e-5);
    }
    sn_stream_free(s);
    sn_infer_free(inf);
    sn_model_free(m);
    sn_backend_free(cpu);
    free(x), free(whole), free(streamed), free(cx), free(cy);
}

static void test_lstm_stream_equals_whole(void **st) { check_kind_on(SN_RNN_LSTM, NULL); }
static void test_gru_stream_equals_whole(void **st) { check_kind_on(SN_RNN_GRU, NULL); }

/* The same on the first device of every other backend (state tensors live there). */
static void test_stream_devices(void **st) {
    int ran = 0;
    for (int r = 0; r < sn_backend_reg_count(); r++) {
        const sn_backend_reg *reg = sn_backend_reg_get(r);
        if (!strcmp(reg->kind, "cpu") || reg->count() == 0) continue;
        sn_backend *dev = NULL;
        SN_ASSERT_OK(reg->open(0, 0, &dev));
        check_kind_on(SN_RNN_LSTM, dev);
        check_kind_on(SN_RNN_GRU, dev);
        sn_backend_free(dev);
        ran++;
    }
    if (!ran) skip();
}

static void test_errors(void **st) {
    sn_backend *cpu = sn_cpu_backend_new(1);
    sn_model *m = tiny(cpu, SN_RNN_LSTM, 1);
    sn_stream *s = NULL;
    assert_int_equal(sn_stream_new(NULL, cpu, cpu, 1, 4, &s), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stream_new(m, cpu, cpu, 0, 4, &s), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stream_new(m, cpu, cpu, 1, 0, &s), SN_ERR_INVALID_ARG);
    assert_null(s);
    SN_ASSERT_OK(sn_stream_new(m, cpu, NULL, 1, 4, &s));
    float x[5 * F] = {0}, y[5 * F];
    assert_int_equal(sn_stream_run(s, x, 5, y), SN_ERR_INVALID_ARG);
    assert_non_null(strstr(sn_last_error(), "1..4"));
    assert_int_equal(sn_stream_run(s, x, 0, y), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_stream_run(s, NULL, 1, y), SN_ERR_INVALID_ARG);
    SN_ASSERT_OK(sn_stream_run(s, x, 3, y));
    assert_int_equal(sn_stream_reset(NULL), SN_ERR_INVALID_ARG);
    sn_stream_free(s);
    sn_stream_free(NULL);
    sn_model_free(m);

    sn_crn_config c;
    sn_crn_config_default(&c);
    c.rnn = SN_RNN_ATTENTION;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(c.channels, ch, sizeof ch);
    SN_ASSERT_OK(sn_crn_new(&c, cpu, &m));
    assert_int_equal(sn_stream_new(m, cpu, cpu, 1, 4, &s), SN_ERR_UNSUPPORTED);
    assert_non_null(strstr(sn_last_error(), "attention"));
    sn_model_free(m);
    sn_backend_free(cpu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lstm_stream_equals_whole),
        cmocka_unit_test(test_gru_stream_equals_whole),
        cmocka_unit_test(test_stream_devices),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
