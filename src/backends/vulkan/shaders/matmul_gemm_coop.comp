#version 450
// The f16 cooperative-matrix GEMM of train.mixed_precision: see matmul_gemm_coop.glsl.
#include "matmul_gemm_coop.glsl"
