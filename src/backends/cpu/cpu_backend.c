#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* The CPU backend: host memory, the thread pool, and the op dispatch table. */
#include "backends/cpu/cpu.h"
#include "backends/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


float *sn_cpu_scratch(sn_cpu *c, size_t n) {
    if (n <= c->scratch_cap) return c->scratch;
    free(c->scratch);
    c->scratch = NULL;
    c->scratch_cap = 0;
    if (posix_memalign((void **)&c->scratch, 64, n * sizeof(float)) != 0) {
        sn_error(SN_ERR_NOMEM, "CPU backend: cannot allocate %zu MB of scratch memory", n * 4 >> 20);
        return NULL;
    }
    c->scratch_cap = n;
    return c->scratch;
}

static const char *cpu_name(sn_backend *b) { return "cpu"; }

static void cpu_free(sn_backend *b) {
    sn_cpu *c = b->ctx;
    sn_pool_free(c->pool);
    free(c->scratch);
    free(c);
    free(b);
}

static size_t meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    size_t v = 0, klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen)) {
            v = (size_t)strtoull(line + klen + 1, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

static void cpu_model(char *out, size_t n) {
    snprintf(out, n, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p += 2;
                p[strcspn(p, "\n")] = 0;
                snprintf(out, n, "%s", p);
            }
            break;
        }
    fclose(f);
}

static int cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static sn_status cpu_device_info(int nthreads, sn_device_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->kind, sizeof o->kind, "cpu");
    snprintf(o->type, sizeof o->type, "cpu");
    cpu_model(o->name, sizeof o->name);
    o->mem_total = meminfo("MemTotal");
    o->mem_free = meminfo("MemAvailable");
    o->compute_units = nthreads;
    o->utilization = -1;
    char *f = o->features;
    size_t n = sizeof o->features, k = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) k += (size_t)snprintf(f + k, n - k, "AVX2 ");
    if (__builtin_cpu_supports("fma")) k += (size_t)snprintf(f + k, n - k, "FMA ");
    if (__builtin_cpu_supports("avx512f")) k += (size_t)snprintf(f + k, n - k, "AVX512F ");
#endif
    /* bf16 mixed precision: vdpbf16ps (AVX512-BF16); AMX-BF16 CPUs have it too */
    const char *isa = sn_cpu_bf16_isa();
    if (isa) {
        o->bf16 = true;
        for (const char *p = isa; *p; p++) /* "AVX512-BF16, AMX-BF16" -> "AVX512_BF16 AMX_BF16 " */
            if (*p != ' ' && k + 1 < n) f[k++] = *p == '-' ? '_' : *p == ',' ? ' ' : *p;
        if (k + 1 < n) f[k++] = ' ';
        f[k] = 0;
    }
    k += (size_t)snprintf(f + k, n - k, "BLAS=%s ", sn_blas_name());
    snprintf(f + k, n - k, "threads=%d", nthreads);
    return SN_OK;
}

static sn_status cpu_info(sn_backend *b, sn_device_info *o) { return cpu_device_info(((sn_cpu *)b->ctx)->nthreads, o); }

static sn_status cpu_alloc(sn_backend *b, size_t bytes, void **base) {
    *base = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(base, 256, bytes) != 0)
        return sn_error(SN_ERR_NOMEM, "CPU backend: cannot allocate %.1f MB of host memory", bytes / 1048576.0);
    return SN_OK;
}

static void cpu_release(sn_backend *b, void *base) { free(base); }

static sn_status cpu_upload(sn_backend *b, void *dst, const void *host, size_t n) {
    if (dst != host) memcpy(dst, host, n);
    return SN_OK;
}

static sn_status cpu_download(sn_backend *b, void *host, const void *src, size_t n) {
    if (host != src) memcpy(host, src, n);
    return SN_OK;
}

static sn_status cpu_fill_zero(sn_backend *b, void *dst, size_t n) {
    memset(dst, 0, n);
    return SN_OK;
}

/* collectives on host memory need a host (MPI) collective attached */
static bool host_coll(sn_backend *b) { return b->coll && !b->coll->device; }

static bool cpu_supports(sn_backend *b, const sn_tensor *t) {
    if (t->op == SN_OP_ALLREDUCE || (sn_op_family_of(t->op) == SN_FAM_BATCHNORM && t->ip[2])) return host_coll(b);
    return t->dtype == SN_F32 && t->op < SN_OP_COUNT;
}

typedef sn_status (*cpu_kernel_fn)(sn_cpu *c, sn_tensor *node);
static const cpu_kernel_fn cpu_kernels[SN_FAM_COUNT] = {
    [SN_FAM_SHAPE] = sn_cpu_shape,   [SN_FAM_BINARY] = sn_cpu_binary,       [SN_FAM_UNARY] = sn_cpu_unary,
    [SN_FAM_MATMUL] = sn_cpu_matmul, [SN_FAM_CONV] = sn_cpu_conv,           [SN_FAM_BATCHNORM] = sn_cpu_batchnorm,
    [SN_FAM_NORM] = sn_cpu_norm,     [SN_FAM_RNN] = sn_cpu_rnn,             [SN_FAM_ATTENTION] = sn_cpu_attention,
    [SN_FAM_LOSS] = sn_cpu_loss,     [SN_FAM_OPTIM] = sn_cpu_optim,         [SN_FAM_COLLECTIVE] = sn_cpu_collective,
};

static sn_status cpu_node(sn_cpu *c, sn_tensor *t) {
    if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) return SN_OK;
    sn_op_family f = sn_op_family_of(t->op);
    if (f != SN_FAM_NONE && cpu_kernels[f]) return cpu_kernels[f](c, t);
    return sn_error(SN_ERR_UNSUPPORTED, "CPU backend: op %d (%s) has no kernel", (int)t->op, sn_op_name(t->op));
}

