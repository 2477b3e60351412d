/* Division of an index by a run-time constant as a multiply-high and a shift. GPU
 * kernels split flat indices into coordinates per element, and an integer division
 * there is a long instruction sequence (64-bit: about a hundred instructions), enough
 * to bound a copy kernel. Exact for 0 <= n < 2^31 and 1 <= d < 2^31 (the round-up
 * method: m = ceil(2^p / d), p = 31 + ceil(log2 d)). Plain C so the host tests check
 * the same code the kernels run. */
#ifndef SN_FASTDIV_H
#define SN_FASTDIV_H

#include <stdint.h>

#ifdef __CUDACC__
#define SN_FD_FN static __host__ __device__ __forceinline__
#else
#define SN_FD_FN static inline
#endif

typedef struct {
    uint32_t d, m, s; /* divisor, multiplier (0: d == 1), shift */
} sn_fastdiv;

SN_FD_FN sn_fastdiv sn_fastdiv_make(uint32_t d) {
    sn_fastdiv f = {d ? d : 1, 0, 0};
    if (f.d == 1) return f;
    uint32_t l = 0;
    while (((uint64_t)1 << l) < f.d) l++;
    f.m = (uint32_t)((((uint64_t)1 << (31 + l)) + f.d - 1) / f.d);
    f.s = l - 1;
    return f;
}

/* n / d */
SN_FD_FN uint32_t sn_fastdiv_q(sn_fastdiv f, uint32_t n) {
    if (!f.m) return n;
#ifdef __CUDA_ARCH__
    return __umulhi(n, f.m) >> f.s;
#else
    return (uint32_t)(((uint64_t)n * f.m) >> 32) >> f.s;
#endif
}

/* q = n / d, returns n % d */
SN_FD_FN uint32_t sn_fastdiv_qr(sn_fastdiv f, uint32_t n, uint32_t *q) {
    *q = sn_fastdiv_q(f, n);
    return n - *q * f.d;
}

#endif
