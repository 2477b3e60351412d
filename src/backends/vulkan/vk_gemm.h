/* The Vulkan backend's shared helpers of the heavy op families (vk-ops): the tiled fp32
 * GEMM every family builds on, and the small copy/fill/channel-sum passes between GEMMs.
 * Implemented in matmul.c; all record dispatches through sn_vk_dispatch. Addresses are
 * device addresses (sn_vk_addr), strides and sizes in elements. */
#ifndef SN_VK_GEMM_H
#define SN_VK_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/vulkan/vk.h"

enum { SN_VK_BIAS_NONE = 0, SN_VK_BIAS_COL = 1 /* bias[n] */, SN_VK_BIAS_ROW = 2 /* bias[m] */ };

/* C = act(alpha * op(A) op(B) + beta * C + bias) for `batch` products, row-major; op(A)
 * is [M,K], op(B) [K,N]. Product z uses zo = z / binner, zi = z % binner and offsets
 * each operand by zo * s[0] + zi * s[1] (binner 0 or 1: plain strided batches in s[0]).
 * beta 0 never reads C. Each output is one fixed-order sum: deterministic. */
typedef struct sn_vk_gemm_args {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    uint64_t A, B, C;
    int64_t lda, ldb, ldc;
    int64_t batch, binner;
    int64_t sA[2], sB[2], sC[2];
    uint64_t bias;   /* with bias_mode */
    int bias_mode;   /* SN_VK_BIAS_* */
    int act;         /* sn_act epilogue, parameters p0, p1 */
    float p0, p1;
} sn_vk_gemm_args;

sn_status sn_vk_gemm(sn_vk *vk, const sn_vk_gemm_args *g, const char *what);
/* the shader (SN_VK_SH_*) sn_vk_gemm would use for g now (benchmarks, tests) */
int sn_vk_gemm_shader(sn_vk *vk, const sn_vk_gemm_args *g);
/* One product: C = alpha op(A) op(B) + beta C */
sn_status sn_vk_gemm1(sn_vk *vk, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, uint64_t A,
                      int64_t lda, uint64_t B, int64_t ldb, float beta, uint64_t C, int64_t ldc, const char *what);

/* dst[i] = src[i] (src != 0) or value, i < n */
sn_status sn_vk_fill(sn_vk *vk, uint64_t dst, uint64_t src, int64_t n, float value);
/* dst[C, R] = src[R, C]^T */
sn_status sn_vk_transpose(sn_vk *vk, uint64_t src, int64_t R, int64_t C, uint64_t dst);
/* out[c] = sum of x[outer, C, inner] over outer and inner (inner 1: column sums) */
sn_status sn_vk_chan_sum(sn_vk *vk, uint64_t x, int64_t outer, int64_t C, int64_t inner, uint64_t out);

/* Row softmax (norm.c), in place when x == y; causal_T > 0: row r sees only the first
 * r % causal_T + 1 entries (the rest 0). The backward: dx = y (dy - sum(dy y)). */
sn_status sn_vk_softmax_rows(sn_vk *vk, uint64_t x, uint64_t y, int64_t rows, int64_t E, int64_t causal_T);
sn_status sn_vk_softmax_bwd_rows(sn_vk *vk, uint64_t dy, uint64_t y, uint64_t dx, int64_t rows, int64_t E);

/* Workgroups for n items at `per` items each, at most 65535 (the shaders loop over the rest). */
static inline uint32_t sn_vk_groups(int64_t n, int64_t per) {
    int64_t g = (n + per - 1) / per;
    return g < 1 ? 1u : g > 65535 ? 65535u : (uint32_t)g;
}
/* address of element i of a float array at address a */
static inline uint64_t sn_vk_at(uint64_t a, int64_t i) { return a + (uint64_t)i * 4u; }
/* address of a forward node's saved state (sn_extra_ptr on the device) */
static inline uint64_t sn_vk_extra(const sn_tensor *t) { return sn_vk_at(sn_vk_addr(t), sn_align64(sn_nelem(t))); }
/* shaders index with 32-bit element indices: anything larger is refused */
sn_status sn_vk_check_elems(int64_t n, const sn_tensor *node);

#endif
