/* LSTM and GRU as whole-sequence ops (batch-first, PyTorch gate order and equations,
 * zero initial state), forward and backward through time.
 *
 * Per layer: the input projection of all timesteps is one GEMM; then per step one
 * recurrent cuBLAS GEMM and one fused cell kernel. Backward: per step one fused
 * cell-backward kernel and one recurrent GEMM, then the weight gradients as GEMMs
 * over all timesteps. With small batches a persistent cooperative kernel per layer
 * replaces the step loop (below), for both cell types. Saved state layouts: tensor.h. */
#include "backends/cuda/cuda_common.h"

#include <stdlib.h>

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---------------- LSTM ---------------- */

/* gates holds x@W_ih^T for step t on entry and the activated (i,f,g,o) on exit */
__global__ void k_lstm_cell(float *gates, float *cbuf, float *hbuf, float *y, __nv_bfloat16 *h16, const float *rec,
                            const float *b_ih, const float *b_hh, const float *c0, int64_t B, int64_t T, int64_t H,
                            int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        float *gt = gates + (b * T + t) * 4 * H;
        float pre[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float v = gt[k * H + j] + b_ih[k * H + j] + b_hh[k * H + j];
            if (rec) v += rec[b * 4 * H + k * H + j];
            pre[k] = v;
        }
        float i = sigm(pre[0]), f = sigm(pre[1]), g = tanhf(pre[2]), o = sigm(pre[3]);
        float cp = t > 0 ? cbuf[(b * T + t - 1) * H + j] : (c0 ? c0[b * H + j] : 0.0f);
        float cn = f * cp + i * g, hn = o * tanhf(cn);
        gt[j] = i;
        gt[H + j] = f;
        gt[2 * H + j] = g;
        gt[3 * H + j] = o;
        int64_t o1 = (b * T + t) * H + j;
        cbuf[o1] = cn;
        hbuf[o1] = hn;
        if (y) y[o1] = hn;
        if (h16) h16[b * H + j] = __float2bfloat16(hn);
    }
}

/* dG (pre-activation gradients) of step t; dc carries dL/dc_t backwards */
__global__ void k_lstm_cell_bwd(const float *dh_out, const float *dhrec, float *dc, const float *gates,
                                const float *cbuf, float *dG, __nv_bfloat16 *dg16, int64_t B, int64_t T, int64_t H,
                                int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        int64_t o1 = (b * T + t) * H + j;
        const float *gt = gates + (b * T + t) * 4 * H;
        float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        float dh = dh_out[o1] + (t < T - 1 ? dhrec[b * H + j] : 0.0f);
        float dcn = t < T - 1 ? dc[b * H + j] : 0.0f;
        float cn = cbuf[o1], cp = t > 0 ? cbuf[o1 - H] : 0.0f;
        float tc = tanhf(cn);
        float d_o = dh * tc;
        dcn += dh * o * (1.0f - tc * tc);
        float di = dcn * g, dg = dcn * i, df = dcn * cp;
        dc[b * H + j] = dcn * f;
        float a[4] = {di * i * (1.0f - i), df * f * (1.0f - f), dg * (1.0f - g * g), d_o * o * (1.0f - o)};
        float *d = dG + (b * T + t) * 4 * H;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            d[k * H + j] = a[k];
            if (dg16) dg16[b * 4 * H + k * H + j] = __float2bfloat16(a[k]);
        }
    }
}

/* ---------------- GRU ---------------- */

/* gates holds x@W_ih^T on entry, the activated (r,z,n) on exit; hn = W_hn h + b_hn */
__global__ void k_gru_cell(float *gates, float *hnbuf, float *hbuf, float *y, __nv_bfloat16 *h16, const float *rec,
                           const float *b_ih, const float *b_hh, const float *h0, int64_t B, int64_t T, int64_t H,
                           int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        float *gt = gates + (b * T + t) * 3 * H;
        const float *rc = rec ? rec + b * 3 * H : NULL;
        float xr = gt[j] + b_ih[j], xz = gt[H + j] + b_ih[H + j], xn = gt[2 * H + j] + b_ih[2 * H + j];
        float hr = b_hh[j] + (rc ? rc[j] : 0.0f), hz = b_hh[H + j] + (rc ? rc[H + j] : 0.0f);
        float hnv = b_hh[2 * H + j] + (rc ? rc[2 * H + j] : 0.0f);
        float r = sigm(xr + hr), z = sigm(xz + hz), n = tanhf(xn + r * hnv);
        int64_t o1 = (b * T + t) * H + j;
        float hp = t > 0 ? hbuf[o1 - H] : (h0 ? h0[b * H + j] : 0.0f);
        float h = (1.0f - z) * n + z * hp;
        gt[j] = r;
        gt[H + j] = z;
        gt[2 * H + j] = n;
        hnbuf[o1] = hnv;
        hbuf[o1] = h;
        if (y) y[o1] = h;
        if (h16) h16[b * H + j] = __float2bfloat16(h);
    }
}

/* dhc holds dL/dh_{t} from later steps on entry and dL/dh_{t-1} (direct path) on exit */
__global__ void k_gru_cell_bwd(const float *dh_out, float *dhc, const float *gates, const float *hnbuf,
                               const float *hbuf, float *dGx, float *dGh, __nv_bfloat16 *dg16, int64_t B, int64_t T,
                               int64_t H, int64_t t) {
    SN_GRID_LOOP(idx, B * H) {
        int64_t b = idx / H, j = idx - b * H;
        int64_t o1 = (b * T + t) * H + j;
        const float *gt = gates + (b * T + t) * 3 * H;
        float r = gt[j], z = gt[H + j], n = gt[2 * H + j];
        float hnv = hnbuf[o1], hp = t > 0 ? hbuf[o1 - H] : 0.0f;
        float dh = dh_out[o1] + (t < T - 1 ? dhc[b * H + j] : 0.0f);
        float dn = dh * (1.0f - z), dz = dh * (hp - n);
        float dan = dn * (1.0f - n * n);
        float dar = dan * hnv * r * (1.0f - r);
        float daz = dz * z * (1.0f - z);
        dhc[b * H + j] = dh * z;
        float *gx = dGx + (b * T + t) * 3 * H, *gh = dGh + (b * T + t) * 3 * H;
        gx[j] = dar;
        gx[H + j] = daz;
        gx[2 * H + j] = dan;
        gh[j] = dar;
        gh[H + j] = daz;
        gh[2 * H + j] = dan * r;
        if (dg16) {
            __nv_bfloat16 *d = dg16 + b * 3 * H;
            d[j] = __float2bfloat16(dar);
            d[H + j] = __float2bfloat16(daz);
            d[2 * H + j] = __float2bfloat16(dan * r);
        }
    }
}

/* ---------------- persistent LSTM / GRU step loops ----------------
 *
 * One cooperative launch per layer runs all T steps: block b owns hidden units
 * [b*U, b*U + U) and keeps the W_hh it needs in shared memory for the whole sequence
 * (forward: the G*U rows of those units' G gates; backward: the U columns), and the
 * grid synchronises once per step. One kernel per direction, templated on the cell
 * (lstm_/gru_{fwd,bwd}_cell): the exchange, the recurrent products and the launch are
 * shared. Used for B <= 16 when the slice fits; otherwise the per-step GEMM + cell
 * kernels above run. Same saved state as the step path, in fp32 also in bf16 mode
 * (the bf16 copies h16 / dg16 only feed the step path's GEMMs). */
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

/* Step-to-step exchange without a grid barrier (NCCL's "LL" protocol): a producer
 * publishes each value together with a 32-bit step tag in one 8-byte store; a consumer
 * spins on 8-byte (or 16-byte, two-entry) loads until every tag it needs is that of the
 * step it waits for, so data and readiness travel in one L2 round trip, with no fence
 * and no central counter. Tags grow monotonically over launches (g_sn_tag: each launch
 * uses base + 1 .. base + T and advances it after one final grid.sync), so stale
 * entries of an earlier launch, layer or graph replay never match. Two buffers by step
 * parity: a block writes step t + 2 only after it has read every block's step t + 1,
 * which each block wrote only after it had read all of step t (no write-after-read
 * hazard). Co-residency of all blocks: the cooperative launch. */
#define SN_XCH_N (16 * 4 * 1024) /* entries per parity: B * G*H for the backward, B * H forward */
__device__ __align__(16) uint2 g_sn_xch[2][SN_XCH_N];
__device__ unsigned g_sn_tag;

__device__ __forceinline__ void ll_store(uint2 *p, float v, unsigned tag) {
    asm volatile("st.volatile.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(__float_as_uint(v)), "r"(tag) : "memory");
}
__device__ __forceinline__ uint2 ll_load2(const uint2 *p) {
    uint2 r;
    asm volatile("ld.volatile.global.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p) : "memory");
    return r;
}
__device__ __forceinline__ uint4 ll_load4(const uint2 *p) {
    uint4 r;
    asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p)
                 : "memory");
    return r;
}
__device__ __forceinline__ unsigned ll_base() { return *(volatile unsigned *)&g_sn_tag; }
/* after the last step: every block has read its base, so advance it for the next launch */
__device__ __forceinline__ void ll_finish(cg::grid_group &grid, unsigned base, int T) {
    grid.sync();
    if (blockIdx.x == 0 && threadIdx.x == 0) g_sn_tag = base + (unsigned)T;
}

/* Flag-then-load exchange (a developer switch, SN_RNN_FLAGS=1; grid.sync is the default):
 * after a step's plain stores of h_t (forward) or dx_t (backward) the block meets at a
 * barrier and thread 0 release-stores the block's step counter g_sn_flag[block] = base +
 * step tag. Before the next step one warp per block polls all blocks' counters (one
 * coalesced 4-byte load per lane and group of 32 blocks), acquire-fences, and the block
 * then reads the data with L2 (.cg) loads. No grid-wide atomic; the
 * counters' tags grow over launches like the LL tags (base from g_sn_tag), so counters
 * of an earlier launch, layer or CUDA graph replay never satisfy a wait. Every step's
 * output has its own slot (hbuf / dG per t) and each block writes only its own units,
 * so no write-after-read hazard needs a second barrier. */
#define SN_FLAG_N 160 /* most blocks (5 counters per polling lane) */
__device__ unsigned g_sn_flag[SN_FLAG_N];