/* SN_PROFILE=1: time per op kind, printed at exit (a developer aid, off by default). */
static double g_prof_ms[SN_OP_COUNT];
static long g_prof_n[SN_OP_COUNT];
static int g_prof = 0;

static void prof_print(void) {
    double tot = 0;
    for (int i = 0; i < SN_OP_COUNT; i++) tot += g_prof_ms[i];
    fprintf(stderr, "sinter CPU op profile (total %.1f ms):\n", tot);
    for (int i = 0; i < SN_OP_COUNT; i++)
        if (g_prof_n[i])
            fprintf(stderr, "  %-28s %8ld calls %10.1f ms %5.1f%%\n", sn_op_name((sn_op)i), g_prof_n[i], g_prof_ms[i],
                    100.0 * g_prof_ms[i] / (tot > 0 ? tot : 1));
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void cpu_set_profile(sn_backend *b, int level) {
    static bool registered;
    if (level > 0 && !registered) registered = atexit(prof_print) == 0;
    g_prof = level > 0;
}

static sn_status cpu_compute(sn_backend *b, sn_tensor **nodes, int n, void **state) {
    sn_cpu *c = b->ctx;
    c->coll = host_coll(b) ? b->coll : NULL;
    for (int i = 0; i < n; i++) {
        double t0 = g_prof ? now_ms() : 0;
        sn_status s = cpu_node(c, nodes[i]);
        if (g_prof) {
            g_prof_ms[nodes[i]->op] += now_ms() - t0;
            g_prof_n[nodes[i]->op]++;
        }
        if (s != SN_OK) return sn_error_prefix(s, "CPU op '%s' (%s)", nodes[i]->name, sn_op_name(nodes[i]->op));
    }
    return SN_OK;
}

/* train.mixed_precision: bf16 operands with f32 accumulation in the GEMMs, the
 * convolutions' products and the recurrent products (master weights, optimizer
 * state and everything else stay f32). f16 asks for the same path, as on CUDA.
 * TF32 does not exist on a CPU. */
static sn_status cpu_set_precision(sn_backend *b, const sn_precision *p) {
    sn_cpu *c = b->ctx;
    if (p->tf32 && !p->bf16 && !p->f16)
        return sn_error(SN_ERR_UNSUPPORTED, "the CPU has no TF32 arithmetic (it computes f32 in f32)");
    if ((p->bf16 || p->f16) && !sn_cpu_bf16_isa()) {
        char model[128];
        cpu_model(model, sizeof model);
        return sn_error(SN_ERR_UNSUPPORTED,
                        "the CPU (%s) has neither AVX512-BF16 nor AMX-BF16, which bf16 mixed precision needs; set "
                        "train.mixed_precision=false (f32 on this CPU), or train on a CPU or GPU that has them "
                        "(sinter devices lists their features)",
                        model);
    }
    c->bf16 = p->bf16 || p->f16;
    if (p->f16 && !p->bf16)
        sn_log(SN_LOG_WARN, "mixed precision f16 on the CPU: computing in bf16 (the CPU's 16-bit products are bf16)");
    if (p->tf32) sn_log(SN_LOG_WARN, "train.tf32 ignored: the CPU has no TF32 arithmetic");
    return SN_OK;
}

static void cpu_segment_free(sn_backend *b, void *state) {}
static sn_status cpu_sync(sn_backend *b) { return SN_OK; }
static size_t cpu_workspace(sn_backend *b) { return ((sn_cpu *)b->ctx)->scratch_cap * sizeof(float); }

static const sn_backend_i cpu_iface = {
    .name = cpu_name,
    .free = cpu_free,
    .info = cpu_info,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .fill_zero = cpu_fill_zero,
    .supports_op = cpu_supports,
    .compute = cpu_compute,
    .segment_free = cpu_segment_free,
    .synchronize = cpu_sync,
    .workspace_bytes = cpu_workspace,
    .set_precision = cpu_set_precision,
    .set_profile = cpu_set_profile,
};

sn_backend *sn_cpu_backend_new(int num_threads) {
    if (num_threads <= 0) num_threads = cores();
    sn_backend *b = calloc(1, sizeof *b);
    sn_cpu *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        sn_error(SN_ERR_NOMEM, "CPU backend: out of host memory");
        return NULL;
    }
    c->nthreads = num_threads;
    c->pool = sn_pool_new(num_threads);
    sn_blas_set_threads(num_threads);
    b->i = &cpu_iface;
    b->ctx = c;
    b->is_host = true;
    return b;
}

int sn_cpu_backend_threads(sn_backend *b) { return b && b->i == &cpu_iface ? ((sn_cpu *)b->ctx)->nthreads : 0; }

static int cpu_count(void) { return 1; }

static sn_status cpu_reg_info(int index, sn_device_info *out) {
    if (index != 0) return sn_error(SN_ERR_INVALID_ARG, "cpu:%d does not exist (there is one CPU device)", index);
    return cpu_device_info(cores(), out);
}

static sn_status cpu_reg_open(int index, int cpu_threads, sn_backend **out) {
    if (index != 0) return sn_error(SN_ERR_DEVICE, "cpu:%d does not exist (there is one CPU device)", index);
    *out = sn_cpu_backend_new(cpu_threads);
    return *out ? SN_OK : SN_ERR_NOMEM;
}

const sn_backend_reg sn_cpu_reg = {.kind = "cpu", .count = cpu_count, .info = cpu_reg_info, .open = cpu_reg_open};
