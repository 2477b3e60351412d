/* The Vulkan backend's runtime: device listing (lavapipe shows as type "cpu"), bad device
 * specs, out-of-memory refusal, transfers (staged and unified), recording and replay
 * (replayed equals re-recorded), and the op families of vk-core (binary, unary, shape,
 * loss, optim) against the CPU backend. Exits with 77 (skipped) when there is no Vulkan
 * device. SN_VK_DEVICE=N picks the device (default: the first). */
#include "sn_parity.h"
#include "core/core.h"
#include "backends/registry.h"
#ifdef SN_HAVE_VULKAN
#include "backends/vulkan/vk.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SN_HAVE_VULKAN

static sn_backend *g_cpu, *g_vk;
static int g_dev;

/* ---------------- devices ---------------- */

static void test_devices(void **st) {
    int n = sn_vulkan_reg.count();
    assert_true(n > 0);
    bool lavapipe = false;
    for (int i = 0; i < n; i++) {
        sn_device_info di;
        SN_ASSERT_OK(sn_vulkan_reg.info(i, &di));
        assert_string_equal(di.kind, "vulkan");
        assert_int_equal(di.index, i);
        assert_true(di.name[0] != 0);
        assert_true(di.type[0] != 0);
        assert_true(di.mem_total > 0);
        assert_non_null(strstr(di.features, "Vulkan 1."));
        if (strstr(di.name, "llvmpipe")) {
            lavapipe = true;
            assert_string_equal(di.type, "cpu"); /* never taken by device=auto */
        }
        printf("vulkan:%d %s [%s] %.1f MB (%.1f free) %s\n", i, di.name, di.type, di.mem_total / 1048576.0,
               di.mem_free / 1048576.0, di.features);
    }
    if (!lavapipe) printf("(lavapipe not among the Vulkan devices here)\n");
    /* listed by the registry after the CPU (and CUDA) devices */
    int total = sn_device_count();
    assert_true(total >= 1 + n);
    sn_device_info last;
    SN_ASSERT_OK(sn_device_get(total - 1, &last));
    assert_string_equal(last.kind, "vulkan");
    sn_device_info cpu;
    SN_ASSERT_OK(sn_device_get(0, &cpu));
    assert_string_equal(cpu.type, "cpu");
    /* the backend's own info and name */
    sn_device_info bi;
    SN_ASSERT_OK(g_vk->i->info(g_vk, &bi));
    assert_int_equal(bi.index, g_dev);
    char want[32];
    snprintf(want, sizeof want, "vulkan:%d", g_dev);
    assert_string_equal(sn_backend_name(g_vk), want);
}

static void test_bad_device(void **st) {
    sn_backend *b = NULL;
    assert_int_equal(sn_backend_open("vulkan:99", 0, &b), SN_ERR_DEVICE);
    assert_null(b);
    const char *e = sn_last_error();
    assert_non_null(strstr(e, "vulkan:99"));
    assert_non_null(strstr(e, "vulkan:0")); /* lists what exists */
    assert_int_equal(sn_backend_open("vulkan:x", 0, &b), SN_ERR_CONFIG);
    assert_int_equal(sn_vulkan_reg.open(-1, 0, &b), SN_ERR_DEVICE);
    assert_non_null(strstr(sn_last_error(), "does not exist"));
    sn_device_info di;
    assert_int_equal(sn_vulkan_reg.info(1000, &di), SN_ERR_INVALID_ARG);
    /* "vulkan" alone is device 0 */
    SN_ASSERT_OK(sn_backend_open("vulkan", 0, &b));
    assert_string_equal(sn_backend_name(b), "vulkan:0");
    sn_backend_free(b);
}

static void test_oom(void **st) {
    void *p = NULL;
    sn_status s = g_vk->i->alloc(g_vk, (size_t)1 << 50, &p); /* 1 PiB */
    assert_int_equal(s, SN_ERR_NOMEM);
    assert_null(p);
    const char *e = sn_last_error();
    assert_non_null(strstr(e, "vulkan:"));
    assert_non_null(strstr(e, "1125899906842624 bytes"));
    assert_non_null(strstr(e, "free"));
    assert_non_null(strstr(e, "batch"));
    /* the backend still works after the refusal */
    SN_ASSERT_OK(g_vk->i->alloc(g_vk, 1024, &p));
    g_vk->i->release(g_vk, p);
}

