/* The Vulkan backend: loader, instance, devices, memory, transfers, recording and
 * replay of segments, the pipeline cache, and the op dispatch (see VK_API.md).
 *
 * The loader (libvulkan) is opened at run time: a machine without it, or without a
 * driver, simply has no Vulkan devices. Every arena is one VkBuffer whose device
 * address is the arena's base; shaders reach tensors through buffer_reference pointers.
 * compute() records a segment's dispatches once into a command buffer and resubmits
 * that command buffer on every later call (as the CUDA backend replays a CUDA graph);
 * SN_VK_RECORD=0 re-records on every call instead. */
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "backends/vulkan/vk.h"
#include "backends/registry.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the loader and its function pointers ---- */
#define SN_VK_GLOBAL_FNS(X) X(vkCreateInstance) X(vkEnumerateInstanceExtensionProperties)
#define SN_VK_INSTANCE_FNS(X)                                                                                      \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                           \
    X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties)      \
    X(vkGetPhysicalDeviceMemoryProperties2) X(vkGetPhysicalDeviceQueueFamilyProperties)                           \
    X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice) X(vkDestroyDevice) X(vkGetDeviceQueue)              \
    X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory)     \
    X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory) X(vkGetBufferDeviceAddress) X(vkCreateCommandPool)      \
    X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkFreeCommandBuffers) X(vkBeginCommandBuffer)            \
    X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdPushConstants) X(vkCmdDispatch)     \
    X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) X(vkCmdWriteTimestamp) X(vkCmdResetQueryPool)   \
    X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkGetQueryPoolResults) X(vkQueueSubmit) X(vkQueueWaitIdle)       \
    X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) X(vkCreateShaderModule)                \
    X(vkDestroyShaderModule) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreateComputePipelines)     \
    X(vkDestroyPipeline) X(vkCreatePipelineCache) X(vkDestroyPipelineCache) X(vkGetPipelineCacheData)             \
    X(vkDeviceWaitIdle)

#define SN_VK_DECL(f) static PFN_##f f;
SN_VK_GLOBAL_FNS(SN_VK_DECL)
SN_VK_INSTANCE_FNS(SN_VK_DECL)
#undef SN_VK_DECL
static PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;

/* VK_KHR_cooperative_matrix, declared here: the Vulkan headers of Debian 12 (1.3.239) predate
 * it. Layouts and values from the Vulkan registry (vk.xml). */
#define SN_VK_ST_CM_FEATURES_KHR ((VkStructureType)1000506000)
#define SN_VK_ST_CM_PROPS_KHR ((VkStructureType)1000506001)
#define SN_VK_ST_CM_DEV_PROPS_KHR ((VkStructureType)1000506002)
typedef struct {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrix, cooperativeMatrixRobustBufferAccess;
} sn_vk_cm_features_khr;
typedef struct {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize, NSize, KSize;
    uint32_t AType, BType, CType, ResultType; /* VkComponentTypeKHR: 0 f16, 1 f32 */
    VkBool32 saturatingAccumulation;
    uint32_t scope;                            /* VkScopeKHR: 3 subgroup */
} sn_vk_cm_props_khr;
typedef struct {
    VkStructureType sType;
    void *pNext;
    VkShaderStageFlags cooperativeMatrixSupportedStages;
} sn_vk_cm_dev_props_khr;
typedef VkResult(VKAPI_PTR *sn_vk_cm_props_fn)(VkPhysicalDevice, uint32_t *, sn_vk_cm_props_khr *);

/* shared memory of shaders/matmul_gemm_coop.comp: A and B 128x40 f16 each, C 8x16x20 f32, 4 maxima */
#define SN_VK_COOP_SHARED (2 * 128 * 40 * 2 + 8 * 16 * 20 * 4 + 16)
/* its workgroup: 8 subgroups, at least 256 invocations (each stages at most 4 vec4 of A and of B) */
#define SN_VK_COOP_WG(sg) ((sg) * 8 > 256 ? (sg) * 8 : 256)

typedef struct vk_phys {
    VkPhysicalDevice pd;
    VkPhysicalDeviceProperties props;
    bool bda, f16, int64, bf16, coopmat, budget, portability_subset, timestamps;
    /* the cooperative-matrix GEMM (train.mixed_precision): cm_mnk, an f16 x f16 -> f32
     * subgroup shape it can use, {0} when none (cm_why says why); cm_nv: through
     * VK_NV_cooperative_matrix (a driver without the KHR extension) */
    bool coopmat_nv, cm_nv;
    uint32_t cm_mnk[3];
    char cm_why[160];
    uint32_t subgroup, compute_units;
    uint32_t subgroup_ops; /* VkSubgroupFeatureFlags in compute shaders */
    int queue_family; /* -1: no compute queue */
    uint8_t uuid[VK_UUID_SIZE];
    char driver[96];
} vk_phys;

static struct {
    pthread_once_t once;
    void *lib;
    VkInstance instance;
    uint32_t api; /* instance version */
    int ndev;
    vk_phys *dev;
    char why[512]; /* why there are no devices */
} g = {PTHREAD_ONCE_INIT};

static const char *vk_result_name(VkResult r) {
    switch (r) {
#define C(x) case x: return #x;
    C(VK_SUCCESS) C(VK_NOT_READY) C(VK_TIMEOUT) C(VK_INCOMPLETE) C(VK_ERROR_OUT_OF_HOST_MEMORY)
    C(VK_ERROR_OUT_OF_DEVICE_MEMORY) C(VK_ERROR_INITIALIZATION_FAILED) C(VK_ERROR_DEVICE_LOST)
    C(VK_ERROR_MEMORY_MAP_FAILED) C(VK_ERROR_LAYER_NOT_PRESENT) C(VK_ERROR_EXTENSION_NOT_PRESENT)
    C(VK_ERROR_FEATURE_NOT_PRESENT) C(VK_ERROR_INCOMPATIBLE_DRIVER) C(VK_ERROR_TOO_MANY_OBJECTS)
    C(VK_ERROR_FORMAT_NOT_SUPPORTED) C(VK_ERROR_FRAGMENTED_POOL) C(VK_ERROR_UNKNOWN) C(VK_ERROR_OUT_OF_POOL_MEMORY)
    C(VK_ERROR_INVALID_EXTERNAL_HANDLE) C(VK_ERROR_FRAGMENTATION) C(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
#undef C
    default: return "VkResult (unknown)";
    }
}

static const char *vk_hint(VkResult r) {
    switch (r) {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        return "the GPU is out of memory: a smaller batch or shorter input needs less, or free the GPU";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "the machine is out of memory";
    case VK_ERROR_DEVICE_LOST:
        return "the GPU driver reset the device (a shader faulted or ran too long); please report it with the config";
    case VK_ERROR_INCOMPATIBLE_DRIVER:
    case VK_ERROR_INITIALIZATION_FAILED: return "check the driver with `vulkaninfo --summary`, or use the CPU";
    default: return "check the driver with `vulkaninfo --summary`; if it persists report it";
    }
}

static void *open_loader(void) {
    const char *names[] = {
#ifdef SN_VULKAN_LIB_DIR
#ifdef __APPLE__
        SN_VULKAN_LIB_DIR "/libvulkan.1.dylib",
#else
        SN_VULKAN_LIB_DIR "/libvulkan.so.1",
#endif
#endif
#ifdef __APPLE__
        "libvulkan.1.dylib", "libvulkan.dylib", "/opt/homebrew/lib/libvulkan.1.dylib", "/usr/local/lib/libvulkan.1.dylib",
        "libMoltenVK.dylib",
#else
        "libvulkan.so.1", "libvulkan.so",
#endif
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

static bool has_ext(const VkExtensionProperties *e, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(e[i].extensionName, name)) return true;
    return false;
}

/* Whether the cooperative-matrix GEMM can run, and with which shape: the extension and
 * its feature for compute shaders, the Vulkan memory model and f16 arithmetic its
 * SPIR-V declares, subgroup ids, its shared memory, and an f16 x f16 -> f32 subgroup
 * shape with M, N of 8 or 16 and K of 8, 16 or 32 (what its unrolled 64 x 32 x 32
 * subgroup step and 16 x 16 output staging hold; the largest such). */
static void probe_coopmat(vk_phys *d, bool v12) {
    memset(d->cm_mnk, 0, sizeof d->cm_mnk);
    d->cm_nv = false;
    if (!d->coopmat && !d->coopmat_nv) {
        snprintf(d->cm_why, sizeof d->cm_why, "the driver has no VK_KHR_cooperative_matrix");
        return;
    }
    /* KHR where offered; SN_VK_COOP=nv takes the NV extension where there are both (tests) */
    const char *force = getenv("SN_VK_COOP");
    d->cm_nv = !d->coopmat || (d->coopmat_nv && force && !strcmp(force, "nv"));
    VkPhysicalDeviceCooperativeMatrixFeaturesNV fnv = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    sn_vk_cm_features_khr fkhr = {SN_VK_ST_CM_FEATURES_KHR};
    VkPhysicalDeviceVulkan12Features f12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            d->cm_nv ? (void *)&fnv : (void *)&fkhr};
    VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12};
    VkPhysicalDeviceCooperativeMatrixPropertiesNV pnv = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    sn_vk_cm_dev_props_khr pkhr = {SN_VK_ST_CM_DEV_PROPS_KHR};
    VkPhysicalDeviceSubgroupProperties sg = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                             d->cm_nv ? (void *)&pnv : (void *)&pkhr};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &sg};
    if (!v12) {
        snprintf(d->cm_why, sizeof d->cm_why, "the device or loader is below Vulkan 1.2");
        return;
    }
    vkGetPhysicalDeviceFeatures2(d->pd, &f2);
    vkGetPhysicalDeviceProperties2(d->pd, &p2);
    VkShaderStageFlags stages = d->cm_nv ? pnv.cooperativeMatrixSupportedStages : pkhr.cooperativeMatrixSupportedStages;
    const char *lack = !(d->cm_nv ? fnv.cooperativeMatrix : fkhr.cooperativeMatrix) ? "the cooperativeMatrix feature"
                       : !(stages & VK_SHADER_STAGE_COMPUTE_BIT)                    ? "cooperative matrices in compute shaders"
                       : !f12.vulkanMemoryModel                                      ? "the vulkanMemoryModel feature"
                       : !f12.shaderFloat16                                          ? "the shaderFloat16 feature"
                       : !(sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
                               !(sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT)
                           ? "basic subgroup operations in compute shaders"
                       : d->props.limits.maxComputeSharedMemorySize < SN_VK_COOP_SHARED
                           ? "the shared memory the cooperative-matrix GEMM needs (30 KB)"
                       : sg.subgroupSize == 0 || SN_VK_COOP_WG(sg.subgroupSize) > d->props.limits.maxComputeWorkGroupInvocations ||
                               SN_VK_COOP_WG(sg.subgroupSize) > d->props.limits.maxComputeWorkGroupSize[0]
                           ? "workgroups of 8 subgroups"
                           : NULL;
    if (lack) {
        snprintf(d->cm_why, sizeof d->cm_why, "it lacks %s", lack);
        return;
    }
    uint32_t n = 0;
    sn_vk_cm_props_khr *pk = NULL;
    VkCooperativeMatrixPropertiesNV *pn = NULL;
    if (d->cm_nv) {
        PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV fn = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
            vkGetInstanceProcAddr(g.instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
        if (fn && fn(d->pd, &n, NULL) == VK_SUCCESS && n && (pn = calloc(n, sizeof *pn))) {
            for (uint32_t i = 0; i < n; i++) pn[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
            if (fn(d->pd, &n, pn) < 0) n = 0;
        } else
            n = 0;
    } else {
        sn_vk_cm_props_fn fn = (sn_vk_cm_props_fn)vkGetInstanceProcAddr(
            g.instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
        if (fn && fn(d->pd, &n, NULL) == VK_SUCCESS && n && (pk = calloc(n, sizeof *pk))) {
            for (uint32_t i = 0; i < n; i++) pk[i].sType = SN_VK_ST_CM_PROPS_KHR;
            if (fn(d->pd, &n, pk) < 0) n = 0;
        } else
            n = 0;
    }
    uint32_t best = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t M, N, K, a, b, c, r, sc;
        bool sat = false;
        if (pn) {
            M = pn[i].MSize, N = pn[i].NSize, K = pn[i].KSize, a = pn[i].AType, b = pn[i].BType, c = pn[i].CType;
            r = pn[i].DType, sc = pn[i].scope;
        } else {
            M = pk[i].MSize, N = pk[i].NSize, K = pk[i].KSize, a = pk[i].AType, b = pk[i].BType, c = pk[i].CType;
            r = pk[i].ResultType, sc = pk[i].scope, sat = pk[i].saturatingAccumulation;
        }
        bool fits = (M == 8 || M == 16) && (N == 8 || N == 16) && (K == 8 || K == 16 || K == 32);
        if (a == 0 && b == 0 && c == 1 && r == 1 && sc == 3 && !sat && fits && M * N * K > best) {
            best = M * N * K;
            d->cm_mnk[0] = M, d->cm_mnk[1] = N, d->cm_mnk[2] = K;
        }
    }
    free(pk);
    free(pn);
    if (!best)
        snprintf(d->cm_why, sizeof d->cm_why, "none of its %u cooperative matrix shapes is f16 x f16 -> f32 at subgroup "
                 "scope with M, N of 8 or 16 and K of 8, 16 or 32", n);
}

static void probe_device(vk_phys *d) {
    vkGetPhysicalDeviceProperties(d->pd, &d->props);
    uint32_t ne = 0;
    VkExtensionProperties *ext = NULL;
    if (vkEnumerateDeviceExtensionProperties(d->pd, NULL, &ne, NULL) == VK_SUCCESS && ne) {
        ext = calloc(ne, sizeof *ext);
        if (ext && vkEnumerateDeviceExtensionProperties(d->pd, NULL, &ne, ext) != VK_SUCCESS) ne = 0;
    }
    if (!ext) ne = 0;
    d->budget = has_ext(ext, ne, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    d->coopmat = has_ext(ext, ne, "VK_KHR_cooperative_matrix");
    d->coopmat_nv = has_ext(ext, ne, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    d->bf16 = has_ext(ext, ne, "VK_KHR_shader_bfloat16");
    d->portability_subset = has_ext(ext, ne, "VK_KHR_portability_subset");
    bool nv_sm = has_ext(ext, ne, "VK_NV_shader_sm_builtins");
    bool amd_cores = has_ext(ext, ne, "VK_AMD_shader_core_properties");
    free(ext);
    d->timestamps = d->props.limits.timestampComputeAndGraphics && d->props.limits.timestampPeriod > 0;

    bool v12 = d->props.apiVersion >= VK_API_VERSION_1_2 && g.api >= VK_API_VERSION_1_2;
    VkPhysicalDeviceSubgroupProperties sg = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceIDProperties id = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES, &sg};
    VkPhysicalDeviceDriverProperties drv = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, &id};
    VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
    VkPhysicalDeviceShaderCorePropertiesAMD amd = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, v12 ? (void *)&drv : (void *)&id};
    if (nv_sm) {
        sm.pNext = p2.pNext;
        p2.pNext = &sm;
    }
    if (amd_cores) {
        amd.pNext = p2.pNext;
        p2.pNext = &amd;
    }
    if (g.api >= VK_API_VERSION_1_1) {
        vkGetPhysicalDeviceProperties2(d->pd, &p2);
        d->subgroup = sg.subgroupSize;
        d->subgroup_ops = sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT ? sg.supportedOperations : 0;
        memcpy(d->uuid, id.deviceUUID, VK_UUID_SIZE);
        if (v12) snprintf(d->driver, sizeof d->driver, "%.40s %.50s", drv.driverName, drv.driverInfo);
        if (nv_sm) d->compute_units = sm.shaderSMCount;
        if (amd_cores)
            d->compute_units = amd.shaderEngineCount * amd.shaderArraysPerEngineCount * amd.computeUnitsPerShaderArray;
    }
    if (v12) {
        VkPhysicalDeviceVulkan12Features f12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
        VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12};
        vkGetPhysicalDeviceFeatures2(d->pd, &f2);
        d->bda = f12.bufferDeviceAddress;
        d->f16 = f12.shaderFloat16;
        d->int64 = f2.features.shaderInt64;
    }
    probe_coopmat(d, v12);
    d->queue_family = -1;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(d->pd, &nq, NULL);
    VkQueueFamilyProperties *q = calloc(nq ? nq : 1, sizeof *q);
    if (q) {
        vkGetPhysicalDeviceQueueFamilyProperties(d->pd, &nq, q);
        /* a compute queue; one without graphics is often a dedicated async-compute engine,
         * but the graphics+compute family is the one every driver tunes: take the first */
        for (uint32_t i = 0; i < nq && d->queue_family < 0; i++)
            if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) d->queue_family = (int)i;
        free(q);
    }
}

