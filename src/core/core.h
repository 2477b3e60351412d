/* Internal helpers shared by the core and the op families. */
#ifndef SN_CORE_CORE_H
#define SN_CORE_CORE_H

#include "sinter/graph.h"

/* Set on tensors whose gradient sn_backward must produce (internal). */
#define SN_FLAG_NEEDS_GRAD (1u << 8)
/* Set on tensors that hold memory allocated by sn_ctx_alloc_persistent. */
#define SN_FLAG_ALLOCATED (1u << 9)

static inline bool sn_needs_grad(const sn_tensor *t) { return t && (t->flags & SN_FLAG_NEEDS_GRAD); }

/* Returns NULL from the calling constructor when any of the srcs is NULL
 * (the first failure's message is kept). */
#define SN_NONNULL(...)                                                   \
    do {                                                                  \
        const sn_tensor *sn_nn_[] = {__VA_ARGS__};                        \
        for (size_t sn_i_ = 0; sn_i_ < sizeof sn_nn_ / sizeof *sn_nn_; sn_i_++) \
            if (!sn_nn_[sn_i_]) {                                         \
                if (!sn_last_error()[0]) sn_error(SN_ERR_INVALID_ARG, "%s: input %zu is NULL", __func__, sn_i_); \
                return NULL;                                              \
            }                                                             \
    } while (0)

/* Formats a shape error naming the op and its inputs: returns NULL. Use like
 * return sn_shape_fail("conv2d", x, w, "weight channels %lld != input channels %lld", ...); */
sn_tensor *sn_shape_fail(const char *op, const sn_tensor *a, const sn_tensor *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Set on constant leaves that sn_ctx_alloc_persistent fills with fp[0]. */
#define SN_FLAG_CONST (1u << 10)

typedef struct sn_alloc_rec {
    sn_backend *b;
    void *base;
    size_t bytes;
} sn_alloc_rec;

struct sn_ctx {
    int n, cap;
    sn_tensor **t;
    int nalloc;
    sn_alloc_rec *allocs;   /* persistent memory, one record per sn_ctx_alloc_persistent call */
    int remat_level;        /* what sn_remat rebuilds: 0 copies, 1 also cheap convolutions, 2 all */
};

/* Recomputation instead of storage: a backward op that needs a forward tensor which
 * is a cheap function of tensors kept alive anyway (a pad, concat, permute, slice or
 * reshape of them; at remat_level 1 also a convolution) gets a fresh copy built from
 * those inputs, so the forward tensor dies right after its forward use. */
sn_tensor *sn_remat(sn_ctx *ctx, sn_tensor *x);
void sn_ctx_set_remat(sn_ctx *ctx, int level);

void sn_ctx_release_persistent(sn_ctx *ctx);
/* The tensor whose memory t lives in (t itself when it owns its memory). */
static inline sn_tensor *sn_root(sn_tensor *t) {
    while (t->view_src) t = t->view_src;
    return t;
}
/* Byte offset of t inside its root. */
static inline size_t sn_root_offset(const sn_tensor *t) {
    size_t o = 0;
    while (t->view_src) { o += t->view_offs; t = t->view_src; }
    return o;
}

/* Gradient builders, one per op family (src/core/ops/<family>.c). Given a forward
 * node and dy (the gradient of its output), set dsrc[i] to the gradient of
 * node->src[i] for each src with sn_needs_grad(src) (leave others NULL). New nodes
 * are made with the constructors or sn_new_op. */
typedef sn_status (*sn_grad_fn)(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);

/* Activation epilogues of linear and the convolutions (ops/unary.c): validity of
 * (act, p0, p1) with an error naming op; and *dy replaced by act'(y) * dy, from the
 * node's output y. */
bool sn_act_check(const char *op, sn_act act, float p0, float p1);
sn_status sn_act_grad(sn_ctx *ctx, sn_tensor *node, sn_tensor **dy);
sn_status sn_grad_binary(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_unary(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_shape(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_matmul(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_conv(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_batchnorm(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_norm(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_rnn(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_attention(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);
sn_status sn_grad_loss(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc);

#endif
