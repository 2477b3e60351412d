/* tools/spv_nv2khr.c, the build's SPV_NV_cooperative_matrix -> SPV_KHR_cooperative_matrix
 * rewrite, on the cooperative-matrix GEMM the build compiled (vk_gen/matmul_gemm_coop.nv.spv):
 * every NV instruction replaced, the rest of the module untouched, each matrix type's use
 * matching its place in the multiplies, layouts matching the NV booleans, new constants
 * defined before their first use, the id bound raised; the module the build embedded is
 * the same; malformed inputs are refused. Then spirv-val (SN_SPIRV_VAL, else the one on
 * PATH) on both modules: Debian 12's spirv-tools (2023.1) predates SPV_KHR_cooperative_matrix
 * and cannot check the KHR one, which the test then says and skips.
 * No GPU needed; skipped (77) when the build has no Vulkan shaders. */
#define _POSIX_C_SOURCE 200809L /* popen, mkstemp */
#define SPV_NV2KHR_NO_MAIN
#include "../../tools/spv_nv2khr.c"

#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NV_SPV SN_BINARY_DIR "/vk_gen/matmul_gemm_coop.nv.spv"
#define KHR_SPV SN_BINARY_DIR "/vk_gen/matmul_gemm_coop.spv"

static uint32_t *load(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *w = malloc((size_t)sz + 4);
    *n = w ? fread(w, 4, (size_t)sz / 4, f) : 0;
    fclose(f);
    return w;
}

typedef struct {
    uint32_t op, wc;
    const uint32_t *w;
} insn;

/* the module's instructions */
static int split(const uint32_t *m, size_t n, insn *out, int cap) {
    int k = 0;
    for (size_t i = 5; i < n && k < cap; k++) {
        out[k] = (insn){m[i] & 0xffff, m[i] >> 16, m + i};
        assert_true(out[k].wc > 0 && i + out[k].wc <= n);
        i += out[k].wc;
    }
    return k;
}

static int is_nv(uint32_t op) { return op >= OP_TYPE_COOPMAT_NV && op <= OP_LENGTH_NV; }
static int is_khr(uint32_t op) { return op >= OP_TYPE_COOPMAT_KHR && op <= OP_LENGTH_KHR; }

static uint32_t *g_nv;
static size_t g_n;

static int translate(const uint32_t *m, size_t n, uint32_t **out, size_t *nout, char *err) {
    return spv_nv2khr(m, n, out, nout, err, 256);
}

