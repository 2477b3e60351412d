/* Device discovery and selection over the registered backends. Adding a backend is
 * one line in g_regs (and its entry in registry.h). */
#include "backends/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sn_backend_reg *const g_regs[] = {
    &sn_cpu_reg,
#ifdef SN_HAVE_CUDA
    &sn_cuda_reg,
#endif
#ifdef SN_HAVE_VULKAN
    &sn_vulkan_reg,
#endif
};
enum { N_REGS = (int)(sizeof g_regs / sizeof g_regs[0]) };

int sn_backend_reg_count(void) { return N_REGS; }

const sn_backend_reg *sn_backend_reg_get(int i) { return i >= 0 && i < N_REGS ? g_regs[i] : NULL; }

static const sn_backend_reg *reg_of(const char *kind, size_t len) {
    for (int r = 0; r < N_REGS; r++)
        if (strlen(g_regs[r]->kind) == len && !strncmp(g_regs[r]->kind, kind, len)) return g_regs[r];
    return NULL;
}

int sn_device_count(void) {
    int n = 0;
    for (int r = 0; r < N_REGS; r++) n += g_regs[r]->count();
    return n;
}

sn_status sn_device_get(int i, sn_device_info *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_device_get: out is NULL");
    for (int r = 0, k = i; r < N_REGS && k >= 0; r++) {
        int c = g_regs[r]->count();
        if (k < c) {
            sn_status s = g_regs[r]->info(k, out);
            if (s == SN_OK) {
                snprintf(out->kind, sizeof out->kind, "%s", g_regs[r]->kind);
                out->index = k;
            }
            return s;
        }
        k -= c;
    }
    return sn_error(SN_ERR_INVALID_ARG, "sn_device_get: no device %d (there are %d)", i, sn_device_count());
}

void sn_device_spec(const sn_device_info *d, char *buf, size_t n) {
    if (!strcmp(d->kind, "cpu")) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "%s:%d", d->kind, d->index);
}

int sn_device_auto_rank(const sn_device_info *d) {
    if (!strcmp(d->kind, "cpu")) return 1;
    if (!strcmp(d->kind, "cuda")) return 3;
    if (!strcmp(d->type, "discrete") || !strcmp(d->type, "integrated")) return 2;
    return 0; /* CPU-type or virtual GPU devices: only when named */
}

int sn_device_auto(void) {
    int n = sn_device_count(), best = 0, rank = -1;
    for (int i = 0; i < n; i++) {
        sn_device_info d;
        if (sn_device_get(i, &d) != SN_OK) continue;
        int r = sn_device_auto_rank(&d);
        if (r > rank) rank = r, best = i;
    }
    return best;
}

static void list_devices(char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    int c = sn_device_count();
    for (int i = 0; i < c && k < n; i++) {
        sn_device_info d;
        char spec[32];
        if (sn_device_get(i, &d) != SN_OK) continue;
        sn_device_spec(&d, spec, sizeof spec);
        k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", spec);
    }
}

static void set_profile_from_env(sn_backend *b) {
    const char *e = getenv("SN_PROFILE");
    if (e && atoi(e) > 0) sn_backend_set_profile(b, atoi(e));
}

static sn_status open_index(const sn_backend_reg *r, int idx, int cpu_threads, sn_backend **out) {
    sn_status s = r->open(idx, cpu_threads, out);
    if (s == SN_OK) set_profile_from_env(*out);
    return s;
}

sn_status sn_backend_open(const char *spec, int cpu_threads, sn_backend **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_backend_open: out is NULL");
    *out = NULL;
    if (!spec || !*spec) spec = "auto";
    char avail[512];
    list_devices(avail, sizeof avail);
    if (!strcmp(spec, "auto")) {
        sn_device_info d;
        if (sn_device_get(sn_device_auto(), &d) != SN_OK) return SN_ERR_DEVICE;
        return open_index(reg_of(d.kind, strlen(d.kind)), d.index, cpu_threads, out);
    }
    int idx = 0;
    const char *colon = strchr(spec, ':');
    size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 0 || v > 1000000)
            return sn_error(SN_ERR_CONFIG, "device '%s': the index after ':' must be a number (available: %s)", spec,
                            avail);
        idx = (int)v;
    }
    const sn_backend_reg *r = reg_of(spec, kind_len);
    if (!r) {
        static const char *const known[] = {"cuda", "vulkan"};
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strlen(known[k]) == kind_len && !strncmp(spec, known[k], kind_len))
                return sn_error(SN_ERR_DEVICE,
                                "device '%s': this sinter was built without %s (available: %s); rebuild where "
                                "its SDK is installed (README.md, 'Building')",
                                spec, known[k], avail);
        return sn_error(SN_ERR_CONFIG, "unknown device '%s' (available: %s; or 'auto')", spec, avail);
    }
    int n = r->count();
    if (idx >= n)
        return sn_error(SN_ERR_DEVICE, "device '%s' not found: %d %s device(s) visible (available: %s)", spec, n,
                        r->kind, avail);
    return open_index(r, idx, cpu_threads, out);
}
