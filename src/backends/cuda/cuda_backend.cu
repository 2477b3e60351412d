/* The CUDA backend: devices, memory, transfers, the op dispatch, and graph replay.
 *
 * compute() runs a segment eagerly on its first call, captures it into a CUDA graph
 * on the second (the plan is fixed, so node addresses do not change) and launches
 * that graph from then on. Nothing inside compute allocates or synchronises once a
 * segment has run eagerly: workspaces grow on the eager run only. */
#include "backends/cuda/cuda_common.h"
#include "backends/registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cu_hint(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation:
        return "the GPU is out of memory: a smaller batch or shorter input needs less, or free the GPU";
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
        return "no usable NVIDIA driver/GPU: check nvidia-smi, or use device=cpu";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
        return "a kernel faulted; this is a bug in sinter: please report it with the model config";
    default: return "check nvidia-smi and that the driver supports CUDA 13; if it persists report it";
    }
}

sn_status sn_cu_err(cudaError_t e, const char *where) {
    return sn_error(SN_ERR_DEVICE, "CUDA error in %s: %s (%s)", where, cudaGetErrorString(e), cu_hint(e));
}

sn_status sn_cu_blas_err(cublasStatus_t s, const char *where) {
    const char *hint = s == CUBLAS_STATUS_ALLOC_FAILED ? "the GPU is out of memory: lower the batch size"
                       : s == CUBLAS_STATUS_NOT_SUPPORTED ? "this GEMM shape/precision is not supported: try without bf16"
                                                          : "check nvidia-smi; if it persists report it";
    return sn_error(SN_ERR_DEVICE, "CUDA error in %s: cuBLAS %s (%s)", where, cublasGetStatusString(s), hint);
}

/* ---- workspace ---- */
void *sn_cu_ws(sn_cuda *c, int slot, size_t bytes) {
    if (bytes == 0) bytes = 256;
    if (bytes <= c->ws_cap[slot]) return c->ws[slot];
    if (c->capturing) {
        sn_error(SN_ERR_INTERNAL, "CUDA workspace must grow from %zu to %zu bytes during graph capture "
                 "(the eager run should have sized it; this is a bug in sinter)", c->ws_cap[slot], bytes);
        return NULL;
    }
    /* exactly what is asked (no doubling): growth happens only on a segment's eager
     * first run, a handful of times, and every byte counts in the peak */
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, cap);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        sn_error(SN_ERR_NOMEM, "CUDA error in workspace allocation: %s (%.1f MB needed; a smaller batch or shorter "
                 "input needs less)", cudaGetErrorString(e), bytes / 1048576.0);
        return NULL;
    }
    if (c->ws[slot] && c->ngraphs == 0) {
        cudaFree(c->ws[slot]); /* no captured graph can point at it (cudaFree waits for the stream) */
    } else if (c->ws[slot]) {
        /* graphs captured earlier may still use the old buffer: keep it */
        c->retired_bytes += c->ws_cap[slot];
        if (c->nretired == c->capretired) {
            int nc = c->capretired ? c->capretired * 2 : 16;
            void **r = (void **)realloc(c->retired, (size_t)nc * sizeof *r);
            if (!r) {
                cudaFree(p);
                sn_error(SN_ERR_NOMEM, "CUDA workspace: out of host memory");
                return NULL;
            }
            c->retired = r;
            c->capretired = nc;
        }
        c->retired[c->nretired++] = c->ws[slot];
    }
    c->ws[slot] = p;
    c->ws_cap[slot] = cap;
    return p;
}

