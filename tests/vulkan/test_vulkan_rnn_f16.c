/* The Vulkan LSTM/GRU step kernels with f16 recurrent weights (src/backends/vulkan/rnn.c
 * rnn_w16_forms: train.mixed_precision f16 reads W_hh, and W_hh^T backward, as f16 with f32
 * accumulation), forward and backward, in the plain and the layer-wavefront forms of the
 * j2s32 variant (set here unless the environment names another: ctest runs it with j4s32r,
 * the GPUs' default, which has no wavefront form and runs its plain one there too):
 *  - f32 mode with SN_VK_RNN_F16W=1 (f16 weights, every GEMM f32) against the CPU given
 *    W_hh rounded to f16 (nearest-even, as packHalf2x16 does on lavapipe and NVIDIA): equal
 *    to f32 rounding, so the kernels compute exactly the f16-weight recurrence; against the
 *    CPU with the exact W_hh: off by the f16 rounding of W_hh (2^-11 relative per weight,
 *    ~1e-4 on these outputs; under F16W_TOL) and by more than f32 rounding (the f16 path
 *    ran);
 *  - f32 mode as it is (no SN_VK_RNN_F16W): at f32 rounding of the CPU (unchanged);
 *  - f16 mode (needs cooperative matrices, or SN_VK_COOP=emulate as ctest runs it on
 *    lavapipe): within the f16 GEMMs' tolerance of the CPU's f32, and off the same mode with
 *    SN_VK_RNN_F16W=0 by more than f32 rounding and at most F16W_TOL (f16 mode takes the f16
 *    weights by default); the *_serial kernels (CPU drivers' default) keep f32 weights in
 *    f16 mode: bit-identical to SN_VK_RNN_F16W=0.
 * Without f16 mode on the device the last part is skipped (the rest still runs).
 * Standalone: build/test_vulkan_rnn_f16; SN_VK_DEVICE=N picks the device (default 0). */
#include "sn_parity.h"
#include "core/core.h"
#ifdef SN_HAVE_VULKAN
#include "backends/vulkan/vk.h" /* shader ids and dispatch counts: which forms ran */
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SN_HAVE_VULKAN

static sn_backend *g_cpu, *g_vk;
static int g_dev;
static bool g_f16; /* the device runs f16 mode */

#define F32_TOL 1e-5  /* Vulkan vs CPU in f32: summation order only (~1e-6 here) */
#define F16_MIN 2e-5  /* f16 W_hh moves these outputs by ~1e-4: above this, the f16 path ran */
#define F16W_TOL 2e-3 /* f16 W_hh: each weight off by <= 2^-11 relative, sums of H of them */
#define GEMM16_TOL 1e-2 /* f16 GEMM operands (test_vulkan_coopmat's families) */

/* f rounded to the nearest f16 (ties to even; subnormals below 2^-14), |f| < 65504 */
static float f16_round(float f) {
    if (f == 0.0f) return f;
    int e;
    frexp(f, &e); /* |f| in [2^(e-1), 2^e) */
    int q = e - 1 < -14 ? -24 : e - 1 - 10; /* the f16 quantum at |f|: 11 significant bits */
    return (float)ldexp(nearbyint(ldexp((double)f, -q)), q);
}

typedef struct {
    sn_ctx *c;
    sn_tensor *w_hh[4];
    float *orig[4]; /* their exact values */
    int L;
} rnn_case;

static rnn_case make_case(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H, int L) {
    rnn_case k = {sn_ctx_new(), {0}, {0}, L};
    int64_t G = lstm ? 4 : 3;
    double ws = 0.4 * sqrt(8.0 / (double)H); /* gates out of saturation at any H */
    sn_tensor *x = LEAF(k.c, -1, 1, "x", B, T, I), *w[16];
    assert_true(L >= 1 && L <= 4);
    for (int l = 0; l < L; l++) {
        w[4 * l] = LEAF(k.c, -ws, ws, "w_ih", G * H, l == 0 ? I : H);
        w[4 * l + 1] = k.w_hh[l] = LEAF(k.c, -ws, ws, "w_hh", G * H, H);
        w[4 * l + 2] = LEAF(k.c, -0.4, 0.4, "b_ih", G * H);
        w[4 * l + 3] = LEAF(k.c, -0.4, 0.4, "b_hh", G * H);
        size_t bytes = (size_t)sn_nelem(k.w_hh[l]) * sizeof(float);
        k.orig[l] = malloc(bytes);
        memcpy(k.orig[l], k.w_hh[l]->data, bytes);
    }
    sn_tensor *r = lstm ? sn_lstm(k.c, x, L, (int)H, w) : sn_gru(k.c, x, L, (int)H, w);
    grads(k.c, r, sn_grad_rnn);
    return k;
}

