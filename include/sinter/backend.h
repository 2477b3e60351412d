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
    char kind[16];          /* "cpu", "cuda", "vulkan": the registry entry's kind */
    int index;              /* cuda:N / vulkan:N */
    char type[16];          /* "cpu", "discrete", "integrated", "virtual", "other" (a CPU-type Vulkan
                             * device such as lavapipe says "cpu") */
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

/* Reduced-precision switches (train.tf32, train.mixed_precision). */
typedef struct sn_precision {
    bool tf32;              /* TF32 tensor cores for f32 GEMMs */
    bool bf16;              /* bf16 operands, f32 accumulation */
    bool f16;               /* f16 operands, f32 accumulation */
} sn_precision;

/* Memory addresses: `alloc` returns an opaque base, and the core only ever forms
 * base + offset from it (t->data) and hands it back to the same backend. Host backends
 * (is_host) return host pointers; CUDA returns device pointers; Vulkan returns buffer
 * device addresses (bufferDeviceAddress) and maps an address back to its buffer for
 * transfers. The core never dereferences t->data of a non-host backend. */
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
    /* Optional: reduced-precision arithmetic (NULL: f32 only). SN_ERR_UNSUPPORTED when the
     * device lacks what is asked. */
    sn_status (*set_precision)(sn_backend *b, const sn_precision *p);
    /* Optional: per-op timing; 0 off, 1 time per op kind, 2 also every node once. The backend
     * prints its table to stderr when the program exits. */
    void (*set_profile)(sn_backend *b, int level);
    /* Optional: whether one `layers`-layer RNN op (SN_OP_LSTM when lstm, else SN_OP_GRU) of
     * this batch and hidden size runs faster here than one op per layer, e.g. a kernel that
     * runs the layers side by side. Models that build one op per layer (to free each
     * layer's saved state after its backward) ask; NULL: no. */
    bool (*rnn_fuses_layers)(sn_backend *b, bool lstm, int64_t batch, int64_t hidden, int layers);
} sn_backend_i;

struct sn_backend {
    const sn_backend_i *i;
    void *ctx;
    bool is_host;           /* data addresses are host memory (CPU and test backends) */
    /* Data parallel: the collective the ALLREDUCE op and synchronised BatchNorm call
     * (NULL: none; those ops then run where one is attached, or fail to plan). */
    const sn_collective *coll;
};

/* Backend-neutral helpers over the table (src/backends/backend.c). */
void sn_backend_free(sn_backend *b);
const char *sn_backend_name(sn_backend *b);
sn_status sn_backend_info(sn_backend *b, sn_device_info *out);
size_t sn_backend_workspace(sn_backend *b);   /* 0 when the backend does not say */
sn_status sn_backend_set_precision(sn_backend *b, const sn_precision *p);
void sn_backend_set_profile(sn_backend *b, int level);
bool sn_backend_rnn_fuses_layers(sn_backend *b, bool lstm, int64_t batch, int64_t hidden, int layers);

/* The CPU backend; num_threads 0 = the number of cores. */
sn_backend *sn_cpu_backend_new(int num_threads);
int sn_cpu_backend_threads(sn_backend *b);

/* ---- the backend registry (src/backends/registry.c) ----
 * One entry per backend that is built in: its kind name, how many devices it sees, a
 * device's info, and how to open one. A missing driver means count() is 0. */
typedef struct sn_backend_reg {
    const char *kind;                                   /* "cpu", "cuda", "vulkan" */
    int (*count)(void);
    sn_status (*info)(int index, sn_device_info *out);
    sn_status (*open)(int index, int cpu_threads, sn_backend **out);
} sn_backend_reg;

int sn_backend_reg_count(void);
const sn_backend_reg *sn_backend_reg_get(int i);

/* Devices sinter can use: the CPU first, then each registered backend's devices. */
int sn_device_count(void);
sn_status sn_device_get(int i, sn_device_info *out);
/* "cpu", "cuda:0", "vulkan:1": the spec that opens device d. */
void sn_device_spec(const sn_device_info *d, char *buf, size_t n);
/* device=auto's rule, in one place: a CUDA GPU, else another real (non-CPU-type) GPU, else the
 * CPU; a CPU-type or virtual GPU device (lavapipe) only when named. Higher rank wins, the first
 * device of the highest rank is picked; rank 0 = never picked by auto. */
int sn_device_auto_rank(const sn_device_info *d);
/* The device "auto" opens (its index in sn_device_get's order). */
int sn_device_auto(void);
/* "auto", "cpu", "<kind>", "<kind>:N" for every registered kind. An unknown or missing device
 * is an error that lists what exists. SN_PROFILE (environment) sets the profile level. */
sn_status sn_backend_open(const char *spec, int cpu_threads, sn_backend **out);

#ifdef SN_HAVE_VULKAN
/* The Vulkan registry entry's functions (also reachable as sn_vulkan_reg): every device the
 * Vulkan loader lists (MoltenVK included); 0 without a loader or driver. */
int sn_vulkan_device_count(void);
sn_status sn_vulkan_device_info(int i, sn_device_info *out);
sn_status sn_vulkan_backend_new(int device, sn_backend **out);
#endif

#ifdef __cplusplus
}
#endif
#endif