static void init_once(void) {
    g.lib = open_loader();
    if (!g.lib) {
        snprintf(g.why, sizeof g.why, "no Vulkan loader (libvulkan) found: install libvulkan1 and a driver "
                 "(mesa-vulkan-drivers), or molten-vk on macOS");
        return;
    }
    vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr)dlsym(g.lib, "vkGetInstanceProcAddr");
    if (!vkGetInstanceProcAddr) {
        snprintf(g.why, sizeof g.why, "the Vulkan loader has no vkGetInstanceProcAddr");
        return;
    }
#define SN_VK_LOAD_G(f) f = (PFN_##f)vkGetInstanceProcAddr(NULL, #f);
    SN_VK_GLOBAL_FNS(SN_VK_LOAD_G)
#undef SN_VK_LOAD_G
    PFN_vkEnumerateInstanceVersion ver = (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL,
                                                                                                "vkEnumerateInstanceVersion");
    g.api = VK_API_VERSION_1_0;
    if (ver) ver(&g.api);
    if (!vkCreateInstance || g.api < VK_API_VERSION_1_2) {
        snprintf(g.why, sizeof g.why, "the Vulkan loader supports Vulkan %u.%u only; sinter needs 1.2: update "
                 "libvulkan1 (or the Vulkan SDK)", VK_API_VERSION_MAJOR(g.api), VK_API_VERSION_MINOR(g.api));
        return;
    }
    uint32_t ne = 0;
    VkExtensionProperties *ext = NULL;
    if (vkEnumerateInstanceExtensionProperties(NULL, &ne, NULL) == VK_SUCCESS && ne) {
        ext = calloc(ne, sizeof *ext);
        if (ext && vkEnumerateInstanceExtensionProperties(NULL, &ne, ext) != VK_SUCCESS) ne = 0;
    }
    if (!ext) ne = 0;
    const char *exts[2];
    uint32_t next = 0;
    VkInstanceCreateFlags flags = 0;
    /* MoltenVK (macOS) is a portability driver: listed only when asked for */
    if (has_ext(ext, ne, "VK_KHR_portability_enumeration")) {
        exts[next++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }
    free(ext);
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "sinter", 1, "sinter", 1, VK_API_VERSION_1_2};
    VkInstanceCreateInfo ci = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, flags, &app, 0, NULL, next, exts};
    VkResult r = vkCreateInstance(&ci, NULL, &g.instance);
    if (r != VK_SUCCESS) {
        g.instance = VK_NULL_HANDLE;
        snprintf(g.why, sizeof g.why, "vkCreateInstance failed: %s (is a Vulkan driver installed? `vulkaninfo "
                 "--summary` lists what the loader sees)", vk_result_name(r));
        return;
    }
#define SN_VK_LOAD_I(f) f = (PFN_##f)vkGetInstanceProcAddr(g.instance, #f);
    SN_VK_INSTANCE_FNS(SN_VK_LOAD_I)
#undef SN_VK_LOAD_I
    uint32_t n = 0;
    r = vkEnumeratePhysicalDevices(g.instance, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        snprintf(g.why, sizeof g.why, "the Vulkan loader found no device%s%s (install a driver: mesa-vulkan-drivers, "
                 "or the GPU vendor's)", r != VK_SUCCESS ? ": " : "", r != VK_SUCCESS ? vk_result_name(r) : "");
        return;
    }
    VkPhysicalDevice *pds = calloc(n, sizeof *pds);
    g.dev = calloc(n, sizeof *g.dev);
    if (!pds || !g.dev || vkEnumeratePhysicalDevices(g.instance, &n, pds) < 0) {
        free(pds);
        free(g.dev);
        g.dev = NULL;
        snprintf(g.why, sizeof g.why, "vkEnumeratePhysicalDevices failed");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        g.dev[i].pd = pds[i];
        probe_device(&g.dev[i]);
    }
    free(pds);
    g.ndev = (int)n;
}

static bool vk_init(void) {
    pthread_once(&g.once, init_once);
    return g.ndev > 0;
}

int sn_vulkan_device_count(void) { return vk_init() ? g.ndev : 0; }

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    default: return "other";
    }
}

static void heap_totals(const vk_phys *d, size_t *total, size_t *freeb) {
    VkPhysicalDeviceMemoryBudgetPropertiesEXT bud = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 mp = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                            d->budget ? &bud : NULL};
    vkGetPhysicalDeviceMemoryProperties2(d->pd, &mp);
    *total = *freeb = 0;
    for (uint32_t h = 0; h < mp.memoryProperties.memoryHeapCount; h++) {
        if (!(mp.memoryProperties.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)) continue;
        *total += mp.memoryProperties.memoryHeaps[h].size;
        if (d->budget && bud.heapBudget[h] > bud.heapUsage[h]) *freeb += bud.heapBudget[h] - bud.heapUsage[h];
    }
}

