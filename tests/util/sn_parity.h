/* Parity harness: runs the op nodes of a ctx on a backend under test, one node per
 * compute call and without the planner, then on the CPU backend, and compares outputs,
 * saved state and tensors updated in place. Shared by tests/backend/test_backend_ops.c
 * and tests/vulkan/test_vulkan_{ops,backend}.c; the test program fills sn_par in main. */
#ifndef SN_PARITY_H
#define SN_PARITY_H

#include "sn_test.h"
#include "core/core.h"

#include <stdbool.h>

typedef struct {
    sn_backend *dev;   /* the backend under test */
    sn_backend *cpu;   /* the reference */
    const char *name;  /* the device in failure messages ("Vulkan", "cuda") */
    uint64_t seed;     /* leaves and random dy draw from it */
    bool claims;       /* also fail when dev does not claim an op (supports_op) */
} sn_parity;

extern sn_parity sn_par;

/* max |a - ref| over max |ref|: an error relative to the tensor's scale (NaN fails) */
double sn_par_nerr(const float *a, const float *ref, int64_t n);
/* a random leaf in [lo, hi) that needs a gradient */
sn_tensor *sn_par_leaf(sn_ctx *c, int nd, const int64_t *shape, float lo, float hi, const char *name);
#define SN_PAR_LEAF(c, lo, hi, name, ...) \
    sn_par_leaf(c, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__}, lo, hi, name)
/* dy for node (random) and the gradient nodes of its family */
void sn_par_grads(sn_ctx *c, sn_tensor *node, sn_grad_fn fn);
/* ops whose output is a packed gradient block or an update (compared through their
 * in-place targets, not their own data) */
bool sn_par_is_packed(sn_op op);
/* the optimizer's hyperparameter leaf for Adam/SGD at step */
sn_tensor *sn_par_hyper_leaf(sn_ctx *c, float lr, float b1, float b2, int step);

/* per-tensor device memory for a ctx (no planner) */
typedef struct {
    int n;
    void **dev;  /* owned device buffers (NULL for views) */
    void **host; /* the leaves' host data */
} sn_par_devmap;

/* gives every tensor of c a zeroed buffer on b and uploads the leaves */
void sn_par_bind(sn_backend *b, sn_ctx *c, sn_par_devmap *m);
/* downloads every owned buffer (data + extra) into res[i], releases device memory,
 * puts the host pointers back (NULL for op nodes); free each res[i] and res */
float **sn_par_unbind(sn_backend *b, sn_ctx *c, sn_par_devmap *m);
/* t's data inside the downloaded buffers (views resolved to their root) */
const float *sn_par_res_of(float **res, sn_tensor *t);
/* Runs every op node of c on sn_par.dev, then on the CPU, and compares outputs (tol),
 * saved state (tol_extra) and tensors updated in place; frees the test data. */
void sn_par_check(sn_ctx *c, double tol, double tol_extra, const char *label);

/* the short names the parity tests are written with */
#define LEAF SN_PAR_LEAF
#define grads(c, node, fn) sn_par_grads(c, node, fn)
#define nerr(a, ref, n) sn_par_nerr(a, ref, n)
#define cross_check(c, tol, tol_extra, label) sn_par_check(c, tol, tol_extra, label)

#endif
