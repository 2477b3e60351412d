#version 450
// matmul_gemm_coop.glsl with its matrix operations emulated per invocation: tests the
// staging, tiling and epilogue where there are no cooperative matrices (SN_VK_COOP=emulate).
#define SN_COOP_EMULATE
#include "matmul_gemm_coop.glsl"
