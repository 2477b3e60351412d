/* Graphs, reverse-mode autodiff, the memory planner and the scheduler.
 *
 * A training step is one graph, built once: forward, loss, backward, clipping and
 * the optimizer update. sn_plan_new places every node on a backend (falling back
 * to the CPU per op, with copies inserted and logged), assigns every transient
 * tensor an offset in one arena per device from liveness, and allocates the
 * arenas once. sn_plan_run replays it. */
#ifndef SINTER_GRAPH_H
#define SINTER_GRAPH_H

#include "sinter/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_graph {
    sn_ctx *ctx;
    int n, cap;
    sn_tensor **nodes;     /* topological order */
} sn_graph;

sn_graph *sn_graph_new(sn_ctx *ctx);
void sn_graph_free(sn_graph *g);
/* Adds t and every tensor it depends on (once each, in topological order). */
sn_status sn_graph_add(sn_graph *g, sn_tensor *t);

/* Appends the backward pass of loss (a one-element tensor) to g. Afterwards every
 * tensor with SN_FLAG_PARAM that loss depends on has ->grad set. A param with
 * ->grad already pointing at a tensor with storage (a view into a flat gradient
 * buffer, see sn_grad_into) receives its gradient there. */
sn_status sn_backward(sn_graph *g, sn_tensor *loss);
/* As sn_backward, but each param's final gradient is handed to hook as soon as it is
 * complete (after every node that reads the param has been added to g), so the hook
 * can append an update that consumes it at once and its memory is freed early.
 * After the params completed by one node's backward, hook gets param = grad = NULL
 * (a group boundary: those gradients are ready together). */
typedef sn_status (*sn_grad_hook)(sn_graph *g, sn_tensor *param, sn_tensor *grad, void *user);
sn_status sn_backward_hook(sn_graph *g, sn_tensor *loss, sn_grad_hook hook, void *user);

/* Makes storage of t an alias of `into` at elem_offset (no allocation of its own). */
void sn_alias(sn_tensor *t, sn_tensor *into, int64_t elem_offset);

/* Persistent tensors (SN_FLAG_PERSIST) live outside the plans, so that a training
 * plan and an inference plan share them. This allocates every persistent tensor of
 * ctx that has no memory yet on backend b (one allocation). */
sn_status sn_ctx_alloc_persistent(sn_ctx *ctx, sn_backend *b);
size_t sn_ctx_persistent_bytes(const sn_ctx *ctx);
/* Host <-> tensor transfer of n elements (f32) of a persistent or output tensor. */
sn_status sn_tensor_set(sn_tensor *t, const float *host, int64_t n);
sn_status sn_tensor_get(const sn_tensor *t, float *host, int64_t n);
sn_status sn_tensor_zero(sn_tensor *t);
/* As sn_tensor_set, but on a device with a copy stream the copy overlaps the work
 * already queued; it lands before the device's next compute or transfer. */
sn_status sn_tensor_prefetch(sn_tensor *t, const float *host, int64_t n);

typedef struct sn_plan_opts {
    sn_backend *backend;       /* where ops go first */
    sn_backend *fallback;      /* the CPU backend, for ops `backend` lacks (may equal backend) */
    size_t mem_free;           /* device bytes free for the arena; 0 = ask the backend */
    bool no_inplace;           /* disable in-place reuse (for tests) */
    bool dry_run;              /* place and plan only: no arena, no fit check (sn_plan_peak answers;
                                  the plan cannot run) */
} sn_plan_opts;

typedef struct sn_plan sn_plan;

sn_status sn_plan_new(sn_graph *g, const sn_plan_opts *opts, sn_plan **out);
void sn_plan_free(sn_plan *p);
sn_status sn_plan_run(sn_plan *p);
/* sn_plan_run without the final wait: a device may still be running when it returns
 * (sn_plan_wait, or any read of an output, waits). */
sn_status sn_plan_launch(sn_plan *p);
sn_status sn_plan_wait(sn_plan *p);
/* Peak transient bytes on the primary backend (the arena size), known before running. */
size_t sn_plan_peak(const sn_plan *p);
size_t sn_plan_fallback_peak(const sn_plan *p);
/* Ops placed on the fallback backend: count, and a one-line-per-op description. */
int sn_plan_fallback_count(const sn_plan *p);
const char *sn_plan_fallback_report(const sn_plan *p);
int sn_plan_copy_count(const sn_plan *p);
/* For planner tests: the [begin, end) byte range and live node interval of a transient. */
bool sn_plan_tensor_range(const sn_plan *p, const sn_tensor *t, size_t *begin, size_t *end, int *first, int *last);

#ifdef __cplusplus
}
#endif
#endif
