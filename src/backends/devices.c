/* Device discovery and selection: the CPU, then CUDA and Vulkan devices when built in. */
#include "sinter/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sn_device_count(void) {
    int n = 1;
#ifdef SN_HAVE_CUDA
    n += sn_cuda_device_count();
#endif
#ifdef SN_HAVE_VULKAN
    n += sn_vulkan_device_count();
#endif
    return n;
}

sn_status sn_device_get(int i, sn_device_info *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_device_get: out is NULL");
    if (i == 0) {
        sn_backend *b = sn_cpu_backend_new(0);
        if (!b) return SN_ERR_NOMEM;
        sn_status s = b->i->info(b, out);
        sn_backend_free(b);
        return s;
    }
    int k = i - 1;
#ifdef SN_HAVE_CUDA
    if (k >= 0 && k < sn_cuda_device_count()) return sn_cuda_device_info(k, out);
    k -= sn_cuda_device_count();
#endif
#ifdef SN_HAVE_VULKAN
    if (k >= 0 && k < sn_vulkan_device_count()) return sn_vulkan_device_info(k, out);
#endif
    (void)k;
    return sn_error(SN_ERR_INVALID_ARG, "sn_device_get: no device %d (there are %d)", i, sn_device_count());
}

static void list_devices(char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "cpu");
#ifdef SN_HAVE_CUDA
    int c = sn_cuda_device_count();
    for (int i = 0; i < c && k < n; i++) k += (size_t)snprintf(buf + k, n - k, ", cuda:%d", i);
#endif
#ifdef SN_HAVE_VULKAN
    int v = sn_vulkan_device_count();
    for (int i = 0; i < v && k < n; i++) k += (size_t)snprintf(buf + k, n - k, ", vulkan:%d", i);
#endif
    (void)k;
}

sn_status sn_backend_open(const char *spec, int cpu_threads, sn_backend **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_backend_open: out is NULL");
    *out = NULL;
    if (!spec || !*spec) spec = "auto";
    char avail[512];
    list_devices(avail, sizeof avail);
    if (!strcmp(spec, "auto")) {
#ifdef SN_HAVE_CUDA
        if (sn_cuda_device_count() > 0) return sn_cuda_backend_new(0, out);
#endif
#ifdef SN_HAVE_VULKAN
        /* a real GPU only: a CPU driver (lavapipe) is slower than the CPU backend */
        for (int i = 0; i < sn_vulkan_device_count(); i++) {
            sn_device_info di;
            if (sn_vulkan_device_info(i, &di) == SN_OK && strcmp(di.type, "cpu") != 0 &&
                sn_vulkan_backend_new(i, out) == SN_OK)
                return SN_OK;
        }
        sn_clear_error();
#endif
        spec = "cpu";
    }
    if (!strcmp(spec, "cpu")) {
        *out = sn_cpu_backend_new(cpu_threads);
        return *out ? SN_OK : SN_ERR_NOMEM;
    }
    int idx = 0;
    const char *colon = strchr(spec, ':');
    size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 0)
            return sn_error(SN_ERR_CONFIG, "device '%s': the index after ':' must be a number (available: %s)", spec,
                            avail);
        idx = (int)v;
    }
    if (kind_len == 4 && !strncmp(spec, "cuda", 4)) {
#ifndef SN_HAVE_CUDA
        (void)idx;
#endif
#ifdef SN_HAVE_CUDA
        int n = sn_cuda_device_count();
        if (idx >= n)
            return sn_error(SN_ERR_DEVICE, "device '%s' not found: %d CUDA device(s) visible (available: %s)", spec, n,
                            avail);
        return sn_cuda_backend_new(idx, out);
#else
        return sn_error(SN_ERR_DEVICE, "device '%s': this sinter was built without CUDA (available: %s); "
                        "rebuild on a machine with the CUDA toolkit", spec, avail);
#endif
    }
    if (kind_len == 6 && !strncmp(spec, "vulkan", 6)) {
#ifdef SN_HAVE_VULKAN
        int n = sn_vulkan_device_count();
        if (n == 0) return sn_error_prefix(sn_vulkan_backend_new(idx, out), "device '%s'", spec);
        if (idx >= n)
            return sn_error(SN_ERR_DEVICE, "device '%s' not found: %d Vulkan device(s) visible (available: %s)", spec,
                            n, avail);
        return sn_vulkan_backend_new(idx, out);
#else
        return sn_error(SN_ERR_DEVICE, "device '%s': this sinter was built without Vulkan (available: %s); install "
                        "the Vulkan headers and glslc (scripts/install.sh) and rebuild", spec, avail);
#endif
    }
    return sn_error(SN_ERR_CONFIG, "unknown device '%s' (available: %s; or 'auto')", spec, avail);
}