static void transfers_on(sn_backend *g_vk) {
    size_t nb = ((size_t)9 << 20) + 13; /* more than the 8 MB staging buffer, odd size */
    unsigned char *h = malloc(nb), *h2 = malloc(nb);
    for (size_t i = 0; i < nb; i++) h[i] = (unsigned char)(i * 131 + 7);
    void *p = NULL;
    SN_ASSERT_OK(g_vk->i->alloc(g_vk, nb + 64, &p));
    SN_ASSERT_OK(g_vk->i->upload(g_vk, p, h, nb));
    SN_ASSERT_OK(g_vk->i->download(g_vk, h2, p, nb));
    for (size_t i = 0; i < nb; i++)
        if (h2[i] != h[i]) fail_msg("upload/download: byte %zu differs", i);
    /* a sub-range at an odd offset, zeroed */
    char *q = (char *)p + 5;
    SN_ASSERT_OK(g_vk->i->fill_zero(g_vk, q, 7));
    SN_ASSERT_OK(g_vk->i->fill_zero(g_vk, (char *)p + 4096, 4096));
    SN_ASSERT_OK(g_vk->i->download(g_vk, h2, p, 8192 + 8));
    for (size_t i = 0; i < 8192 + 8; i++) {
        bool zero = (i >= 5 && i < 12) || (i >= 4096 && i < 8192);
        if (h2[i] != (zero ? 0 : h[i])) fail_msg("fill_zero: byte %zu is %d", i, h2[i]);
    }
    /* an address outside every allocation is an error, not a crash */
    assert_int_equal(g_vk->i->upload(g_vk, (void *)(uintptr_t)16, h, 4), SN_ERR_INTERNAL);
    g_vk->i->release(g_vk, p);
    free(h);
    free(h2);
}

/* unified memory where the device has it (lavapipe does), and the staged path of discrete
 * GPUs (SN_VK_STAGED=1) */
static void test_transfers(void **st) {
    transfers_on(g_vk);
    setenv("SN_VK_STAGED", "1", 1);
    sn_backend *b = NULL;
    SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
    unsetenv("SN_VK_STAGED");
    transfers_on(b);
    sn_backend_free(b);
}


/* No driver (the loader finds no ICD): zero devices, a clear error, no crash. Runs this
 * program again with VK_ICD_FILENAMES/VK_DRIVER_FILES pointing nowhere. */
static void test_no_driver(void **st) {
    char cmd[600], line[512] = "";
    snprintf(cmd, sizeof cmd,
             "VK_ICD_FILENAMES=/nonexistent/icd.json VK_DRIVER_FILES=/nonexistent/icd.json /proc/%d/exe --no-driver",
             (int)getpid());
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    int rc = pclose(f);
    assert_int_equal(rc, 0);
    if (strncmp(line, "0 devices: ", 11)) fail_msg("without a driver: %s", line);
    assert_non_null(strstr(line, "no Vulkan device found"));
}

/* ---------------- op families ---------------- */
/* (none keeps saved state: cross_check's tol_extra is 0) */

static void test_binary(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 4, 5, 6), *b = LEAF(c, -1, 1, "b", 4, 5, 6);
    sn_tensor *bb = LEAF(c, -1, 1, "bb", 5, 1), *bv = LEAF(c, -1, 1, "bv", 6), *s1 = LEAF(c, -1, 1, "s1", 1);
    sn_tensor *b3 = LEAF(c, -1, 1, "b3", 4, 1, 6);
    grads(c, sn_add(c, a, b), sn_grad_binary);
    grads(c, sn_add(c, a, bb), sn_grad_binary);
    grads(c, sn_mul(c, a, bv), sn_grad_binary);
    grads(c, sn_mul(c, a, s1), sn_grad_binary);
    grads(c, sn_mul(c, a, b3), sn_grad_binary);
    grads(c, sn_scale(c, a, -0.37f), sn_grad_binary);
    assert_non_null(sn_reduce_to(c, a, 2, (int64_t[]){5, 1}));
    assert_non_null(sn_reduce_to(c, a, 3, (int64_t[]){4, 1, 6}));
    assert_non_null(sn_reduce_to(c, a, 1, (int64_t[]){1}));
    grads(c, sn_expand(c, s1, 3, (int64_t[]){3, 4, 5}, 0.25f), sn_grad_binary);
    cross_check(c, 1e-6, 0, "binary");
    sn_ctx_free(c);
}