static void free_case(rnn_case *k) {
    for (int l = 0; l < k->L; l++) free(k->orig[l]);
    sn_test_free_data(k->c);
    sn_ctx_free(k->c);
}

static void free_res(sn_ctx *c, float **res) {
    for (int i = 0; i < sn_ctx_count(c); i++) free(res[i]);
    free(res);
}

/* every op node of the case on the Vulkan backend; the downloaded buffers (sn_par_unbind) */
static float **run_vk(rnn_case *k) {
    sn_par_devmap m;
    sn_par_bind(g_vk, k->c, &m);
    for (int i = 0; i < sn_ctx_count(k->c); i++) {
        sn_tensor *t = sn_ctx_tensor(k->c, i);
        if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) continue;
        if (g_vk->i->compute(g_vk, &t, 1, NULL) != SN_OK) fail_msg("Vulkan %s: %s", t->name, sn_last_error());
    }
    return sn_par_unbind(g_vk, k->c, &m);
}

/* the same on the CPU with W_hh rounded to f16 (round) or exact; buffers laid out as run_vk's */
static float **run_cpu(rnn_case *k, bool round) {
    for (int l = 0; l < k->L; l++) {
        float *w = k->w_hh[l]->data;
        for (int64_t i = 0; i < sn_nelem(k->w_hh[l]); i++) w[i] = round ? f16_round(k->orig[l][i]) : k->orig[l][i];
    }
    SN_ASSERT_OK(sn_test_eval(k->c, g_cpu));
    int n = sn_ctx_count(k->c);
    float **res = calloc((size_t)n, sizeof *res);
    for (int i = 0; i < n; i++) { /* take the op nodes' buffers: the next eval starts afresh (and
                                    * sn_test_free_data frees a NULL) */
        sn_tensor *t = sn_ctx_tensor(k->c, i);
        if (t->op == SN_OP_NONE) continue;
        if (!t->view_src) res[i] = t->data;
        t->data = NULL;
    }
    return res;
}

/* the largest error of a against ref over every output and saved state (sn_par_check's
 * measure), *worst naming where */
static double max_err(sn_ctx *c, float **a, float **ref, const char **worst) {
    double m = 0;
    *worst = "-";
    for (int i = 0; i < sn_ctx_count(c); i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE || sn_par_is_packed(t->op)) continue;
        double e = sn_par_nerr(sn_par_res_of(a, t), sn_par_res_of(ref, t), sn_nelem(t));
        if (t->extra && !t->view_src) {
            int64_t off = sn_align64(sn_nelem(t)), ne = (int64_t)(t->extra / sizeof(float));
            double ee = sn_par_nerr(sn_par_res_of(a, t) + off, sn_par_res_of(ref, t) + off, ne);
            if (!(ee <= e)) e = ee;
        }
        if (!(e <= m)) m = e, *worst = t->name; /* NaN sticks */
    }
    return m;
}

static bool same_bits(sn_ctx *c, float **a, float **b) {
    for (int i = 0; i < sn_ctx_count(c); i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE || t->view_src) continue;
        if (memcmp(a[i], b[i], sn_alloc_bytes(t))) return false;
    }
    return true;
}

static void check_le_at(const char *what, double e, const char *where, double tol) {
    printf("    %-44s %.2e (%s) <= %.0e\n", what, e, where, tol);
    if (!(e <= tol)) fail_msg("%s: error %.3g at %s > %.3g", what, e, where, tol);
}

static void check_gt_at(const char *what, double e, const char *where, double floor) {
    printf("    %-44s %.2e (%s) > %.0e\n", what, e, where, floor);
    if (!(e > floor)) fail_msg("%s: error %.3g at %s is not above %.3g: the f16 weights were not read", what, e,
                               where, floor);
}

/* max_err(a, ref) within tol / above floor (the error first: it sets where) */
static void check_le(const char *what, sn_ctx *c, float **a, float **ref, double tol) {
    const char *where;
    double e = max_err(c, a, ref, &where);
    check_le_at(what, e, where, tol);
}
static void check_gt(const char *what, sn_ctx *c, float **a, float **ref, double floor) {
    const char *where;
    double e = max_err(c, a, ref, &where);
    check_gt_at(what, e, where, floor);
}

