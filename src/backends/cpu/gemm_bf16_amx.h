/* The AMX-BF16 tile loop of gemm_bf16.c, included there twice: once with the real
 * tile instructions, once with a scalar emulation of them (SN_CPU_AMX_EMULATE=1, so
 * the packing layout, the edges and the K blocking are tested on CPUs without AMX).
 * Before including, gemm_bf16.c defines AMX_FN (the function's name) and the tile
 * operations TCFG() (tile config loaded on this thread), TZ(t), TL(t, ptr, stride),
 * TS(t, ptr, stride) and TDP(c, a, b) (tile c += a . b in bf16 pairs).
 *
 * Tiles: 0..3 the C block of 32 rows x 32 columns (two strips x the two 16-column
 * halves of a panel), 4 and 5 the A tiles of the two strips (16 rows x 16 k-pairs,
 * 64 bytes a row), 6 and 7 the B tiles of the panel's halves (16 k-pairs x 16 columns;
 * a row of the panel is 32 u32, so the stride is 128 bytes). The accumulators of a
 * thread tile (MBA strips x NBA panels) live in acc[] between K blocks, as 16x16 f32
 * tiles; alpha, beta and the M/N edges are applied once at the end. */
static void AMX_FN(void *arg, int64_t t0, int64_t t1, int tid) {
    (void)tid;
    const tile_job *j = arg;
    TCFG();
    _Alignas(64) float acc[MBA * NBA * 2 * 256];
    const int64_t KS = j->KP;
    for (int64_t t = t0; t < t1; t++) {
        int64_t s0 = t / j->ntn * MBA, p0 = t % j->ntn * NBA;
        int64_t s1 = s0 + MBA < j->strips ? s0 + MBA : j->strips, p1 = p0 + NBA < j->panels ? p0 + NBA : j->panels;
        for (int64_t kc = j->kp0; kc < j->kp1; kc += KCA) {
            int64_t kn = j->kp1 - kc < KCA ? j->kp1 - kc : KCA; /* a multiple of 16: kp0, kp1, KCA are */
            bool first = kc == j->kp0;
            for (int64_t s = s0; s < s1; s += 2) {
                bool two = s + 1 < s1;
                const uint32_t *a0 = j->ap + (s * KS + kc) * 16, *a1 = a0 + KS * 16;
                for (int64_t p = p0; p < p1; p++) {
                    const uint32_t *b = j->bp + (p * KS + kc) * 32;
                    float *c0 = acc + ((s - s0) * NBA + (p - p0)) * 512, *c1 = c0 + NBA * 512;
                    if (first) {
                        TZ(0);
                        TZ(1);
                        TZ(2);
                        TZ(3);
                    } else {
                        TL(0, c0, 64);
                        TL(1, c0 + 256, 64);
                        if (two) {
                            TL(2, c1, 64);
                            TL(3, c1 + 256, 64);
                        }
                    }
                    for (int64_t kb = 0; kb < kn; kb += 16) {
                        TL(6, b + kb * 32, 128);
                        TL(7, b + kb * 32 + 16, 128);
                        TL(4, a0 + kb * 16, 64);
                        TDP(0, 4, 6);
                        TDP(1, 4, 7);
                        if (two) {
                            TL(5, a1 + kb * 16, 64);
                            TDP(2, 5, 6);
                            TDP(3, 5, 7);
                        }
                    }
                    TS(0, c0, 64);
                    TS(1, c0 + 256, 64);
                    if (two) {
                        TS(2, c1, 64);
                        TS(3, c1 + 256, 64);
                    }
                }
            }
        }
        if (j->kp0 >= j->kp1) continue; /* nothing summed (the caller never asks for that) */
        for (int64_t s = s0; s < s1; s++)
            for (int64_t p = p0; p < p1; p++)
                for (int h = 0; h < 2; h++) {
                    int64_t m0 = s * 16, n0 = p * 32 + h * 16;
                    int mr = (int)(j->M - m0 < 16 ? j->M - m0 : 16), nr = (int)(j->N - n0 < 16 ? j->N - n0 : 16);
                    if (nr > 0)
                        write_tile(j->C + m0 * j->ldc + n0, j->ldc, acc + ((s - s0) * NBA + (p - p0)) * 512 + h * 256,
                                   mr, nr, j->alpha, j->beta);
                }
    }
}
