/* Causal multi-head self-attention: float64 reference of nn.MultiheadAttention,
 * finite-difference gradients of every input, bad input. */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int B, T, E, heads; bool causal; } cfg;

/* p[0..4] = x, in_w, in_b, out_w, out_b; returns sum(y * R) */
static double attn_ref(cfg c, double *const *p, const double *R, double *y) {
    int B = c.B, T = c.T, E = c.E, d = E / c.heads;
    const double *x = p[0], *iw = p[1], *ib = p[2], *ow = p[3], *ob = p[4];
    double *qkv = malloc(sizeof(double) * B * T * 3 * E), *ctx = calloc((size_t)B * T * E, sizeof(double));
    double *s = malloc(sizeof(double) * T);
    for (int r = 0; r < B * T; r++)
        for (int o = 0; o < 3 * E; o++) {
            double a = ib[o];
            for (int e = 0; e < E; e++) a += x[r * E + e] * iw[o * E + e];
            qkv[r * 3 * E + o] = a;
        }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < c.heads; h++)
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    double a = 0;
                    for (int k = 0; k < d; k++)
                        a += qkv[(b * T + i) * 3 * E + h * d + k] * qkv[(b * T + j) * 3 * E + E + h * d + k];
                    s[j] = (c.causal && j > i) ? -INFINITY : a / sqrt((double)d);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < T; j++) sum += (s[j] = exp(s[j] - mx));
                for (int j = 0; j < T; j++)
                    for (int k = 0; k < d; k++)
                        ctx[(b * T + i) * E + h * d + k] += s[j] / sum * qkv[(b * T + j) * 3 * E + 2 * E + h * d + k];
            }
    double L = 0;
    for (int r = 0; r < B * T; r++)
        for (int o = 0; o < E; o++) {
            double a = ob[o];
            for (int e = 0; e < E; e++) a += ctx[r * E + e] * ow[o * E + e];
            if (y) y[r * E + o] = a;
            L += a * R[r * E + o];
        }
    free(qkv), free(ctx), free(s);
    return L;
}

static double *to_d(const float *f, int64_t n) {
    double *d = malloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

static void check_attention(cfg c) {
    sn_ctx *ctx = sn_ctx_new();
    sn_backend *be = sn_cpu_backend_new(2);
    uint64_t seed = 99 + c.T + c.heads;
    int64_t E = c.E;
    uint32_t fl = SN_FLAG_PARAM | SN_FLAG_NEEDS_GRAD;
    sn_tensor *t[5] = {
        sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){c.B, c.T, E}, SN_FLAG_NEEDS_GRAD, "x"),
        sn_new_2d(ctx, 3 * E, E, fl, "in_proj_weight"), sn_new_1d(ctx, 3 * E, fl, "in_proj_bias"),
        sn_new_2d(ctx, E, E, fl, "out_proj.weight"),    sn_new_1d(ctx, E, fl, "out_proj.bias"),
    };
    double *p[5];
    for (int i = 0; i < 5; i++) p[i] = to_d(sn_test_leaf(t[i], &seed, -0.7f, 0.7f), sn_nelem(t[i]));
    sn_tensor *dy = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){c.B, c.T, E}, 0, "dy");
    int64_t ny = sn_nelem(dy);
    double *R = to_d(sn_test_leaf(dy, &seed, -1, 1), ny);
    sn_tensor *y = sn_attention(ctx, t[0], t[1], t[2], t[3], t[4], c.heads, c.causal);
    assert_non_null(y);
    sn_tensor *dsrc[5] = {0};
    SN_ASSERT_OK(sn_grad_attention(ctx, y, dy, dsrc));
    SN_ASSERT_OK(sn_test_eval(ctx, be));
    double *yd = malloc(sizeof(double) * ny);
    attn_ref(c, p, R, yd);
    assert_true(sn_test_rel_err(y->data, yd, ny, 1e-2) < 1e-5);
    for (int i = 0; i < 5; i++) {
        int64_t n = sn_nelem(t[i]);
        double *g = malloc(sizeof(double) * n), scale = 1e-3, m = 0;
        for (int64_t k = 0; k < n; k++) {
            double s = p[i][k], h = 1e-6;
            p[i][k] = s + h;
            double lp = attn_ref(c, p, R, NULL);
            p[i][k] = s - h;
            double lm = attn_ref(c, p, R, NULL);
            p[i][k] = s;
            g[k] = (lp - lm) / (2 * h);
            scale = fmax(scale, fabs(g[k]));
        }
        const float *a = dsrc[i]->data;
        for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(a[k] - g[k]) / scale);
        if (!(m < 1e-4)) fail_msg("attention grad of src %d: rel err %g", i, m);
        free(g);
    }
    for (int i = 0; i < 5; i++) free(p[i]);
    free(R), free(yd);
    sn_test_free_data(ctx);
    sn_ctx_free(ctx);
    sn_backend_free(be);
}