/* run_vk, and with compute timestamps (SN_PROFILE level 3 counts dispatches per shader)
 * that it took the f16-weight forms (w16) or not: the conversion and the step kernels of
 * the plain or the wavefront form */
static float **run_vk_forms(rnn_case *k, bool lstm, bool w16) {
    /* SN_VK_RNN_PERSIST=1 (ctest vulkan/test_vulkan_rnn_f16:persist): the persistent forms,
     * which take precedence over the wavefront */
    const char *pe = getenv("SN_VK_RNN_PERSIST");
    bool persist = pe && !strcmp(pe, "1");
    bool wave = getenv("SN_VK_RNN_WAVE") && k->L > 1 && !persist;
    const char *variant = getenv("SN_VK_RNN_VARIANT");
    bool r2 = !strcmp(variant, "j4s32r");
    int sh[3] = {SN_VK_SH_RNN_W16,
                 r2 ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_V_J4S32RH : SN_VK_SH_RNN_GRU_STEP_V_J4S32RH)
                 : persist ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_PERSIST_J2S32H : SN_VK_SH_RNN_GRU_STEP_PERSIST_J2S32H)
                 : wave  ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_WAVE_J2S32H : SN_VK_SH_RNN_GRU_STEP_WAVE_J2S32H)
                         : (lstm ? SN_VK_SH_RNN_LSTM_STEP_V_J2S32H : SN_VK_SH_RNN_GRU_STEP_V_J2S32H),
                 r2 ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_BWD_V_J4S32RH : SN_VK_SH_RNN_GRU_STEP_BWD_V_J4S32RH)
                 : persist ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_BWD_PERSIST_J2S32H : SN_VK_SH_RNN_GRU_STEP_BWD_PERSIST_J2S32H)
                 : wave  ? (lstm ? SN_VK_SH_RNN_LSTM_STEP_BWD_WAVE_J2S32H : SN_VK_SH_RNN_GRU_STEP_BWD_WAVE_J2S32H)
                         : (lstm ? SN_VK_SH_RNN_LSTM_STEP_BWD_V_J2S32H : SN_VK_SH_RNN_GRU_STEP_BWD_V_J2S32H)};
    bool count = sn_vk_has_timestamps(g_vk->ctx) && (r2 || !strcmp(variant, "j2s32"));
    long before[3];
    for (int i = 0; i < 3; i++) before[i] = sn_vk_prof_dispatches(sh[i]);
    if (count) sn_backend_set_profile(g_vk, 3);
    float **res = run_vk(k);
    if (count) {
        sn_backend_set_profile(g_vk, 0);
        for (int i = 0; i < 3; i++)
            if ((sn_vk_prof_dispatches(sh[i]) > before[i]) != w16)
                fail_msg("shader %s %s", sn_vk_shaders[sh[i]].name, w16 ? "did not run" : "ran");
    }
    return res;
}