__device__ __forceinline__ unsigned flag_ld(const unsigned *p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void flag_st(unsigned *p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
/* producer side, called by every thread of the block after its stores of this step:
 * the barrier orders the block's stores before thread 0's release (cumulative, as in
 * cooperative_groups' grid.sync: barrier, then one thread's fence and signal) */
__device__ __forceinline__ void flag_publish(unsigned tag) {
    __syncthreads();
    if (threadIdx.x == 0) flag_st(&g_sn_flag[blockIdx.x], tag);
}
/* consumer side, every thread of the block: returns once every block's counter has reached want */
__device__ __forceinline__ void flag_wait(unsigned want) {
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x, nb = (int)gridDim.x;
        int polls = 0;
        for (;;) {
            unsigned f[SN_FLAG_N / 32];
#pragma unroll
            for (int s = 0; s < SN_FLAG_N / 32; s++) {
                int i = lane + 32 * s;
                f[s] = i < nb ? flag_ld(&g_sn_flag[i]) : want;
            }
            bool ok = true;
#pragma unroll
            for (int s = 0; s < SN_FLAG_N / 32; s++) ok &= (int)(f[s] - want) >= 0;
            if (__all_sync(0xffffffffu, ok)) break;
            if (++polls > 64) __nanosleep(32);
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory"); /* acquire: the relaxed loads saw the releases */
    }
    __syncthreads();
}

#define SN_PT 256  /* threads per block */
#define SN_PU 8    /* most units per block */

static constexpr __host__ __device__ int sn_pow2_ceil(int n) { return n <= 1 ? 1 : 2 * sn_pow2_ceil((n + 1) / 2); }
/* padded count of per-lane partial sums reduced together: a power of two up to 32, then multiples of 32 */
static constexpr __host__ __device__ int sn_bfly_pad(int n) { return n <= 32 ? sn_pow2_ceil(n) : (n + 31) / 32 * 32; }

/* Warp reduce-scatter of V partial sums per lane (V a power of two <= 32): returns,
 * in lane L, the warp-wide sum of value L % V. V - 1 + log2(32 / V) shuffles instead
 * of 5 per value. */
template <int O, int N>
__device__ __forceinline__ void bfly_step(float (&v)[N], int base, int lane) {
    if constexpr (O >= 1) {
        const bool hi = lane & O;
#pragma unroll
        for (int i = 0; i < O; i++) {
            float send = hi ? v[base + i] : v[base + i + O];
            float keep = hi ? v[base + i + O] : v[base + i];
            v[base + i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        bfly_step<O / 2>(v, base, lane);
    }
}
/* Warp reduce-scatter of V partial sums per lane, v[base .. base + V) (V a power of
 * two <= 32): returns, in lane L, the warp-wide sum of value L % V, with V - 1 +
 * log2(32 / V) shuffles instead of 5 per value. */
template <int V, int N>
__device__ __forceinline__ float warp_bfly(float (&v)[N], int base, int lane) {
    bfly_step<V / 2>(v, base, lane);
    float r = v[base];
#pragma unroll
    for (int o = V; o < 32; o <<= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
    return r;
}

/* Everything the persistent kernels read or write, for both cell types (one kernel
 * parameter; fields a cell does not use are NULL). */
struct persist_args {
    float *gates;        /* [B,T,G*H] fwd: x@W_ih^T in, activated gates out; bwd: read (GRU: dGx out) */
    float *mid;          /* [B,T,H] LSTM c / GRU hn (W_hn h + b_hn), written fwd, read bwd */
    float *hbuf, *y;     /* [B,T,H] h (y: optional copy), written fwd; GRU bwd reads h_{t-1} */
    const float *w_hh, *b_ih, *b_hh, *h0, *c0;
    const float *dh_out; /* bwd: [B,T,H] dL/dh from above */
    float *dx;           /* bwd: [B,T,G*H] the gate gradients that feed dh_{t-1} through W_hh: dG (LSTM), dGh (GRU) */
    float *part;         /* split bwd: [2][C][B][H] partial products W_hh[group rows, :]^T dG per unit group */
    int T, H, U, P, ll, fl;
};

/* Cell of the persistent forward: init once per (batch, unit) thread, then step(t) gets
 * the x projection xp (G gates) and rec, W_hh h_{t-1} of gate k at rec[k * nu] (NULL
 * while there is no h yet), writes the saved state of step t (as k_lstm_cell /
 * k_gru_cell do, bf16 copies aside) and returns h_t. */
struct lstm_fwd_cell {
    static constexpr int G = 4;
    float bias[4], c;
    __device__ __forceinline__ void init(const persist_args &a, int b, int j) {
#pragma unroll
        for (int k = 0; k < 4; k++) bias[k] = a.b_ih[k * a.H + j] + a.b_hh[k * a.H + j];
        c = a.c0 ? a.c0[(size_t)b * a.H + j] : 0.0f;
    }
    __device__ __forceinline__ float step(const persist_args &a, float *gt, const float (&xp)[4], const float *rec,
                                          int nu, size_t o1, int j) {
        const int H = a.H;
        float p[4];
#pragma unroll
        for (int k = 0; k < 4; k++) p[k] = xp[k] + bias[k] + (rec ? rec[k * nu] : 0.0f);
        float i = sigm(p[0]), f = sigm(p[1]), g = tanhf(p[2]), o = sigm(p[3]);
        float cn = f * c + i * g, hn = o * tanhf(cn);
        c = cn;
        gt[j] = i;
        gt[H + j] = f;
        gt[2 * H + j] = g;
        gt[3 * H + j] = o;
        a.mid[o1] = cn;
        return hn;
    }
};
struct gru_fwd_cell {
    static constexpr int G = 3;
    float bi[3], bh[3], h;
    __device__ __forceinline__ void init(const persist_args &a, int b, int j) {
#pragma unroll
        for (int k = 0; k < 3; k++) {
            bi[k] = a.b_ih[k * a.H + j];
            bh[k] = a.b_hh[k * a.H + j];
        }
        h = a.h0 ? a.h0[(size_t)b * a.H + j] : 0.0f;
    }
    __device__ __forceinline__ float step(const persist_args &a, float *gt, const float (&xp)[3], const float *rec,
                                          int nu, size_t o1, int j) {
        const int H = a.H;
        float xr = xp[0] + bi[0], xz = xp[1] + bi[1], xn = xp[2] + bi[2];
        float hr = bh[0] + (rec ? rec[0] : 0.0f), hz = bh[1] + (rec ? rec[nu] : 0.0f);
        float hnv = bh[2] + (rec ? rec[2 * nu] : 0.0f);
        float r = sigm(xr + hr), z = sigm(xz + hz), n = tanhf(xn + r * hnv);
        h = (1.0f - z) * n + z * h;
        gt[j] = r;
        gt[H + j] = z;
        gt[2 * H + j] = n;
        a.mid[o1] = hnv;
        return h;
    }
};

template <class Cell, int NB>
__global__ void __launch_bounds__(SN_PT, 1) k_rnn_fwd_persist(const persist_args a) {
    constexpr int G = Cell::G;
    cg::grid_group grid = cg::this_grid();
    const int T = a.T, H = a.H, U = a.U, ll = a.ll, fl = a.fl;
    float *gates = a.gates, *hbuf = a.hbuf, *y = a.y;
    const float *h0 = a.h0;
    const unsigned base = ll || fl ? ll_base() : 0u;
    extern __shared__ float4 sm4[];
    const int j0 = blockIdx.x * U, nu = min(U, H - j0), R = G * nu, H4 = H >> 2;
    float4 *Ws = sm4;            /* [R][H4]: row k*nu + u = W_hh row k*H + j0 + u */
    float4 *hs = Ws + R * H4;    /* [NB][H4] h_{t-1} */
    float *pre = (float *)(hs + NB * H4); /* [NB][R] recurrent pre-activations */
    for (int idx = threadIdx.x; idx < R * H4; idx += SN_PT) {
        int r = idx / H4, q = idx - r * H4, k = r / nu, u = r - k * nu;
        Ws[idx] = ((const float4 *)(a.w_hh + (size_t)(k * H + j0 + u) * H))[q];
    }
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const bool cell = tid < NB * nu;
    const int cb = cell ? tid / nu : 0, cu = cell ? tid - cb * nu : 0, j = j0 + cu;
    Cell cs;
    if (cell) cs.init(a, cb, j);
    __syncthreads();
    /* Where a warp makes one pass (R <= 32 rows) over H <= 1024, the first 2 of its 4 rows
     * stay in registers (64 a thread): a quarter less shared-memory traffic a step, the
     * same products in the same order */
    const bool regw = NB <= 6 && R <= SN_PT / 8 && H4 <= 8 * 32; /* larger batches: no registers to spare */
    float4 wreg[8][2];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int q = lane + 32 * i, r = warp * 4 + rr;
            wreg[i][rr] = regw && q < H4 && r < R ? Ws[r * H4 + q] : make_float4(0, 0, 0, 0);
        }
    for (int t = 0; t < T; t++) {
        const bool has_h = t > 0 || h0;
        float xp[G];
        float *gt = gates + ((size_t)cb * T + t) * G * H;
#pragma unroll
        for (int k = 0; k < G; k++) xp[k] = cell ? gt[k * H + j] : 0.0f;
        if (has_h && ll && t > 0) {
            /* h_{t-1} from the exchange: two tagged entries per 16-byte load, 8 in flight */
            const uint2 *xs = g_sn_xch[(t - 1) & 1];
            const unsigned want = base + (unsigned)t;
            float *hsf = (float *)hs;
            const int NE = NB * H / 2;
            for (int i0 = tid; i0 < NE; i0 += 8 * SN_PT) {
                uint4 v[8];
#pragma unroll
                for (int s = 0; s < 8; s++)
                    if (i0 + s * SN_PT < NE) v[s] = ll_load4(xs + 2 * (i0 + s * SN_PT));
#pragma unroll
                for (int s = 0; s < 8; s++) {
                    const int idx = i0 + s * SN_PT;
                    if (idx < NE) {
                        while (v[s].y != want || v[s].w != want) v[s] = ll_load4(xs + 2 * idx);
                        hsf[2 * idx] = __uint_as_float(v[s].x);
                        hsf[2 * idx + 1] = __uint_as_float(v[s].z);
                    }
                }
            }
            __syncthreads();
        } else if (has_h) {
            if (fl && t > 0) flag_wait(base + (unsigned)t); /* every block's h_{t-1} */
            /* several loads in flight per thread before the stores (L2 latency): at B = 16
             * the whole h (64 KB) in one round */
            constexpr int LF = NB >= 12 ? 16 : NB >= 6 ? 8 : 4;
            for (int i0 = tid; i0 < NB * H4; i0 += LF * SN_PT) {
                float4 v[LF];
#pragma unroll
                for (int s = 0; s < LF; s++) {
                    int idx = i0 + s * SN_PT;
                    if (idx < NB * H4) {
                        int b = idx / H4, q = idx - b * H4;
                        const float *src = t > 0 ? hbuf + ((size_t)b * T + t - 1) * H : h0 + (size_t)b * H;
                        v[s] = __ldcg((const float4 *)src + q);
                    }
                }
#pragma unroll
                for (int s = 0; s < LF; s++)
                    if (i0 + s * SN_PT < NB * H4) hs[i0 + s * SN_PT] = v[s];
            }
            __syncthreads();
        }
        if (has_h) {
            /* each warp 4 rows at a time: every h value read from shared memory feeds 4 rows */
            constexpr int NV = 4 * NB, VP = sn_bfly_pad(NV), V = VP < 32 ? VP : 32;
            for (int r0 = warp * 4; r0 < R; r0 += SN_PT / 8) {
                float acc[VP];
#pragma unroll
                for (int i = 0; i < VP; i++) acc[i] = 0.0f;
                const float4 *wr = Ws + r0 * H4;
                const int nr = min(4, R - r0);
                auto rows = [&](const float4 (&w)[4], int q) {
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        float4 h = hs[b * H4 + q];
#pragma unroll
                        for (int rr = 0; rr < 4; rr++)
                            acc[b * 4 + rr] = fmaf(w[rr].x, h.x, fmaf(w[rr].y, h.y, fmaf(w[rr].z, h.z, fmaf(w[rr].w, h.w, acc[b * 4 + rr]))));
                    }
                };
                if (regw) {
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        const int q = lane + 32 * i;
                        if (q < H4) {
                            const float4 w[4] = {wreg[i][0], wreg[i][1], 2 < nr ? wr[2 * H4 + q] : make_float4(0, 0, 0, 0),
                                                 3 < nr ? wr[3 * H4 + q] : make_float4(0, 0, 0, 0)};
                            rows(w, q);
                        }
                    }
                } else {
                    for (int q = lane; q < H4; q += 32) {
                        float4 w[4];
#pragma unroll
                        for (int rr = 0; rr < 4; rr++) w[rr] = rr < nr ? wr[rr * H4 + q] : make_float4(0, 0, 0, 0);
                        rows(w, q);
                    }
                }
#pragma unroll
                for (int g = 0; g < VP / V; g++) {
                    float v = warp_bfly<V>(acc, g * V, lane);
                    int idx = g * V + (lane % V), b = idx >> 2, rr = idx & 3;
                    if (lane < V && idx < NV && rr < nr) pre[b * R + r0 + rr] = v;
                }
            }
            __syncthreads();
        }
        if (cell) {
            size_t o1 = ((size_t)cb * T + t) * H + j;
            float hn = cs.step(a, gt, xp, has_h ? pre + cb * R + cu : (const float *)NULL, nu, o1, j);
            hbuf[o1] = hn;
            if (y) y[o1] = hn;
            if (ll) ll_store(&g_sn_xch[t & 1][(size_t)cb * H + j], hn, base + (unsigned)t + 1u);
        }
        if (ll) __syncthreads(); /* block-local buffers (hs, pre, red) are reused next step */
        else if (fl) flag_publish(base + (unsigned)t + 1u);
        else grid.sync();
    }
    if (ll || fl) ll_finish(grid, base, T);
}

/* Cell of the persistent backward: load(t) fetches step t's saved state early (before
 * the exchange), step() gets dh = dL/dh_t from the output and, unless t = T - 1, rec =
 * dx_{t+1} W_hh[:, j]; it carries what flows to step t - 1 in registers, writes what the
 * step path writes besides dx (GRU: dGx over the gates) and returns in g the G gate
 * gradients of dx, as k_lstm_cell_bwd / k_gru_cell_bwd compute them. */
struct lstm_bwd_cell {
    static constexpr int G = 4;
    float dc = 0.0f, gi, gf, gg, go, cn, cp;
    __device__ __forceinline__ void load(const persist_args &a, const float *gt, size_t o1, int t, int j) {
        const int H = a.H;
        gi = gt[j];
        gf = gt[H + j];
        gg = gt[2 * H + j];
        go = gt[3 * H + j];
        cn = a.mid[o1];
        cp = t > 0 ? a.mid[o1 - H] : 0.0f;
    }
    __device__ __forceinline__ void step(const persist_args &a, float *gt, int j, float dh, float rec, bool has_rec,
                                         float (&g)[4]) {
        (void)a;
        (void)gt;
        (void)j;
        if (has_rec) dh += rec;
        float tc = tanhf(cn);
        float d_o = dh * tc;
        float dcn = dc + dh * go * (1.0f - tc * tc);
        float di = dcn * gg, dg = dcn * gi, df = dcn * cp;
        dc = dcn * gf;
        g[0] = di * gi * (1.0f - gi);
        g[1] = df * gf * (1.0f - gf);
        g[2] = dg * (1.0f - gg * gg);
        g[3] = d_o * go * (1.0f - go);
    }
};
struct gru_bwd_cell {
    static constexpr int G = 3;
    float dhz = 0.0f, r, z, n, hnv, hp; /* dhz: dL/dh_{t+1} z_{t+1}, the direct path to h_t */
    __device__ __forceinline__ void load(const persist_args &a, const float *gt, size_t o1, int t, int j) {
        const int H = a.H;
        r = gt[j];
        z = gt[H + j];
        n = gt[2 * H + j];
        hnv = a.mid[o1];
        hp = t > 0 ? a.hbuf[o1 - H] : 0.0f;
    }
    __device__ __forceinline__ void step(const persist_args &a, float *gt, int j, float dh, float rec, bool has_rec,
                                         float (&g)[3]) {
        const int H = a.H;
        if (has_rec) dh += rec + dhz;
        float dn = dh * (1.0f - z), dz = dh * (hp - n);
        float dan = dn * (1.0f - n * n);
        float dar = dan * hnv * r * (1.0f - r);
        float daz = dz * z * (1.0f - z);
        dhz = dh * z;
        if (gt) { /* dGx; NULL: another block of the split kernel writes it */
            gt[j] = dar;
            gt[H + j] = daz;
            gt[2 * H + j] = dan;
        }
        g[0] = dar; /* dGh */
        g[1] = daz;
        g[2] = dan * r;
    }
};

/* dx of every step; dh_rec[:, units] = dx_{t+1} W_hh[:, units] from the column slice */
template <class Cell, int NB>
__global__ void __launch_bounds__(SN_PT, 1) k_rnn_bwd_persist(const persist_args a) {
    constexpr int G = Cell::G;
    cg::grid_group grid = cg::this_grid();
    const int T = a.T, H = a.H, U = a.U, ll = a.ll, fl = a.fl;
    const float *dh_out = a.dh_out;
    float *dx = a.dx;
    const unsigned base = ll || fl ? ll_base() : 0u;
    extern __shared__ float4 sm4[];
    const int j0 = blockIdx.x * U, nu = min(U, H - j0), GH = G * H;
    float *Wc = (float *)sm4;                  /* [G*H][SN_PU] */
    float *red = Wc + (size_t)GH * SN_PU;      /* [warps][NB*SN_PU] */
    for (int idx = threadIdx.x; idx < GH * SN_PU; idx += SN_PT) {
        int r = idx / SN_PU, u = idx - r * SN_PU;
        Wc[idx] = u < nu ? a.w_hh[(size_t)r * H + j0 + u] : 0.0f;
    }
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const bool cell = tid < NB * nu;
    const int cb = cell ? tid / nu : 0, cu = cell ? tid - cb * nu : 0, j = j0 + cu;
    Cell cs;
    __syncthreads();
    for (int t = T - 1; t >= 0; t--) {
        const size_t o1 = ((size_t)cb * T + t) * H + j;
        float *gt = a.gates + ((size_t)cb * T + t) * GH;
        float dh = 0.0f, rec = 0.0f;
        if (cell) {
            dh = __ldcg(dh_out + o1);
            cs.load(a, gt, o1, t, j);
        }
        if (t < T - 1) {
            if (fl) flag_wait(base + (unsigned)(T - 1 - t)); /* every block's dx_{t+1} */
            constexpr int NV = NB * SN_PU, VP = sn_bfly_pad(NV), V = VP < 32 ? VP : 32;
            float acc[VP]; /* [b * SN_PU + u] */
#pragma unroll
            for (int i = 0; i < VP; i++) acc[i] = 0.0f;
            /* loads in flight per thread: UN * NB (at H = 1024 and B <= 4 the whole step's in one round) */
            constexpr int UN = NB <= 4 ? 16 : NB <= 8 ? 4 : 2;
            const uint2 *xs = g_sn_xch[(t + 1) & 1];
            const unsigned want = base + (unsigned)(T - 1 - t); /* tag of step t + 1 */
            for (int r0 = tid; r0 < GH; r0 += UN * SN_PT) {
                float d[UN][NB];
                if (ll) { /* tagged entries take two registers: at most 8 rows of them at once */
                    constexpr int UL = UN < 8 ? UN : 8;
#pragma unroll
                    for (int s0 = 0; s0 < UN; s0 += UL) {
                        uint2 e[UL][NB];
#pragma unroll
                        for (int s = 0; s < UL; s++) {
                            int r = r0 + (s0 + s) * SN_PT;
#pragma unroll
                            for (int b = 0; b < NB; b++)
                                if (r < GH) e[s][b] = ll_load2(xs + (size_t)b * GH + r);
                        }
#pragma unroll
                        for (int s = 0; s < UL; s++) {
                            int r = r0 + (s0 + s) * SN_PT;
#pragma unroll
                            for (int b = 0; b < NB; b++) {
                                if (r < GH) {
                                    while (e[s][b].y != want) e[s][b] = ll_load2(xs + (size_t)b * GH + r);
                                    d[s0 + s][b] = __uint_as_float(e[s][b].x);
                                } else {
                                    d[s0 + s][b] = 0.0f;
                                }
                            }
                        }
                    }
                } else {
#pragma unroll
                    for (int s = 0; s < UN; s++) {
                        int r = r0 + s * SN_PT;
#pragma unroll
                        for (int b = 0; b < NB; b++)
                            d[s][b] = r < GH ? __ldcg(dx + ((size_t)b * T + t + 1) * GH + r) : 0.0f;
                    }
                }
#pragma unroll
                for (int s = 0; s < UN; s++) {
                    int r = r0 + s * SN_PT;
                    if (r >= GH) break;
                    const float4 *wp = (const float4 *)(Wc + (size_t)r * SN_PU);
                    float4 w0 = wp[0], w1 = wp[1];
                    float w[SN_PU] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
                    for (int b = 0; b < NB; b++)
#pragma unroll
                        for (int u = 0; u < SN_PU; u++) acc[b * SN_PU + u] = fmaf(d[s][b], w[u], acc[b * SN_PU + u]);
                }
            }
#pragma unroll
            for (int g = 0; g < VP / V; g++) {
                float v = warp_bfly<V>(acc, g * V, lane);
                int idx = g * V + (lane % V);
                if (lane < V && idx < NV) red[warp * NB * SN_PU + idx] = v;
            }
            __syncthreads();
            if (cell) {
                float s = 0.0f;
#pragma unroll
                for (int w = 0; w < SN_PT / 32; w++) s += red[w * NB * SN_PU + cb * SN_PU + cu];
                rec = s;
            }
        }
        if (cell) {
            float g[G];
            cs.step(a, gt, j, dh, rec, t < T - 1, g);
            float *d = dx + ((size_t)cb * T + t) * GH;
            /* tag of step t: base + 1 for t = T - 1 (the backward runs t downwards) */
            const unsigned tag = base + (unsigned)(T - t);
            uint2 *xo = g_sn_xch[t & 1] + (size_t)cb * GH;
#pragma unroll
            for (int k = 0; k < G; k++) {
                if (ll) ll_store(xo + k * H + j, g[k], tag);
                d[k * H + j] = g[k];
            }
        }
        if (ll) __syncthreads(); /* block-local buffers (hs, pre, red) are reused next step */
        else if (fl) flag_publish(base + (unsigned)(T - t));
        else grid.sync();
    }
    if (ll || fl) ll_finish(grid, base, T);
}

/* Split persistent backward (batches >= 12, or SN_RNN_BWD_SPLIT=1; where its plan fits): block (c, i) of a C x P
 * grid keeps W_hh[the G*U gate rows of unit group c][column group i] (H / P columns) in
 * shared memory. Per step each block computes the cells of its group's U units itself,
 * so its dG rows are local, and writes the partial product W_hh[rows of c, cols of i]^T
 * dG_t (B x H / P values); after the grid barrier a cell sums the C partials of its
 * unit. A block reads B x H values per step, as the forward does, where the column
 * kernel above reads all B x G*H gate gradients. The P blocks of a group compute the
 * same cells (block i = 0 alone writes them); every block loads step t's saved state
 * before the barrier that ends step t + 1, since block 0 overwrites it with dG after. */
#define SN_SPLIT_CPT 2 /* most cells (batch, unit) per thread */
template <class Cell, int NB>
__global__ void __launch_bounds__(SN_PT, 1) k_rnn_bwd_split(const persist_args a) {
    constexpr int G = Cell::G;
    cg::grid_group grid = cg::this_grid();
    const int T = a.T, H = a.H, U = a.U, P = a.P, C = H / U, NCOL = H / P, GH = G * H, R = G * U;
    const int grp = blockIdx.x / P, ci = blockIdx.x - grp * P, j0 = grp * U, k0 = ci * NCOL;
    const int S = SN_PT / NCOL; /* row slices of the product */
    extern __shared__ float4 sm4[];
    float *Ws = (float *)sm4;          /* [R][NCOL]: row k*U + u = W_hh row k*H + j0 + u, cols k0.. */
    float *dGs = Ws + (size_t)R * NCOL; /* [NB][R] this step's gate gradients of the group */
    float *red = dGs + NB * R;         /* [S][NB][NCOL] when S > 1 */
    for (int idx = threadIdx.x; idx < R * NCOL; idx += SN_PT) {
        int r = idx / NCOL, q = idx - r * NCOL, k = r / U, u = r - k * U;
        Ws[idx] = a.w_hh[(size_t)(k * H + j0 + u) * H + k0 + q];
    }
    const int tid = threadIdx.x;
    Cell cs[SN_SPLIT_CPT];
    float dh[SN_SPLIT_CPT];
    /* saved state and dL/dh of step t, loaded before the barrier that ends step t + 1 */
    auto prefetch = [&](int t) {
#pragma unroll
        for (int m = 0; m < SN_SPLIT_CPT; m++) {
            const int q = tid + m * SN_PT;
            if (q < NB * U) {
                const int b = q / U, j = j0 + (q - b * U);
                const size_t o1 = ((size_t)b * T + t) * H + j;
                dh[m] = __ldcg(a.dh_out + o1);
                cs[m].load(a, a.gates + ((size_t)b * T + t) * GH, o1, t, j);
            }
        }
    };
    prefetch(T - 1);
    grid.sync(); /* every block has read step T - 1's state before block 0 overwrites it */
    for (int t = T - 1; t >= 0; t--) {
        float rec[SN_SPLIT_CPT];
#pragma unroll
        for (int m = 0; m < SN_SPLIT_CPT; m++) rec[m] = 0.0f;
        if (t < T - 1) {
            /* dh_rec of each cell: the C partials of step t + 1, 32 loads in flight per cell (all C of them at H = 1024) */
            const float *pp = a.part + (size_t)((t + 1) & 1) * C * NB * H;
            for (int c0 = 0; c0 < C; c0 += 32) {
                float v[SN_SPLIT_CPT][32];
#pragma unroll
                for (int m = 0; m < SN_SPLIT_CPT; m++) {
                    const int q = tid + m * SN_PT, b = q / U, j = j0 + (q - b * U);
#pragma unroll
                    for (int s = 0; s < 32; s++)
                        v[m][s] = q < NB * U && c0 + s < C ? __ldcg(pp + ((size_t)(c0 + s) * NB + b) * H + j) : 0.0f;
                }
#pragma unroll
                for (int m = 0; m < SN_SPLIT_CPT; m++)
#pragma unroll
                    for (int s = 0; s < 32; s++) rec[m] += v[m][s];
            }
        }
#pragma unroll
        for (int m = 0; m < SN_SPLIT_CPT; m++) {
            const int q = tid + m * SN_PT;
            if (q < NB * U) {
                const int b = q / U, u = q - b * U, j = j0 + u;
                float *gt = a.gates + ((size_t)b * T + t) * GH;
                float g[G];
                cs[m].step(a, ci == 0 ? gt : (float *)NULL, j, dh[m], rec[m], t < T - 1, g);
                float *d = a.dx + ((size_t)b * T + t) * GH;
#pragma unroll
                for (int k = 0; k < G; k++) {
                    dGs[b * R + k * U + u] = g[k];
                    if (ci == 0) d[k * H + j] = g[k];
                }
            }
        }
        if (t == 0) break;
        __syncthreads();
        /* partial dh_{t-1}[b, k0 + k] over this group's rows */
        {
            const int k = tid % NCOL, s = tid / NCOL;
            float acc[NB];
#pragma unroll
            for (int b = 0; b < NB; b++) acc[b] = 0.0f;
            if (S == 1 && (R & 3) == 0) {
                /* four rows per pass: one 16-byte (broadcast) load of dG per batch row */
                const float4 *d4 = (const float4 *)dGs;
                for (int r = 0; r < R; r += 4) {
                    const float w0 = Ws[(size_t)r * NCOL + k], w1 = Ws[(size_t)(r + 1) * NCOL + k];
                    const float w2 = Ws[(size_t)(r + 2) * NCOL + k], w3 = Ws[(size_t)(r + 3) * NCOL + k];
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        const float4 d = d4[(b * R + r) >> 2];
                        acc[b] = fmaf(w3, d.w, fmaf(w2, d.z, fmaf(w1, d.y, fmaf(w0, d.x, acc[b]))));
                    }
                }
            } else if (s < S) {
                for (int r = s; r < R; r += S) {
                    const float w = Ws[(size_t)r * NCOL + k];
#pragma unroll
                    for (int b = 0; b < NB; b++) acc[b] = fmaf(w, dGs[b * R + r], acc[b]);
                }
            }
            float *pw = a.part + ((size_t)(t & 1) * C + grp) * NB * H + k0;
            if (S == 1) {
                if (s < S)
#pragma unroll
                    for (int b = 0; b < NB; b++) __stcg(pw + (size_t)b * H + k, acc[b]);
            } else {
                if (s < S)
#pragma unroll
                    for (int b = 0; b < NB; b++) red[((size_t)s * NB + b) * NCOL + k] = acc[b];
                __syncthreads();
                for (int idx = tid; idx < NB * NCOL; idx += SN_PT) {
                    const int b = idx / NCOL, kk = idx - b * NCOL;
                    float v = 0.0f;
                    for (int s2 = 0; s2 < S; s2++) v += red[((size_t)s2 * NB + b) * NCOL + kk];
                    __stcg(pw + (size_t)b * H + kk, v);
                }
            }
        }
        prefetch(t - 1);
        grid.sync();
    }
}

typedef struct {
    int U, blocks;
    size_t smem;
} persist_cfg;

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Launch geometry of the persistent kernel for this shape (G gates per unit), or false
 * to use the step path. */
/* Shared memory a persistent block may opt into, or 0 where no persistent kernel may run
 * (no cooperative launch, or SN_RNN_STEPS, the developer switch to the step path). */
static int persist_smem_limit(sn_cuda *c) {
    static int optin = -1, coop = -1;
    if (optin < 0) {
        int v = 0;
        if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device) != cudaSuccess) v = 0;
        optin = v;
        v = 0;
        if (cudaDeviceGetAttribute(&v, cudaDevAttrCooperativeLaunch, c->device) != cudaSuccess) v = 0;
        coop = v;
        (void)cudaGetLastError();
    }
    return coop && !getenv("SN_RNN_STEPS") ? optin : 0;
}