static void test_unary(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = LEAF(c, -3, 3, "x", 3, 7, 11), *xl = LEAF(c, -30, 30, "xl", 5, 50);
    grads(c, sn_relu(c, x), sn_grad_unary);
    grads(c, sn_elu(c, x, 1.0f), sn_grad_unary);
    grads(c, sn_elu(c, x, 0.5f), sn_grad_unary);
    grads(c, sn_softplus(c, x, 1.0f, 20.0f), sn_grad_unary);
    grads(c, sn_softplus(c, x, 2.0f, 1.5f), sn_grad_unary);
    grads(c, sn_sigmoid(c, x), sn_grad_unary);
    grads(c, sn_tanh(c, x), sn_grad_unary);
    /* large arguments: no overflow to NaN */
    grads(c, sn_tanh(c, xl), sn_grad_unary);
    grads(c, sn_sigmoid(c, xl), sn_grad_unary);
    grads(c, sn_softplus(c, xl, 1.0f, 20.0f), sn_grad_unary);
    cross_check(c, 2e-6 /* libm vs GLSL transcendental ulps */, 0, "unary");
    sn_ctx_free(c);
}

static void test_shape(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 2, 3, 5, 7), *b = LEAF(c, -1, 1, "b", 2, 4, 5, 7), *d = LEAF(c, -1, 1, "d", 2, 1, 5, 7);
    grads(c, sn_concat(c, 3, (sn_tensor *[]){a, b, d}, 1), sn_grad_shape);
    grads(c, sn_concat(c, 2, (sn_tensor *[]){a, a}, 3), sn_grad_shape);
    grads(c, sn_concat(c, 2, (sn_tensor *[]){a, a}, 0), sn_grad_shape);
    grads(c, sn_pad(c, a, (int[]){0, 0, 1, 2, 1, 0, 0, 3}), sn_grad_shape);
    grads(c, sn_slice(c, b, (int64_t[]){1, 1, 0, 2}, (int64_t[]){1, 2, 4, 5}), sn_grad_shape);
    grads(c, sn_permute(c, a, (int[]){0, 2, 1, 3}), sn_grad_shape);
    grads(c, sn_permute(c, b, (int[]){3, 0, 2, 1}), sn_grad_shape);
    grads(c, sn_copy(c, d), sn_grad_shape);
    cross_check(c, 0 /* pure data movement: exact */, 0, "shape");
    sn_ctx_free(c);
}

static void test_loss(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 3, 1, 33, 161), *b = LEAF(c, -1, 1, "b", 3, 1, 33, 161);
    sn_tensor *s2 = LEAF(c, -1, 1, "s2", 1000), *big = LEAF(c, 0, 1, "big", 5000000);
    grads(c, sn_mse(c, a, b), sn_grad_loss);
    grads(c, sn_l1(c, a, b), sn_grad_loss);
    grads(c, sn_sum(c, a), sn_grad_loss);
    grads(c, sn_mean(c, b), sn_grad_loss);
    assert_non_null(sn_sumsq(c, 3, (sn_tensor *[]){a, s2, b}));
    /* 5M terms (many partials): compensated sums stay at f32 rounding */
    assert_non_null(sn_sum(c, big));
    assert_non_null(sn_mean(c, big));
    cross_check(c, 1e-5 /* sums of 16k terms: f32 tree vs CPU order */, 0, "loss");
    sn_ctx_free(c);
}

