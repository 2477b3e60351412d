/* The Vulkan backend's runtime: device listing (lavapipe shows as type "cpu"), bad device
 * specs, out-of-memory refusal, transfers (staged and unified), recording and replay
 * (replayed equals re-recorded), and the op families of vk-core (binary, unary, shape,
 * loss, optim) against the CPU backend. Exits with 77 (skipped) when there is no Vulkan
 * device. SN_VK_DEVICE=N picks the device (default: the first). */
#include "sn_test.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SN_HAVE_VULKAN

static sn_backend *g_cpu, *g_vk;
static int g_dev;
static uint64_t g_seed = 0x5eed4321ull;

/* max |a - ref| over max |ref| (NaN fails) */
static double nerr(const float *a, const float *ref, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= e)) e = d;
    }
    return e / fmax(m, 1e-30);
}

static sn_tensor *leaf(sn_ctx *c, int nd, const int64_t *shape, float lo, float hi, const char *name) {
    sn_tensor *t = sn_new_tensor(c, SN_F32, nd, shape, 0, name);
    assert_non_null(t);
    sn_test_leaf(t, &g_seed, lo, hi);
    t->flags |= SN_FLAG_NEEDS_GRAD;
    return t;
}
#define LEAF(c, lo, hi, name, ...) \
    leaf(c, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__}, lo, hi, name)

static void grads(sn_ctx *c, sn_tensor *node, sn_grad_fn fn) {
    assert_non_null(node);
    sn_tensor *dy = sn_new_tensor(c, SN_F32, node->ndim, node->shape, 0, "dy");
    sn_test_leaf(dy, &g_seed, -1.0f, 1.0f);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(fn(c, node, dy, ds));
}

static bool is_packed(sn_op op) {
    return op == SN_OP_ADAM || op == SN_OP_SGD || op == SN_OP_ADAM_MT || op == SN_OP_SGD_MT;
}

/* ---- per-tensor device memory for a ctx (no planner) ---- */
typedef struct {
    int n;
    void **dev;
    void **host;
} devmap;

static void dev_bind(sn_ctx *c, devmap *m) {
    m->n = sn_ctx_count(c);
    m->dev = calloc((size_t)m->n, sizeof *m->dev);
    m->host = calloc((size_t)m->n, sizeof *m->host);
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        m->host[i] = t->data;
        if (t->view_src) {
            t->data = (char *)t->view_src->data + t->view_offs;
            continue;
        }
        size_t bytes = sn_alloc_bytes(t);
        SN_ASSERT_OK(g_vk->i->alloc(g_vk, bytes, &m->dev[i]));
        SN_ASSERT_OK(g_vk->i->fill_zero(g_vk, m->dev[i], bytes));
        if (t->op == SN_OP_NONE && m->host[i])
            SN_ASSERT_OK(g_vk->i->upload(g_vk, m->dev[i], m->host[i], sn_nbytes(t)));
        else if (t->op == SN_OP_NONE && (t->flags & SN_FLAG_CONST)) {
            int64_t ne = sn_nelem(t);
            float *v = malloc((size_t)ne * sizeof *v);
            for (int64_t k = 0; k < ne; k++) v[k] = t->fp[0];
            SN_ASSERT_OK(g_vk->i->upload(g_vk, m->dev[i], v, (size_t)ne * sizeof *v));
            free(v);
        }
        t->data = m->dev[i];
        t->backend = g_vk;
    }
}

static float **dev_unbind(sn_ctx *c, devmap *m) {
    float **res = calloc((size_t)m->n, sizeof *res);
    SN_ASSERT_OK(g_vk->i->synchronize(g_vk));
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (m->dev[i]) {
            size_t bytes = sn_alloc_bytes(t);
            res[i] = malloc(bytes);
            SN_ASSERT_OK(g_vk->i->download(g_vk, res[i], m->dev[i], bytes));
            g_vk->i->release(g_vk, m->dev[i]);
        }
        t->data = t->op == SN_OP_NONE ? m->host[i] : NULL;
        t->backend = NULL;
    }
    free(m->dev);
    free(m->host);
    return res;
}

static const float *res_of(float **res, sn_tensor *t) {
    sn_tensor *r = sn_root(t);
    return (const float *)((const char *)res[r->id] + sn_root_offset(t));
}