/* Whether `blocks` blocks of fn with smem bytes each can all be resident (after opting in). */
static bool persist_resident(sn_cuda *c, const void *fn, size_t smem, int blocks) {
    if (cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    int per = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, fn, SN_PT, smem) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return (int64_t)per * c->nsm >= blocks;
}

static bool persist_plan(sn_cuda *c, const void *fn, bool fwd, int64_t G, int64_t B, int64_t H, persist_cfg *pc) {
    const int optin = persist_smem_limit(c);
    if (!optin || B < 1 || B > 16 || H % 4 || H > (int64_t)SN_PU * c->nsm) return false;
    int U = 1;
    while (U < SN_PU && (H + U - 1) / U > c->nsm) U *= 2;
    pc->U = U;
    pc->blocks = (int)((H + U - 1) / U);
    /* k_rnn_fwd_persist: Ws [G*U][H] + hs [B][H] + pre [B][G*U]; k_rnn_bwd_persist: Wc [G*H][SN_PU] + red */
    if (fwd) pc->smem = ((size_t)G * U * H + (size_t)B * H + (size_t)B * G * U) * 4;
    else pc->smem = ((size_t)G * H * SN_PU + (size_t)(SN_PT / 32) * B * SN_PU) * 4;
    if ((int64_t)pc->smem > optin) return false;
    return persist_resident(c, fn, pc->smem, pc->blocks);
}