static void test_structure(void **st) {
    uint32_t *k = NULL;
    size_t nk = 0;
    char err[256] = "";
    if (translate(g_nv, g_n, &k, &nk, err) != 0) fail_msg("translation failed: %s", err);
    assert_int_equal(k[0], SPV_MAGIC);
    assert_int_equal(k[3], g_nv[3] + 5); /* five new constants */
    enum { CAP = 1 << 15 };
    insn *a = malloc(CAP * sizeof *a), *b = malloc(CAP * sizeof *b);
    int na = split(g_nv, g_n, a, CAP), nb = split(k, nk, b, CAP);
    assert_int_equal(nb, na + 5);
    /* definitions in the output, in order: an id used before its definition fails */
    const uint32_t bound = k[3];
    int *defined_at = malloc(bound * sizeof *defined_at);
    uint32_t *type_of = calloc(bound, sizeof *type_of);
    for (uint32_t i = 0; i < bound; i++) defined_at[i] = -1;
    for (int i = 0; i < nb; i++) {
        uint32_t op = b[i].op;
        if (op == OP_CONSTANT || op == OP_CONSTANT_TRUE || op == OP_CONSTANT_FALSE || typed_result(op) ||
            op == OP_LOAD_KHR || op == OP_MULADD_KHR) {
            assert_true(b[i].w[2] < bound);
            assert_int_equal(defined_at[b[i].w[2]], -1);
            defined_at[b[i].w[2]] = i;
            type_of[b[i].w[2]] = b[i].w[1];
        } else if ((op >= 19 && op <= 38) || op == OP_TYPE_COOPMAT_KHR) { /* OpType* (not OpTypeForwardPointer): result in word 1 */
            assert_true(b[i].w[1] < bound);
            assert_int_equal(defined_at[b[i].w[1]], -1);
            defined_at[b[i].w[1]] = i;
        }
    }
    /* walk both modules side by side */
    int j = 0, ntype = 0, nload = 0, nstore = 0, nmul = 0, inserted = 0, cap_khr = 0, ext_khr = 0;
    for (int i = 0; i < na; i++, j++) {
        const insn *x = &a[i], *y = &b[j];
        if (b[j].op == OP_CONSTANT && b[j].w[2] >= g_nv[3]) {
            /* the five inserted constants (new ids), all at one place */
            assert_int_equal(inserted, 0);
            for (int q = 0; q < 5; q++) {
                assert_int_equal(b[j + q].op, OP_CONSTANT);
                assert_true(b[j + q].w[2] >= g_nv[3]);
            }
            inserted = 5;
            j += 5;
            y = &b[j];
        }
        if (x->op == OP_CAPABILITY && x->w[1] == CAP_COOPMAT_NV) {
            assert_int_equal(y->w[1], CAP_COOPMAT_KHR);
            cap_khr++;
        } else if (x->op == OP_EXTENSION && !strcmp((const char *)(x->w + 1), "SPV_NV_cooperative_matrix")) {
            assert_string_equal((const char *)(y->w + 1), "SPV_KHR_cooperative_matrix");
            ext_khr++;
        } else if (x->op == OP_TYPE_COOPMAT_NV) {
            assert_int_equal(y->op, OP_TYPE_COOPMAT_KHR);
            assert_int_equal(y->wc, 7);
            assert_memory_equal(x->w + 1, y->w + 1, 5 * 4);
            uint32_t u = y->w[6];
            assert_true(u < bound && defined_at[u] >= 0 && defined_at[u] < j); /* defined before */
            assert_int_equal(b[defined_at[u]].op, OP_CONSTANT);
            assert_true(b[defined_at[u]].w[3] <= 2);
            ntype++;
        } else if (x->op == OP_LOAD_NV || x->op == OP_STORE_NV) {
            int pre = x->op == OP_LOAD_NV ? 3 : 2;
            assert_int_equal(y->op, x->op == OP_LOAD_NV ? OP_LOAD_KHR : OP_STORE_KHR);
            assert_int_equal(y->wc, x->wc);
            assert_memory_equal(x->w + 1, y->w + 1, pre * 4);          /* [type, result,] pointer, [object] */
            assert_int_equal(y->w[pre + 2], x->w[pre + 1]);              /* stride, now after the layout */
            uint32_t l = y->w[pre + 1];
            assert_true(defined_at[l] >= 0 && defined_at[l] < j && b[defined_at[l]].op == OP_CONSTANT);
            uint32_t cm = x->w[pre + 2];                                  /* NV: a boolean constant */
            uint32_t want = b[defined_at[cm]].op == OP_CONSTANT_TRUE ? 1u : 0u;
            assert_int_equal(b[defined_at[l]].w[3], want);
            assert_memory_equal(x->w + pre + 3, y->w + pre + 3, (x->wc - pre - 3) * 4); /* memory operands */
            if (x->op == OP_LOAD_NV) nload++;
            else nstore++;
        } else if (x->op == OP_MULADD_NV) {
            assert_int_equal(y->op, OP_MULADD_KHR);
            assert_memory_equal(x->w + 1, y->w + 1, (x->wc - 1) * 4);
            /* each operand's type has the use of its place: A 0, B 1, C and result 2 */
            const uint32_t want[4] = {2, 0, 1, 2};
            for (int p = 0; p < 4; p++) {
                uint32_t t = p == 0 ? y->w[1] : type_of[y->w[2 + p]];
                assert_true(t > 0 && defined_at[t] >= 0);
                const insn *ti = &b[defined_at[t]];
                assert_int_equal(ti->op, OP_TYPE_COOPMAT_KHR);
                assert_int_equal(b[defined_at[ti->w[6]]].w[3], want[p]);
            }
            nmul++;
        } else {
            assert_false(is_nv(x->op));
            assert_int_equal(x->op, y->op);
            assert_memory_equal(x->w, y->w, x->wc * 4);
        }
        assert_false(is_nv(y->op));
    }
    assert_int_equal(j, nb);
    assert_int_equal(inserted, 5);
    assert_int_equal(cap_khr, 1);
    assert_int_equal(ext_khr, 1);
    assert_int_equal(ntype, 3); /* A, B, accumulator */
    assert_true(nload >= 2 && nstore >= 1 && nmul >= 1);
    for (int i = 0; i < nb; i++)
        if (is_khr(b[i].op)) assert_true(b[i].op != OP_LENGTH_KHR || b[i].wc == 4);
    /* what the build embedded is this */
    size_t ne = 0;
    uint32_t *emb = load(KHR_SPV, &ne);
    assert_non_null(emb);
    assert_int_equal(ne, nk);
    assert_memory_equal(emb, k, nk * 4);
    free(emb);
    free(defined_at);
    free(type_of);
    free(a);
    free(b);
    free(k);
}