sn_status sn_vulkan_device_info(int i, sn_device_info *o) {
    if (!o) return sn_error(SN_ERR_INVALID_ARG, "sn_vulkan_device_info: out is NULL");
    int n = sn_vulkan_device_count();
    if (i < 0 || i >= n)
        return sn_error(SN_ERR_INVALID_ARG, "Vulkan device %d does not exist: %d found%s%s (see `sinter devices`)", i,
                        n, n ? "" : ": ", n ? "" : g.why);
    const vk_phys *d = &g.dev[i];
    memset(o, 0, sizeof *o);
    snprintf(o->kind, sizeof o->kind, "vulkan");
    snprintf(o->type, sizeof o->type, "%s", type_name(d->props.deviceType));
    o->index = i;
    snprintf(o->name, sizeof o->name, "%.127s", d->props.deviceName);
    heap_totals(d, &o->mem_total, &o->mem_free);
    o->compute_units = (int)d->compute_units;
    /* fast reduced precision = what train.mixed_precision can use: the f16 cooperative-matrix
     * GEMM (bf16 cooperative matrices need a newer shader compiler than sinter builds with) */
    o->f16 = d->cm_mnk[0] != 0;
    o->bf16 = false;
    o->utilization = -1;
    uint32_t v = d->props.apiVersion;
    char cm[64] = "";
    if (d->cm_mnk[0])
        snprintf(cm, sizeof cm, ", cooperative matrix f16 %ux%ux%u%s", d->cm_mnk[0], d->cm_mnk[1], d->cm_mnk[2],
                 d->cm_nv ? " (NV)" : "");
    else if (d->coopmat || d->coopmat_nv)
        snprintf(cm, sizeof cm, ", cooperative matrix (unusable)");
    snprintf(o->features, sizeof o->features, "Vulkan %u.%u.%u, subgroup %u%s%s%s%s%s%s, %.80s", VK_API_VERSION_MAJOR(v),
             VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v), d->subgroup, d->f16 ? ", f16" : "",
             d->bf16 ? ", bf16" : "", cm,
             d->bda ? "" : ", NO bufferDeviceAddress (unusable)", d->queue_family < 0 ? ", NO compute queue" : "",
             d->props.apiVersion < VK_API_VERSION_1_2 ? ", below Vulkan 1.2 (unusable)" : "",
             d->driver[0] ? d->driver : "driver unknown");
    return SN_OK;
}

/* ---- the backend context ---- */
typedef struct vk_buf {
    uint64_t addr;
    size_t size;
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map; /* host address when the memory is host-visible */
} vk_buf;

/* Node scratch: sn_vk_temp without host data is taken from one buffer shared by every node
 * of every segment, from its start at each node. That is safe because a full barrier
 * separates nodes (and begins each segment), and a node writes its scratch before it reads
 * it. The buffer grows when a node needs more; a segment that saw it grow is recorded
 * again, so older, smaller buffers are freed once no recording uses them. */
#define SN_VK_MAX_SCR 8
typedef struct {
    uint64_t addr;
    size_t size;
    int refs;
} vk_scr;

typedef struct vk_seg {
    VkCommandBuffer cb;
    VkFence fence;
    bool recorded, pending;
    vk_buf *temps; /* chunks for sn_vk_temp */
    int ntemps, cap_temps;
    size_t temp_used; /* in the last chunk */
    uint64_t scr_refs[SN_VK_MAX_SCR]; /* the node scratch buffers this recording uses */
    int nscr_refs;
    /* SN_PROFILE: timestamps around each node (levels 1, 2) or each dispatch (3) */
    VkQueryPool qpool;
    int nq, qcap, timed_runs;
    long qlost;       /* dispatches past qcap, not timed */
    sn_tensor **qnode; /* the node of each timed pair */
    int *qsh;          /* level 3: the shader of each timed pair */
} vk_seg;

struct sn_vk {
    int index;
    const vk_phys *phys;
    char name[192];      /* "vulkan:0 (llvmpipe ...)", for messages */
    char short_name[32]; /* "vulkan:0", the backend's name */
    VkDevice dev;
    VkQueue queue;
    VkCommandPool pool;
    VkCommandBuffer xfer_cb;
    VkFence xfer_fence;
    VkPipelineLayout layout;
    VkPipelineCache cache;
    int new_pipelines;
    char cache_path[512];
    VkPipeline pipe[SN_VK_SH_COUNT + 1];
    VkPhysicalDeviceMemoryProperties mp;
    int mt_device;  /* device-local memory type */
    int mt_unified; /* device-local + host-visible + coherent, used for arenas on non-discrete devices; -1 none */
    int mt_stage;   /* host-visible + coherent (cached preferred) for staging */
    VkDeviceSize max_alloc;
    /* allocations sorted by address (arenas, temp chunks) */
    vk_buf *bufs;
    int nbufs, cap_bufs;
    vk_buf stage;
    size_t temp_bytes;
    vk_scr scr[SN_VK_MAX_SCR]; /* the last is the current one */
    int nscr;
    size_t scr_used; /* in the current one, by the node being recorded */
    /* recording */
    vk_seg *rec;
    sn_tensor *rec_node; /* the node being recorded */
    int rec_ndisp;
    VkPipeline rec_bound;
    sn_vk_limits limits;
    bool record_once; /* SN_VK_RECORD != 0 */
    bool staged;      /* SN_VK_STAGED=1: arenas never mapped, every transfer staged (tests the discrete-GPU path) */
    bool coop;        /* the device was created with cooperative matrices (phys->cm_mnk) */
    bool f16_gemm;    /* train.mixed_precision: GEMMs on f16 cooperative matrices */
    bool coop_emu;    /* SN_VK_COOP=emulate: with the matrix operations emulated (tests) */
    vk_buf fail;      /* sn_vk_fail_word: host-visible, mapped; created on first use */
    char fail_msg[SN_VK_FAIL_SLOTS][512];
};

static sn_status vk_fail(const sn_vk *vk, VkResult r, const char *call) {
    return sn_error(r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? SN_ERR_NOMEM : SN_ERR_DEVICE,
                    "Vulkan error on %s: %s failed: %s (%s)", vk ? vk->name : "?", call, vk_result_name(r), vk_hint(r));
}

#define VK_TRY(vk, call)                                           \
    do {                                                           \
        VkResult r_ = (call);                                      \
        if (r_ != VK_SUCCESS) return vk_fail((vk), r_, #call);     \
    } while (0)

const sn_vk_limits *sn_vk_limits_of(sn_vk *vk) { return &vk->limits; }
const char *sn_vk_device_name(const sn_vk *vk) { return vk->name; }
int sn_vk_f16_gemm_shader(const sn_vk *vk) {
    return !vk->f16_gemm ? -1 : vk->coop_emu ? SN_VK_SH_MATMUL_GEMM_COOP_EMU : SN_VK_SH_MATMUL_GEMM_COOP;
}

/* ---- memory ---- */
static int find_type(const sn_vk *vk, uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) {
    for (uint32_t i = 0; i < vk->mp.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = vk->mp.memoryTypes[i].propertyFlags;
        if ((bits & (1u << i)) && (f & want) == want && !(f & avoid)) return (int)i;
    }
    return -1;
}

static VkDeviceSize heap_of(const sn_vk *vk, int type) {
    return vk->mp.memoryHeaps[vk->mp.memoryTypes[type].heapIndex].size;
}

static void buf_destroy(sn_vk *vk, vk_buf *b) {
    if (b->map) vkUnmapMemory(vk->dev, b->mem);
    if (b->buf) vkDestroyBuffer(vk->dev, b->buf, NULL);
    if (b->mem) vkFreeMemory(vk->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

/* Out of device memory: what, how much, what the device has (engine terms: the
 * application adds advice in its own words). */
static sn_status oom(const sn_vk *vk, const char *what, size_t bytes, const char *why) {
    size_t tot = 0, fr = 0;
    heap_totals(vk->phys, &tot, &fr);
    char have[96];
    if (fr)
        snprintf(have, sizeof have, "%.1f MB free of %.1f MB", fr / 1048576.0, tot / 1048576.0);
    else
        snprintf(have, sizeof have, "free memory unknown, %.1f MB in all", tot / 1048576.0);
    return sn_error(SN_ERR_NOMEM, "Vulkan: cannot allocate %s of %zu bytes (%.1f MB) on %s: %s; %s, at most %.1f MB "
                    "per allocation (a smaller batch or shorter input needs less)",
                    what, bytes, bytes / 1048576.0, vk->name, why, have, vk->max_alloc / 1048576.0);
}

/* A buffer of `bytes` in memory type `type` (falls back to `alt` when that allocation
 * fails), mapped when host-visible, with its device address. */
static sn_status buf_create(sn_vk *vk, size_t bytes, int type, int alt, VkBufferUsageFlags usage, vk_buf *out,
                            const char *what) {
    memset(out, 0, sizeof *out);
    if (bytes == 0) bytes = 256;
    /* beyond maxMemoryAllocationSize an allocation may still succeed: only the heap is a hard limit */
    VkDeviceSize heap = heap_of(vk, type);
    if (alt >= 0 && heap_of(vk, alt) > heap) heap = heap_of(vk, alt);
    if (bytes > heap) return oom(vk, what, bytes, "more than its memory heap holds");
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = bytes;
    bi.usage = usage;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkResult r = vkCreateBuffer(vk->dev, &bi, NULL, &out->buf);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return oom(vk, what, bytes, "vkCreateBuffer failed with VK_ERROR_OUT_OF_*_MEMORY");
    if (r != VK_SUCCESS) return vk_fail(vk, r, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, out->buf, &req);
    VkMemoryAllocateFlagsInfo fi = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO};
    fi.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
    bool bda = usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, bda ? &fi : NULL, req.size, (uint32_t)type};
    r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    if (req.memoryTypeBits & (1u << type)) r = vkAllocateMemory(vk->dev, &ai, NULL, &out->mem);
    if (r != VK_SUCCESS && alt >= 0 && alt != type && (req.memoryTypeBits & (1u << alt))) {
        ai.memoryTypeIndex = (uint32_t)alt;
        type = alt;
        r = vkAllocateMemory(vk->dev, &ai, NULL, &out->mem);
    }
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(vk->dev, out->buf, NULL);
        out->buf = VK_NULL_HANDLE;
        out->mem = VK_NULL_HANDLE;
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return oom(vk, what, bytes, r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "vkAllocateMemory: VK_ERROR_OUT_OF_DEVICE_MEMORY"
                                                                            : "vkAllocateMemory: VK_ERROR_OUT_OF_HOST_MEMORY");
        return vk_fail(vk, r, "vkAllocateMemory");
    }
    out->size = bytes;
    r = vkBindBufferMemory(vk->dev, out->buf, out->mem, 0);
    bool arena = usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
    if (r == VK_SUCCESS && (vk->mp.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
        !(arena && vk->staged))
        r = vkMapMemory(vk->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map);
    if (r != VK_SUCCESS) {
        out->map = NULL;
        buf_destroy(vk, out);
        return vk_fail(vk, r, "vkBindBufferMemory/vkMapMemory");
    }
    if (bda) {
        VkBufferDeviceAddressInfo di = {VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, NULL, out->buf};
        out->addr = vkGetBufferDeviceAddress(vk->dev, &di);
    }
    return SN_OK;
}

static sn_status table_add(sn_vk *vk, const vk_buf *b) {
    if (vk->nbufs == vk->cap_bufs) {
        int nc = vk->cap_bufs ? vk->cap_bufs * 2 : 16;
        vk_buf *nb = realloc(vk->bufs, (size_t)nc * sizeof *nb);
        if (!nb) return sn_error(SN_ERR_NOMEM, "Vulkan backend: out of host memory");
        vk->bufs = nb;
        vk->cap_bufs = nc;
    }
    int i = vk->nbufs;
    while (i > 0 && vk->bufs[i - 1].addr > b->addr) {
        vk->bufs[i] = vk->bufs[i - 1];
        i--;
    }
    vk->bufs[i] = *b;
    vk->nbufs++;
    return SN_OK;
}

static vk_buf *table_find(sn_vk *vk, uint64_t addr) {
    int lo = 0, hi = vk->nbufs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        vk_buf *b = &vk->bufs[mid];
        if (addr < b->addr)
            hi = mid - 1;
        else if (addr >= b->addr + b->size)
            lo = mid + 1;
        else
            return b;
    }
    return NULL;
}