static cudaError_t coop_launch(sn_cuda *c, const void *fn, const persist_cfg *pc, void **args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)pc->blocks);
    cfg.blockDim = dim3(SN_PT);
    cfg.dynamicSmemBytes = pc->smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelExC(&cfg, fn, args);
}

/* kernel instance for batch B (1..16) of a kernel template over <Cell, NB> */
#define SN_NB_CASE(kern, n) case n: return (const void *)kern<Cell, n>;
#define SN_NB_TABLE(fname, kern)                                                                                    \
    template <class Cell>                                                                                           \
    static const void *fname(int64_t B) {                                                                           \
        switch (B) {                                                                                                \
            SN_NB_CASE(kern, 1) SN_NB_CASE(kern, 2) SN_NB_CASE(kern, 3) SN_NB_CASE(kern, 4) SN_NB_CASE(kern, 5)      \
            SN_NB_CASE(kern, 6) SN_NB_CASE(kern, 7) SN_NB_CASE(kern, 8) SN_NB_CASE(kern, 9) SN_NB_CASE(kern, 10)     \
            SN_NB_CASE(kern, 11) SN_NB_CASE(kern, 12) SN_NB_CASE(kern, 13) SN_NB_CASE(kern, 14)                      \
            SN_NB_CASE(kern, 15) SN_NB_CASE(kern, 16)                                                                \
        }                                                                                                           \
        return NULL;                                                                                                \
    }
SN_NB_TABLE(fwd_kernel, k_rnn_fwd_persist)
SN_NB_TABLE(bwd_kernel, k_rnn_bwd_persist)
SN_NB_TABLE(split_kernel, k_rnn_bwd_split)

/* Tagged exchange (above) only on request (SN_RNN_LL=1, a developer switch): correct,
 * but measured 2.6x slower per step than grid.sync on an H200 (B=4, H=1024: LSTM
 * forward 8.0 vs 4.0 ms, backward 28 vs 4.8 ms per training step), since every thread
 * polls and the spinning loads (4H*B entries per block in the backward) flood L2. A
 * faster variant would poll a few flags per block and then load the data. */
static int use_ll(int64_t entries) {
    static int want = -1;
    if (want < 0) want = getenv("SN_RNN_LL") != NULL;
    return want && entries <= SN_XCH_N;
}
/* Flag-then-load exchange (above) only on request (SN_RNN_FLAGS=1): correct (all tests
 * pass with it as the default), but measured slower than grid.sync on an H200 (B=4,
 * H=1024, fp32 training step 17.0 vs 16.4 ms; LSTM forward 4.5 vs 4.0 ms and backward
 * 5.4 vs 5.2 ms per step): per timestep it still needs two L2 round trips (counter,
 * then data) plus a release and an acquire fence, which is what grid.sync costs with
 * 128 blocks; the barrier is not dominated by atomic serialisation at this size. */
static int use_flags(int ll, int blocks) {
    static int want = -1;
    if (want < 0) want = getenv("SN_RNN_FLAGS") != NULL;
    return !ll && want && blocks <= SN_FLAG_N;
}

/* Geometry of the split backward for this shape: U units per group, P column groups
 * (C x P blocks, C = H / U): the most blocks the SMs hold, then the fewest redundant
 * blocks per group; false where nothing fits (the column kernel runs). */