/* ---- GEMM ---- */
__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n) {
    SN_GRID_LOOP(i, n) dst[i] = __float2bfloat16(src[i]);
}
/* four at a time: 16-byte loads, 8-byte stores */
__global__ void k_to_bf16x4(uint2 *dst, const float4 *src, int64_t n4) {
    SN_GRID_LOOP(i, n4) {
        float4 v = src[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        dst[i] = make_uint2(*reinterpret_cast<unsigned *>(&lo), *reinterpret_cast<unsigned *>(&hi));
    }
}

sn_status sn_cu_to_bf16(sn_cuda *c, __nv_bfloat16 *dst, const float *src, int64_t n) {
    if (n <= 0) return SN_OK;
    if (((uintptr_t)src & 15) == 0 && ((uintptr_t)dst & 7) == 0 && n % 4 == 0)
        k_to_bf16x4<<<sn_cu_blocks(c, n / 4), SN_CU_THREADS, 0, c->stream>>>((uint2 *)dst, (const float4 *)src, n / 4);
    else
        k_to_bf16<<<sn_cu_blocks(c, n), SN_CU_THREADS, 0, c->stream>>>(dst, src, n);
    CU_LAUNCHED("bf16 conversion");
    return SN_OK;
}

int64_t sn_cu_gemm_extent(bool t, int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
    /* stored as [rows, cols] (or [cols, rows] when transposed) with leading dimension ld */
    int64_t r = t ? cols : rows, cl = t ? rows : cols;
    return (batch - 1) * stride + (r - 1) * ld + cl;
}

sn_status sn_cu_gemm_ex(sn_cuda *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                        int64_t ldc, int64_t sC, int64_t batch, const __nv_bfloat16 *A16, const __nv_bfloat16 *B16,
                        const char *where) {
    if (M <= 0 || N <= 0 || batch <= 0) return SN_OK;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX ||
        batch > INT32_MAX)
        return sn_error(SN_ERR_UNSUPPORTED, "CUDA GEMM in %s: dimensions exceed 2^31 (M %lld N %lld K %lld)", where,
                        (long long)M, (long long)N, (long long)K);
    if (K <= 0) {
        /* C = beta C: cuBLAS handles k = 0 */
    }
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* column-major: C^T[N,M] = op(B)^T op(A)^T */
    if (c->bf16 && K > 0) {
        int64_t na = A16 ? 0 : sn_cu_gemm_extent(ta, M, K, lda, sA, batch);
        int64_t nb = B16 ? 0 : sn_cu_gemm_extent(tb, K, N, ldb, sB, batch);
        if (na + nb > 0) {
            size_t oa = ((size_t)na * 2 + 255) & ~(size_t)255;
            char *w = (char *)sn_cu_ws(c, SN_WS_CVT, oa + (size_t)nb * 2);
            if (!w) return sn_error_prefix(SN_ERR_NOMEM, "%s", where);
            if (!A16) {
                SN_TRY(sn_cu_to_bf16(c, (__nv_bfloat16 *)w, A, na));
                A16 = (const __nv_bfloat16 *)w;
            }
            if (!B16) {
                SN_TRY(sn_cu_to_bf16(c, (__nv_bfloat16 *)(w + oa), B, nb));
                B16 = (const __nv_bfloat16 *)(w + oa);
            }
        }
        BLAS_TRY(cublasGemmStridedBatchedEx(c->blas, opB, opA, (int)N, (int)M, (int)K, &alpha, B16, CUDA_R_16BF,
                                            (int)ldb, sB, A16, CUDA_R_16BF, (int)lda, sA, &beta, C, CUDA_R_32F,
                                            (int)ldc, sC, (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 where);
        return SN_OK;
    }
    if (batch == 1)
        BLAS_TRY(cublasSgemm(c->blas, opB, opA, (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C,
                             (int)ldc),
                 where);
    else
        BLAS_TRY(cublasSgemmStridedBatched(c->blas, opB, opA, (int)N, (int)M, (int)K, &alpha, B, (int)ldb, sB, A,
                                           (int)lda, sA, &beta, C, (int)ldc, sC, (int)batch),
                 where);
    return SN_OK;
}

/* ---- devices ---- */
static int cu_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no GPU: not an error */
        return 0;
    }
    return n;
}

/* NVML through dlopen so that a machine without it still runs. */
typedef struct {
    unsigned int gpu, memory;
} sn_nvml_util;
typedef void *sn_nvml_dev;

static int nvml_utilization(int device) {
    void *h = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!h) return -1;
    int (*init)(void) = (int (*)(void))dlsym(h, "nvmlInit_v2");
    int (*shutdown)(void) = (int (*)(void))dlsym(h, "nvmlShutdown");
    int (*by_pci)(const char *, sn_nvml_dev *) = (int (*)(const char *, sn_nvml_dev *))dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
    int (*util)(sn_nvml_dev, sn_nvml_util *) = (int (*)(sn_nvml_dev, sn_nvml_util *))dlsym(h, "nvmlDeviceGetUtilizationRates");
    int r = -1;
    char bus[64];
    if (init && shutdown && by_pci && util && cudaDeviceGetPCIBusId(bus, sizeof bus, device) == cudaSuccess &&
        init() == 0) {
        sn_nvml_dev d = NULL;
        sn_nvml_util u;
        if (by_pci(bus, &d) == 0 && util(d, &u) == 0) r = (int)u.gpu;
        shutdown();
    }
    (void)cudaGetLastError();
    dlclose(h);
    return r;
}