static void table_remove(sn_vk *vk, uint64_t addr) {
    vk_buf *b = table_find(vk, addr);
    if (!b) return;
    int i = (int)(b - vk->bufs);
    buf_destroy(vk, b);
    memmove(&vk->bufs[i], &vk->bufs[i + 1], (size_t)(vk->nbufs - i - 1) * sizeof *vk->bufs);
    vk->nbufs--;
}

#define SN_VK_USAGE                                                                                        \
    (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT | \
     VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT)

/* an arena or a temp chunk: unified memory where the device has it, else device-local */
static sn_status dev_alloc(sn_vk *vk, size_t bytes, vk_buf *out, const char *what) {
    bytes = (bytes + 255) & ~(size_t)255;
    int type = vk->mt_unified >= 0 ? vk->mt_unified : vk->mt_device;
    if (vk->mt_unified >= 0 && bytes > heap_of(vk, vk->mt_unified)) type = vk->mt_device;
    SN_VK_TRY(buf_create(vk, bytes, type, vk->mt_device, SN_VK_USAGE, out, what));
    sn_status s = table_add(vk, out);
    if (s != SN_OK) buf_destroy(vk, out);
    return s;
}

/* ---- submission ---- */
uint64_t sn_vk_fail_word(sn_vk *vk, int slot, const char *msg) {
    if (slot < 0 || slot >= SN_VK_FAIL_SLOTS) {
        sn_error(SN_ERR_INTERNAL, "sn_vk_fail_word: slot %d (a bug in sinter)", slot);
        return 0;
    }
    if (!vk->fail.buf) {
        if (buf_create(vk, 256, vk->mt_stage, -1, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                       VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT, &vk->fail, "the kernel failure words") != SN_OK)
            return 0;
        /* buf_create leaves device-address buffers unmapped under SN_VK_STAGED=1: these are read in place */
        if (!vk->fail.map && vkMapMemory(vk->dev, vk->fail.mem, 0, VK_WHOLE_SIZE, 0, &vk->fail.map) != VK_SUCCESS) {
            buf_destroy(vk, &vk->fail);
            sn_error(SN_ERR_DEVICE, "Vulkan on %s: cannot map the kernel failure words", vk->name);
            return 0;
        }
        memset(vk->fail.map, 0, 256);
    }
    snprintf(vk->fail_msg[slot], sizeof vk->fail_msg[slot], "%s", msg);
    return vk->fail.addr + (uint64_t)slot * sizeof(uint32_t);
}

/* after a wait for the device: a failure a kernel reported through sn_vk_fail_word */
static sn_status fail_check(sn_vk *vk) {
    if (!vk->fail.map) return SN_OK;
    volatile uint32_t *w = vk->fail.map;
    int hit = -1;
    for (int i = 0; i < SN_VK_FAIL_SLOTS; i++)
        if (w[i] && hit < 0) hit = i;
    if (hit < 0) return SN_OK;
    for (int i = 0; i < SN_VK_FAIL_SLOTS; i++) w[i] = 0;
    return sn_error(SN_ERR_DEVICE, "Vulkan on %s: %s", vk->name, vk->fail_msg[hit]);
}

/* Waits for everything queued (uploads write into memory the GPU may still use). */
static sn_status drain(sn_vk *vk) {
    VK_TRY(vk, vkQueueWaitIdle(vk->queue));
    return fail_check(vk);
}

static void full_barrier(sn_vk *vk, VkCommandBuffer cb, VkPipelineStageFlags dst_extra, VkAccessFlags dst_access) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL,
                          VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT,
                          VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                              VK_ACCESS_TRANSFER_WRITE_BIT | dst_access};
    vkCmdPipelineBarrier(cb,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | dst_extra, 0, 1, &mb, 0,
                         NULL, 0, NULL);
}

/* Between two dispatches of one recorded segment: only compute shaders write inside a
 * segment (uploads, copies and fills run in their own command buffer, ordered by the
 * full barriers at segment start and end), so a compute-to-compute dependency is enough.
 * SN_VK_BARRIER=full (read once) keeps the full form, to compare. */
static void dispatch_barrier(sn_vk *vk, VkCommandBuffer cb) {
    static int full = -1;
    if (full < 0) {
        const char *e = getenv("SN_VK_BARRIER");
        full = e && !strcmp(e, "full");
    }
    if (full) {
        full_barrier(vk, cb, 0, 0);
        return;
    }
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_SHADER_WRITE_BIT,
                          VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0,
                         NULL, 0, NULL);
}

static sn_status submit_wait(sn_vk *vk, VkCommandBuffer cb, VkFence fence) {
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    VK_TRY(vk, vkResetFences(vk->dev, 1, &fence));
    VK_TRY(vk, vkQueueSubmit(vk->queue, 1, &si, fence));
    VK_TRY(vk, vkWaitForFences(vk->dev, 1, &fence, VK_TRUE, UINT64_MAX));
    return SN_OK;
}

/* one transfer command (copy src->dst regions, or fill) on the transfer command buffer, waited for */
static sn_status xfer_run(sn_vk *vk, VkBuffer src, VkBuffer dst, VkDeviceSize so, VkDeviceSize doff, VkDeviceSize n,
                          bool fill) {
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VK_TRY(vk, vkResetCommandBuffer(vk->xfer_cb, 0));
    VK_TRY(vk, vkBeginCommandBuffer(vk->xfer_cb, &bi));
    full_barrier(vk, vk->xfer_cb, 0, 0);
    if (fill) {
        vkCmdFillBuffer(vk->xfer_cb, dst, doff, n, 0);
    } else {
        VkBufferCopy c = {so, doff, n};
        vkCmdCopyBuffer(vk->xfer_cb, src, dst, 1, &c);
    }
    full_barrier(vk, vk->xfer_cb, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    VK_TRY(vk, vkEndCommandBuffer(vk->xfer_cb));
    return submit_wait(vk, vk->xfer_cb, vk->xfer_fence);
}

#define SN_VK_STAGE_BYTES ((size_t)8 << 20)

static sn_status stage_ready(sn_vk *vk) {
    if (vk->stage.buf) return SN_OK;
    return buf_create(vk, SN_VK_STAGE_BYTES, vk->mt_stage, -1,
                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, &vk->stage,
                      "the staging buffer");
}

static sn_status locate(sn_vk *vk, uint64_t addr, size_t n, const char *what, vk_buf **out) {
    vk_buf *b = table_find(vk, addr);
    if (!b || addr + n > b->addr + b->size)
        return sn_error(SN_ERR_INTERNAL, "Vulkan %s on %s: address 0x%llx (+%zu bytes) is not inside an allocation "
                        "of this backend (a bug in sinter)", what, vk->name, (unsigned long long)addr, n);
    *out = b;
    return SN_OK;
}

static sn_status up(sn_vk *vk, uint64_t dst, const void *host, size_t n) {
    if (n == 0) return SN_OK;
    vk_buf *b = NULL;
    SN_VK_TRY(locate(vk, dst, n, "upload", &b));
    size_t off = (size_t)(dst - b->addr);
    SN_VK_TRY(drain(vk));
    if (b->map) { /* unified memory: in place */
        memcpy((char *)b->map + off, host, n);
        return SN_OK;
    }
    SN_VK_TRY(stage_ready(vk));
    for (size_t done = 0; done < n;) {
        size_t k = n - done < SN_VK_STAGE_BYTES ? n - done : SN_VK_STAGE_BYTES;
        memcpy(vk->stage.map, (const char *)host + done, k);
        SN_VK_TRY(xfer_run(vk, vk->stage.buf, b->buf, 0, off + done, k, false));
        done += k;
    }
    return SN_OK;
}

/* ---- the sn_backend_i table ---- */
static const char *v_name(sn_backend *b) { return ((sn_vk *)b->ctx)->short_name; }

static sn_status v_info(sn_backend *b, sn_device_info *out) { return sn_vulkan_device_info(((sn_vk *)b->ctx)->index, out); }

static sn_status v_alloc(sn_backend *b, size_t bytes, void **base) {
    sn_vk *vk = b->ctx;
    *base = NULL;
    vk_buf nb;
    SN_VK_TRY(dev_alloc(vk, bytes, &nb, "an arena"));
    *base = (void *)(uintptr_t)nb.addr;
    return SN_OK;
}

static void v_release(sn_backend *b, void *base) {
    sn_vk *vk = b->ctx;
    if (!base) return;
    vkQueueWaitIdle(vk->queue);
    table_remove(vk, (uint64_t)(uintptr_t)base);
}

static sn_status v_upload(sn_backend *b, void *dst, const void *host, size_t n) {
    return up(b->ctx, (uint64_t)(uintptr_t)dst, host, n);
}

static sn_status v_download(sn_backend *b, void *host, const void *src, size_t n) {
    sn_vk *vk = b->ctx;
    if (n == 0) return SN_OK;
    vk_buf *bf = NULL;
    uint64_t a = (uint64_t)(uintptr_t)src;
    SN_VK_TRY(locate(vk, a, n, "download", &bf));
    size_t off = (size_t)(a - bf->addr);
    SN_VK_TRY(drain(vk));
    if (bf->map) {
        memcpy(host, (char *)bf->map + off, n);
        return SN_OK;
    }
    SN_VK_TRY(stage_ready(vk));
    for (size_t done = 0; done < n;) {
        size_t k = n - done < SN_VK_STAGE_BYTES ? n - done : SN_VK_STAGE_BYTES;
        SN_VK_TRY(xfer_run(vk, bf->buf, vk->stage.buf, off + done, 0, k, false));
        memcpy((char *)host + done, vk->stage.map, k);
        done += k;
    }
    return SN_OK;
}

static sn_status v_fill_zero(sn_backend *b, void *dst, size_t n) {
    sn_vk *vk = b->ctx;
    if (n == 0) return SN_OK;
    vk_buf *bf = NULL;
    uint64_t a = (uint64_t)(uintptr_t)dst;
    SN_VK_TRY(locate(vk, a, n, "fill_zero", &bf));
    size_t off = (size_t)(a - bf->addr);
    SN_VK_TRY(drain(vk));
    if (bf->map) {
        memset((char *)bf->map + off, 0, n);
        return SN_OK;
    }
    if (off % 4 == 0 && n % 4 == 0) return xfer_run(vk, VK_NULL_HANDLE, bf->buf, 0, off, n, true);
    /* vkCmdFillBuffer needs 4-byte multiples: zeros through the staging buffer */
    SN_VK_TRY(stage_ready(vk));
    memset(vk->stage.map, 0, n < SN_VK_STAGE_BYTES ? n : SN_VK_STAGE_BYTES);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < SN_VK_STAGE_BYTES ? n - done : SN_VK_STAGE_BYTES;
        SN_VK_TRY(xfer_run(vk, vk->stage.buf, bf->buf, 0, off + done, k, false));
        done += k;
    }
    return SN_OK;
}

