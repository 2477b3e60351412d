#version 450
// The register-blocked GEMM (gemm_big.glsl) with 128x128 tiles of 256 invocations: for
// outputs with enough such tiles to fill a GPU.
#define BM 128
#define BN 128
#include "gemm_big.glsl"