static sn_status cu_device_info(int i, sn_device_info *o) {
    if (!o) return sn_error(SN_ERR_INVALID_ARG, "cu_device_info: out is NULL");
    int n = cu_device_count();
    if (i < 0 || i >= n)
        return sn_error(SN_ERR_INVALID_ARG, "CUDA device %d does not exist (%d found; see `sinter devices`)", i, n);
    cudaDeviceProp p;
    CU_TRY(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties");
    memset(o, 0, sizeof *o);
    snprintf(o->kind, sizeof o->kind, "cuda");
    snprintf(o->type, sizeof o->type, "discrete");
    o->index = i;
    snprintf(o->name, sizeof o->name, "%.127s", p.name);
    o->mem_total = p.totalGlobalMem;
    int prev = 0;
    if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(i) == cudaSuccess) {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
            o->mem_free = fr;
            o->mem_total = tot;
        }
        cudaSetDevice(prev);
    }
    (void)cudaGetLastError();
    o->compute_units = p.multiProcessorCount;
    o->cc_major = p.major;
    o->cc_minor = p.minor;
    o->bf16 = p.major >= 8;
    o->f16 = p.major >= 7 || (p.major == 6 && p.minor >= 0);
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    snprintf(o->features, sizeof o->features, "sm_%d%d, %s, %.0f MB L2, CUDA runtime %d.%d, driver %d.%d", p.major,
             p.minor, p.major >= 7 ? "tensor cores" : "no tensor cores", p.l2CacheSize / 1048576.0, rt / 1000,
             (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10);
    o->utilization = nvml_utilization(i);
    return SN_OK;
}

/* ---- interface ---- */
static const char *cu_name(sn_backend *b) { return ((sn_cuda *)b->ctx)->name; }

static void cu_destroy(sn_cuda *c) {
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->blas) cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
    if (c->side) cudaStreamSynchronize(c->side);
    if (c->side_blas) cublasDestroy(c->side_blas);
    cudaFree(c->side_blas_ws);
    if (c->side_fork) cudaEventDestroy(c->side_fork);
    if (c->side_join) cudaEventDestroy(c->side_join);
    if (c->side) cudaStreamDestroy(c->side);
    for (int i = 0; i < SN_WS_COUNT; i++) cudaFree(c->ws[i]);
    for (int i = 0; i < c->nretired; i++) cudaFree(c->retired[i]);
    free(c->retired);
    for (int i = 0; i < 2; i++) {
        if (c->stage[i]) cudaFreeHost(c->stage[i]);
        if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
    }
    if (c->copy_stream) cudaStreamSynchronize(c->copy_stream);
    if (c->pf_host) cudaFreeHost(c->pf_host);
    cudaFree(c->pf_dev);
    if (c->pf_copied) cudaEventDestroy(c->pf_copied);
    if (c->pf_consumed) cudaEventDestroy(c->pf_consumed);
    if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
    sn_cu_coll_destroy(c);
    if (c->stream) cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static void cu_free(sn_backend *b) {
    cu_destroy((sn_cuda *)b->ctx);
    free(b);
}

static sn_status cu_info(sn_backend *b, sn_device_info *out) { return cu_device_info(((sn_cuda *)b->ctx)->device, out); }

static sn_status cu_alloc(sn_backend *b, size_t bytes, void **base) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    *base = NULL;
    if (bytes == 0) bytes = 256;
    CU_TRY(cudaSetDevice(c->device), "alloc (cudaSetDevice)");
    cudaError_t e = cudaMalloc(base, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        (void)cudaGetLastError();
        *base = NULL;
        return sn_error(SN_ERR_NOMEM, "CUDA error in alloc: %s: %.1f MB requested, %.1f MB free of %.1f MB on %s",
                        cudaGetErrorString(e), bytes / 1048576.0, fr / 1048576.0, tot / 1048576.0, c->name);
    }
    return SN_OK;
}

static void cu_release(sn_backend *b, void *base) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    if (!base) return;
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream);
    cudaFree(base);
    (void)cudaGetLastError();
}

/* Queued prefetches land in their destinations on the compute stream, ahead of any
 * later work there (called first by everything that queues work or reads memory). */