static void test_optim(void **st) {
    sn_ctx *c = sn_ctx_new();
    int64_t n = 10007;
    sn_tensor *hyper = sn_par_hyper_leaf(c, 1e-2f, 0.9f, 0.999f, 3), *hyper1 = sn_par_hyper_leaf(c, 1e-2f, 0.9f, 0.999f, 1);
    sn_tensor *sq = LEAF(c, 40, 60, "sumsq", 1);
    for (int k = 0; k < 5; k++) {
        sn_tensor *p = LEAF(c, -1, 1, "p", n), *g = LEAF(c, -1, 1, "g", n);
        sn_tensor *m = LEAF(c, -0.1, 0.1, "m", n), *v = LEAF(c, 0, 0.01, "v", n);
        if (k == 0) assert_non_null(sn_adam(c, p, g, m, v, hyper, NULL, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, false));
        if (k == 1) assert_non_null(sn_adam(c, p, g, m, v, hyper, sq, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, true));
        if (k == 2) assert_non_null(sn_sgd(c, p, g, m, hyper, sq, 0.9f, 0.0f, 1e-4f, 1.0f, true));
        if (k == 3) assert_non_null(sn_sgd(c, p, g, m, hyper1, NULL, 0.9f, 0.0f, 0.0f, 0.0f, false));
        if (k == 4) assert_non_null(sn_adam(c, p, g, m, v, hyper, sq, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, false));
    }
    /* multi-tensor forms: params at odd offsets of a flat buffer, one dispatch each */
    static const int64_t sizes[5] = {37, 1000, 1, 4099, 256}, offs[5] = {0, 64, 1100, 1200, 5400};
    for (int k = 0; k < 4; k++) {
        sn_tensor *flat = LEAF(c, -1, 1, "flat", 5700), *m = LEAF(c, -0.1, 0.1, "m", 5700);
        sn_tensor *v = LEAF(c, 0, 0.01, "v", 5700), *ps[5], *gs[5];
        for (int i = 0; i < 5; i++) {
            ps[i] = sn_new_1d(c, sizes[i], 0, "p");
            sn_alias(ps[i], flat, offs[i]);
            gs[i] = LEAF(c, -1, 1, "g", sizes[i]);
        }
        if (k == 0) assert_non_null(sn_adam_multi(c, 5, ps, gs, m, v, hyper, NULL, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, false));
        if (k == 1) assert_non_null(sn_adam_multi(c, 5, ps, gs, m, v, hyper, sq, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, true));
        if (k == 2) assert_non_null(sn_sgd_multi(c, 5, ps, gs, m, hyper1, sq, 0.9f, 0.0f, 1e-4f, 1.0f, true));
        if (k == 3) assert_non_null(sn_sgd_multi(c, 5, ps, gs, m, hyper, NULL, 0.9f, 0.1f, 0.0f, 0.0f, false));
    }
    cross_check(c, 1e-6 /* one elementwise update */, 0, "optim");
    sn_ctx_free(c);
}


/* one ADD on backend b: y = a + a, checked */
static void add_on(sn_backend *b) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *a = LEAF(c, -1, 1, "a", 1000);
    sn_tensor *y = sn_add(c, a, a);
    sn_par_devmap m;
    sn_par_bind(b, c, &m);
    SN_ASSERT_OK(b->i->compute(b, &y, 1, NULL));
    float **res = sn_par_unbind(b, c, &m);
    const float *av = a->data;
    for (int i = 0; i < 1000; i++) assert_true(res[y->id][i] == av[i] + av[i]);
    for (int i = 0; i < m.n; i++) free(res[i]);
    free(res);
    sn_test_free_data(c);
    sn_ctx_free(c);
}