static void expect_error(uint32_t *m, size_t n, const char *says) {
    uint32_t *k = NULL;
    size_t nk = 0;
    char err[256] = "";
    assert_int_equal(translate(m, n, &k, &nk, err), -1);
    assert_null(k);
    if (!strstr(err, says)) fail_msg("error '%s' does not say '%s'", err, says);
}

static void test_refusals(void **st) {
    uint32_t *m = malloc(g_n * 4);
    insn *a = malloc((1 << 15) * sizeof *a);
    int na = split(g_nv, g_n, a, 1 << 15);
    /* A's type used as B as well */
    memcpy(m, g_nv, g_n * 4);
    for (int i = 0; i < na; i++)
        if (a[i].op == OP_MULADD_NV) {
            size_t at = (size_t)(a[i].w - g_nv);
            m[at + 4] = m[at + 3];
            break;
        }
    expect_error(m, g_n, "two of A, B and C");
    /* a column-major operand that is not a boolean constant (the stride's id) */
    memcpy(m, g_nv, g_n * 4);
    for (int i = 0; i < na; i++)
        if (a[i].op == OP_LOAD_NV) {
            size_t at = (size_t)(a[i].w - g_nv);
            m[at + 5] = m[at + 4];
            break;
        }
    expect_error(m, g_n, "column-major");
    /* not SPIR-V; an instruction running past the end; no matrix at all */
    memcpy(m, g_nv, g_n * 4);
    m[0] = 0x12345678;
    expect_error(m, g_n, "not a SPIR-V module");
    memcpy(m, g_nv, g_n * 4);
    m[5] = (0xffffu << 16) | (m[5] & 0xffff);
    expect_error(m, g_n, "truncated");
    expect_error(g_nv, 5, "no OpTypeCooperativeMatrixNV");
    free(m);
    free(a);
}

/* 0 valid, 1 invalid, 2 this spirv-val does not know SPV_KHR_cooperative_matrix, 3 no spirv-val */
static int spirv_val(const char *val, const uint32_t *m, size_t n, char *log, size_t loglen) {
    char path[] = "/tmp/sn_nv2khr_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_int_equal(fwrite(m, 4, n, f), n);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --target-env vulkan1.2 %s 2>&1", val, path);
    FILE *p = popen(cmd, "r");
    size_t got = p ? fread(log, 1, loglen - 1, p) : 0;
    log[got] = 0;
    int rc = p ? pclose(p) : -1;
    remove(path);
    if (rc == 0) return 0;
    if (rc == -1 || WEXITSTATUS(rc) == 127) return 3;
    if (strstr(log, "6022") || strstr(log, "4456") || strstr(log, "CooperativeMatrixKHR")) return 2;
    return 1;
}

static void test_spirv_val(void **st) {
    const char *val = getenv("SN_SPIRV_VAL") ? getenv("SN_SPIRV_VAL") : "spirv-val";
    char log[4096];
    int r = spirv_val(val, g_nv, g_n, log, sizeof log);
    if (r == 3) {
        printf("no %s: validation skipped\n", val);
        skip();
    }
    if (r != 0) fail_msg("%s rejects the NV module the build compiled: %s", val, log);
    uint32_t *k = NULL;
    size_t nk = 0;
    char err[256];
    assert_int_equal(translate(g_nv, g_n, &k, &nk, err), 0);
    r = spirv_val(val, k, nk, log, sizeof log);
    free(k);
    if (r == 2) {
        printf("%s predates SPV_KHR_cooperative_matrix (%s); set SN_SPIRV_VAL to spirv-tools >= 2023.4 to "
               "validate the KHR module\n", val, strtok(log, "\n"));
        skip();
    }
    if (r != 0) fail_msg("%s rejects the translated KHR module: %s", val, log);
    printf("%s: the KHR module is valid\n", val);
}

int main(void) {
    g_nv = load(NV_SPV, &g_n);
    if (!g_nv) {
        printf("no %s (built without Vulkan): skipped\n", NV_SPV);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_spirv_val),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    free(g_nv);
    return r;
}