static void run_case(bool lstm, int64_t B, int64_t T, int64_t I, int64_t H, int L) {
    printf("  %s B=%lld T=%lld I=%lld H=%lld layers=%d%s\n", lstm ? "lstm" : "gru", (long long)B, (long long)T,
           (long long)I, (long long)H, L, getenv("SN_VK_RNN_WAVE") ? " (wavefront)" : "");
    rnn_case k = make_case(lstm, B, T, I, H, L);
    float **r16 = run_cpu(&k, true), **r32 = run_cpu(&k, false);
    /* f32 mode (the backend opens in it) */
    SN_ASSERT_OK(sn_backend_set_precision(g_vk, &(sn_precision){0}));
    setenv("SN_VK_RNN_F16W", "1", 1);
    float **w16 = run_vk_forms(&k, lstm, true);
    unsetenv("SN_VK_RNN_F16W");
    float **f32 = run_vk_forms(&k, lstm, false);
    check_le("f32 mode, f16 W_hh vs CPU with f16 W_hh", k.c, w16, r16, F32_TOL);
    check_le("f32 mode, f16 W_hh vs CPU", k.c, w16, r32, F16W_TOL);
    check_gt("f32 mode, f16 W_hh vs CPU", k.c, w16, r32, F16_MIN);
    check_le("f32 mode vs CPU", k.c, f32, r32, F32_TOL);
    if (g_f16) {
        SN_ASSERT_OK(sn_backend_set_precision(g_vk, &(sn_precision){.f16 = true}));
        float **m16 = run_vk_forms(&k, lstm, true);
        setenv("SN_VK_RNN_F16W", "0", 1);
        float **m32 = run_vk_forms(&k, lstm, false);
        unsetenv("SN_VK_RNN_F16W");
        check_le("f16 mode vs CPU in f32", k.c, m16, r32, GEMM16_TOL);
        check_le("f16 mode vs f16 mode with f32 W_hh", k.c, m16, m32, F16W_TOL);
        check_gt("f16 mode vs f16 mode with f32 W_hh", k.c, m16, m32, F16_MIN);
        /* the serial kernels keep f32 weights in f16 mode */
        const char *was = getenv("SN_VK_RNN");
        char keep[16];
        snprintf(keep, sizeof keep, "%s", was ? was : "");
        setenv("SN_VK_RNN", "serial", 1);
        float **s16 = run_vk(&k);
        setenv("SN_VK_RNN_F16W", "0", 1);
        float **s32 = run_vk(&k);
        unsetenv("SN_VK_RNN_F16W");
        if (keep[0]) setenv("SN_VK_RNN", keep, 1);
        else unsetenv("SN_VK_RNN");
        printf("    f16 mode, serial kernels: %s\n", same_bits(k.c, s16, s32) ? "f32 weights (as documented)" : "DIFFER");
        if (!same_bits(k.c, s16, s32)) fail_msg("the serial kernels changed with SN_VK_RNN_F16W in f16 mode");
        SN_ASSERT_OK(sn_backend_set_precision(g_vk, &(sn_precision){0}));
        free_res(k.c, m16), free_res(k.c, m32), free_res(k.c, s16), free_res(k.c, s32);
    }
    free_res(k.c, w16), free_res(k.c, f32), free_res(k.c, r16), free_res(k.c, r32);
    free_case(&k);
}

/* the vec4 (quad of halves) loads: H a multiple of 4, 3 layers (the wavefront's diagonal,
 * T past a chunk of 4), a batch over 8 (two passes); the scalar loads: H = 13 (GRU: an odd
 * count of weights, the last word half padding) */
static void cases(void) {
    for (int lstm = 1; lstm >= 0; lstm--) {
        run_case(lstm, 3, 11, 5, 24, 3);
        run_case(lstm, 9, 5, 4, 13, 2);
    }
}

static void test_plain(void **st) {
    (void)st;
    unsetenv("SN_VK_RNN_WAVE");
    cases();
    /* rows long enough for the unrolled loop of 4 weight loads (forward 193 quads over 32
     * slices, backward 772 over 128) */
    run_case(true, 1, 3, 3, 772, 1);
    run_case(false, 1, 3, 3, 772, 1);
}

static void test_wave(void **st) {
    (void)st;
    setenv("SN_VK_RNN_WAVE", "1", 1);
    cases();
    unsetenv("SN_VK_RNN_WAVE");
}

int main(void) {
    int rc = sn_test_vk_open(&g_dev, &g_vk);
    if (rc) return rc;
    g_cpu = sn_cpu_backend_new(0);
    /* the workgroup kernels of j2s32 (CPU drivers default to the serial ones), chunks of 4 */
    setenv("SN_VK_RNN", "wg", 0);
    setenv("SN_VK_RNN_VARIANT", "j2s32", 0);
    setenv("SN_VK_RNN_WAVE_CHUNK", "4", 0);
    unsetenv("SN_VK_RNN_F16W");
    g_f16 = sn_backend_set_precision(g_vk, &(sn_precision){.f16 = true}) == SN_OK;
    if (!g_f16) printf("f16 mode unavailable (%s): its part is skipped\n", sn_last_error());
    SN_ASSERT_OK(sn_backend_set_precision(g_vk, &(sn_precision){0}));
    sn_par = (sn_parity){.dev = g_vk, .cpu = g_cpu, .name = "Vulkan", .seed = 0xf16f16ull, .claims = true};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_wave),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    sn_backend_free(g_vk);
    sn_backend_free(g_cpu);
    return r;
}

#else
#include <stdio.h>
int main(void) {
    printf("built without Vulkan: skipped\n");
    return 77;
}
#endif
