/* The registry's entries: each backend that is built in defines one (its own folder). */
#ifndef SN_BACKENDS_REGISTRY_H
#define SN_BACKENDS_REGISTRY_H

#include "sinter/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const sn_backend_reg sn_cpu_reg;
#ifdef SN_HAVE_CUDA
extern const sn_backend_reg sn_cuda_reg;
#endif
#ifdef SN_HAVE_VULKAN
extern const sn_backend_reg sn_vulkan_reg;
#endif

#ifdef __cplusplus
}
#endif
#endif
