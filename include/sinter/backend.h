/* The backend interface: a table of function pointers that every device implements
 * (CPU, CUDA, Vulkan). Backends hold kernels only; placement, memory planning and
 * copies between devices are the scheduler's job (graph.h). */
#ifndef SINTER_BACKEND_H
#define SINTER_BACKEND_H

#include "sinter/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_device_info {
    char kind[16];          /* "cpu", "cuda", "vulkan" */
    int index;              /* cuda:N / vulkan:N */
    char name[128];
    size_t mem_total, mem_free;   /* bytes; 0 when unknown */
    int compute_units;      /* cores, SMs, compute units */
    int cc_major, cc_minor; /* CUDA compute capability */
    bool bf16, f16;         /* fast reduced-precision arithmetic */
    char features[256];     /* free text: "AVX2 FMA", "tensor cores", ... */
    int utilization;        /* percent, -1 when unknown */
} sn_device_info;

/* A data-parallel group's collective, attached to a backend by src/dist (sn_comm_attach).
 * allreduce sums n elements (f32, or f64 when f64) of src over the group's processes
 * into dst (src == dst allowed); the buffers are this backend's memory (device memory of
 * a GPU backend when `device`, else host memory). stream: the backend's queue the call
 * is ordered on (a cudaStream_t) or NULL on the host, where it returns when done. Every
 * process of the group makes the same calls in the same order (the same step graph). */
typedef struct sn_collective {
    sn_status (*allreduce)(void *user, const void *src, void *dst, size_t n, bool f64, void *stream);
    void *user;
    int world;          /* processes in the group */
    bool device;        /* buffers in GPU memory (NCCL), else host memory (MPI) */
} sn_collective;

typedef struct sn_backend_i {
    const char *(*name)(sn_backend *b);
    void (*free)(sn_backend *b);
    sn_status (*info)(sn_backend *b, sn_device_info *out);
    /* device memory: one call per arena */
    sn_status (*alloc)(sn_backend *b, size_t bytes, void **base);
    void (*release)(sn_backend *b, void *base);
    /* dst/src are device addresses inside allocated arenas */
    sn_status (*upload)(sn_backend *b, void *dst, const void *host, size_t n);
    sn_status (*download)(sn_backend *b, void *host, const void *src, size_t n);
    sn_status (*fill_zero)(sn_backend *b, void *dst, size_t n);
    bool (*supports_op)(sn_backend *b, const sn_tensor *node);
    /* Runs nodes in order (all placed on b, inputs resident). *state is the
     * backend's own per-segment cache (e.g. a captured CUDA graph), NULL at first;
     * segment_free releases it when the plan goes. */
    sn_status (*compute)(sn_backend *b, sn_tensor **nodes, int n, void **state);
    void (*segment_free)(sn_backend *b, void *state);
    sn_status (*synchronize)(sn_backend *b);
    /* Optional: device bytes the backend holds itself beyond the arenas (library
     * workspaces, scratch, staging), for honest memory reports. */
    size_t (*workspace_bytes)(sn_backend *b);
    /* Optional: like upload, but the copy may overlap work already queued (a copy
     * stream); it lands in dst before any later compute, upload, download or
     * synchronize on b. host may be reused when it returns. NULL: upload is used. */
    sn_status (*prefetch)(sn_backend *b, void *dst, const void *host, size_t n);
} sn_backend_i;

/* Workspace bytes of b (0 when the backend does not say). */
size_t sn_backend_workspace(sn_backend *b);

struct sn_backend {
    const sn_backend_i *i;
    void *ctx;
    bool is_host;           /* data addresses are host memory (CPU and test backends) */
    /* Data parallel: the collective the ALLREDUCE op and synchronised BatchNorm call
     * (NULL: none; those ops then run where one is attached, or fail to plan). */
    const sn_collective *coll;
};

/* The CPU backend; num_threads 0 = the number of cores. */
sn_backend *sn_cpu_backend_new(int num_threads);
int sn_cpu_backend_threads(sn_backend *b);
void sn_backend_free(sn_backend *b);
const char *sn_backend_name(sn_backend *b);

/* Devices sinter can use: the CPU first, then CUDA and Vulkan devices when built in
 * and present. A missing driver means the device is simply not listed. */
int sn_device_count(void);
sn_status sn_device_get(int i, sn_device_info *out);
/* "auto" (CUDA, then a Vulkan GPU, then the CPU), "cpu", "cuda", "cuda:N", "vulkan", "vulkan:N".
 * An unknown or missing device is an error that lists what exists. */
sn_status sn_backend_open(const char *spec, int cpu_threads, sn_backend **out);

#ifdef SN_HAVE_CUDA
int sn_cuda_device_count(void);
sn_status sn_cuda_device_info(int i, sn_device_info *out);
sn_status sn_cuda_backend_new(int device, sn_backend **out);
/* precision switches of a CUDA backend: TF32 for f32 GEMMs; bf16 GEMMs/convs with f32 accumulation */
void sn_cuda_set_precision(sn_backend *b, bool tf32, bool bf16);
#endif

#ifdef __cplusplus
}
#endif
#endif
