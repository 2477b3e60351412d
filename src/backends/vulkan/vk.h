/* The Vulkan backend's private API, shared by every op-family file (see VK_API.md).
 *
 * Tensors live in device memory addressed through bufferDeviceAddress: t->data is the
 * tensor's device address, shaders get addresses as GL_EXT_buffer_reference pointers in
 * push constants (never descriptors). A family function records its node's dispatches
 * with sn_vk_dispatch; compute() records a segment once and replays it, so a family
 * function must not depend on tensor values (it cannot read them anyway) and everything
 * it passes to the device must be in push constants or in sn_vk_temp blocks. */
#ifndef SN_BACKENDS_VULKAN_VK_H
#define SN_BACKENDS_VULKAN_VK_H

#include <stdint.h>
#include <stddef.h>

#include "sinter/backend.h"
#include "vk_shaders.h" /* generated: SN_VK_SH_<FILE> enum, one per shaders/<file>.comp */

typedef struct sn_vk sn_vk; /* the backend context (b->ctx) */

typedef struct sn_vk_limits {
    uint32_t subgroup_size;        /* 0 when unknown */
    uint32_t subgroup_ops;         /* VkSubgroupFeatureFlags usable in compute shaders, 0 when unknown */
    uint32_t shared_bytes;         /* maxComputeSharedMemorySize */
    uint32_t max_invocations;      /* maxComputeWorkGroupInvocations */
    uint32_t max_wg_size[3];       /* maxComputeWorkGroupSize */
    uint32_t max_wg_count[3];      /* maxComputeWorkGroupCount */
    uint32_t push_bytes;           /* push-constant space the pipelines declare (128) */
    bool cpu_driver;               /* a CPU-type device (lavapipe, SwiftShader): barriers are costly */
} sn_vk_limits;

/* Records one dispatch of shader `sh` (SN_VK_SH_*) with `push` (<= 128 bytes) as push
 * constants, gx*gy*gz workgroups. A full memory barrier precedes every dispatch but the
 * first of a segment, so each dispatch sees everything earlier ones wrote. A dispatch
 * with a zero count records nothing. */
sn_status sn_vk_dispatch(sn_vk *vk, int sh, const void *push, uint32_t push_bytes, uint32_t gx, uint32_t gy,
                         uint32_t gz);

/* A dispatch of `n` work items (threads) over a 1-D index, as a 2-D grid of workgroups
 * of `wg` threads when n/wg exceeds maxComputeWorkGroupCount[0]. The shader computes its
 * index with sn_index() from shaders/common.glsl and returns when it is >= n. */
sn_status sn_vk_dispatch_n(sn_vk *vk, int sh, const void *push, uint32_t push_bytes, uint64_t n, uint32_t wg);
/* SN_PROFILE=3: dispatches of shader sh timed so far; whether vk can time them (tests) */
long sn_vk_prof_dispatches(int sh);
bool sn_vk_has_timestamps(const sn_vk *vk);
/* Tests and benchmarks: records what fn dispatches (fn may call sn_vk_gemm and the other
 * helpers) as one segment, submits it `runs` times and waits for each; ms[r] (may be NULL)
 * gets run r's GPU time in ms (wall time where the device has no timestamps). */
sn_status sn_vk_run(sn_vk *vk, sn_status (*fn)(sn_vk *vk, void *arg), void *arg, int runs, double *ms);
/* The grid sn_vk_dispatch_n uses for `groups` workgroups (gx*gy >= groups). */
void sn_vk_grid(const sn_vk *vk, uint64_t groups, uint32_t *gx, uint32_t *gy);

/* Device memory for a kernel's temporaries (or an argument block filled from the host),
 * alive as long as the recorded segment; 256-byte aligned; returns its device address,
 * 0 on failure (the error is set). host_init (may be NULL) is copied in before the
 * segment first runs; without it the contents are undefined. */
uint64_t sn_vk_temp(sn_vk *vk, size_t bytes, const void *host_init);

/* Words of host-visible device memory through which a kernel reports a failure it can
 * only detect while running (the persistent RNN kernel's grid barrier timing out): the
 * kernel stores a nonzero value in word `slot` (< SN_VK_FAIL_SLOTS; plain stores, never
 * atomics: the words may live in host memory). After every wait for the device (a
 * segment's fence, a drain) the backend reads them and, for a nonzero one, clears them
 * and fails with SN_ERR_DEVICE and that slot's `msg` (what failed and what to do; the
 * latest call's message for the slot is used). Returns the word's device address, 0 on
 * failure (the error is set). */
#define SN_VK_FAIL_SLOTS 4
uint64_t sn_vk_fail_word(sn_vk *vk, int slot, const char *msg);

/* The device address of a tensor's data (element 0). */
static inline uint64_t sn_vk_addr(const sn_tensor *t) { return (uint64_t)(uintptr_t)t->data; }
/* The device address of f32 element i of t. */
static inline uint64_t sn_vk_addr_at(const sn_tensor *t, int64_t i) {
    return (uint64_t)(uintptr_t)t->data + (uint64_t)i * sizeof(float);
}

/* Shaders index with 32-bit unsigned ints: a count beyond that is refused (16 GiB of f32). */
static inline sn_status sn_vk_u32(int64_t n, const char *what, uint32_t *out) {
    *out = 0;
    if (n < 0 || n > (int64_t)UINT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan %s: %lld elements exceed the 2^32 the shaders index", what,
                        (long long)n);
    *out = (uint32_t)n;
    return SN_OK;
}

const sn_vk_limits *sn_vk_limits_of(sn_vk *vk);
/* The device's name, for error messages ("vulkan:0 (llvmpipe ...)"). */
const char *sn_vk_device_name(const sn_vk *vk);
/* train.mixed_precision: the GEMM shader with f16 operands on cooperative matrices and
 * f32 accumulation (SN_VK_SH_MATMUL_GEMM_COOP, or its emulation under SN_VK_COOP=emulate);
 * -1 when off. */
int sn_vk_f16_gemm_shader(const sn_vk *vk);

/* One function per op family (src/backends/vulkan/<family>.c): records node's
 * dispatches; SN_ERR_UNSUPPORTED for an op of the family it does not handle. */
sn_status sn_vk_shape(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_binary(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_unary(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_loss(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_optim(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_matmul(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_conv(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_batchnorm(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_norm(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_rnn(sn_vk *vk, sn_tensor *node);
sn_status sn_vk_attention(sn_vk *vk, sn_tensor *node);

#define SN_VK_TRY(expr)                 \
    do {                                \
        sn_status s_ = (expr);          \
        if (s_ != SN_OK) return s_;     \
    } while (0)

#endif