static sn_status pf_flush(sn_cuda *c) {
    if (c->pf_npending == 0) return SN_OK;
    CU_TRY(cudaStreamWaitEvent(c->stream, c->pf_copied, 0), "prefetch (cudaStreamWaitEvent)");
    for (int i = 0; i < c->pf_npending; i++)
        CU_TRY(cudaMemcpyAsync(c->pf_pending[i].dst, (char *)c->pf_dev + c->pf_pending[i].off, c->pf_pending[i].n,
                               cudaMemcpyDeviceToDevice, c->stream),
               "prefetch (device copy into the input)");
    CU_TRY(cudaEventRecord(c->pf_consumed, c->stream), "prefetch (cudaEventRecord)");
    c->pf_npending = 0;
    c->pf_used = 0;
    return SN_OK;
}

/* staging of at least `need` bytes; pending copies are flushed first (still in
 * stream order, only without the overlap), so this grows on the first batch only */
static sn_status pf_grow(sn_cuda *c, size_t need) {
    sn_status st = pf_flush(c);
    if (st != SN_OK) return st;
    size_t cap = 2 * need + ((size_t)1 << 16); /* room for a batch of equal-sized tensors */
    CU_TRY(cudaEventSynchronize(c->pf_consumed), "prefetch (waiting for the previous batch)");
    CU_TRY(cudaStreamSynchronize(c->copy_stream), "prefetch (cudaStreamSynchronize)");
    if (c->pf_host) cudaFreeHost(c->pf_host);
    cudaFree(c->pf_dev);
    c->pf_host = c->pf_dev = NULL;
    c->pf_cap = 0;
    CU_TRY(cudaMallocHost(&c->pf_host, cap), "prefetch (pinned staging buffer)");
    CU_TRY(cudaMalloc(&c->pf_dev, cap), "prefetch (device staging buffer)");
    c->pf_cap = cap;
    return SN_OK;
}

static sn_status cu_prefetch(sn_backend *b, void *dst, const void *host, size_t n) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    if (n == 0) return SN_OK;
    CU_TRY(cudaSetDevice(c->device), "prefetch (cudaSetDevice)");
    if (c->pf_npending == SN_CU_PREFETCH_MAX) {
        sn_status st = pf_flush(c);
        if (st != SN_OK) return st;
    }
    size_t off = c->pf_npending ? (c->pf_used + 255) & ~(size_t)255 : 0;
    if (off + n > c->pf_cap) {
        sn_status st = pf_grow(c, off + n);
        if (st != SN_OK) return st;
        off = 0;
    }
    if (c->pf_npending == 0) {
        /* the staging buffers are free once the last batch's copies are done */
        CU_TRY(cudaEventSynchronize(c->pf_copied), "prefetch (waiting for the pinned buffer)");
        CU_TRY(cudaStreamWaitEvent(c->copy_stream, c->pf_consumed, 0), "prefetch (cudaStreamWaitEvent)");
    }
    memcpy((char *)c->pf_host + off, host, n);
    CU_TRY(cudaMemcpyAsync((char *)c->pf_dev + off, (char *)c->pf_host + off, n, cudaMemcpyHostToDevice,
                           c->copy_stream),
           "prefetch (cudaMemcpyAsync on the copy stream)");
    CU_TRY(cudaEventRecord(c->pf_copied, c->copy_stream), "prefetch (cudaEventRecord)");
    c->pf_pending[c->pf_npending].dst = dst;
    c->pf_pending[c->pf_npending].off = off;
    c->pf_pending[c->pf_npending].n = n;
    c->pf_npending++;
    c->pf_used = off + n;
    return SN_OK;
}

static sn_status cu_upload(sn_backend *b, void *dst, const void *host, size_t n) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    if (n == 0) return SN_OK;
    CU_TRY(cudaSetDevice(c->device), "upload (cudaSetDevice)");
    sn_status pst = pf_flush(c);
    if (pst != SN_OK) return pst;
    /* through the pinned staging buffers: the copy runs asynchronously on the compute
     * stream and the host buffer may be reused as soon as this returns */
    const char *h = (const char *)host;
    char *d = (char *)dst;
    while (n > 0) {
        size_t k = n < SN_CU_STAGE_BYTES ? n : SN_CU_STAGE_BYTES;
        int s = c->stage_next;
        c->stage_next ^= 1;
        CU_TRY(cudaEventSynchronize(c->stage_ev[s]), "upload (waiting for the staging buffer)");
        memcpy(c->stage[s], h, k);
        CU_TRY(cudaMemcpyAsync(d, c->stage[s], k, cudaMemcpyHostToDevice, c->stream), "upload (cudaMemcpyAsync)");
        CU_TRY(cudaEventRecord(c->stage_ev[s], c->stream), "upload (cudaEventRecord)");
        h += k;
        d += k;
        n -= k;
    }
    return SN_OK;
}