typedef sn_status (*vk_family_fn)(sn_vk *vk, sn_tensor *node);
static vk_family_fn family_fn(sn_op_family f) {
    switch (f) {
#ifdef SN_VK_HAVE_SHAPE
    case SN_FAM_SHAPE: return sn_vk_shape;
#endif
#ifdef SN_VK_HAVE_BINARY
    case SN_FAM_BINARY: return sn_vk_binary;
#endif
#ifdef SN_VK_HAVE_UNARY
    case SN_FAM_UNARY: return sn_vk_unary;
#endif
#ifdef SN_VK_HAVE_MATMUL
    case SN_FAM_MATMUL: return sn_vk_matmul;
#endif
#ifdef SN_VK_HAVE_CONV
    case SN_FAM_CONV: return sn_vk_conv;
#endif
#ifdef SN_VK_HAVE_BATCHNORM
    case SN_FAM_BATCHNORM: return sn_vk_batchnorm;
#endif
#ifdef SN_VK_HAVE_NORM
    case SN_FAM_NORM: return sn_vk_norm;
#endif
#ifdef SN_VK_HAVE_RNN
    case SN_FAM_RNN: return sn_vk_rnn;
#endif
#ifdef SN_VK_HAVE_ATTENTION
    case SN_FAM_ATTENTION: return sn_vk_attention;
#endif
#ifdef SN_VK_HAVE_LOSS
    case SN_FAM_LOSS: return sn_vk_loss;
#endif
#ifdef SN_VK_HAVE_OPTIM
    case SN_FAM_OPTIM: return sn_vk_optim;
#endif
    default: return NULL;
    }
}

/* Only ops whose family has a file here: the scheduler runs the others on the CPU
 * (and names each in the log). */
static bool v_supports(sn_backend *b, const sn_tensor *t) {
    if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) return true;
    if (t->dtype != SN_F32) return false;
    for (int i = 0; i < t->nsrc; i++)
        if (t->src[i] && t->src[i]->dtype != SN_F32) return false;
    return family_fn(sn_op_family_of(t->op)) != NULL;
}

/* ---- pipelines ---- */
/* ms spent creating each shader's pipeline (the driver's compile, or a cache hit), over
 * the process: the profile prints them, as the first step on a new machine pays them */
static double g_pipe_ms[SN_VK_SH_COUNT];

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* One pipeline's creation, safe on any thread: the device and the pipeline cache are
 * internally synchronized and nothing of vk is written; what names the call that failed. */
typedef struct {
    sn_vk *vk;
    int sh;
    VkPipeline pipe;
    VkResult r;
    const char *what;
    double ms;
} pipe_job;

static void *pipe_create(void *arg) {
    pipe_job *j = arg;
    sn_vk *vk = j->vk;
    const double t0 = now_ms();
    const sn_vk_spirv *sp = &sn_vk_shaders[j->sh];
    const bool coop = sp->code_nv != NULL; /* a cooperative-matrix shader */
    const bool nv = coop && vk->phys->cm_nv;
    VkShaderModuleCreateInfo mi = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, nv ? *sp->size_nv : *sp->size,
                                   (const uint32_t *)(const void *)(nv ? sp->code_nv : sp->code)};
    VkShaderModule mod;
    j->what = "vkCreateShaderModule";
    j->r = vkCreateShaderModule(vk->dev, &mi, NULL, &mod);
    if (j->r != VK_SUCCESS) return NULL;
    VkComputePipelineCreateInfo ci = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    ci.stage.module = mod;
    ci.stage.pName = "main";
    /* cooperative-matrix shaders: workgroup size (SN_VK_COOP_WG) and the matrix shape M, N, K
     * (the emulation, without a device shape: 16 x 8 x 16, M != N as NVIDIA's) */
    const uint32_t *mnk = vk->phys->cm_mnk[0] ? vk->phys->cm_mnk : (const uint32_t[3]){16, 8, 16};
    const uint32_t spec[4] = {SN_VK_COOP_WG(vk->phys->subgroup), mnk[0], mnk[1], mnk[2]};
    const VkSpecializationMapEntry map[4] = {{0, 0, 4}, {1, 4, 4}, {2, 8, 4}, {3, 12, 4}};
    const VkSpecializationInfo si = {4, map, sizeof spec, spec};
    if (coop || j->sh == SN_VK_SH_MATMUL_GEMM_COOP_EMU) ci.stage.pSpecializationInfo = &si;
    ci.layout = vk->layout;
    j->what = "vkCreateComputePipelines";
    j->r = vkCreateComputePipelines(vk->dev, vk->cache, 1, &ci, NULL, &j->pipe);
    vkDestroyShaderModule(vk->dev, mod, NULL);
    j->ms = now_ms() - t0;
    return NULL;
}

/* The big-tile GEMM shaders take seconds each in NVIDIA's compiler (3.4, 2.9 and 2.9 s on an
 * H100: 10 of the 10.5 s a new machine's first training step spent creating pipelines),
 * and a step uses all three: the first use of one creates the three at once, on threads. */
static const int gemm_big_group[] = {SN_VK_SH_MATMUL_GEMM_BIG, SN_VK_SH_MATMUL_GEMM_BIG_128X64,
                                     SN_VK_SH_MATMUL_GEMM_BIG_64X128};
#define SN_VK_GROUP_N ((int)(sizeof gemm_big_group / sizeof gemm_big_group[0]))

static sn_status pipeline(sn_vk *vk, int sh, VkPipeline *out) {
    if (vk->pipe[sh]) {
        *out = vk->pipe[sh];
        return SN_OK;
    }
    const sn_vk_spirv *sp = &sn_vk_shaders[sh];
    if (sp->code_nv && !vk->coop)
        return sn_error(SN_ERR_UNSUPPORTED, "shader %s needs cooperative matrices, which %s lacks: %s", sp->name, vk->name,
                        vk->phys->cm_why);
    pipe_job jobs[1 + SN_VK_GROUP_N] = {{vk, sh}};
    int n = 1;
    bool grouped = false;
    for (int i = 0; i < SN_VK_GROUP_N; i++) grouped |= gemm_big_group[i] == sh;
    for (int i = 0; grouped && i < SN_VK_GROUP_N; i++)
        if (gemm_big_group[i] != sh && !vk->pipe[gemm_big_group[i]]) jobs[n++] = (pipe_job){vk, gemm_big_group[i]};
    pthread_t th[1 + SN_VK_GROUP_N];
    bool started[1 + SN_VK_GROUP_N] = {false};
    for (int i = 1; i < n; i++) started[i] = pthread_create(&th[i], NULL, pipe_create, &jobs[i]) == 0;
    pipe_create(&jobs[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            pipe_create(&jobs[i]);
    }
    /* a companion that failed is left uncreated: its own first use tries again and reports */
    for (int i = 0; i < n; i++) {
        if (jobs[i].r != VK_SUCCESS) continue;
        vk->pipe[jobs[i].sh] = jobs[i].pipe;
        vk->new_pipelines++;
        g_pipe_ms[jobs[i].sh] += jobs[i].ms;
        sn_log(SN_LOG_DEBUG, "Vulkan: pipeline %s created in %.1f ms", sn_vk_shaders[jobs[i].sh].name, jobs[i].ms);
    }
    if (jobs[0].r != VK_SUCCESS) return sn_error_prefix(vk_fail(vk, jobs[0].r, jobs[0].what), "shader %s", sp->name);
    *out = vk->pipe[sh];
    return SN_OK;
}

static void cache_path(sn_vk *vk) {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char dir[400];
    if (x && *x)
        snprintf(dir, sizeof dir, "%s/sinter", x);
    else if (h && *h)
        snprintf(dir, sizeof dir, "%s/.cache/sinter", h);
    else
        return;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (int i = 0; i < VK_UUID_SIZE; i++) snprintf(uuid + 2 * i, 3, "%02x", vk->phys->uuid[i]);
    snprintf(vk->cache_path, sizeof vk->cache_path, "%s/vk-pipelines-%s.bin", dir, uuid);
}

static void cache_load(sn_vk *vk, void **data, size_t *n) {
    *data = NULL;
    *n = 0;
    if (!vk->cache_path[0]) return;
    FILE *f = fopen(vk->cache_path, "rb");
    if (!f) return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz > 0 && sz < (64L << 20) && fseek(f, 0, SEEK_SET) == 0) {
            *data = malloc((size_t)sz);
            if (*data && fread(*data, 1, (size_t)sz, f) == (size_t)sz)
                *n = (size_t)sz;
            else {
                free(*data);
                *data = NULL;
            }
        }
    }
    fclose(f);
}

/* best effort: a cache that cannot be written only costs pipeline compile time next run */
static void cache_save(sn_vk *vk) {
    if (!vk->cache || !vk->new_pipelines || !vk->cache_path[0]) return;
    size_t n = 0;
    if (vkGetPipelineCacheData(vk->dev, vk->cache, &n, NULL) != VK_SUCCESS || n == 0) return;
    void *d = malloc(n);
    if (!d) return;
    if (vkGetPipelineCacheData(vk->dev, vk->cache, &n, d) == VK_SUCCESS) {
        char dir[512], tmp[600];
        snprintf(dir, sizeof dir, "%s", vk->cache_path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            char *p2 = strrchr(dir, '/');
            if (p2) { /* ~/.cache, then ~/.cache/sinter */
                *p2 = 0;
                mkdir(dir, 0755);
                *p2 = '/';
            }
            mkdir(dir, 0755);
        }
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", vk->cache_path, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            bool ok = fwrite(d, 1, n, f) == n;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, vk->cache_path) != 0) remove(tmp);
        }
    }
    free(d);
}

/* ---- recording ---- */
void sn_vk_grid(const sn_vk *vk, uint64_t groups, uint32_t *gx, uint32_t *gy) {
    uint64_t mx = vk->limits.max_wg_count[0] ? vk->limits.max_wg_count[0] : 65535;
    if (groups <= mx) {
        *gx = (uint32_t)groups;
        *gy = 1;
        return;
    }
    uint64_t y = (groups + mx - 1) / mx;
    *gx = (uint32_t)((groups + y - 1) / y);
    *gy = (uint32_t)y;
}

sn_status sn_vk_dispatch(sn_vk *vk, int sh, const void *push, uint32_t push_bytes, uint32_t gx, uint32_t gy,
                         uint32_t gz) {
    if (!vk->rec)
        return sn_error(SN_ERR_INTERNAL, "sn_vk_dispatch outside a segment recording (a bug in sinter)");
    if (sh < 0 || sh >= SN_VK_SH_COUNT)
        return sn_error(SN_ERR_INTERNAL, "sn_vk_dispatch: shader %d does not exist (a bug in sinter)", sh);
    if (push_bytes % 4)
        return sn_error(SN_ERR_INTERNAL, "sn_vk_dispatch: %u push-constant bytes for shader %s (a multiple of 4 is "
                        "needed; a bug in sinter)", push_bytes, sn_vk_shaders[sh].name);
    if (push_bytes > vk->limits.push_bytes)
        return sn_error(SN_ERR_INTERNAL, "sn_vk_dispatch: %u push-constant bytes for shader %s (at most %u: use an "
                        "argument block from sn_vk_temp)", push_bytes, sn_vk_shaders[sh].name, vk->limits.push_bytes);
    if (gx == 0 || gy == 0 || gz == 0) return SN_OK;
    if (gx > vk->limits.max_wg_count[0] || gy > vk->limits.max_wg_count[1] || gz > vk->limits.max_wg_count[2])
        return sn_error(SN_ERR_UNSUPPORTED, "shader %s: grid %u x %u x %u exceeds %s's limit %u x %u x %u",
                        sn_vk_shaders[sh].name, gx, gy, gz, vk->name, vk->limits.max_wg_count[0],
                        vk->limits.max_wg_count[1], vk->limits.max_wg_count[2]);
    VkPipeline p = VK_NULL_HANDLE;
    SN_VK_TRY(pipeline(vk, sh, &p));
    VkCommandBuffer cb = vk->rec->cb;
    if (vk->rec_ndisp > 0) dispatch_barrier(vk, cb);
    if (p != vk->rec_bound) {
        vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p);
        vk->rec_bound = p;
    }
    if (push_bytes) vkCmdPushConstants(cb, vk->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    vk_seg *s = vk->rec;
    bool timed = s->qsh && vk->rec_node && s->nq < s->qcap;
    if (s->qsh && !timed) s->qlost++;
    if (timed) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s->qpool, (uint32_t)(2 * s->nq));
    vkCmdDispatch(cb, gx, gy, gz);
    if (timed) {
        vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->qpool, (uint32_t)(2 * s->nq + 1));
        s->qnode[s->nq] = vk->rec_node;
        s->qsh[s->nq++] = sh;
    }
    vk->rec_ndisp++;
    return SN_OK;
}