/* The pipeline cache lands in $XDG_CACHE_HOME/sinter; a corrupt or unwritable cache is harmless. */
static void test_pipeline_cache(void **st) {
    char dir[] = "/tmp/sn_vkcache_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *old = getenv("XDG_CACHE_HOME");
    char *saved = old ? strdup(old) : NULL;
    setenv("XDG_CACHE_HOME", dir, 1);
    sn_backend *b = NULL;
    SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
    add_on(b);
    sn_backend_free(b);
    char cmd[256], path[200] = "";
    snprintf(cmd, sizeof cmd, "ls %s/sinter/vk-pipelines-*.bin 2>/dev/null", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (!fgets(path, sizeof path, f)) path[0] = 0;
    pclose(f);
    path[strcspn(path, "\n")] = 0;
    if (!path[0]) fail_msg("no pipeline cache written under %s/sinter", dir);
    f = fopen(path, "wb"); /* corrupt it */
    assert_non_null(f);
    fputs("not a pipeline cache", f);
    fclose(f);
    SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
    add_on(b);
    sn_backend_free(b);
    /* an unwritable location */
    setenv("XDG_CACHE_HOME", "/proc/no/such/dir", 1);
    SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
    add_on(b);
    sn_backend_free(b);
    if (saved) setenv("XDG_CACHE_HOME", saved, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(saved);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Profiling on: per-node timestamps around the same recorded dispatches, same results;
 * level 3 times each dispatch and counts it under its shader. */
static void test_profile(void **st) {
    sn_backend *b = NULL;
    SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
    sn_backend_set_profile(b, 1);
    add_on(b);
    long before = sn_vk_prof_dispatches(SN_VK_SH_BINARY_SAME);
    sn_backend_set_profile(b, 3);
    add_on(b);
    add_on(b);
    if (sn_vk_has_timestamps(b->ctx)) assert_int_equal(sn_vk_prof_dispatches(SN_VK_SH_BINARY_SAME), before + 2);
    else print_message("no compute timestamps on this device: the per-dispatch profile stays empty\n");
    sn_backend_set_profile(b, 0);
    sn_backend_free(b);
}

/* ---------------- recording and replay ---------------- */

/* A forward+backward graph of vk-core ops run as one segment: recorded once and replayed
 * (with a new input in between) equals re-recording every call (SN_VK_RECORD=0) and the
 * eager path, bit for bit. */
static void test_replay(void **st) {
    sn_ctx *c = sn_ctx_new();
    sn_tensor *x = sn_new_4d(c, 2, 3, 5, 7, SN_FLAG_INPUT, "x"), *y = sn_new_4d(c, 2, 3, 5, 14, SN_FLAG_INPUT, "y");
    sn_tensor *w = sn_new_4d(c, 1, 3, 1, 7, SN_FLAG_PARAM, "w"), *bb = sn_new_1d(c, 7, SN_FLAG_PARAM, "b");
    for (sn_tensor **t = (sn_tensor *[]){x, y, w, bb, NULL}; *t; t++) sn_test_leaf(*t, &sn_par.seed, -1.0f, 1.0f);
    sn_tensor *h = sn_elu(c, sn_add(c, sn_mul(c, x, w), bb), 1.0f);
    sn_tensor *h2 = sn_concat(c, 2, (sn_tensor *[]){sn_tanh(c, h), sn_sigmoid(c, h)}, 3);
    sn_tensor *loss = sn_mse(c, h2, y);
    assert_non_null(loss);
    sn_graph *gr = sn_graph_new(c);
    SN_ASSERT_OK(sn_graph_add(gr, loss));
    SN_ASSERT_OK(sn_backward(gr, loss));
    sn_tensor *outs[3] = {loss, w->grad, bb->grad};
    for (int i = 0; i < 3; i++) assert_non_null(outs[i]);
    sn_tensor **nodes = calloc((size_t)gr->n, sizeof *nodes);
    int nn = 0;
    for (int i = 0; i < gr->n; i++)
        if (gr->nodes[i]->op != SN_OP_NONE) nodes[nn++] = gr->nodes[i];
    float *x2 = sn_test_rand_new(sn_nelem(x), &sn_par.seed, -1, 1);
    float *got[3][6][3];
    for (int mode = 0; mode < 3; mode++) {
        sn_backend *b = g_vk;
        if (mode == 1) { /* a backend that re-records every call */
            setenv("SN_VK_RECORD", "0", 1);
            SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
            unsetenv("SN_VK_RECORD");
        }
        if (mode == 2) { /* staged transfers, temps uploaded through the staging buffer */
            setenv("SN_VK_STAGED", "1", 1);
            SN_ASSERT_OK(sn_vulkan_reg.open(g_dev, 0, &b));
            unsetenv("SN_VK_STAGED");
        }
        sn_par_devmap m;
        sn_par_bind(b, c, &m);
        void *state = NULL;
        for (int run = 0; run < 6; run++) {
            if (run == 3) SN_ASSERT_OK(b->i->upload(b, x->data, x2, sn_nbytes(x))); /* the replay must read it */
            /* 0 records, 1.. replay; 5: eager (no state) */
            sn_status s = b->i->compute(b, nodes, nn, run == 5 ? NULL : &state);
            if (s != SN_OK) fail_msg("mode %d run %d: %s", mode, run, sn_last_error());
            for (int i = 0; i < 3; i++) {
                got[mode][run][i] = malloc(sn_nbytes(outs[i]));
                SN_ASSERT_OK(b->i->download(b, got[mode][run][i], outs[i]->data, sn_nbytes(outs[i])));
            }
        }
        b->i->segment_free(b, state);
        float **res = sn_par_unbind(b, c, &m);
        for (int i = 0; i < m.n; i++) free(res[i]);
        free(res);
        if (b != g_vk) sn_backend_free(b);
    }
    for (int i = 0; i < 3; i++) {
        size_t nb = sn_nbytes(outs[i]);
        for (int mode = 0; mode < 3; mode++) {
            for (int run = 1; run < 3; run++)
                if (memcmp(got[mode][0][i], got[mode][run][i], nb))
                    fail_msg("replay: %s differs between run 0 and run %d (mode %d)", outs[i]->name, run, mode);
            if (memcmp(got[mode][3][i], got[mode][4][i], nb) || memcmp(got[mode][3][i], got[mode][5][i], nb))
                fail_msg("replay with a new input: %s differs from eager (mode %d)", outs[i]->name, mode);
            if (!memcmp(got[mode][0][i], got[mode][3][i], nb))
                fail_msg("replay ignored the new input (%s unchanged, mode %d)", outs[i]->name, mode);
        }
        for (int run = 0; run < 6; run++) {
            if (memcmp(got[0][run][i], got[1][run][i], nb))
                fail_msg("replayed %s differs from re-recorded (run %d)", outs[i]->name, run);
            if (memcmp(got[0][run][i], got[2][run][i], nb))
                fail_msg("%s through staged transfers differs (run %d)", outs[i]->name, run);
        }
    }
    for (int mode = 0; mode < 3; mode++)
        for (int r = 0; r < 6; r++)
            for (int i = 0; i < 3; i++) free(got[mode][r][i]);
    free(x2);
    free(nodes);
    sn_graph_free(gr);
    sn_test_free_data(c);
    sn_ctx_free(c);
}

/* more workgroups than maxComputeWorkGroupCount[0] allows in one row: the 2-D grid */
static void test_large_grid(void **st) {
    sn_ctx *c = sn_ctx_new();
    int64_t n = (int64_t)65535 * 256 + 1000;
    sn_tensor *a = LEAF(c, -1, 1, "a", n), *b = LEAF(c, -1, 1, "b", n);
    assert_non_null(sn_add(c, a, b));
    cross_check(c, 0, 0, "large add");
    sn_ctx_free(c);
}

static int run_all(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices),   cmocka_unit_test(test_bad_device), cmocka_unit_test(test_oom),
        cmocka_unit_test(test_transfers), cmocka_unit_test(test_binary),     cmocka_unit_test(test_large_grid),
        cmocka_unit_test(test_unary),     cmocka_unit_test(test_shape),      cmocka_unit_test(test_loss),
        cmocka_unit_test(test_optim),     cmocka_unit_test(test_replay),     cmocka_unit_test(test_pipeline_cache),
        cmocka_unit_test(test_profile),   cmocka_unit_test(test_no_driver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--no-driver")) { /* test_no_driver's child */
        sn_backend *b = NULL;
        sn_status s = sn_backend_open("vulkan", 0, &b);
        if (s != SN_ERR_DEVICE || b) return 1;
        s = sn_vulkan_reg.open(0, 0, &b); /* the backend says why */
        printf("%d devices: %s %s\n", sn_vulkan_reg.count(), sn_status_name(s), sn_last_error());
        return s == SN_ERR_DEVICE && !b ? 0 : 1;
    }
    int rc = sn_test_vk_open(&g_dev, &g_vk);
    if (rc) return rc;
    g_cpu = sn_cpu_backend_new(0);
    sn_par = (sn_parity){.dev = g_vk, .cpu = g_cpu, .name = "Vulkan", .seed = 0x5eed4321ull, .claims = true};
    int r = run_all();
    /* the op families again through staged transfers (the discrete-GPU path; argument
     * blocks uploaded through the staging buffer) */
    sn_backend *unified = g_vk;
    setenv("SN_VK_STAGED", "1", 1);
    if (sn_vulkan_reg.open(g_dev, 0, &g_vk) != SN_OK) {
        fprintf(stderr, "Vulkan backend (staged): %s\n", sn_last_error());
        return 1;
    }
    unsetenv("SN_VK_STAGED");
    sn_par.dev = g_vk;
    const struct CMUnitTest staged[] = {
        cmocka_unit_test(test_binary), cmocka_unit_test(test_unary), cmocka_unit_test(test_shape),
        cmocka_unit_test(test_loss),   cmocka_unit_test(test_optim),
    };
    r |= cmocka_run_group_tests_name("staged transfers", staged, NULL, NULL);
    sn_backend_free(g_vk);
    g_vk = unified;
    sn_backend_free(g_vk);
    sn_backend_free(g_cpu);
    return r;
}

#else
#include <stdio.h>
int main(void) {
    printf("built without Vulkan: Vulkan tests skipped\n");
    return 77;
}
#endif
