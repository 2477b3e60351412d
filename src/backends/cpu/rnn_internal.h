/* Shared by the CPU RNN kernel files: rnn.c (entry, RNN_STATE, profiler), rnn_vec.c
 * (GEMM building blocks, skinny recurrent kernels), rnn_pack.c (packed w_hh),
 * rnn_lstm.c and rnn_gru.c (the passes). Not part of the backend interface. */
#ifndef SN_BACKENDS_CPU_RNN_INTERNAL_H
#define SN_BACKENDS_CPU_RNN_INTERNAL_H

#include "backends/cpu/cpu.h"

#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SN_SKINNY_X86 1
#endif

/* ---- per-phase profiler (rnn.c; SN_RNN_PROF=1) */
enum { SN_RNN_P_INPROJ, SN_RNN_P_FWD_LOOP, SN_RNN_P_BWD_LOOP, SN_RNN_P_BWD_WGRAD, SN_RNN_P_BWD_DX, SN_RNN_P_BWD_PACK, SN_RNN_P_N };
/* ms on a monotonic clock while profiling is on, else 0 */
double sn_rnn_prof_now(void);
/* adds the time since *t0 to phase slot and restarts *t0 (nothing when off) */
void sn_rnn_prof_lap(int slot, double *t0);
/* the same inside a recurrent region, per thread: slot 0/1 forward work / barrier wait,
 * 2/3 backward (call sn_rnn_prof_now() on the calling thread before the region) */
void sn_rnn_prof_thread(int tid, int slot, double *t0);

/* ---- cell loops */
static inline float sn_rnn_sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Rows [b0*H + j) of a cell loop split into per-batch contiguous j ranges. */
#define SN_RNN_FOR_BJ(i0, i1, H, ...)                                      \
    for (int64_t b = (i0) / (H); b * (H) < (i1); b++) {                    \
        int64_t j0 = (i0) - b * (H) > 0 ? (i0) - b * (H) : 0;              \
        int64_t j1 = (i1) - b * (H) < (H) ? (i1) - b * (H) : (H);          \
        for (int64_t j = j0; j < j1; j++) __VA_ARGS__                      \
    }

/* Grain of the cell loops: enough work per thread to beat the wake-up cost. */
#define SN_RNN_CELL_GRAIN 1024

/* Hidden units [j0, j1) of thread tid of nth in a recurrent region: contiguous ranges,
 * multiples of 16 floats (whole cache lines, so no two threads write the same line of
 * h/c/gates), the same every step (each thread's slice of w_hh stays in its L2). */
static inline void sn_rnn_unit_range(int64_t H, int tid, int nth, int64_t *j0, int64_t *j1) {
    int64_t per = (H + nth - 1) / nth;
    per = (per + 15) & ~(int64_t)15;
    *j0 = tid * per < H ? tid * per : H;
    *j1 = *j0 + per < H ? *j0 + per : H;
}

/* ---- GEMM building blocks (rnn_vec.c) */
/* the weight and bias gradients of layer l of backward node (gates per hidden unit)
 * from its pre-activation gradients over all timesteps: dgx of the input projection,
 * dgh of the recurrent product (the same for the LSTM, where b_hh gets b_ih's) */
void sn_rnn_weight_grads(sn_cpu *c, sn_tensor *node, int gates, int l, const float *dgx, const float *dgh,
                         const float *xin, const float *hs);
/* gates[B*T, G] = in[B*T, K] w_ih^T + b_ih (+ b_hh when given) */
void sn_rnn_input_proj(sn_cpu *c, float *gates, const float *in, const float *w_ih, const float *b_ih,
                       const float *b_hh, int64_t BT, int64_t K, int64_t G);
/* dst[C,R] = src[R,C]^T */
void sn_rnn_transpose(sn_cpu *c, float *dst, const float *src, int64_t R, int64_t C);

/* The skinny kernels (and the recurrent regions) serve per-step products of at most
 * sn_rnn_skinny_max_b() batch rows: SN_RNN_SKINNY_MAX_B (read once), default below;
 * larger batches take one BLAS call per step, which repacks all of w_hh every step
 * (2-core AMX Xeon, bench_lstm fwd+bwd, f32: B=16 3956 -> 2335 ms, B=128 19.2 -> 16.5 s
 * on the skinny kernels). sn_rnn_skinny_max_b_set overrides it, -1 rereads (tests). */
#define SN_RNN_SKINNY_MAX_B 256
int64_t sn_rnn_skinny_max_b(void);
void sn_rnn_skinny_max_b_set(int64_t b);
/* 2: AVX-512, 1: AVX2+FMA, 0: use sn_sgemm */
int sn_rnn_skinny_level(void);
bool sn_rnn_use_skinny(int64_t B);
/* C[b, n] (+)= sum_k A[b,k] W[n,k] for all B rows (in groups of 4), n in [n0, n1) */
void sn_rnn_skinny_nt(const float *A, int64_t lda, int64_t B, const float *W, int64_t K, float *C, int64_t ldc,
                      int64_t n0, int64_t n1, bool acc);