static bool split_plan(sn_cuda *c, const void *fn, int64_t G, int64_t B, int64_t H, persist_cfg *pc, int *Pout) {
    const int optin = persist_smem_limit(c);
    if (!optin || B < 1 || B > 16) return false;
    /* batches of 12 and more by default: on an H100 the split kernel took the 2-layer
     * LSTM backward at B = 16 from 22.2 to 16.1 ms, but at B = 4 from 5.2 to 6.9 ms
     * (bench/RESULTS.md; sizes in between not measured). SN_RNN_BWD_SPLIT=1/0 forces it. */
    const char *e = getenv("SN_RNN_BWD_SPLIT");
    if (e && *e == '0') return false;
    if (!(e && *e == '1') && B < 12) return false;
    int bestU = 0, bestP = 0, bestBlocks = 0;
    size_t bestSmem = 0;
    for (int64_t U = 1; U <= H && U * B <= SN_SPLIT_CPT * SN_PT; U++) {
        if (H % U) continue;
        for (int64_t P = 1; P <= 8; P++) {
            if (H % P || H / P > SN_PT) continue;
            int64_t blocks = H / U * P, ncol = H / P, S = SN_PT / ncol, R = G * U;
            if (blocks > c->nsm) continue;
            size_t smem = (size_t)(R * ncol + B * R + (S > 1 ? S * B * ncol : 0)) * 4;
            if ((int64_t)smem > optin) continue;
            if (blocks > bestBlocks || (blocks == bestBlocks && P < bestP)) {
                bestU = (int)U;
                bestP = (int)P;
                bestBlocks = (int)blocks;
                bestSmem = smem;
            }
        }
    }
    if (!bestBlocks || !persist_resident(c, fn, bestSmem, bestBlocks)) return false;
    pc->U = bestU;
    pc->blocks = bestBlocks;
    pc->smem = bestSmem;
    *Pout = bestP;
    return true;
}

/* Runs layer l's forward steps in one persistent kernel when the plan allows: *done
 * true; false: use the step path. a: everything but T, H, U, ll, fl (set here). */
static sn_status rnn_fwd_persist(sn_cuda *c, bool lstm, int64_t B, int64_t T, int64_t H, persist_args *a,
                                 bool *done) {
    *done = false;
    const void *fn = lstm ? fwd_kernel<lstm_fwd_cell>(B) : fwd_kernel<gru_fwd_cell>(B);
    persist_cfg pc;
    if (!fn || T > INT32_MAX || !aligned16(a->w_hh) || !aligned16(a->hbuf) || (a->h0 && !aligned16(a->h0)) ||
        !persist_plan(c, fn, true, lstm ? 4 : 3, B, H, &pc))
        return SN_OK;
    a->T = (int)T;
    a->H = (int)H;
    a->U = pc.U;
    a->ll = use_ll(B * H);
    a->fl = use_flags(a->ll, pc.blocks);
    void *args[] = {a};
    CU_TRY(coop_launch(c, fn, &pc, args), lstm ? "lstm (persistent kernel launch)" : "gru (persistent kernel launch)");
    *done = true;
    return SN_OK;
}

/* Same for layer l's backward steps: dx (dG, or the GRU's dGh) and, for the GRU, dGx
 * over the gates. */
static sn_status rnn_bwd_persist(sn_cuda *c, bool lstm, int64_t B, int64_t T, int64_t H, persist_args *a,
                                 bool *done) {
    *done = false;
    const int64_t G = lstm ? 4 : 3;
    persist_cfg pc;
    if (T > INT32_MAX) return SN_OK;
    const void *sf = lstm ? split_kernel<lstm_bwd_cell>(B) : split_kernel<gru_bwd_cell>(B);
    int P = 0;
    /* the LL / flag exchanges exist in the column kernel only: their switches keep it */
    if (sf && !use_ll(0) && !use_flags(0, 0) && split_plan(c, sf, G, B, H, &pc, &P)) {
        /* the partial products, two steps' worth (by parity) */
        a->part = (float *)sn_cu_ws(c, SN_WS_OP2, (size_t)2 * (H / pc.U) * B * H * 4);
        if (!a->part) return sn_error_prefix(SN_ERR_NOMEM, "%s", lstm ? "lstm_bwd" : "gru_bwd");
        a->T = (int)T;
        a->H = (int)H;
        a->U = pc.U;
        a->P = P;
        a->ll = a->fl = 0;
        void *args[] = {a};
        CU_TRY(coop_launch(c, sf, &pc, args),
               lstm ? "lstm_bwd (persistent kernel launch)" : "gru_bwd (persistent kernel launch)");
        *done = true;
        return SN_OK;
    }
    const void *fn = lstm ? bwd_kernel<lstm_bwd_cell>(B) : bwd_kernel<gru_bwd_cell>(B);
    if (!fn || !persist_plan(c, fn, false, G, B, H, &pc)) return SN_OK;
    a->T = (int)T;
    a->H = (int)H;
    a->U = pc.U;
    a->ll = use_ll(B * G * H);
    a->fl = use_flags(a->ll, pc.blocks);
    void *args[] = {a};
    CU_TRY(coop_launch(c, fn, &pc, args),
           lstm ? "lstm_bwd (persistent kernel launch)" : "gru_bwd (persistent kernel launch)");
    *done = true;
    return SN_OK;
}

/* ---------------- two-layer LSTM forward wavefront (bf16 mode) ----------------
 *
 * In bf16 mode a 2-layer LSTM's forward runs both layers in one cooperative kernel: at
 * grid step s layer 1 runs timestep s and layer 2 timestep s - 1, so the layers share
 * one grid barrier and one exchange a step (T + 1 barriers instead of 2T), and layer 2's
 * input projection W_ih2 h1_t is part of its step product, over [h1_t; h2_{t-1}] (no
 * GEMM between the layers). Block b owns units [8b, 8b + 8) of both layers and keeps
 * their gate rows of W_hh1 (32 x H) and of [W_ih2 | W_hh2] (32 x 2H) in bf16, in the
 * fragment order of the tensor cores' m16n8k16 mma: W_hh1's in registers (each warp
 * always multiplies the same k tiles), the rest in shared memory (one 16-byte load a
 * fragment). The three fp32 matrices (48 MB at H = 1024) do not fit on chip, their bf16
 * copies (24 MB) do. Products: bf16 operands with f32 accumulation, the bf16 mode's GEMM
 * contract; cells, c, h and the saved state in f32 as the per-layer kernels write them.
 * h travels between blocks as bf16 already in B-fragment order (xch, by step parity), so
 * a block's gather is one copy of 4 * B * H bytes. Warps split the k tiles; their partial
 * sums meet in shared memory. */
#define SN_WAVE_U 8   /* units per block and layer: 32 gate rows, two m16 tiles */
#define SN_WAVE_KW 8  /* most k tiles of W_hh1 a warp holds in registers: H <= 1024 */

struct wave_args {
    float *gates1, *gates2; /* [B,T,4H]: layer 1 x@W_ih1^T in; both: activated gates out */
    float *mid1, *mid2;     /* [B,T,H] c */
    float *h1, *h2;         /* [B,T,H] h */
    const float *w_hh1, *w_ih2, *w_hh2, *b_ih1, *b_hh1, *b_ih2, *b_hh2;
    uint2 *xch;             /* [2 parities][2 layers][KT][B][4] bf16 h in B-fragment order */
    int T, H;
};


/* A fragment of W rows [mt*16, mt*16 + 16) x k tile kt for lane ln: row r of the block's
 * 32 is gate r / 8 of unit j0 + r % 8; layer 2's columns are [W_ih2 | W_hh2] */
__device__ __forceinline__ uint4 wave_frag(const wave_args &a, bool l2, int j0, int kt, int mt, int ln) {
    const int H = a.H, rA = mt * 16 + (ln >> 2), c0 = kt * 16 + 2 * (ln & 3);
    float w[2][4];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = rA + 8 * h, grow = (r >> 3) * H + j0 + (r & 7);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int col = c0 + (e >> 1) * 8 + (e & 1);
            w[h][e] = !l2 ? a.w_hh1[(size_t)grow * H + col]
                    : col < H ? a.w_ih2[(size_t)grow * H + col] : a.w_hh2[(size_t)grow * H + col - H];
        }
    }
    return make_uint4(bf16x2(w[0][0], w[0][1]), bf16x2(w[1][0], w[1][1]), bf16x2(w[0][2], w[0][3]),
                      bf16x2(w[1][2], w[1][3]));
}

/* After the grid barrier: a block copies n fragments (uint2; n even) of the exchange
 * into shared memory, LF 16-byte loads in flight per thread */
template <int LF>
__device__ __forceinline__ void wave_gather(const uint2 *xch, int n, uint2 *dst) {
    const uint4 *src = reinterpret_cast<const uint4 *>(xch);
    uint4 *d4 = reinterpret_cast<uint4 *>(dst);
    const int n4 = n / 2;
    for (int i0 = threadIdx.x; i0 < n4; i0 += LF * SN_PT) {
        uint4 v[LF];
#pragma unroll
        for (int q = 0; q < LF; q++)
            if (i0 + q * SN_PT < n4) v[q] = __ldcg(src + i0 + q * SN_PT);
#pragma unroll
        for (int q = 0; q < LF; q++)
            if (i0 + q * SN_PT < n4) d4[i0 + q * SN_PT] = v[q];
    }
    __syncthreads();
}

