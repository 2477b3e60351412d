/* The recurrent product of the CPU RNN kernels (rnn_pack.c's sn_rnn_skinny_packed_bf16)
 * on AMX-BF16 tiles. Included by gemm_bf16.c, which owns the tile instructions, twice:
 * with the real ones and with their scalar emulation (tests on CPUs without AMX).
 * Before including, gemm_bf16.c defines SKINNY_FN (the function's name) and TCFGS(rows)
 * (the skinny configuration: A and C tiles of `rows` rows), TZ(t), TL(t, ptr, stride),
 * TS(t, ptr, stride) and TDP(c, a, b).
 *
 * C[b, n] (+)= sum_kp A[b, kp] . P[n, kp] for b < B <= 16, n in [n0, n1), n0 % 16 == 0,
 * KP % 16 == 0. P holds the recurrent panels (16 columns each, per k-pair 16 u32), so a
 * B tile (16 k-pairs x 16 columns) is 1 KB of one panel read at a 64-byte stride, as
 * packed. The A tile is the batch: B rows of 16 k-pairs at A's row stride. Tiles 0..3
 * the C tiles of up to four panels, 4 the A tile, 5..7 the B tiles. Each C tile sums
 * its k-pairs in order whatever the panel grouping, so the ping-pong walk (blocks of
 * four panels, last first) stays bit-identical. At B = 4 the tile unit does a quarter
 * of useful work, but the product is bound by streaming w_hh, not by arithmetic. */
static void SKINNY_FN(const uint32_t *A, int64_t lda, int64_t B, const uint32_t *P, int64_t KP, float *C,
                      int64_t ldc, int64_t n0, int64_t n1, bool acc) {
    TCFGS((int)B);
    _Alignas(64) float ct[4][256];
    const int64_t sa = lda * 4, ps = KP * 16; /* A's row stride in bytes; u32 of one panel */
    for (int64_t n = n0; n < n1; n += 64) {
        int np = (int)((n1 - n + 15) / 16);
        if (np > 4) np = 4;
        const uint32_t *p0 = P + (n / 16) * ps;
        if (np == 4) {
            TZ(0);
            TZ(1);
            TZ(2);
            TZ(3);
            for (int64_t kb = 0; kb < KP; kb += 16) {
                const uint32_t *b = p0 + kb * 16;
                TL(4, A + kb, sa);
                TL(5, b, 64);
                TDP(0, 4, 5);
                TL(6, b + ps, 64);
                TDP(1, 4, 6);
                TL(7, b + 2 * ps, 64);
                TDP(2, 4, 7);
                TL(5, b + 3 * ps, 64);
                TDP(3, 4, 5);
            }
            TS(0, ct[0], 64);
            TS(1, ct[1], 64);
            TS(2, ct[2], 64);
            TS(3, ct[3], 64);
        } else {
            for (int q = 0; q < np; q++) {
                TZ(0);
                for (int64_t kb = 0; kb < KP; kb += 16) {
                    TL(4, A + kb, sa);
                    TL(5, p0 + q * ps + kb * 16, 64);
                    TDP(0, 4, 5);
                }
                TS(0, ct[q], 64);
            }
        }
        for (int q = 0; q < np; q++) {
            int64_t c0 = n + 16 * q;
            int nc = (int)(n1 - c0 < 16 ? n1 - c0 : 16);
            for (int64_t b = 0; b < B; b++) {
                float *cp = C + b * ldc + c0;
                const float *t = ct[q] + b * 16;
                if (acc)
                    for (int i = 0; i < nc; i++) cp[i] += t[i];
                else
                    for (int i = 0; i < nc; i++) cp[i] = t[i];
            }
        }
    }
}
