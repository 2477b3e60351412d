/* sn_fastdiv (the GPU kernels' index division) against the C operators: every divisor
 * up to 4096 and the powers of two and their neighbours, with numerators at the edges
 * of each quotient and of the range, and random pairs over the whole range. */
#include <stdio.h>
#include <stdlib.h>

#include "sn_test.h"
#include "core/fastdiv.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u31(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 33); /* [0, 2^31) */
}

static int check(uint32_t d, uint32_t n) {
    sn_fastdiv f = sn_fastdiv_make(d);
    uint32_t q, r = sn_fastdiv_qr(f, n, &q);
    if (q != n / d || r != n % d) {
        fprintf(stderr, "fastdiv: %u / %u gave %u rem %u, want %u rem %u\n", n, d, q, r, n / d, n % d);
        return 1;
    }
    return 0;
}

static int check_divisor(uint32_t d) {
    const uint32_t top = 0x7fffffffu;
    int bad = 0;
    uint32_t edges[] = {0, 1, d - 1, d, d + 1, top, top - 1, top - d, top / d * d, top / d * d - 1};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        if (edges[i] <= top) bad += check(d, edges[i]);
    for (int i = 0; i < 200; i++) { /* around multiples of d across the range */
        uint64_t k = next_u31() / d;
        uint64_t n = k * d;
        if (n <= top) bad += check(d, (uint32_t)n);
        if (n >= 1 && n - 1 <= top) bad += check(d, (uint32_t)(n - 1));
        if (n + d - 1 <= top) bad += check(d, (uint32_t)(n + d - 1));
    }
    return bad;
}

static void test_small_divisors(void **st) {
    (void)st;
    int bad = 0;
    for (uint32_t d = 1; d <= 4096 && bad < 10; d++) bad += check_divisor(d);
    assert_int_equal(bad, 0);
}

static void test_powers_of_two_and_neighbours(void **st) {
    (void)st;
    int bad = 0;
    for (int l = 1; l < 31; l++) {
        uint32_t p = 1u << l;
        bad += check_divisor(p - 1) + check_divisor(p) + check_divisor(p + 1);
    }
    bad += check_divisor(0x7fffffffu);
    assert_int_equal(bad, 0);
}

static void test_random_pairs(void **st) {
    (void)st;
    int bad = 0;
    for (int i = 0; i < 2000000 && bad < 10; i++) {
        uint32_t d = next_u31() >> (next_u31() % 31); /* all magnitudes */
        if (!d) d = 1;
        bad += check(d, next_u31());
    }
    assert_int_equal(bad, 0);
}

static void test_exhaustive_small_numerators(void **st) {
    (void)st;
    int bad = 0;
    for (uint32_t d = 1; d <= 300 && bad < 10; d++)
        for (uint32_t n = 0; n < 70000; n++) bad += check(d, n);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_divisors),
        cmocka_unit_test(test_powers_of_two_and_neighbours),
        cmocka_unit_test(test_random_pairs),
        cmocka_unit_test(test_exhaustive_small_numerators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