static sn_status cu_download(sn_backend *b, void *host, const void *src, size_t n) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    if (n == 0) return SN_OK;
    CU_TRY(cudaSetDevice(c->device), "download (cudaSetDevice)");
    sn_status pst = pf_flush(c);
    if (pst != SN_OK) return pst;
    char *h = (char *)host;
    const char *d = (const char *)src;
    while (n > 0) {
        size_t k = n < SN_CU_STAGE_BYTES ? n : SN_CU_STAGE_BYTES;
        int s = c->stage_next;
        c->stage_next ^= 1;
        CU_TRY(cudaMemcpyAsync(c->stage[s], d, k, cudaMemcpyDeviceToHost, c->stream), "download (cudaMemcpyAsync)");
        CU_TRY(cudaStreamSynchronize(c->stream), "download (the queued GPU work failed; cudaStreamSynchronize)");
        memcpy(h, c->stage[s], k);
        h += k;
        d += k;
        n -= k;
    }
    return SN_OK;
}

static sn_status cu_fill_zero(sn_backend *b, void *dst, size_t n) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    if (n == 0) return SN_OK;
    CU_TRY(cudaSetDevice(c->device), "fill_zero (cudaSetDevice)");
    sn_status pst = pf_flush(c);
    if (pst != SN_OK) return pst;
    CU_TRY(cudaMemsetAsync(dst, 0, n, c->stream), "fill_zero (cudaMemsetAsync)");
    return SN_OK;
}

static bool dev_coll(sn_backend *b) { return b->coll && b->coll->device; }

static bool cu_supports(sn_backend *b, const sn_tensor *t) {
    /* collectives on device memory need a device (NCCL) collective attached */
    if (t->op == SN_OP_ALLREDUCE || (sn_op_family_of(t->op) == SN_FAM_BATCHNORM && t->ip[2])) return dev_coll(b);
    if (t->dtype != SN_F32) return false;
    for (int i = 0; i < t->nsrc; i++)
        if (t->src[i] && t->src[i]->dtype != SN_F32) return false;
    return t->op >= SN_OP_NONE && t->op < SN_OP_COUNT;
}

typedef sn_status (*cu_kernel_fn)(sn_cuda *c, sn_tensor *node);
static cu_kernel_fn cu_kernel(sn_op_family f) {
    switch (f) {
    case SN_FAM_SHAPE: return sn_cu_shape;
    case SN_FAM_BINARY: return sn_cu_binary;
    case SN_FAM_UNARY: return sn_cu_unary;
    case SN_FAM_MATMUL: return sn_cu_matmul;
    case SN_FAM_CONV: return sn_cu_conv;
    case SN_FAM_BATCHNORM: return sn_cu_batchnorm;
    case SN_FAM_NORM: return sn_cu_norm;
    case SN_FAM_RNN: return sn_cu_rnn;
    case SN_FAM_ATTENTION: return sn_cu_attention;
    case SN_FAM_LOSS: return sn_cu_loss;
    case SN_FAM_OPTIM: return sn_cu_optim;
    case SN_FAM_COLLECTIVE: return sn_cu_collective;
    default: return NULL;
    }
}

static sn_status cu_node(sn_cuda *c, sn_tensor *t) {
    if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) return SN_OK;
    if (c->coll_npending) SN_TRY(sn_cu_coll_wait_srcs(c, t));
    cu_kernel_fn fn = cu_kernel(sn_op_family_of(t->op));
    if (fn) return fn(c, t);
    return sn_error(SN_ERR_UNSUPPORTED, "CUDA backend: op %d (%s) has no kernel", (int)t->op, sn_op_name(t->op));
}

/* SN_PROFILE=1: run eagerly and time each op kind with events (a developer aid); a
 * segment's first run is not counted. SN_PROFILE=2 also lists every node of the
 * second counted run (name, op, shape, ms). */
static double g_prof_ms[SN_OP_COUNT];
static long g_prof_n[SN_OP_COUNT];
static int g_prof, g_prof_level, g_prof_runs;

static void prof_print(void) {
    double tot = 0;
    for (int i = 0; i < SN_OP_COUNT; i++) tot += g_prof_ms[i];
    fprintf(stderr, "sinter CUDA op profile (total %.2f ms):\n", tot);
    for (int i = 0; i < SN_OP_COUNT; i++)
        if (g_prof_n[i])
            fprintf(stderr, "  %-28s %8ld calls %10.2f ms %5.1f%%\n", sn_op_name((sn_op)i), g_prof_n[i], g_prof_ms[i],
                    100.0 * g_prof_ms[i] / (tot > 0 ? tot : 1));
}

