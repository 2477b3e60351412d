/* sn_istft_fade_edges: the interior of an iSTFT is untouched, and the first and last
 * hop fade instead of amplifying an inconsistent spectrum. */
#include "sn_test.h"
#include "sinter/audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_fade(void **st) {
    sn_stft *s;
    SN_ASSERT_OK(sn_stft_new(&s));
    const int64_t N = 160 * 40 + 160; /* 40 frames */
    const int64_t T = sn_stft_frames(N);
    uint64_t seed = 1;
    float *x = sn_test_rand_new(N, &seed, -1, 1);
    float *mag = malloc((size_t)T * SN_NBINS * sizeof *mag), *ph = malloc((size_t)T * SN_NBINS * sizeof *ph);
    float *y = malloc((size_t)N * sizeof *y), *z = malloc((size_t)N * sizeof *z);
    SN_ASSERT_OK(sn_stft_mag_phase(s, x, N, mag, ph));

    /* a consistent spectrum: the interior reconstructs x, the ends become a fade of x */
    SN_ASSERT_OK(sn_istft_mag_phase(s, mag, ph, T, y, N));
    memcpy(z, y, (size_t)N * sizeof *z);
    sn_istft_fade_edges(s, z, N, T);
    for (int64_t i = SN_HOP; i < SN_HOP * T; i++) assert_true(z[i] == y[i]);
    for (int64_t i = 0; i < N; i++) {
        assert_true(fabsf(z[i]) <= fabsf(y[i]) + 1e-6f); /* only ever scaled down */
        assert_true(fabsf(z[i]) <= fabsf(x[i]) + 1e-4f);
    }
    assert_true(fabsf(z[1]) < 1e-6f); /* w[1]^2 ~ 1e-8: faded to nothing */

    /* an inconsistent spectrum (the magnitude a model would estimate): plain WOLA
     * amplifies the ends, the fade keeps them bounded */
    for (int64_t k = 0; k < T * SN_NBINS; k++) mag[k] *= 0.5f + (float)(k % 7) / 7.0f;
    SN_ASSERT_OK(sn_istft_mag_phase(s, mag, ph, T, y, N));
    memcpy(z, y, (size_t)N * sizeof *z);
    sn_istft_fade_edges(s, z, N, T);
    double peak_y = 0, peak_z = 0, peak_mid = 0;
    for (int64_t i = 0; i < N; i++) {
        bool edge = i < SN_HOP || i >= SN_HOP * T;
        if (edge) peak_y = fmax(peak_y, fabsf(y[i])), peak_z = fmax(peak_z, fabsf(z[i]));
        else peak_mid = fmax(peak_mid, fabsf(z[i]));
    }
    print_message("edge peak %.3g plain, %.3g faded; interior peak %.3g\n", peak_y, peak_z, peak_mid);
    assert_true(peak_y > 10 * peak_mid);  /* the problem is real */
    assert_true(peak_z <= 2 * peak_mid);  /* and gone */
    free(x); free(mag); free(ph); free(y); free(z);
    sn_stft_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fade)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
