/* CPU kernels: LSTM and GRU forward and backward over a whole sequence.
 *
 * Forward per layer: the input projection of all timesteps is one GEMM written into
 * the gates region of the saved state; then per timestep one recurrent GEMM
 * (h_{t-1}[B,H] x w_hh^T) accumulated into that step's gate rows (strided views,
 * no copies) and a fused cell loop parallel over (batch, hidden).
 * Backward per layer, from the top: per timestep the fused cell backward writes the
 * pre-activation gate gradients dG_t and one GEMM gives dh_{t-1} = dG_t w_hh; after
 * the loop the weight gradients are big GEMMs over all timesteps and dx_in = dG w_ih
 * feeds the layer below.
 *
 * The family is split by concern: rnn.c (this file) is the entry sn_cpu_rnn,
 * RNN_STATE and the per-phase profiler; rnn_lstm.c and rnn_gru.c hold the passes;
 * rnn_vec.c the GEMM building blocks and the skinny recurrent kernels; rnn_pack.c
 * the packed w_hh and its huge-page buffer; rnn_internal.h what they share. */
#include "backends/cpu/rnn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SN_RNN_PROF=1: time the LSTM phases (input GEMMs, recurrent loops, weight-gradient
 * GEMMs) and print the totals at exit, to see where a step goes. */
static double g_prof[SN_RNN_P_N];
static int g_prof_on = -1;
static const char *g_prof_name[SN_RNN_P_N] = {"fwd input GEMM", "fwd recurrent loop", "bwd recurrent loop",
                                              "bwd weight GEMMs", "bwd dx GEMM", "bwd w_hh^T pack"};
/* the recurrent regions' threads: [tid][fwd work, fwd barrier wait, bwd work, bwd wait];
 * beside the totals, the timesteps over SN_RNN_PROF_LONG_MS and the longest one, to
 * tell a few long stalls (a preempted thread) from every step being slow */
#define SN_RNN_PROF_THREADS 256
#define SN_RNN_PROF_LONG_MS 0.05
static double g_prof_thr[SN_RNN_PROF_THREADS][4];
static double g_prof_long[SN_RNN_PROF_THREADS][4], g_prof_max[SN_RNN_PROF_THREADS][4];
static long g_prof_nlong[SN_RNN_PROF_THREADS][4], g_prof_n[SN_RNN_PROF_THREADS][4];
static void prof_dump(void) {
    for (int i = 0; i < SN_RNN_P_N; i++) fprintf(stderr, "  lstm %-20s %9.1f ms\n", g_prof_name[i], g_prof[i]);
    static const char *nm[4] = {"fwd loop work", "fwd loop barrier wait", "bwd loop work", "bwd loop barrier wait"};
    for (int k = 0; k < 4; k++) {
        double sum = 0, mx = 0, mn = 1e300, lsum = 0, lmax = 0;
        long nlong = 0, steps = 0;
        int n = 0;
        for (int t = 0; t < SN_RNN_PROF_THREADS; t++)
            if (g_prof_thr[t][k] > 0) {
                sum += g_prof_thr[t][k];
                mx = g_prof_thr[t][k] > mx ? g_prof_thr[t][k] : mx;
                mn = g_prof_thr[t][k] < mn ? g_prof_thr[t][k] : mn;
                lsum += g_prof_long[t][k];
                lmax = g_prof_max[t][k] > lmax ? g_prof_max[t][k] : lmax;
                nlong += g_prof_nlong[t][k];
                steps += g_prof_n[t][k];
                n++;
            }
        if (n)
            fprintf(stderr,
                    "  lstm %-22s %9.1f thread-ms over %d threads (each %.1f-%.1f); %ld of %ld thread-steps over "
                    "%.0f us (%.1f thread-ms), longest %.0f us\n",
                    nm[k], sum, n, mn, mx, nlong, steps, SN_RNN_PROF_LONG_MS * 1e3, lsum, lmax * 1e3);
    }
}
double sn_rnn_prof_now(void) {
    if (g_prof_on < 0) {
        const char *e = getenv("SN_RNN_PROF");
        g_prof_on = e && *e == '1';
        if (g_prof_on) atexit(prof_dump);
    }
    if (!g_prof_on) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void sn_rnn_prof_thread(int tid, int slot, double *t0) {
    if (g_prof_on == 1 && tid >= 0 && tid < SN_RNN_PROF_THREADS) {
        double t1 = sn_rnn_prof_now(), d = t1 - *t0;
        g_prof_thr[tid][slot] += d;
        g_prof_n[tid][slot]++;
        if (d > SN_RNN_PROF_LONG_MS) {
            g_prof_nlong[tid][slot]++;
            g_prof_long[tid][slot] += d;
        }
        if (d > g_prof_max[tid][slot]) g_prof_max[tid][slot] = d;
        *t0 = t1;
    }
}

void sn_rnn_prof_lap(int slot, double *t0) {
    if (g_prof_on) {
        double t1 = sn_rnn_prof_now();
        g_prof[slot] += t1 - *t0;
        *t0 = t1;
    }
}

/* Last-timestep h or c of every layer, from the forward's saved state. */
static sn_status rnn_state(sn_cpu *c, sn_tensor *node) {
    const sn_tensor *r = node->src[0];
    int layers = r->ip[0], part = node->ip[0] == 1 ? 1 : 2;
    int64_t H = r->ip[1], B = r->shape[0], T = r->shape[1];
    const float *ex = sn_extra_ptr(r);
    float *out = node->data;
    for (int l = 0; l < layers; l++) {
        const float *src = part == 1 ? ex + sn_lstm_extra_offset(B, T, H, l, 1) : sn_rnn_h(r, l);
        for (int64_t b = 0; b < B; b++)
            memcpy(out + (l * B + b) * H, src + (b * T + T - 1) * H, (size_t)H * sizeof *out);
    }
    return SN_OK;
}

sn_status sn_cpu_rnn(sn_cpu *c, sn_tensor *node) {
    switch (node->op) {
    case SN_OP_LSTM: return sn_rnn_lstm_forward(c, node);
    case SN_OP_LSTM_BWD: return sn_rnn_lstm_backward(c, node);
    case SN_OP_GRU: return sn_rnn_gru_forward(c, node);
    case SN_OP_GRU_BWD: return sn_rnn_gru_backward(c, node);
    case SN_OP_RNN_STATE: return rnn_state(c, node);
    default: return sn_error(SN_ERR_INTERNAL, "sn_cpu_rnn: unexpected op %s", sn_op_name(node->op));
    }
}