template <int NB>
__global__ void __launch_bounds__(SN_PT, 1) k_lstm2_wave(const wave_args a) {
    cg::grid_group grid = cg::this_grid();
    const int T = a.T, H = a.H, KT = H >> 4, j0 = blockIdx.x * SN_WAVE_U;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int NF = KT * NB * 4; /* uint2 fragments of one layer's h */
    extern __shared__ uint4 smw[];
    uint4 *W2 = smw;                                                   /* [2KT][2][32] */
    uint2 *hf = reinterpret_cast<uint2 *>(W2 + (size_t)KT * 128);     /* [2 layers][KT][NB][4] */
    float *red = reinterpret_cast<float *>(hf + 2 * NF);              /* [8 warps][2 layers][32 rows][NB] */
    for (int idx = tid; idx < KT * 128; idx += SN_PT) {
        const int tile = idx >> 5;
        W2[idx] = wave_frag(a, true, j0, tile >> 1, tile & 1, idx & 31);
    }
    uint4 w1[SN_WAVE_KW][2];
#pragma unroll
    for (int i = 0; i < SN_WAVE_KW; i++) {
        const int kt = warp + i * (SN_PT / 32);
#pragma unroll
        for (int mt = 0; mt < 2; mt++) w1[i][mt] = kt < KT ? wave_frag(a, false, j0, kt, mt, lane) : make_uint4(0, 0, 0, 0);
    }
    for (int idx = tid; idx < 2 * NF; idx += SN_PT) hf[idx] = make_uint2(0u, 0u);
    /* cell threads: (layer, batch row, unit) */
    const bool cell = tid < 2 * NB * SN_WAVE_U;
    const int lay = cell ? tid / (NB * SN_WAVE_U) : 0, cr = tid - lay * NB * SN_WAVE_U;
    const int cb = cell ? cr / SN_WAVE_U : 0, cu = cr - cb * SN_WAVE_U, j = j0 + cu;
    float bias[4], cst = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++)
        bias[k] = cell ? (lay ? a.b_ih2[k * H + j] + a.b_hh2[k * H + j] : a.b_ih1[k * H + j] + a.b_hh1[k * H + j])
                       : 0.0f;
    float *gates = lay ? a.gates2 : a.gates1, *mid = lay ? a.mid2 : a.mid1, *hout = lay ? a.h2 : a.h1;
    /* this cell's h in the exchange: k = j of batch row cb, as bf16 */
    const int xoff = ((((j >> 4) * NB + cb) * 4 + ((j & 7) >> 1)) * 2 + ((j >> 3) & 1)) * 2 + (j & 1);
    __syncthreads();
    for (int s = 0; s <= T; s++) {
        const int t = s - lay; /* this cell thread's timestep */
        const bool run = cell && t >= 0 && t < T;
        float *gt = gates + ((size_t)cb * T + (run ? t : 0)) * 4 * H;
        float xp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (run && lay == 0)
#pragma unroll
            for (int k = 0; k < 4; k++) xp[k] = gt[k * H + j];
        if (s > 0) {
            /* c2 / c3: layer 2's W_ih2 and W_hh2 halves, two independent mma chains */
            float c1[2][4] = {}, c2[2][4] = {}, c3[2][4] = {};
            const uint2 zero = make_uint2(0u, 0u);
#pragma unroll
            for (int i = 0; i < SN_WAVE_KW; i++) {
                const int kt = warp + i * (SN_PT / 32);
                if (kt < KT) {
                    const uint2 b1 = g < NB ? hf[((size_t)kt * NB + g) * 4 + tq] : zero;
                    const uint2 b2 = g < NB ? hf[NF + ((size_t)kt * NB + g) * 4 + tq] : zero;
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        mma_bf16(c1[mt], w1[i][mt], b1);
                        mma_bf16(c2[mt], W2[((size_t)kt * 2 + mt) * 32 + lane], b1);
                        mma_bf16(c3[mt], W2[((size_t)(KT + kt) * 2 + mt) * 32 + lane], b2);
                    }
                }
            }
            /* c[0..1]: row g, columns 2tq, 2tq + 1; c[2..3]: row g + 8 */
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int row = mt * 16 + g + 8 * (e >> 1), n = 2 * tq + (e & 1);
                    if (n < NB) {
                        red[(((size_t)warp * 2 + 0) * 32 + row) * NB + n] = c1[mt][e];
                        red[(((size_t)warp * 2 + 1) * 32 + row) * NB + n] = c2[mt][e] + c3[mt][e];
                    }
                }
            __syncthreads();
        }
        if (run) {
            float p[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float v = xp[k] + bias[k];
                if (s > 0)
#pragma unroll
                    for (int w = 0; w < SN_PT / 32; w++) v += red[(((size_t)w * 2 + lay) * 32 + k * SN_WAVE_U + cu) * NB + cb];
                p[k] = v;
            }
            const float i = sigm(p[0]), f = sigm(p[1]), gg = tanhf(p[2]), o = sigm(p[3]);
            const float cn = f * cst + i * gg, hn = o * tanhf(cn);
            cst = cn;
            gt[j] = i;
            gt[H + j] = f;
            gt[2 * H + j] = gg;
            gt[3 * H + j] = o;
            const size_t o1 = ((size_t)cb * T + t) * H + j;
            mid[o1] = cn;
            hout[o1] = hn;
            reinterpret_cast<__nv_bfloat16 *>(a.xch + (size_t)((s & 1) * 2 + lay) * NF)[xoff] = __float2bfloat16(hn);
        }
        if (s == T) break;
        grid.sync();
        /* h1_s and h2_{s-1} of every block (h2 stays 0 until layer 2 has run a step) */
        /* loads in flight: all of it in one round at H = 1024 */
        wave_gather<(NB > 4 ? 8 : 4)>(a.xch + (size_t)(s & 1) * 2 * NF, s >= 1 ? 2 * NF : NF, hf);
    }
}

static size_t wave_smem(int64_t B, int64_t H) {
    const int64_t KT = H / 16;
    return (size_t)(KT * 128 * 16 + 2 * KT * B * 4 * 8 + (SN_PT / 32) * 2 * 32 * B * 4);
}

static const void *wave_kernel(int64_t B) {
    switch (B) {
    case 1: return (const void *)k_lstm2_wave<1>;
    case 2: return (const void *)k_lstm2_wave<2>;
    case 3: return (const void *)k_lstm2_wave<3>;
    case 4: return (const void *)k_lstm2_wave<4>;
    case 5: return (const void *)k_lstm2_wave<5>;
    case 6: return (const void *)k_lstm2_wave<6>;
    case 7: return (const void *)k_lstm2_wave<7>;
    case 8: return (const void *)k_lstm2_wave<8>; /* the mma's n: batch rows of one fragment */
    }
    return NULL;
}

static int cu_cc_major(sn_cuda *c) {
    static int major = -1;
    if (major < 0) {
        int v = 0;
        if (cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, c->device) != cudaSuccess) v = 0;
        (void)cudaGetLastError();
        major = v;
    }
    return major;
}

/* Whether a wavefront kernel (fn, its shared memory smem) runs a 2-layer LSTM of hidden
 * size H: bf16 mode, compute capability 8.0 or later, H a multiple of 16 up to hmax (the
 * k tiles its warps hold in registers), H / 8 blocks resident with their shared memory.
 * SN_RNN_WAVE=0 turns it off (read per call: tests switch it). */
static bool wave_fits(sn_cuda *c, const void *fn, size_t smem, int64_t H, int64_t hmax, persist_cfg *pc) {
    const char *e = getenv("SN_RNN_WAVE");
    if ((e && *e == '0') || !c->bf16 || cu_cc_major(c) < 8) return false;
    const int optin = persist_smem_limit(c);
    if (!fn || !optin || H % 16 || H > hmax || H / SN_WAVE_U > c->nsm || (int64_t)smem > optin) return false;
    pc->U = SN_WAVE_U;
    pc->blocks = (int)(H / SN_WAVE_U);
    pc->smem = smem;
    return persist_resident(c, fn, pc->smem, pc->blocks);
}

/* The forward wavefront: batch <= 8 (one mma fragment's columns; W_ih2 | W_hh2 take 128
 * KB of shared memory at H = 1024), no initial state (the caller checks). */
static bool wave_plan(sn_cuda *c, int64_t B, int64_t H, persist_cfg *pc) {
    return wave_fits(c, wave_kernel(B), wave_smem(B, H), H, 16 * (SN_PT / 32) * SN_WAVE_KW, pc);
}

/* The backward of the same 2-layer LSTM as a wavefront (bf16 mode): at grid step s layer
 * 2 runs timestep T-1-s and layer 1 timestep T-s, one grid barrier a step for both. Per
 * step a block's 8 units of each layer need three products over their columns of the
 * weights: W_hh2^T dG2_{t+1} (layer 2's recurrence), W_ih2^T dG2_t (layer 1's dh from
 * above: no input-gradient GEMM between the layers) and W_hh1^T dG1_{t+1}, all from the
 * gate gradients of the step before. The tensor cores take them as dG^T (batch rows of
 * an m16 A fragment, rows past the batch zero) times the block's 8 weight columns (the
 * n8 B fragment): W_hh1's fragments in registers, W_ih2's and W_hh2's in shared memory,
 * and dG travels between blocks as bf16 in A-fragment order (the forward's layout with
 * K = 4H). dG overwrites the saved gates as in the per-layer kernels. */
#define SN_WAVE_KB 32 /* most k tiles (of 4H) of W_hh1 a warp holds in registers: H <= 1024 */

struct wave_bwd_args {
    float *g1, *g2;          /* [B,T,4H] activated gates in, dG out (layer 1, layer 2) */
    const float *mid1, *mid2; /* [B,T,H] c */
    const float *dh_out;     /* [B,T,H] dL/dh2 from above */
    const float *w_hh1, *w_ih2, *w_hh2;
    uint2 *xch;              /* [2 parities][2: dG2, dG1][KT4][B][4] */
    int T, H;
};

/* B fragment of W[r][j0 + n] (n = lane / 4 < 8) over k tile kt of r */
__device__ __forceinline__ uint2 wave_col_frag(const float *W, int H, int j0, int kt, int ln) {
    const int r = kt * 16 + 2 * (ln & 3), col = j0 + (ln >> 2);
    return make_uint2(bf16x2(W[(size_t)r * H + col], W[(size_t)(r + 1) * H + col]),
                      bf16x2(W[(size_t)(r + 8) * H + col], W[(size_t)(r + 9) * H + col]));
}

template <int NB>
__global__ void __launch_bounds__(SN_PT, 1) k_lstm2_wave_bwd(const wave_bwd_args a) {
    cg::grid_group grid = cg::this_grid();
    const int T = a.T, H = a.H, KT4 = H >> 2, j0 = blockIdx.x * SN_WAVE_U;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int NF = KT4 * NB * 4; /* uint2 fragments of one layer's dG */
    extern __shared__ uint4 smw[];
    uint2 *Wc = reinterpret_cast<uint2 *>(smw);   /* [2: W_hh2, W_ih2][KT4][32 lanes] */
    uint2 *df = Wc + (size_t)2 * KT4 * 32;        /* [2: dG2, dG1][KT4][NB][4] */
    float *red = reinterpret_cast<float *>(df + 2 * NF); /* [8 warps][3 products][NB][8 units] */
    for (int idx = tid; idx < 2 * KT4 * 32; idx += SN_PT) {
        const int m = idx / (KT4 * 32), i = idx - m * KT4 * 32;
        Wc[idx] = wave_col_frag(m ? a.w_ih2 : a.w_hh2, H, j0, i >> 5, i & 31);
    }
    uint2 w1[SN_WAVE_KB];
#pragma unroll
    for (int i = 0; i < SN_WAVE_KB; i++) {
        const int kt = warp + i * (SN_PT / 32);
        w1[i] = kt < KT4 ? wave_col_frag(a.w_hh1, H, j0, kt, lane) : make_uint2(0u, 0u);
    }
    for (int idx = tid; idx < 2 * NF; idx += SN_PT) df[idx] = make_uint2(0u, 0u);
    /* cell threads: (layer: 0 = layer 2, 1 = layer 1; batch row; unit) */
    const bool cell = tid < 2 * NB * SN_WAVE_U;
    const int lay = cell ? tid / (NB * SN_WAVE_U) : 0, cr = tid - lay * NB * SN_WAVE_U;
    const int cb = cell ? cr / SN_WAVE_U : 0, cu = cr - cb * SN_WAVE_U, j = j0 + cu;
    float *gates = lay ? a.g1 : a.g2;
    const float *mid = lay ? a.mid1 : a.mid2;
    float dc = 0.0f;
    for (int s = 0; s <= T; s++) {
        const int t = T - 1 - s + lay;
        const bool run = cell && t >= 0 && t < T;
        float gi = 0.0f, gf = 0.0f, gg = 0.0f, go = 0.0f, cn = 0.0f, cp = 0.0f, dh = 0.0f;
        float *gt = gates + ((size_t)cb * T + (run ? t : 0)) * 4 * H;
        if (run) { /* saved state of step t, before the products hide its latency */
            const size_t o1 = ((size_t)cb * T + t) * H + j;
            gi = gt[j];
            gf = gt[H + j];
            gg = gt[2 * H + j];
            go = gt[3 * H + j];
            cn = mid[o1];
            cp = t > 0 ? mid[o1 - H] : 0.0f;
            if (lay == 0) dh = __ldcg(a.dh_out + o1);
        }
        if (s > 0) {
            /* two accumulator sets (even and odd i): mma chains half as long */
            float acc[2][3][4] = {};
            const uint2 zero = make_uint2(0u, 0u);
#pragma unroll
            for (int i = 0; i < SN_WAVE_KB; i++) {
                const int kt = warp + i * (SN_PT / 32);
                if (kt < KT4) {
                    const uint2 d2 = g < NB ? df[((size_t)kt * NB + g) * 4 + tq] : zero;
                    const uint2 d1 = g < NB ? df[NF + ((size_t)kt * NB + g) * 4 + tq] : zero;
                    const uint4 A2 = make_uint4(d2.x, 0u, d2.y, 0u), A1 = make_uint4(d1.x, 0u, d1.y, 0u);
                    mma_bf16(acc[i & 1][0], A2, Wc[(size_t)kt * 32 + lane]);
                    mma_bf16(acc[i & 1][1], A2, Wc[(size_t)(KT4 + kt) * 32 + lane]);
                    mma_bf16(acc[i & 1][2], A1, w1[i]);
                }
            }
            /* c[0..1]: batch row g, units 2tq, 2tq + 1 (c[2..3]: padding rows) */
            if (g < NB)
#pragma unroll
                for (int p = 0; p < 3; p++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        red[(((size_t)warp * 3 + p) * NB + g) * SN_WAVE_U + 2 * tq + e] = acc[0][p][e] + acc[1][p][e];
            __syncthreads();
        }
        if (run) {
            if (s > 0) {
                /* layer 2: its recurrence; layer 1: from above and its recurrence */
#pragma unroll
                for (int w = 0; w < SN_PT / 32; w++) {
                    const float *rw = red + (size_t)w * 3 * NB * SN_WAVE_U + cb * SN_WAVE_U + cu;
                    dh += lay == 0 ? rw[0] : rw[NB * SN_WAVE_U] + rw[2 * NB * SN_WAVE_U];
                }
            }
            const float tc = tanhf(cn), d_o = dh * tc;
            const float dcn = dc + dh * go * (1.0f - tc * tc);
            const float di = dcn * gg, dgv = dcn * gi, df_ = dcn * cp;
            dc = dcn * gf;
            const float gr[4] = {di * gi * (1.0f - gi), df_ * gf * (1.0f - gf), dgv * (1.0f - gg * gg),
                                 d_o * go * (1.0f - go)};
            __nv_bfloat16 *xo = reinterpret_cast<__nv_bfloat16 *>(a.xch + (size_t)((s & 1) * 2 + lay) * NF);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                gt[k * H + j] = gr[k];
                const int r = k * H + j;
                xo[((((r >> 4) * NB + cb) * 4 + ((r & 7) >> 1)) * 2 + ((r >> 3) & 1)) * 2 + (r & 1)] = __float2bfloat16(gr[k]);
            }
        }
        if (s == T) break;
        grid.sync();
        /* dG2 of step T-1-s and dG1 of T-s (from s = 1) for the next step's products */
        /* at H = 1024 and B <= 4 all of it in one round */
        wave_gather<(NB <= 4 ? 16 : 8)>(a.xch + (size_t)(s & 1) * 2 * NF, s >= 1 ? 2 * NF : NF, df);
    }
}

