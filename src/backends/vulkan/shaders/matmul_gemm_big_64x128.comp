#version 450
// The register-blocked GEMM (gemm_big.glsl) with 64x128 tiles of 128 invocations: for
// outputs of few rows (convolutions with 64 output channels) and many columns.
#define BM 64
#define BN 128
#include "gemm_big.glsl"
