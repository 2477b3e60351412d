/* Test helpers: random data, float64 comparisons, and a direct evaluator. */
#ifndef SN_TEST_H
#define SN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sinter/backend.h"
#include "sinter/graph.h"

/* Deterministic uniform random floats in [lo, hi). */
void sn_test_rand(float *x, int64_t n, uint64_t *seed, float lo, float hi);
float *sn_test_rand_new(int64_t n, uint64_t *seed, float lo, float hi);
/* max |a - ref| / max(|ref|, floor) */
double sn_test_rel_err(const float *a, const double *ref, int64_t n, double floor);
double sn_test_rel_err_f(const float *a, const float *ref, int64_t n, double floor);
/* Evaluates every op node of ctx (in creation order, which is topological) on
 * backend b without the planner: each node gets its own host allocation (b must be
 * a host backend). Leaves must have ->data set by the test (sn_test_leaf). Nodes
 * that already have ->data are skipped. Returns the status of the first failure. */
sn_status sn_test_eval(sn_ctx *ctx, sn_backend *b);
/* Gives a leaf fresh host memory filled with uniform random values (returned). */
float *sn_test_leaf(sn_tensor *t, uint64_t *seed, float lo, float hi);
/* Frees what sn_test_eval / sn_test_leaf allocated for ctx's tensors. */
void sn_test_free_data(sn_ctx *ctx);

/* The Vulkan tests' device: SN_VK_DEVICE=N (default 0) opened into *vk, its index in
 * *dev. Returns 0, 77 (skip: no Vulkan device, loader or driver; printed) or 1 (it would
 * not open; the error printed): main returns anything but 0. */
int sn_test_vk_open(int *dev, sn_backend **vk);

#define SN_ASSERT_OK(expr)                                                            \
    do {                                                                              \
        sn_status s_ = (expr);                                                        \
        if (s_ != SN_OK) fail_msg("%s -> %s: %s", #expr, sn_status_name(s_), sn_last_error()); \
    } while (0)

#endif