/* C[B,N] (+)= A[B,K] W[N,K]^T, skinny kernel over the pool or sn_sgemm */
void sn_rnn_step_gemm_nt(sn_cpu *c, int64_t B, int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                         float *C, int64_t ldc, bool acc);

/* ---- packed w_hh (rnn_pack.c): panels of 16 output columns, k-major */
/* floats of the packed [N, K] operand */
int64_t sn_rnn_packed_floats(int64_t N, int64_t K);
/* n floats for the packed weight, on huge pages when free (*huge set: give back
 * with sn_rnn_wpack_put), else the backend's scratch; NULL on OOM */
float *sn_rnn_wpack_get(sn_cpu *c, size_t n, bool *huge);
void sn_rnn_wpack_put(bool huge);
/* P = panels of the [N, K] operand with element (n, k) at W[n*sn + k*sk] */
void sn_rnn_pack_panels(sn_cpu *c, float *P, const float *W, int64_t N, int64_t K, int64_t sn, int64_t sk);
/* the packed path: AVX-512 and not turned off (SN_SKINNY_PACKED=0) */
bool sn_rnn_use_packed(int64_t B);
#ifdef SN_SKINNY_X86
/* C[b, n] (+)= sum_k A[b,k] Op[n,k] for b < B, n in [n0, n1) (n0 a multiple of 16),
 * Op packed in P */
__attribute__((target("avx512f"))) void sn_rnn_skinny_packed(const float *A, int64_t lda, int64_t B, const float *P,
                                                             int64_t K, float *C, int64_t ldc, int64_t n0, int64_t n1,
                                                             bool acc);
#endif

/* ---- packed bf16 w_hh (rnn_pack.c; mixed precision, CPUs with AVX512-BF16)
 * panels of 16 output columns, per k-pair 16 u32 (bf16 of k even | k odd << 16) */
int64_t sn_rnn_packed16_words(int64_t N, int64_t K);
void sn_rnn_pack_panels_bf16(sn_cpu *c, uint32_t *P, const float *W, int64_t N, int64_t K, int64_t sn, int64_t sk);
#ifdef SN_SKINNY_X86
/* C[b, n] (+)= sum_kp A[b,kp] . P[n,kp] (f32 accumulation) for b < B, n in [n0, n1)
 * (n0 a multiple of 16); A as k-pairs (sn_bf16_pairs), row stride lda u32 */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl"))) void
sn_rnn_skinny_packed_bf16(const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP, float *C,
                          int64_t ldc, int64_t n0, int64_t n1, bool acc);
#endif
/* C[B,N] (+)= bf16(A[B,K]) P^T over the pool, any B; a16 scratch of B*ceil(K/2) u32.
 * P (and each per-gate block of it) best 64-byte aligned: one cache line per k-pair. */
void sn_rnn_step_gemm_p16(sn_cpu *c, int64_t B, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint32_t *P, float *C, int64_t ldc, bool acc, uint32_t *a16);

/* The recurrent bf16 product's use of AMX tiles: 0 none, 1 AMX, 2 the emulation
 * (sn_bgemm_amx_mode; SN_CPU_RNN_AMX=0 turns it off, read once); sn_rnn_amx_set
 * overrides it, -1 rereads (tests). */
int sn_rnn_amx(void);
void sn_rnn_amx_set(int mode);

/* ---- ping-pong traversal (rnn_pack.c): the recurrent loops walk a thread's packed
 * panels forward on even steps and backward on odd ones (the last ones read are
 * still in L2); bit-identical either way. On unless SN_CPU_RNN_PINGPONG=0 (read once);
 * sn_rnn_pingpong_set(0/1) overrides it, -1 rereads the variable (tests). */
bool sn_rnn_pingpong(void);
void sn_rnn_pingpong_set(int on);
#ifdef SN_SKINNY_X86
/* sn_rnn_skinny_packed(_bf16) over [n0, n1), its 64-column blocks last first when rev */
void sn_rnn_skinny_packed_dir(const float *A, int64_t lda, int64_t B, const float *P, int64_t K, float *C,
                              int64_t ldc, int64_t n0, int64_t n1, bool acc, bool rev);
void sn_rnn_skinny_packed_bf16_dir(const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP,
                                   float *C, int64_t ldc, int64_t n0, int64_t n1, bool acc, bool rev);
#endif

/* ---- the passes (rnn_lstm.c, rnn_gru.c) */
sn_status sn_rnn_lstm_forward(sn_cpu *c, sn_tensor *node);
sn_status sn_rnn_lstm_backward(sn_cpu *c, sn_tensor *node);
sn_status sn_rnn_gru_forward(sn_cpu *c, sn_tensor *node);
sn_status sn_rnn_gru_backward(sn_cpu *c, sn_tensor *node);

#endif
