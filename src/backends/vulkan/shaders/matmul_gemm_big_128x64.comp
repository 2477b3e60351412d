#version 450
// The register-blocked GEMM (gemm_big.glsl) with 128x64 tiles of 128 invocations: twice
// the workgroups of matmul_gemm_big.comp (128x128) where those would leave a GPU idle.
#define BM 128
#define BN 64
#include "gemm_big.glsl"