static bool profiling(void) { return g_prof == 1; }

static bool cu_rnn_fuses_layers(sn_backend *b, bool lstm, int64_t batch, int64_t hidden, int layers) {
    return sn_cu_rnn_fuses_layers((sn_cuda *)b->ctx, lstm, batch, hidden, layers);
}

static void cu_set_profile(sn_backend *b, int level) {
    static bool registered;
    if (level > 0 && !registered) registered = atexit(prof_print) == 0;
    g_prof_level = level;
    g_prof = level >= 1;
}

static sn_status run_nodes_profiled(sn_cuda *c, sn_tensor **nodes, int n) {
    cudaEvent_t a, b;
    CU_TRY(cudaEventCreate(&a), "profile (cudaEventCreate)");
    CU_TRY(cudaEventCreate(&b), "profile (cudaEventCreate)");
    for (int i = 0; i < n; i++) {
        CU_TRY(cudaEventRecord(a, c->stream), "profile (cudaEventRecord)");
        sn_status s = cu_node(c, nodes[i]);
        if (s != SN_OK) return sn_error_prefix(s, "CUDA op '%s' (%s)", nodes[i]->name, sn_op_name(nodes[i]->op));
        CU_TRY(cudaEventRecord(b, c->stream), "profile (cudaEventRecord)");
        CU_TRY(cudaEventSynchronize(b), "profile (cudaEventSynchronize)");
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        g_prof_ms[nodes[i]->op] += ms;
        g_prof_n[nodes[i]->op]++;
        if (c->coll_npending) SN_TRY(sn_cu_coll_join(c)); /* time the collective with its op */
        if (g_prof_level >= 2 && g_prof_runs == 1) {
            char sh[64];
            fprintf(stderr, "  node %-40s %-26s %-24s %8.3f ms\n", nodes[i]->name, sn_op_name(nodes[i]->op),
                    sn_shape_str(nodes[i], sh, sizeof sh), ms);
        }
    }
    g_prof_runs++;
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return SN_OK;
}

static sn_status run_nodes(sn_cuda *c, sn_tensor **nodes, int n, bool prof) {
    if (prof && !c->capturing) return run_nodes_profiled(c, nodes, n);
    for (int i = 0; i < n; i++) {
        sn_status s = cu_node(c, nodes[i]);
        if (s != SN_OK) return sn_error_prefix(s, "CUDA op '%s' (%s)", nodes[i]->name, sn_op_name(nodes[i]->op));
    }
    return sn_cu_coll_join(c);
}

typedef struct cu_segment {
    int calls;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
} cu_segment;

static sn_status cu_compute(sn_backend *b, sn_tensor **nodes, int n, void **state) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    c->coll = dev_coll(b) ? b->coll : NULL;
    CU_TRY(cudaSetDevice(c->device), "compute (cudaSetDevice)");
    sn_status pst = pf_flush(c);
    if (pst != SN_OK) return pst;
    if (!state) return run_nodes(c, nodes, n, profiling());
    cu_segment *s = (cu_segment *)*state;
    if (!s) {
        s = (cu_segment *)calloc(1, sizeof *s);
        if (!s) return sn_error(SN_ERR_NOMEM, "CUDA compute: out of host memory");
        *state = s;
    }
    if (profiling()) {
        /* eager every time; the first run (workspace growth, cuBLAS and module loading)
         * stays out of the numbers */
        s->calls++;
        return run_nodes(c, nodes, n, s->calls > 1);
    }
    if (s->exec) {
        CU_TRY(cudaGraphLaunch(s->exec, c->stream), "compute (cudaGraphLaunch)");
        return SN_OK;
    }
    s->calls++;
    if (s->calls == 1) return run_nodes(c, nodes, n, false); /* eager: sizes the workspaces */

    /* second call: capture, instantiate, launch */
    CU_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "compute (cudaStreamBeginCapture)");
    c->capturing = true;
    sn_status st = run_nodes(c, nodes, n, false);
    c->capturing = false;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (st != SN_OK) {
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError();
        return st;
    }
    if (e != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        return sn_cu_err(e, "compute (cudaStreamEndCapture: an op did something a CUDA graph cannot hold)");
    }
    cudaGraphExec_t ex = NULL;
    e = cudaGraphInstantiate(&ex, g, 0);
    if (e != cudaSuccess) {
        cudaGraphDestroy(g);
        return sn_cu_err(e, "compute (cudaGraphInstantiate)");
    }
    s->graph = g;
    s->exec = ex;
    c->ngraphs++;
    CU_TRY(cudaGraphLaunch(s->exec, c->stream), "compute (cudaGraphLaunch)");
    return SN_OK;
}