sn_status sn_vk_dispatch_n(sn_vk *vk, int sh, const void *push, uint32_t push_bytes, uint64_t n, uint32_t wg) {
    if (n == 0) return SN_OK;
    if (wg == 0) wg = 256;
    uint32_t gx, gy;
    sn_vk_grid(vk, (n + wg - 1) / wg, &gx, &gy);
    return sn_vk_dispatch(vk, sh, push, push_bytes, gx, gy, 1);
}

static void scr_unref(sn_vk *vk, uint64_t addr) {
    for (int i = 0; i < vk->nscr; i++) {
        if (vk->scr[i].addr != addr) continue;
        if (--vk->scr[i].refs > 0 || i == vk->nscr - 1) return;
        vk->temp_bytes -= vk->scr[i].size;
        table_remove(vk, addr);
        memmove(&vk->scr[i], &vk->scr[i + 1], (size_t)(vk->nscr - i - 1) * sizeof *vk->scr);
        vk->nscr--;
        return;
    }
}

/* `need` bytes of node scratch for segment s; 0 with no error set: use a segment temp */
static uint64_t scr_take(sn_vk *vk, vk_seg *s, size_t need, bool *failed) {
    vk_scr *cur = vk->nscr ? &vk->scr[vk->nscr - 1] : NULL;
    if (!cur || vk->scr_used + need > cur->size) {
        if (vk->nscr == SN_VK_MAX_SCR) return 0;
        size_t sz = need > ((size_t)1 << 20) ? need : ((size_t)1 << 20);
        if (cur && sz < 2 * cur->size) sz = 2 * cur->size; /* few growth steps */
        vk_buf b;
        if (dev_alloc(vk, sz, &b, "kernel scratch") != SN_OK) {
            *failed = true;
            return 0;
        }
        vk->temp_bytes += b.size;
        vk->scr[vk->nscr++] = (vk_scr){b.addr, b.size, 0};
        vk->scr_used = 0;
        cur = &vk->scr[vk->nscr - 1];
    }
    bool held = false;
    for (int i = 0; i < s->nscr_refs; i++) held |= s->scr_refs[i] == cur->addr;
    if (!held) {
        if (s->nscr_refs == SN_VK_MAX_SCR) return 0;
        s->scr_refs[s->nscr_refs++] = cur->addr;
        cur->refs++;
    }
    uint64_t a = cur->addr + vk->scr_used;
    vk->scr_used += need;
    return a;
}

uint64_t sn_vk_temp(sn_vk *vk, size_t bytes, const void *host_init) {
    vk_seg *s = vk->rec;
    if (!s) {
        sn_error(SN_ERR_INTERNAL, "sn_vk_temp outside a segment recording (a bug in sinter)");
        return 0;
    }
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need == 0) need = 256;
    if (!host_init) {
        bool failed = false;
        uint64_t a = scr_take(vk, s, need, &failed);
        if (a || failed) return a;
    }
    vk_buf *last = s->ntemps ? &s->temps[s->ntemps - 1] : NULL;
    if (!last || s->temp_used + need > last->size) {
        if (s->ntemps == s->cap_temps) {
            int nc = s->cap_temps ? s->cap_temps * 2 : 4;
            vk_buf *nt = realloc(s->temps, (size_t)nc * sizeof *nt);
            if (!nt) {
                sn_error(SN_ERR_NOMEM, "Vulkan backend: out of host memory");
                return 0;
            }
            s->temps = nt;
            s->cap_temps = nc;
        }
        size_t chunk = need > ((size_t)1 << 20) ? need : ((size_t)1 << 20);
        if (dev_alloc(vk, chunk, &s->temps[s->ntemps], "kernel temporaries") != SN_OK) return 0;
        vk->temp_bytes += s->temps[s->ntemps].size;
        s->ntemps++;
        s->temp_used = 0;
        last = &s->temps[s->ntemps - 1];
    }
    uint64_t a = last->addr + s->temp_used;
    s->temp_used += need;
    /* nothing queued uses this block yet: copy now (the segment has not been submitted) */
    if (host_init && bytes && up(vk, a, host_init, bytes) != SN_OK) return 0;
    return a;
}

static void seg_release(sn_vk *vk, vk_seg *s) {
    if (s->pending) vkWaitForFences(vk->dev, 1, &s->fence, VK_TRUE, UINT64_MAX);
    s->pending = false;
    for (int i = 0; i < s->ntemps; i++) {
        vk->temp_bytes -= s->temps[i].size;
        table_remove(vk, s->temps[i].addr);
    }
    s->ntemps = 0;
    s->temp_used = 0;
    for (int i = 0; i < s->nscr_refs; i++) scr_unref(vk, s->scr_refs[i]);
    s->nscr_refs = 0;
    if (s->qpool) vkDestroyQueryPool(vk->dev, s->qpool, NULL);
    s->qpool = VK_NULL_HANDLE;
    free(s->qnode);
    free(s->qsh);
    s->qnode = NULL;
    s->qsh = NULL;
    s->nq = s->qcap = 0;
    s->qlost = 0;
    s->recorded = false;
}

/* Profiling (sn_backend_set_profile; SN_PROFILE=1 through the registry): timestamps around
 * each node, summed per op kind, printed at exit; level 2 also lists every node of each
 * segment's first timed run; level 3 times each dispatch instead (no barrier inside a
 * pair) and adds a table per shader. Each timed run is waited for (a developer aid). */
static double g_prof_ms[SN_OP_COUNT], g_sh_ms[SN_VK_SH_COUNT];
static long g_prof_n[SN_OP_COUNT], g_sh_n[SN_VK_SH_COUNT], g_prof_lost;
static int g_prof_level;

long sn_vk_prof_dispatches(int sh) { return sh >= 0 && sh < SN_VK_SH_COUNT ? g_sh_n[sh] : 0; }
bool sn_vk_has_timestamps(const sn_vk *vk) { return vk->phys->timestamps; }

static void prof_print_pipelines(void);

static void prof_print(void) {
    prof_print_pipelines();
    double tot = 0;
    for (int i = 0; i < SN_OP_COUNT; i++) tot += g_prof_ms[i];
    fprintf(stderr, "sinter Vulkan op profile (total %.2f ms):\n", tot);
    for (int i = 0; i < SN_OP_COUNT; i++)
        if (g_prof_n[i])
            fprintf(stderr, "  %-28s %8ld calls %10.2f ms %5.1f%%\n", sn_op_name((sn_op)i), g_prof_n[i], g_prof_ms[i],
                    100.0 * g_prof_ms[i] / (tot > 0 ? tot : 1));
    double stot = 0;
    for (int i = 0; i < SN_VK_SH_COUNT; i++) stot += g_sh_ms[i];
    if (stot <= 0) return;
    fprintf(stderr, "sinter Vulkan shader profile (total %.2f ms in dispatches):\n", stot);
    for (int i = 0; i < SN_VK_SH_COUNT; i++)
        if (g_sh_n[i])
            fprintf(stderr, "  %-28s %8ld dispatches %10.2f ms %5.1f%% %9.2f us each\n", sn_vk_shaders[i].name,
                    g_sh_n[i], g_sh_ms[i], 100.0 * g_sh_ms[i] / stot, 1e3 * g_sh_ms[i] / (double)g_sh_n[i]);
    if (g_prof_lost) fprintf(stderr, "  (%ld dispatches past the query pool, not timed)\n", g_prof_lost);
}

/* the pipelines created, the 8 slowest named */
static void prof_print_pipelines(void) {
    int idx[SN_VK_SH_COUNT], n = 0;
    double tot = 0;
    for (int i = 0; i < SN_VK_SH_COUNT; i++)
        if (g_pipe_ms[i] > 0) idx[n++] = i, tot += g_pipe_ms[i];
    if (!n) return;
    fprintf(stderr, "sinter Vulkan pipelines: %d created in %.1f ms; slowest:", n, tot);
    for (int k = 0; k < n && k < 8; k++) { /* selection: the k-th slowest to slot k */
        int m = k;
        for (int i = k + 1; i < n; i++)
            if (g_pipe_ms[idx[i]] > g_pipe_ms[idx[m]]) m = i;
        int t = idx[k];
        idx[k] = idx[m], idx[m] = t;
        fprintf(stderr, "%s %s %.1f", k ? "," : "", sn_vk_shaders[idx[k]].name, g_pipe_ms[idx[k]]);
    }
    fprintf(stderr, "\n");
}

static bool profiling(void) { return g_prof_level >= 1; }

static void v_set_profile(sn_backend *b, int level) {
    static bool registered;
    if (level > 0 && !registered) registered = atexit(prof_print) == 0;
    g_prof_level = level;
    sn_vk *vk = b->ctx;
    if (level > 0 && !vk->phys->timestamps)
        sn_log(SN_LOG_WARN, "%s has no compute timestamps: the Vulkan profile stays empty", vk->name);
}

static sn_status prof_collect(sn_vk *vk, vk_seg *s) {
    if (!s->qpool || s->nq == 0) return SN_OK;
    uint64_t *ts = malloc((size_t)s->nq * 2 * sizeof *ts);
    if (!ts) return SN_OK;
    VkResult r = vkGetQueryPoolResults(vk->dev, s->qpool, 0, (uint32_t)s->nq * 2, (size_t)s->nq * 2 * sizeof *ts, ts,
                                       sizeof *ts, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r == VK_SUCCESS) {
        double period = vk->phys->props.limits.timestampPeriod; /* ns per tick */
        for (int i = 0; i < s->nq; i++) {
            double ms = (double)(ts[2 * i + 1] - ts[2 * i]) * period * 1e-6;
            g_prof_ms[s->qnode[i]->op] += ms;
            g_prof_n[s->qnode[i]->op]++;
            if (s->qsh) {
                g_sh_ms[s->qsh[i]] += ms;
                g_sh_n[s->qsh[i]]++;
            }
            if (g_prof_level >= 2 && s->timed_runs == 0) {
                char sh[64];
                fprintf(stderr, "  node %-40s %-26s %-24s %8.3f ms\n", s->qnode[i]->name, sn_op_name(s->qnode[i]->op),
                        sn_shape_str(s->qnode[i], sh, sizeof sh), ms);
            }
        }
        if (s->timed_runs == 0) g_prof_lost += s->qlost;
        s->timed_runs++;
    }
    free(ts);
    return SN_OK;
}