static void test_attention_causal(void **s) { check_attention((cfg){2, 5, 8, 2, true}); }
static void test_attention_full(void **s) { check_attention((cfg){2, 5, 8, 2, false}); }
static void test_attention_odd(void **s) { check_attention((cfg){3, 7, 9, 3, true}); }
static void test_attention_one_head(void **s) { check_attention((cfg){1, 4, 6, 1, true}); }

static void test_attention_bad_input(void **s) {
    sn_ctx *ctx = sn_ctx_new();
    int64_t E = 8;
    sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, (int64_t[]){2, 5, E}, 0, "x");
    sn_tensor *iw = sn_new_2d(ctx, 3 * E, E, 0, "iw"), *ib = sn_new_1d(ctx, 3 * E, 0, "ib");
    sn_tensor *ow = sn_new_2d(ctx, E, E, 0, "ow"), *ob = sn_new_1d(ctx, E, 0, "ob");
    assert_non_null(sn_attention(ctx, x, iw, ib, ow, ob, 2, true));
    assert_null(sn_attention(ctx, x, iw, ib, ow, ob, 3, true));
    assert_non_null(strstr(sn_last_error(), "attention"));
    assert_non_null(strstr(sn_last_error(), "3 heads do not divide the embed dim 8"));
    assert_null(sn_attention(ctx, x, iw, ib, ow, ob, 0, true));
    assert_non_null(strstr(sn_last_error(), "heads"));
    assert_null(sn_attention(ctx, x, ow, ib, ow, ob, 2, true));
    assert_non_null(strstr(sn_last_error(), "in_proj_weight must be [24,8]"));
    assert_null(sn_attention(ctx, x, iw, ob, ow, ob, 2, true));
    assert_non_null(strstr(sn_last_error(), "in_proj_bias must be [24]"));
    assert_null(sn_attention(ctx, x, iw, ib, iw, ob, 2, true));
    assert_non_null(strstr(sn_last_error(), "out_proj.weight must be [8,8]"));
    assert_null(sn_attention(ctx, x, iw, ib, ow, ib, 2, true));
    assert_non_null(strstr(sn_last_error(), "out_proj.bias must be [8]"));
    sn_tensor *x2 = sn_new_2d(ctx, 5, E, 0, "x2d");
    assert_null(sn_attention(ctx, x2, iw, ib, ow, ob, 2, true));
    assert_non_null(strstr(sn_last_error(), "batch, time, embed"));
    sn_clear_error();
    assert_null(sn_attention(ctx, x, iw, NULL, ow, ob, 2, true));
    assert_non_null(strstr(sn_last_error(), "attention"));
    sn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_causal),   cmocka_unit_test(test_attention_full),
        cmocka_unit_test(test_attention_odd),      cmocka_unit_test(test_attention_one_head),
        cmocka_unit_test(test_attention_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