/* Runs every op node of c on Vulkan (one node per compute call, no state), then on the
 * CPU, and compares outputs and tensors updated in place. */
static void cross_check(sn_ctx *c, double tol, const char *label) {
    devmap m;
    dev_bind(c, &m);
    int n = sn_ctx_count(c);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) continue;
        if (!g_vk->i->supports_op(g_vk, t)) fail_msg("%s: Vulkan does not claim %s", label, sn_op_name(t->op));
        sn_status s = g_vk->i->compute(g_vk, &t, 1, NULL);
        if (s != SN_OK) fail_msg("%s: Vulkan %s: %s", label, t->name, sn_last_error());
    }
    float **res = dev_unbind(c, &m);
    SN_ASSERT_OK(sn_test_eval(c, g_cpu));
    int checked = 0;
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE) continue;
        if (!is_packed(t->op)) {
            double e = nerr(res_of(res, t), t->data, sn_nelem(t));
            if (!(e <= tol))
                fail_msg("%s: %s (%s) Vulkan vs CPU error %.3g > %.3g", label, t->name, sn_op_name(t->op), e, tol);
            checked++;
        }
        for (int k = 0; k < t->nsrc; k++) {
            sn_tensor *s = t->src[k];
            if (!sn_op_writes_src(t, k) || s->op != SN_OP_NONE) continue;
            double e = nerr(res_of(res, s), s->data, sn_nelem(s));
            if (!(e <= tol)) fail_msg("%s: %s updated in place by %s: error %.3g > %.3g", label, s->name, t->name, e, tol);
            checked++;
        }
    }
    assert_true(checked > 0);
    for (int i = 0; i < n; i++) free(res[i]);
    free(res);
    sn_test_free_data(c);
}

/* ---------------- devices ---------------- */

static void test_devices(void **st) {
    int n = sn_vulkan_device_count();
    assert_true(n > 0);
    bool lavapipe = false;
    for (int i = 0; i < n; i++) {
        sn_device_info di;
        SN_ASSERT_OK(sn_vulkan_device_info(i, &di));
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
    assert_int_equal(sn_vulkan_backend_new(-1, &b), SN_ERR_DEVICE);
    assert_non_null(strstr(sn_last_error(), "does not exist"));
    sn_device_info di;
    assert_int_equal(sn_vulkan_device_info(1000, &di), SN_ERR_INVALID_ARG);
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
    assert_non_null(strstr(e, "batch_size"));
    /* the backend still works after the refusal */
    SN_ASSERT_OK(g_vk->i->alloc(g_vk, 1024, &p));
    g_vk->i->release(g_vk, p);
}

static void test_transfers(void **st) {
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

/* ---------------- op families ---------------- */

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
    assert_non_null(sn_expand(c, s1, 3, (int64_t[]){3, 4, 5}, 0.25f));
    cross_check(c, 1e-6, "binary");
    sn_ctx_free(c);
}

/* more workgroups than maxComputeWorkGroupCount[0] allows in one row: the 2-D grid */
static void test_large_grid(void **st) {
    sn_ctx *c = sn_ctx_new();
    int64_t n = (int64_t)65535 * 256 + 1000;
    sn_tensor *a = LEAF(c, -1, 1, "a", n), *b = LEAF(c, -1, 1, "b", n);
    assert_non_null(sn_add(c, a, b));
    cross_check(c, 0, "large add");
    sn_ctx_free(c);
}

static int run_all(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices),   cmocka_unit_test(test_bad_device), cmocka_unit_test(test_oom),
        cmocka_unit_test(test_transfers), cmocka_unit_test(test_binary),     cmocka_unit_test(test_large_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void) {
    if (sn_vulkan_device_count() == 0) {
        printf("no Vulkan device (or no loader/driver): Vulkan tests skipped\n");
        return 77;
    }
    const char *e = getenv("SN_VK_DEVICE");
    g_dev = e ? atoi(e) : 0;
    g_cpu = sn_cpu_backend_new(0);
    if (sn_vulkan_backend_new(g_dev, &g_vk) != SN_OK) {
        fprintf(stderr, "Vulkan backend: %s\n", sn_last_error());
        return 1;
    }
    int r = run_all();
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