static void cu_segment_free(sn_backend *b, void *state) {
    cu_segment *s = (cu_segment *)state;
    if (!s) return;
    sn_cuda *c = (sn_cuda *)b->ctx;
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream);
    if (s->exec) {
        cudaGraphExecDestroy(s->exec);
        c->ngraphs--;
    }
    if (s->graph) cudaGraphDestroy(s->graph);
    (void)cudaGetLastError();
    free(s);
}

static size_t cu_workspace(sn_backend *b) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    size_t n = c->retired_bytes + (c->blas_ws ? c->blas_ws_bytes : 0) + (c->side_blas_ws ? c->blas_ws_bytes : 0) +
               c->pf_cap;
    for (int i = 0; i < SN_WS_COUNT; i++) n += c->ws_cap[i];
    return n;
}

static sn_status cu_sync(sn_backend *b) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    CU_TRY(cudaSetDevice(c->device), "synchronize (cudaSetDevice)");
    sn_status pst = pf_flush(c);
    if (pst != SN_OK) return pst;
    CU_TRY(cudaStreamSynchronize(c->stream), "synchronize (the queued GPU work failed)");
    return SN_OK;
}

static sn_status cu_set_precision(sn_backend *b, const sn_precision *p);

static const sn_backend_i cu_iface = {
    .name = cu_name,
    .free = cu_free,
    .info = cu_info,
    .alloc = cu_alloc,
    .release = cu_release,
    .upload = cu_upload,
    .download = cu_download,
    .fill_zero = cu_fill_zero,
    .supports_op = cu_supports,
    .compute = cu_compute,
    .segment_free = cu_segment_free,
    .synchronize = cu_sync,
    .workspace_bytes = cu_workspace,
    .prefetch = cu_prefetch,
    .set_precision = cu_set_precision,
    .set_profile = cu_set_profile,
    .rnn_fuses_layers = cu_rnn_fuses_layers,
};

static sn_status cu_apply_math(sn_cuda *c) {
    const cublasMath_t m = c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    BLAS_TRY(cublasSetMathMode(c->blas, m), "cublasSetMathMode");
    if (c->side_blas) BLAS_TRY(cublasSetMathMode(c->side_blas, m), "cublasSetMathMode (side stream)");
    return SN_OK;
}

/* each part made once, so a call after a failed one picks up where it stopped */
sn_status sn_cu_side_init(sn_cuda *c) {
    if (c->side_blas) return SN_OK;
    if (c->capturing) return sn_error(SN_ERR_INTERNAL, "side stream: first made during graph capture (a bug in sinter)");
    if (!c->side) CU_TRY(cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking), "side stream (cudaStreamCreate)");
    if (!c->side_fork)
        CU_TRY(cudaEventCreateWithFlags(&c->side_fork, cudaEventDisableTiming), "side stream (cudaEventCreate)");
    if (!c->side_join)
        CU_TRY(cudaEventCreateWithFlags(&c->side_join, cudaEventDisableTiming), "side stream (cudaEventCreate)");
    if (!c->side_blas_ws) CU_TRY(cudaMalloc(&c->side_blas_ws, c->blas_ws_bytes), "side stream (cuBLAS workspace)");
    cublasHandle_t h = NULL;
    BLAS_TRY(cublasCreate(&h), "side stream (cublasCreate)");
    cublasStatus_t bs = cublasSetStream(h, c->side);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetWorkspace(h, c->side_blas_ws, c->blas_ws_bytes);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(h);
        return sn_cu_blas_err(bs, "side stream (cuBLAS handle)");
    }
    c->side_blas = h;
    return cu_apply_math(c);
}