static size_t wave_bwd_smem(int64_t B, int64_t H) {
    const int64_t KT4 = H / 4;
    return (size_t)(2 * KT4 * 32 * 8 + 2 * KT4 * B * 4 * 8 + (SN_PT / 32) * 3 * B * SN_WAVE_U * 4);
}

static const void *wave_bwd_kernel(int64_t B) {
    switch (B) {
    case 1: return (const void *)k_lstm2_wave_bwd<1>;
    case 2: return (const void *)k_lstm2_wave_bwd<2>;
    case 3: return (const void *)k_lstm2_wave_bwd<3>;
    case 4: return (const void *)k_lstm2_wave_bwd<4>;
    case 5: return (const void *)k_lstm2_wave_bwd<5>;
    }
    return NULL;
}

/* The backward wavefront: batch <= 5 (the gate gradients' fragments, 16 KB a batch row
 * at H = 1024, beside the 128 KB of W_ih2 and W_hh2 columns in shared memory). */
static bool wave_bwd_plan(sn_cuda *c, int64_t B, int64_t H, persist_cfg *pc) {
    return wave_fits(c, wave_bwd_kernel(B), wave_bwd_smem(B, H), H, 4 * (SN_PT / 32) * SN_WAVE_KB, pc);
}

bool sn_cu_rnn_fuses_layers(sn_cuda *c, bool lstm, int64_t B, int64_t H, int layers) {
    persist_cfg pc;
    return lstm && layers == 2 && wave_plan(c, B, H, &pc);
}

/* ---------------- drivers ---------------- */

typedef struct {
    int64_t B, T, I, H, G; /* G = gates per unit: 4 (LSTM) or 3 (GRU) */
    int L;
    bool lstm, stream;
} rnn_dims;

static size_t al(size_t floats) { return (floats + 63) & ~(size_t)63; }

/* Recurrent GEMM of one step: C[B,N] = beta C + A[B,K] op(W). In bf16 mode A comes
 * from the contiguous bf16 copy a16 (lda K) and W from its bf16 copy. */
static sn_status step_gemm(sn_cuda *c, bool tw, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const __nv_bfloat16 *a16, const float *W, const __nv_bfloat16 *w16, float beta, float *C,
                           const char *what) {
    int64_t ldb = tw ? K : N;
    if (c->bf16)
        return sn_cu_gemm_ex(c, false, tw, M, N, K, 1.0f, A, K, 0, W, ldb, 0, beta, C, N, 0, 1, a16, w16, what);
    return sn_cu_gemm_ex(c, false, tw, M, N, K, 1.0f, A, lda, 0, W, ldb, 0, beta, C, N, 0, 1, NULL, NULL, what);
}

static sn_status rnn_forward(sn_cuda *c, sn_tensor *node, const rnn_dims *d) {
    const char *what = d->lstm ? "lstm" : "gru";
    int64_t B = d->B, T = d->T, H = d->H, G = d->G, BT = B * T;
    float *ex = sn_cu_extra(node);
    size_t need = al((size_t)(B * G * H)) * 4;
    if (c->bf16) need += al((size_t)(G * H * H)) * 2 + al((size_t)(B * H)) * 2;
    char *ws = (char *)sn_cu_ws(c, SN_WS_OP, need);
    if (!ws) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
    float *rec = (float *)ws;
    __nv_bfloat16 *w16 = NULL, *h16 = NULL;
    if (c->bf16) {
        w16 = (__nv_bfloat16 *)(ws + al((size_t)(B * G * H)) * 4);
        h16 = w16 + al((size_t)(G * H * H));
    }
    persist_cfg wpc;
    if (d->lstm && d->L == 2 && !d->stream && B <= INT32_MAX && T <= INT32_MAX && wave_plan(c, B, H, &wpc)) {
        /* both layers in one wavefront kernel after layer 1's input projection */
        float *gates1 = ex + sn_lstm_extra_offset(B, T, H, 0, 0);
        SN_TRY(sn_cu_gemm(c, false, true, BT, G * H, d->I, 1.0f, sn_cu_f(node->src[0]), d->I, sn_cu_f(node->src[1]),
                          d->I, 0.0f, gates1, G * H, what));
        wave_args wa = {};
        wa.gates1 = gates1;
        wa.gates2 = ex + sn_lstm_extra_offset(B, T, H, 1, 0);
        wa.mid1 = ex + sn_lstm_extra_offset(B, T, H, 0, 1);
        wa.mid2 = ex + sn_lstm_extra_offset(B, T, H, 1, 1);
        wa.h1 = sn_rnn_h(node, 0);
        wa.h2 = sn_rnn_h(node, 1);
        wa.w_hh1 = sn_cu_f(node->src[2]);
        wa.b_ih1 = sn_cu_f(node->src[3]);
        wa.b_hh1 = sn_cu_f(node->src[4]);
        wa.w_ih2 = sn_cu_f(node->src[5]);
        wa.w_hh2 = sn_cu_f(node->src[6]);
        wa.b_ih2 = sn_cu_f(node->src[7]);
        wa.b_hh2 = sn_cu_f(node->src[8]);
        wa.xch = (uint2 *)sn_cu_ws(c, SN_WS_OP2, (size_t)2 * 2 * (H / 16) * B * 4 * sizeof(uint2));
        if (!wa.xch) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        wa.T = (int)T;
        wa.H = (int)H;
        void *args[] = {&wa};
        CU_TRY(coop_launch(c, wave_kernel(B), &wpc, args), "lstm (wavefront kernel launch)");
        return SN_OK;
    }
    for (int l = 0; l < d->L; l++) {
        const float *in = l == 0 ? sn_cu_f(node->src[0]) : sn_rnn_h(node, l - 1);
        int64_t in_dim = l == 0 ? d->I : H;
        const float *w_ih = sn_cu_f(node->src[1 + 4 * l]), *w_hh = sn_cu_f(node->src[2 + 4 * l]);
        const float *b_ih = sn_cu_f(node->src[3 + 4 * l]), *b_hh = sn_cu_f(node->src[4 + 4 * l]);
        float *gates = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 0) : sn_gru_extra_offset(B, T, H, l, 0));
        float *mid = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 1) : sn_gru_extra_offset(B, T, H, l, 1));
        float *hbuf = sn_rnn_h(node, l); /* the last layer's h is the output */
        float *y = NULL;
        /* streaming variant: initial state [layers,B,H] after the weights */
        const float *h0 = d->stream ? sn_cu_f(node->src[1 + 4 * d->L]) + l * B * H : NULL;
        const float *c0 = d->stream && d->lstm ? sn_cu_f(node->src[2 + 4 * d->L]) + l * B * H : NULL;
        /* input projection of every timestep */
        SN_TRY(sn_cu_gemm(c, false, true, BT, G * H, in_dim, 1.0f, in, in_dim, w_ih, in_dim, 0.0f, gates, G * H, what));
        bool done = false;
        persist_args pa = {};
        pa.gates = gates;
        pa.mid = mid;
        pa.hbuf = hbuf;
        pa.y = y;
        pa.w_hh = w_hh;
        pa.b_ih = b_ih;
        pa.b_hh = b_hh;
        pa.h0 = h0;
        pa.c0 = c0;
        SN_TRY(rnn_fwd_persist(c, d->lstm, B, T, H, &pa, &done));
        if (done) continue;
        if (w16) SN_TRY(sn_cu_to_bf16(c, w16, w_hh, G * H * H));
        unsigned g = sn_cu_blocks(c, B * H);
        if (h0 && h16) SN_TRY(sn_cu_to_bf16(c, h16, h0, B * H));
        for (int64_t t = 0; t < T; t++) {
            if (t > 0)
                SN_TRY(step_gemm(c, true, B, G * H, H, hbuf + (t - 1) * H, T * H, h16, w_hh, w16, 0.0f, rec, what));
            else if (h0)
                SN_TRY(step_gemm(c, true, B, G * H, H, h0, H, h16, w_hh, w16, 0.0f, rec, what));
            const float *r = t > 0 || h0 ? rec : NULL;
            if (d->lstm)
                k_lstm_cell<<<g, SN_CU_THREADS, 0, c->stream>>>(gates, mid, hbuf, y, h16, r, b_ih, b_hh, c0, B, T, H, t);
            else
                k_gru_cell<<<g, SN_CU_THREADS, 0, c->stream>>>(gates, mid, hbuf, y, h16, r, b_ih, b_hh, h0, B, T, H, t);
            CU_LAUNCHED(d->lstm ? "lstm cell" : "gru cell");
        }
    }
    return SN_OK;
}