static sn_status record(sn_vk *vk, vk_seg *s, sn_tensor **nodes, int n) {
    bool prof = profiling() && vk->phys->timestamps;
    if (prof) {
        VkQueryPoolCreateInfo qi = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
        qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
        /* level 3: a pair per dispatch (the prototype's step has a few thousand) */
        s->qcap = g_prof_level >= 3 ? (n * 8 > 65536 ? n * 8 : 65536) : (n > 0 ? n : 1);
        qi.queryCount = (uint32_t)(2 * s->qcap);
        VK_TRY(vk, vkCreateQueryPool(vk->dev, &qi, NULL, &s->qpool));
        s->qnode = calloc((size_t)s->qcap, sizeof *s->qnode);
        if (g_prof_level >= 3) s->qsh = calloc((size_t)s->qcap, sizeof *s->qsh);
        if (!s->qnode || (g_prof_level >= 3 && !s->qsh))
            return sn_error(SN_ERR_NOMEM, "Vulkan backend: out of host memory");
    }
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VK_TRY(vk, vkResetCommandBuffer(s->cb, 0));
    VK_TRY(vk, vkBeginCommandBuffer(s->cb, &bi));
    vk->rec = s;
    vk->rec_ndisp = 0;
    vk->rec_bound = VK_NULL_HANDLE;
    /* what earlier submissions and the host wrote is visible to this segment */
    full_barrier(vk, s->cb, 0, 0);
    if (s->qpool) vkCmdResetQueryPool(s->cb, s->qpool, 0, (uint32_t)(2 * s->qcap));
    sn_status st = SN_OK;
    for (int i = 0; i < n && st == SN_OK; i++) {
        sn_tensor *t = nodes[i];
        if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) continue;
        vk->scr_used = 0; /* each node has the node scratch from its start */
        vk_family_fn fn = family_fn(sn_op_family_of(t->op));
        if (!fn) {
            st = sn_error(SN_ERR_UNSUPPORTED, "Vulkan backend: op %s has no kernel on %s", sn_op_name(t->op), vk->name);
        } else {
            vk->rec_node = t;
            if (s->qpool && !s->qsh) {
                if (vk->rec_ndisp > 0) dispatch_barrier(vk, s->cb);
                vkCmdWriteTimestamp(s->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s->qpool, (uint32_t)(2 * s->nq));
            }
            int before = vk->rec_ndisp;
            st = fn(vk, t);
            if (s->qpool && !s->qsh) {
                vkCmdWriteTimestamp(s->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->qpool, (uint32_t)(2 * s->nq + 1));
                s->qnode[s->nq++] = t;
            }
            (void)before;
        }
        if (st != SN_OK) st = sn_error_prefix(st, "Vulkan op '%s' (%s)", t->name, sn_op_name(t->op));
    }
    /* results visible to later submissions, transfers and the host */
    full_barrier(vk, s->cb, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    vk->rec = NULL;
    vk->rec_node = NULL;
    VkResult r = vkEndCommandBuffer(s->cb);
    if (st == SN_OK && r != VK_SUCCESS) st = vk_fail(vk, r, "vkEndCommandBuffer");
    if (st != SN_OK) {
        seg_release(vk, s);
        return st;
    }
    s->recorded = true;
    return SN_OK;
}

static sn_status v_compute(sn_backend *b, sn_tensor **nodes, int n, void **state) {
    sn_vk *vk = b->ctx;
    vk_seg local = {0}, *s = state ? *state : NULL;
    if (!s) {
        s = state ? calloc(1, sizeof *s) : &local;
        if (!s) return sn_error(SN_ERR_NOMEM, "Vulkan compute: out of host memory");
        VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, vk->pool,
                                          VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
        VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        VkResult r = vkAllocateCommandBuffers(vk->dev, &ai, &s->cb);
        if (r == VK_SUCCESS) r = vkCreateFence(vk->dev, &fi, NULL, &s->fence);
        if (r != VK_SUCCESS) {
            if (s->cb) vkFreeCommandBuffers(vk->dev, vk->pool, 1, &s->cb);
            if (s != &local) free(s);
            return vk_fail(vk, r, "vkAllocateCommandBuffers/vkCreateFence");
        }
        if (state) *state = s;
    }
    if (s->pending) {
        /* the previous submission of this command buffer must finish before it is resubmitted */
        VK_TRY(vk, vkWaitForFences(vk->dev, 1, &s->fence, VK_TRUE, UINT64_MAX));
        s->pending = false;
        SN_VK_TRY(fail_check(vk));
    }
    sn_status st = SN_OK;
    if (!s->recorded || !vk->record_once || s == &local) {
        seg_release(vk, s);
        st = record(vk, s, nodes, n);
        if (st == SN_OK && s->nscr_refs > 1) { /* the scratch grew: again, in the largest alone */
            seg_release(vk, s);
            st = record(vk, s, nodes, n);
        }
    }
    if (st == SN_OK) {
        VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
        si.commandBufferCount = 1;
        si.pCommandBuffers = &s->cb;
        VkResult r = vkResetFences(vk->dev, 1, &s->fence);
        if (r == VK_SUCCESS) r = vkQueueSubmit(vk->queue, 1, &si, s->fence);
        if (r != VK_SUCCESS)
            st = vk_fail(vk, r, "vkQueueSubmit");
        else
            s->pending = true;
    }
    if (st == SN_OK && (s->qpool || s == &local)) {
        VkResult r = vkWaitForFences(vk->dev, 1, &s->fence, VK_TRUE, UINT64_MAX);
        s->pending = false;
        if (r != VK_SUCCESS) st = vk_fail(vk, r, "vkWaitForFences");
        if (st == SN_OK) st = fail_check(vk);
        if (st == SN_OK) prof_collect(vk, s);
    }
    if (s == &local) {
        seg_release(vk, s);
        vkFreeCommandBuffers(vk->dev, vk->pool, 1, &s->cb);
        vkDestroyFence(vk->dev, s->fence, NULL);
        free(s->temps);
    }
    return st;
}

static void v_segment_free(sn_backend *b, void *state) {
    sn_vk *vk = b->ctx;
    vk_seg *s = state;
    if (!s) return;
    seg_release(vk, s);
    vkFreeCommandBuffers(vk->dev, vk->pool, 1, &s->cb);
    vkDestroyFence(vk->dev, s->fence, NULL);
    free(s->temps);
    free(s);
}

/* Tests and benchmarks: fn's dispatches recorded as one segment, submitted `runs` times,
 * each waited for; ms[r] gets run r's GPU time (timestamps around the segment; wall time
 * where the device has none). */
sn_status sn_vk_run(sn_vk *vk, sn_status (*fn)(sn_vk *vk, void *arg), void *arg, int runs, double *ms) {
    vk_seg s = {0};
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, vk->pool,
                                      VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_TRY(vk, vkAllocateCommandBuffers(vk->dev, &ai, &s.cb));
    VkResult r = vkCreateFence(vk->dev, &fi, NULL, &s.fence);
    if (r == VK_SUCCESS && vk->phys->timestamps) {
        VkQueryPoolCreateInfo qi = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
        qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
        qi.queryCount = 2;
        r = vkCreateQueryPool(vk->dev, &qi, NULL, &s.qpool);
    }
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    if (r == VK_SUCCESS) r = vkBeginCommandBuffer(s.cb, &bi);
    sn_status st = r == VK_SUCCESS ? SN_OK : vk_fail(vk, r, "sn_vk_run setup");
    if (st == SN_OK) {
        vk->rec = &s;
        vk->rec_ndisp = 0;
        vk->rec_bound = VK_NULL_HANDLE;
        vk->scr_used = 0;
        full_barrier(vk, s.cb, 0, 0);
        if (s.qpool) {
            vkCmdResetQueryPool(s.cb, s.qpool, 0, 2);
            vkCmdWriteTimestamp(s.cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s.qpool, 0);
        }
        st = fn(vk, arg);
        if (s.qpool) vkCmdWriteTimestamp(s.cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s.qpool, 1);
        full_barrier(vk, s.cb, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
        vk->rec = NULL;
        r = vkEndCommandBuffer(s.cb);
        if (st == SN_OK && r != VK_SUCCESS) st = vk_fail(vk, r, "vkEndCommandBuffer");
    }
    for (int i = 0; i < runs && st == SN_OK; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
        si.commandBufferCount = 1;
        si.pCommandBuffers = &s.cb;
        r = vkResetFences(vk->dev, 1, &s.fence);
        if (r == VK_SUCCESS) r = vkQueueSubmit(vk->queue, 1, &si, s.fence);
        if (r == VK_SUCCESS) r = vkWaitForFences(vk->dev, 1, &s.fence, VK_TRUE, UINT64_MAX);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r != VK_SUCCESS) {
            st = vk_fail(vk, r, "vkQueueSubmit/vkWaitForFences");
            break;
        }
        if ((st = fail_check(vk)) != SN_OK) break;
        double wall = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        uint64_t ts[2];
        if (s.qpool && vkGetQueryPoolResults(vk->dev, s.qpool, 0, 2, sizeof ts, ts, sizeof ts[0],
                                             VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS)
            wall = (double)(ts[1] - ts[0]) * vk->phys->props.limits.timestampPeriod * 1e-6;
        if (ms) ms[i] = wall;
    }
    seg_release(vk, &s);
    if (s.cb) vkFreeCommandBuffers(vk->dev, vk->pool, 1, &s.cb);
    if (s.fence) vkDestroyFence(vk->dev, s.fence, NULL);
    free(s.temps);
    return st;
}

static sn_status v_sync(sn_backend *b) { return drain(b->ctx); }

static size_t v_workspace(sn_backend *b) {
    sn_vk *vk = b->ctx;
    return vk->temp_bytes + vk->stage.size;
}

static void vk_destroy(sn_vk *vk) {
    if (vk->dev) {
        vkDeviceWaitIdle(vk->dev);
        cache_save(vk);
        for (int i = 0; i < SN_VK_SH_COUNT; i++)
            if (vk->pipe[i]) vkDestroyPipeline(vk->dev, vk->pipe[i], NULL);
        if (vk->cache) vkDestroyPipelineCache(vk->dev, vk->cache, NULL);
        if (vk->layout) vkDestroyPipelineLayout(vk->dev, vk->layout, NULL);
        buf_destroy(vk, &vk->stage);
        buf_destroy(vk, &vk->fail);
        for (int i = 0; i < vk->nbufs; i++) buf_destroy(vk, &vk->bufs[i]);
        if (vk->xfer_fence) vkDestroyFence(vk->dev, vk->xfer_fence, NULL);
        if (vk->pool) vkDestroyCommandPool(vk->dev, vk->pool, NULL);
        vkDestroyDevice(vk->dev, NULL);
    }
    free(vk->bufs);
    free(vk);
}

static void v_free(sn_backend *b) {
    vk_destroy(b->ctx);
    free(b);
}

/* train.mixed_precision: the GEMMs (and so the convolutions, recurrent and attention
 * products built on them) take f16 operands with f32 accumulation on cooperative
 * matrices; everything else, and every tensor in memory, stays f32. Asked of a device
 * without them it fails (as PyTorch's autocast does for a type the device lacks) rather
 * than quietly training in f32. TF32 has no Vulkan form: f32 GEMMs stay f32. */
static sn_status v_set_precision(sn_backend *b, const sn_precision *p) {
    sn_vk *vk = b->ctx;
    const char *e = getenv("SN_VK_COOP");
    const bool emu = e && !strcmp(e, "emulate");
    if (p->bf16 && !p->f16)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: Vulkan mixed precision is f16 (cooperative matrices, f32 accumulation); "
                        "bf16 is not available on Vulkan: set train.mixed_precision=f16 (or true)", vk->name);
    if (p->f16 && !vk->coop && !emu)
        return sn_error(SN_ERR_UNSUPPORTED, "%s cannot run f16 mixed precision, which needs f16 cooperative matrices "
                        "(VK_KHR_cooperative_matrix): %s; set train.mixed_precision=false to train in f32 on it, or use "
                        "a GPU whose driver has them (`sinter devices` lists 'cooperative matrix f16')", vk->name,
                        vk->phys->cm_why);
    if (p->tf32 && !p->f16) return sn_error(SN_ERR_UNSUPPORTED, "%s: Vulkan has no TF32 arithmetic (f32 stays f32)", vk->name);
    vk->f16_gemm = p->f16;
    vk->coop_emu = emu;
    if (p->f16 && emu)
        sn_log(SN_LOG_WARN, "%s: SN_VK_COOP=emulate: mixed precision f16 with emulated cooperative matrices (slow; "
               "for tests)", vk->name);
    else if (p->f16)
        sn_log(SN_LOG_INFO, "%s: mixed precision f16, GEMMs on %ux%ux%u cooperative matrices%s", vk->name,
               vk->phys->cm_mnk[0], vk->phys->cm_mnk[1], vk->phys->cm_mnk[2], vk->phys->cm_nv ? " (VK_NV_cooperative_matrix)" : "");
    return SN_OK;
}