static sn_status cu_backend_new(int device, sn_backend **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "cu_backend_new: out is NULL");
    *out = NULL;
    int n = cu_device_count();
    if (n == 0)
        return sn_error(SN_ERR_UNSUPPORTED, "no CUDA device found (no NVIDIA driver or GPU): use device=cpu or "
                        "device=vulkan");
    if (device < 0 || device >= n)
        return sn_error(SN_ERR_INVALID_ARG, "CUDA device %d does not exist: %d found (cuda:0 .. cuda:%d)", device, n,
                        n - 1);
    sn_cuda *c = (sn_cuda *)calloc(1, sizeof *c);
    sn_backend *b = (sn_backend *)calloc(1, sizeof *b);
    if (!c || !b) {
        free(c);
        free(b);
        return sn_error(SN_ERR_NOMEM, "CUDA backend: out of host memory");
    }
    c->device = device;
    sn_status st = SN_OK;
    cudaDeviceProp p;
    cublasStatus_t bs;
#define INIT_TRY(call, where)                     \
    do {                                          \
        cudaError_t e_ = (call);                  \
        if (e_ != cudaSuccess) {                  \
            st = sn_cu_err(e_, where);            \
            goto fail;                            \
        }                                         \
    } while (0)
    INIT_TRY(cudaSetDevice(device), "backend creation (cudaSetDevice)");
    INIT_TRY(cudaGetDeviceProperties(&p, device), "backend creation (cudaGetDeviceProperties)");
    c->nsm = p.multiProcessorCount;
    snprintf(c->name, sizeof c->name, "cuda:%d", device);
    INIT_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "backend creation (cudaStreamCreate)");
    INIT_TRY(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking),
             "backend creation (cudaStreamCreate, copy stream)");
    INIT_TRY(cudaEventCreateWithFlags(&c->pf_copied, cudaEventDisableTiming), "backend creation (cudaEventCreate)");
    INIT_TRY(cudaEventCreateWithFlags(&c->pf_consumed, cudaEventDisableTiming), "backend creation (cudaEventCreate)");
    for (int i = 0; i < 2; i++) {
        INIT_TRY(cudaMallocHost(&c->stage[i], SN_CU_STAGE_BYTES), "backend creation (pinned staging buffer)");
        INIT_TRY(cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming), "backend creation (cudaEventCreate)");
    }
    bs = cublasCreate(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = sn_cu_blas_err(bs, "backend creation (cublasCreate)");
        goto fail;
    }
    bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = sn_cu_blas_err(bs, "backend creation (cublasSetStream)");
        goto fail;
    }
    /* a fixed cuBLAS workspace: graph capture forbids cuBLAS allocating its own. 8 MB:
     * the CRN step ran within 0.5% of its 32 MB time on an H200 (SN_CUBLAS_WS_MB overrides) */
    {
        const char *ev = getenv("SN_CUBLAS_WS_MB");
        size_t wsb = (size_t)(ev && atoi(ev) > 0 ? atoi(ev) : 8) << 20;
        c->blas_ws_bytes = wsb;
        INIT_TRY(cudaMalloc(&c->blas_ws, wsb), "backend creation (cuBLAS workspace)");
        bs = cublasSetWorkspace(c->blas, c->blas_ws, wsb);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            st = sn_cu_blas_err(bs, "backend creation (cublasSetWorkspace)");
            goto fail;
        }
    }
    st = cu_apply_math(c);
    if (st != SN_OK) goto fail;
#undef INIT_TRY
    b->i = &cu_iface;
    b->ctx = c;
    b->is_host = false;
    *out = b;
    return SN_OK;
fail:
    cu_destroy(c);
    free(b);
    return st;
}

/* bf16 operands (f32 accumulation) stand for mixed precision: f16 asks for the same path */
static sn_status cu_set_precision(sn_backend *b, const sn_precision *p) {
    sn_cuda *c = (sn_cuda *)b->ctx;
    cudaDeviceProp prop;
    CU_TRY(cudaGetDeviceProperties(&prop, c->device), "set_precision (cudaGetDeviceProperties)");
    if ((p->bf16 || p->f16 || p->tf32) && prop.major < 8)
        return sn_error(SN_ERR_UNSUPPORTED, "cuda:%d (%s, compute capability %d.%d) has no bf16/TF32 tensor cores",
                        c->device, prop.name, prop.major, prop.minor);
    c->tf32 = p->tf32;
    c->bf16 = p->bf16 || p->f16;
    CU_TRY(cudaSetDevice(c->device), "set_precision (cudaSetDevice)");
    return cu_apply_math(c);
}

static sn_status cu_reg_open(int index, int cpu_threads, sn_backend **out) { return cu_backend_new(index, out); }

const sn_backend_reg sn_cuda_reg = {
    .kind = "cuda", .count = cu_device_count, .info = cu_device_info, .open = cu_reg_open};