static sn_status rnn_backward(sn_cuda *c, sn_tensor *node, const rnn_dims *d) {
    const char *what = d->lstm ? "lstm_bwd" : "gru_bwd";
    int64_t B = d->B, T = d->T, H = d->H, G = d->G, BT = B * T, GH = G * H;
    const sn_tensor *dy = node->src[0], *x = node->src[1], *fwd = node->src[2];
    float *ex = sn_cu_extra(fwd);
    /* packed output: dx | per layer dw_ih, dw_hh, db_ih, db_hh (sn_rnn_grad_offset) */
#define GRAD_SEG(k) sn_rnn_grad_offset(d->lstm ? 4 : 3, B, T, d->I, H, d->L, (k))
    float *out = sn_cu_f(node);
    /* dG (LSTM) or dGx (GRU) overwrites each layer's gates in the forward's saved state
     * (read before written, by the same thread); dGh (GRU), the dh between layers and
     * the per-step vectors are the node's planner-allocated scratch
     * (sn_rnn_bwd_scratch_offset); only bf16 copies use the workspace */
    float *sc = sn_cu_extra(node);
    float *dGh0 = sc + sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 0);
    float *dhbuf = sc + sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 1);
    float *vec = sc + sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 2);
    float *dc = sc + sn_rnn_bwd_scratch_offset(d->lstm, B, T, H, d->L, 3);
    __nv_bfloat16 *w16 = NULL, *dg16 = NULL;
    if (c->bf16) {
        w16 = (__nv_bfloat16 *)sn_cu_ws(c, SN_WS_OP, al((size_t)(GH * H)) * 2 + al((size_t)(B * GH)) * 2);
        if (!w16) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        dg16 = w16 + al((size_t)(GH * H));
    }
    const float *dh_out = sn_cu_f(dy);
    unsigned g = sn_cu_blocks(c, B * H);
    /* SN_RNN_OVERLAP=1 (a developer switch): a layer's weight-gradient GEMMs run on the
     * side stream while the layer below runs its recurrence; LSTM (the GRU's dGh buffer
     * is shared by the layers) and f32 only (the bf16 operand conversions share one
     * workspace) */
    const char *ov = getenv("SN_RNN_OVERLAP"); /* read per call: tests switch it */
    bool overlap = ov && ov[0] == '1';
    bool side = overlap && d->lstm && !c->bf16 && d->L > 1 && (c->side_blas || !c->capturing);
    if (side) SN_TRY(sn_cu_side_init(c));
    bool forked = false;
    /* bf16 2-layer LSTM: both layers' recurrences in one wavefront, then the GEMMs below */
    persist_cfg wpc;
    bool waved = false;
    if (d->lstm && d->L == 2 && B <= INT32_MAX && T <= INT32_MAX && wave_bwd_plan(c, B, H, &wpc)) {
        wave_bwd_args wa = {};
        wa.g1 = ex + sn_lstm_extra_offset(B, T, H, 0, 0);
        wa.g2 = ex + sn_lstm_extra_offset(B, T, H, 1, 0);
        wa.mid1 = ex + sn_lstm_extra_offset(B, T, H, 0, 1);
        wa.mid2 = ex + sn_lstm_extra_offset(B, T, H, 1, 1);
        wa.dh_out = dh_out;
        wa.w_hh1 = sn_cu_f(node->src[4]);
        wa.w_ih2 = sn_cu_f(node->src[7]);
        wa.w_hh2 = sn_cu_f(node->src[8]);
        wa.xch = (uint2 *)sn_cu_ws(c, SN_WS_OP2, (size_t)2 * 2 * (H / 4) * B * 4 * sizeof(uint2));
        if (!wa.xch) return sn_error_prefix(SN_ERR_NOMEM, "%s", what);
        wa.T = (int)T;
        wa.H = (int)H;
        void *args[] = {&wa};
        CU_TRY(coop_launch(c, wave_bwd_kernel(B), &wpc, args), "lstm_bwd (wavefront kernel launch)");
        waved = true;
    }
    for (int l = d->L - 1; l >= 0; l--) {
        int64_t in_dim = l == 0 ? d->I : H;
        const float *in = l == 0 ? sn_cu_f(x) : sn_rnn_h(fwd, l - 1);
        const float *w_ih = sn_cu_f(node->src[3 + 4 * l]), *w_hh = sn_cu_f(node->src[4 + 4 * l]);
        const float *gates = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 0) : sn_gru_extra_offset(B, T, H, l, 0));
        float *dG = (float *)gates, *dGh = d->lstm ? dG : dGh0;
        const float *mid = ex + (d->lstm ? sn_lstm_extra_offset(B, T, H, l, 1) : sn_gru_extra_offset(B, T, H, l, 1));
        const float *hbuf = sn_rnn_h(fwd, l);
        float *dw_ih = out + GRAD_SEG(1 + 4 * l), *dw_hh = out + GRAD_SEG(2 + 4 * l);
        float *db_ih = out + GRAD_SEG(3 + 4 * l), *db_hh = out + GRAD_SEG(4 + 4 * l);
        bool done = false;
        persist_args pa = {};
        pa.gates = dG; /* read; the GRU writes dGx over it */
        pa.mid = (float *)mid;
        pa.hbuf = (float *)hbuf;
        pa.w_hh = w_hh;
        pa.dh_out = dh_out;
        pa.dx = dGh; /* dG itself for the LSTM */
        if (waved) done = true; /* dG of both layers is in place */
        else SN_TRY(rnn_bwd_persist(c, d->lstm, B, T, H, &pa, &done));
        if (w16 && !done) SN_TRY(sn_cu_to_bf16(c, w16, w_hh, GH * H));
        for (int64_t t = T - 1; t >= 0 && !done; t--) {
            if (d->lstm) {
                if (t < T - 1)
                    SN_TRY(step_gemm(c, false, B, H, GH, dG + (t + 1) * GH, T * GH, dg16, w_hh, w16, 0.0f, vec, what));
                k_lstm_cell_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(dh_out, vec, dc, gates, mid, dG, dg16, B, T, H, t);
            } else {
                if (t < T - 1)
                    SN_TRY(step_gemm(c, false, B, H, GH, dGh + (t + 1) * GH, T * GH, dg16, w_hh, w16, 1.0f, vec, what));
                k_gru_cell_bwd<<<g, SN_CU_THREADS, 0, c->stream>>>(dh_out, vec, gates, mid, hbuf, dG, dGh, dg16, B, T,
                                                                   H, t);
            }
            CU_LAUNCHED(d->lstm ? "lstm cell backward" : "gru cell backward");
        }
        /* weight and bias gradients over all timesteps (the GEMMs on the side stream
         * when a layer below follows: they read dG, h and x, which nothing below writes) */
        cudaStream_t main_stream = c->stream;
        cublasHandle_t main_blas = c->blas;
        if (side && l > 0) {
            CU_TRY(cudaEventRecord(c->side_fork, main_stream), "rnn backward (side stream fork)");
            CU_TRY(cudaStreamWaitEvent(c->side, c->side_fork, 0), "rnn backward (side stream fork)");
            c->stream = c->side;
            c->blas = c->side_blas;
            forked = true;
        }
        sn_status gs = sn_cu_gemm(c, true, false, GH, in_dim, BT, 1.0f, dG, GH, in, in_dim, 0.0f, dw_ih, in_dim, what);
        /* dw_hh = sum_b sum_{t>=1} dGh[b,t]^T h[b,t-1]: one GEMM pairs dGh row r with h row
         * r-1 over the whole batch, a rank-(B-1) GEMM over the strided rows b*T takes the
         * cross-sequence pairs back out (no shifted copy of h) */
        if (gs == SN_OK && T < 2) {
            cudaError_t me = cudaMemsetAsync(dw_hh, 0, (size_t)(GH * H) * 4, c->stream);
            if (me != cudaSuccess) gs = sn_cu_err(me, what);
        } else if (gs == SN_OK) {
            gs = sn_cu_gemm(c, true, false, GH, H, BT - 1, 1.0f, dGh + GH, GH, hbuf, H, 0.0f, dw_hh, H, what);
            if (gs == SN_OK && B > 1)
                gs = sn_cu_gemm(c, true, false, GH, H, B - 1, -1.0f, dGh + T * GH, T * GH, hbuf + (T - 1) * H, T * H,
                                1.0f, dw_hh, H, what);
        }
        c->stream = main_stream; /* back on the compute stream, also on an error */
        c->blas = main_blas;
        SN_TRY(gs);
        SN_TRY(sn_cu_colsum(c, dG, BT, GH, db_ih, false));
        if (d->lstm)
            CU_TRY(cudaMemcpyAsync(db_hh, db_ih, (size_t)GH * 4, cudaMemcpyDeviceToDevice, c->stream), what);
        else
            SN_TRY(sn_cu_colsum(c, dGh, BT, GH, db_hh, false));
        /* gradient of this layer's input (one dh buffer: this layer's steps have read it) */
        if (l == 0 && !node->ip[2]) break; /* dx not needed */
        if (waved && l == 1) continue;     /* layer 1's dh from above was the wavefront's */
        float *din = l == 0 ? out : dhbuf;
        SN_TRY(sn_cu_gemm(c, false, false, BT, in_dim, GH, 1.0f, dG, GH, w_ih, in_dim, 0.0f, din, in_dim, what));
        dh_out = din;
    }
    if (forked) { /* the node's outputs are complete when the compute stream goes on */
        CU_TRY(cudaEventRecord(c->side_join, c->side), "rnn backward (side stream join)");
        CU_TRY(cudaStreamWaitEvent(c->stream, c->side_join, 0), "rnn backward (side stream join)");
    }
    return SN_OK;
#undef GRAD_SEG
}

/* out[b,:] = src[b, T-1, :] of one layer's [B,T,H] state */
__global__ void k_rnn_last(const float *src, float *out, int64_t B, int64_t T, int64_t H) {
    SN_GRID_LOOP(i, B * H) {
        int64_t j = i % H, b = i / H;
        out[i] = src[(b * T + T - 1) * H + j];
    }
}

sn_status sn_cu_rnn(sn_cuda *c, sn_tensor *node) {
    if (node->op == SN_OP_RNN_STATE) {
        const sn_tensor *r = node->src[0];
        bool lstm = r->op == SN_OP_LSTM;
        int which = node->ip[0];
        if (which == 1 && !lstm) return sn_error(SN_ERR_INVALID_ARG, "rnn_state: a GRU has no cell state (c)");
        int64_t B = r->shape[0], T = r->shape[1], H = r->shape[2], L = r->ip[0];
        for (int64_t l = 0; l < L; l++) {
            const float *src = which == 1 ? sn_cu_extra(r) + sn_lstm_extra_offset(B, T, H, (int)l, 1) : sn_rnn_h(r, (int)l);
            k_rnn_last<<<sn_cu_blocks(c, B * H), SN_CU_THREADS, 0, c->stream>>>(src, sn_cu_f(node) + l * B * H, B, T, H);
        }
        CU_LAUNCHED("rnn_state");
        return SN_OK;
    }
    rnn_dims d;
    bool fwd = node->op == SN_OP_LSTM || node->op == SN_OP_GRU;
    d.lstm = node->op == SN_OP_LSTM || node->op == SN_OP_LSTM_BWD;
    d.G = d.lstm ? 4 : 3;
    const sn_tensor *x = fwd ? node->src[0] : node->src[1];
    const sn_tensor *f = fwd ? node : node->src[2];
    d.B = x->shape[0];
    d.T = x->shape[1];
    d.I = x->shape[2];
    d.H = f->shape[2];
    d.L = f->ip[0] > 0 ? f->ip[0] : (node->nsrc - (fwd ? 1 : 3)) / 4;
    d.stream = fwd && node->ip[2] == 1;
    if (d.L < 1 || d.L > 16)
        return sn_error(SN_ERR_INVALID_ARG, "%s: %d layers (1 to 16 supported)", sn_op_name(node->op), d.L);
    return fwd ? rnn_forward(c, node, &d) : rnn_backward(c, node, &d);
}