static const sn_backend_i v_iface = {
    .name = v_name,
    .free = v_free,
    .info = v_info,
    .alloc = v_alloc,
    .release = v_release,
    .upload = v_upload,
    .download = v_download,
    .fill_zero = v_fill_zero,
    .supports_op = v_supports,
    .compute = v_compute,
    .segment_free = v_segment_free,
    .synchronize = v_sync,
    .workspace_bytes = v_workspace,
    .prefetch = NULL,
    .set_precision = v_set_precision,
    .set_profile = v_set_profile,
};

static sn_status vk_open(sn_vk *vk) {
    const vk_phys *d = vk->phys;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, (uint32_t)d->queue_family, 1,
                                  &prio};
    VkPhysicalDeviceVulkan12Features f12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    f12.bufferDeviceAddress = VK_TRUE;
    f12.shaderFloat16 = d->f16;
    VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12};
    /* what the shaders may use where the device has it: scalar layouts, int64, 8/16-bit storage */
    VkPhysicalDeviceVulkan12Features have12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceFeatures2 have = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &have12};
    vkGetPhysicalDeviceFeatures2(d->pd, &have);
    f12.scalarBlockLayout = have12.scalarBlockLayout;
    f12.storageBuffer8BitAccess = have12.storageBuffer8BitAccess;
    f12.shaderInt8 = have12.shaderInt8;
    f2.features.shaderInt64 = have.features.shaderInt64;
    VkPhysicalDeviceVulkan11Features f11 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    VkPhysicalDeviceVulkan11Features have11 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    VkPhysicalDeviceFeatures2 have_b = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &have11};
    vkGetPhysicalDeviceFeatures2(d->pd, &have_b);
    f11.storageBuffer16BitAccess = have11.storageBuffer16BitAccess;
    f12.pNext = &f11;
    /* cooperative matrices where usable (probe_coopmat): the extension, its feature, and
     * the Vulkan memory model the coopmat SPIR-V declares (f16 arithmetic is on above) */
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm_nv = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    sn_vk_cm_features_khr cm_khr = {SN_VK_ST_CM_FEATURES_KHR};
    const char *exts[3];
    uint32_t next = 0;
    vk->coop = d->cm_mnk[0] != 0;
    if (vk->coop) {
        f12.vulkanMemoryModel = VK_TRUE;
        if (d->cm_nv) {
            cm_nv.cooperativeMatrix = VK_TRUE;
            cm_nv.pNext = f2.pNext;
            f2.pNext = &cm_nv;
            exts[next++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
        } else {
            cm_khr.cooperativeMatrix = VK_TRUE;
            cm_khr.pNext = f2.pNext;
            f2.pNext = &cm_khr;
            exts[next++] = "VK_KHR_cooperative_matrix";
        }
    }
    if (d->portability_subset) exts[next++] = "VK_KHR_portability_subset"; /* required when offered (MoltenVK) */
    if (d->budget) exts[next++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    VkDeviceCreateInfo ci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &f2, 0, 1, &qi, 0, NULL, next, exts, NULL};
    VK_TRY(vk, vkCreateDevice(d->pd, &ci, NULL, &vk->dev));
    vkGetDeviceQueue(vk->dev, (uint32_t)d->queue_family, 0, &vk->queue);
    VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                  VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, (uint32_t)d->queue_family};
    VK_TRY(vk, vkCreateCommandPool(vk->dev, &pi, NULL, &vk->pool));
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, vk->pool,
                                      VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    VK_TRY(vk, vkAllocateCommandBuffers(vk->dev, &ai, &vk->xfer_cb));
    VkFenceCreateInfo fci = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_TRY(vk, vkCreateFence(vk->dev, &fci, NULL, &vk->xfer_fence));
    vk->limits.push_bytes = 128;
    vk->limits.cpu_driver = d->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, vk->limits.push_bytes};
    VkPipelineLayoutCreateInfo li = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 0, NULL, 1, &pr};
    VK_TRY(vk, vkCreatePipelineLayout(vk->dev, &li, NULL, &vk->layout));
    cache_path(vk);
    void *cdata;
    size_t clen;
    cache_load(vk, &cdata, &clen);
    VkPipelineCacheCreateInfo pci = {VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO, NULL, 0, clen, cdata};
    if (vkCreatePipelineCache(vk->dev, &pci, NULL, &vk->cache) != VK_SUCCESS) {
        /* a stale or corrupt file: start empty */
        pci.initialDataSize = 0;
        pci.pInitialData = NULL;
        if (vkCreatePipelineCache(vk->dev, &pci, NULL, &vk->cache) != VK_SUCCESS) vk->cache = VK_NULL_HANDLE;
    }
    free(cdata);

    /* memory types */
    vkGetPhysicalDeviceMemoryProperties(d->pd, &vk->mp);
    VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                          HC = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, CA = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    vk->mt_device = find_type(vk, ~0u, DL, HV);
    if (vk->mt_device < 0) vk->mt_device = find_type(vk, ~0u, DL, 0);
    if (vk->mt_device < 0) vk->mt_device = find_type(vk, ~0u, 0, 0);
    /* unified memory (Apple, integrated GPUs, CPU drivers): arenas mapped, batches written in
     * place. Not on discrete GPUs: there a host-visible VRAM window (ReBAR) makes downloads
     * crawl over uncached PCIe reads, so staging is faster. */
    vk->mt_unified = d->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU ? -1 : find_type(vk, ~0u, DL | HV | HC, 0);
    vk->mt_stage = find_type(vk, ~0u, HV | HC | CA, 0);
    if (vk->mt_stage < 0) vk->mt_stage = find_type(vk, ~0u, HV | HC, 0);
    if (vk->mt_device < 0 || vk->mt_stage < 0)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan device %s has no usable memory type (device-local and "
                        "host-visible needed): use another device or the CPU", vk->name);
    VkPhysicalDeviceMaintenance3Properties m3 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &m3};
    vkGetPhysicalDeviceProperties2(d->pd, &p2);
    vk->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : ((VkDeviceSize)1 << 31);

    const VkPhysicalDeviceLimits *L = &d->props.limits;
    vk->limits.subgroup_size = d->subgroup;
    vk->limits.subgroup_ops = d->subgroup_ops;
    vk->limits.shared_bytes = L->maxComputeSharedMemorySize;
    vk->limits.max_invocations = L->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        vk->limits.max_wg_size[i] = L->maxComputeWorkGroupSize[i];
        vk->limits.max_wg_count[i] = L->maxComputeWorkGroupCount[i];
    }
    return SN_OK;
}

sn_status sn_vulkan_backend_new(int device, sn_backend **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_vulkan_backend_new: out is NULL");
    *out = NULL;
    int n = sn_vulkan_device_count();
    if (n == 0) return sn_error(SN_ERR_DEVICE, "no Vulkan device found: %s; or use the CPU", g.why);
    if (device < 0 || device >= n)
        return sn_error(SN_ERR_DEVICE, "Vulkan device %d does not exist: %d found (vulkan:0 .. vulkan:%d; see "
                        "`sinter devices`)", device, n, n - 1);
    const vk_phys *d = &g.dev[device];
    if (d->props.apiVersion < VK_API_VERSION_1_2)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan device vulkan:%d (%s) supports Vulkan %u.%u only; sinter needs "
                        "1.2 with bufferDeviceAddress: update its driver, or use another device or the CPU", device,
                        d->props.deviceName, VK_API_VERSION_MAJOR(d->props.apiVersion),
                        VK_API_VERSION_MINOR(d->props.apiVersion));
    if (!d->bda)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan device vulkan:%d (%s) lacks the bufferDeviceAddress feature "
                        "sinter needs: update its driver, or use another device or the CPU", device,
                        d->props.deviceName);
    if (d->queue_family < 0)
        return sn_error(SN_ERR_UNSUPPORTED, "Vulkan device vulkan:%d (%s) has no compute queue: use another device "
                        "or the CPU", device, d->props.deviceName);
    sn_vk *vk = calloc(1, sizeof *vk);
    sn_backend *b = calloc(1, sizeof *b);
    if (!vk || !b) {
        free(vk);
        free(b);
        return sn_error(SN_ERR_NOMEM, "Vulkan backend: out of host memory");
    }
    vk->index = device;
    vk->phys = d;
    snprintf(vk->name, sizeof vk->name, "vulkan:%d (%.160s)", device, d->props.deviceName);
    snprintf(vk->short_name, sizeof vk->short_name, "vulkan:%d", device);
    const char *rec = getenv("SN_VK_RECORD");
    vk->record_once = !(rec && !strcmp(rec, "0"));
    const char *stg = getenv("SN_VK_STAGED");
    vk->staged = stg && !strcmp(stg, "1");
    sn_status st = vk_open(vk);
    if (st != SN_OK) {
        vk_destroy(vk);
        free(b);
        return st;
    }
    b->i = &v_iface;
    b->ctx = vk;
    b->is_host = false;
    *out = b;
    return SN_OK;
}

static sn_status v_reg_open(int index, int cpu_threads, sn_backend **out) {
    (void)cpu_threads;
    return sn_vulkan_backend_new(index, out);
}

const sn_backend_reg sn_vulkan_reg = {
    .kind = "vulkan", .count = sn_vulkan_device_count, .info = sn_vulkan_device_info, .open = v_reg_open};
