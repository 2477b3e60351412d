/* Reverse-mode autodiff: walks the forward graph backwards and appends, for each
 * node, the nodes its family's gradient builder makes. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Gradient builders by family; the *_BWD ops' builders refuse (no second order). */
static sn_grad_fn grad_fn(sn_op op) {
    static const sn_grad_fn fns[SN_FAM_COUNT] = {
        [SN_FAM_SHAPE] = sn_grad_shape,   [SN_FAM_BINARY] = sn_grad_binary, [SN_FAM_UNARY] = sn_grad_unary,
        [SN_FAM_MATMUL] = sn_grad_matmul, [SN_FAM_CONV] = sn_grad_conv,     [SN_FAM_BATCHNORM] = sn_grad_batchnorm,
        [SN_FAM_NORM] = sn_grad_norm,     [SN_FAM_RNN] = sn_grad_rnn,       [SN_FAM_ATTENTION] = sn_grad_attention,
        [SN_FAM_LOSS] = sn_grad_loss,
    };
    if (op == SN_OP_VIEW) return sn_grad_shape;
    return fns[sn_op_family_of(op)];
}

void sn_ctx_set_remat(sn_ctx *ctx, int level) {
    if (ctx) ctx->remat_level = level;
}

/* Multiply-adds per output element of a convolution: what recomputing costs per
 * element it saves keeping. */
static double conv_macs_per_output(const sn_tensor *x) {
    const sn_tensor *w = x->src[1];
    double k = (double)w->shape[2] * (double)w->shape[3];
    if (x->op == SN_OP_CONV2D) return (double)w->shape[1] * k;
    return (double)w->shape[0] * k / ((double)x->ip[0] * (double)x->ip[1]); /* convT: w [C,K,kh,kw] */
}

/* Level 1 recomputes the convolutions whose outputs are cheap to redo (at most
 * SN_REMAT_MACS multiply-adds per element, env SN_REMAT_MACS overrides: the wide,
 * shallow layers, most of the memory); level 2 every convolution. */
#define SN_REMAT_MACS 512.0

static double remat_macs(void) {
    const char *e = getenv("SN_REMAT_MACS");
    return e && *e ? atof(e) : SN_REMAT_MACS;
}

static bool rebuildable(const sn_ctx *ctx, const sn_tensor *x) {
    switch (x->op) {
    case SN_OP_PAD: case SN_OP_CONCAT: case SN_OP_PERMUTE: case SN_OP_SLICE: return !x->view_src;
    case SN_OP_VIEW: return x->ip[0] == 0 && x->ip[1] == 0 && x->nsrc == 1;
    case SN_OP_CONV2D: case SN_OP_CONVT2D:
        if (x->view_src || ctx->remat_level < 1) return false;
        return ctx->remat_level >= 2 || conv_macs_per_output(x) <= remat_macs();
    default: return false;
    }
}

sn_tensor *sn_remat(sn_ctx *ctx, sn_tensor *x) {
    if (!x || !rebuildable(ctx, x)) return x;
    sn_tensor *src[SN_MAX_SRC];
    for (int i = 0; i < x->nsrc; i++) src[i] = sn_remat(ctx, x->src[i]);
    if (x->op == SN_OP_VIEW) return src[0] == x->src[0] ? x : sn_reshape(ctx, src[0], x->ndim, x->shape);
    sn_tensor *r = sn_new_op(ctx, x->op, x->nsrc, src, x->ndim, x->shape);
    if (!r) return x;
    r->dtype = x->dtype;
    memcpy(r->ip, x->ip, sizeof r->ip);
    memcpy(r->fp, x->fp, sizeof r->fp);
    snprintf(r->name, sizeof r->name, "%.80s(again)", x->name);
    return r;
}

/* Writes the final gradient of a param into its preassigned storage, if any. */
static sn_tensor *grad_into(sn_ctx *ctx, sn_tensor *g, sn_tensor *dest) {
    if (!dest || !dest->view_src) return g;
    sn_tensor *root = sn_root(dest);
    int64_t off = (int64_t)(sn_root_offset(dest) / sn_dtype_size(root->dtype));
    if (g->op != SN_OP_NONE && g->op != SN_OP_VIEW && !g->view_src && !(g->flags & SN_FLAG_PERSIST)) {
        sn_alias(g, root, off);
        return g;
    }
    sn_tensor *c = sn_copy(ctx, g);
    if (!c) return NULL;
    sn_alias(c, root, off);
    return c;
}

/* Default: the final gradient goes into the param's preassigned storage, if any. */
static sn_status default_hook(sn_graph *g, sn_tensor *param, sn_tensor *grad, void *user) {
    if (!param) return SN_OK;
    sn_tensor *gr = grad_into(g->ctx, grad, param->grad);
    if (!gr) return SN_ERR_NOMEM;
    gr->flags |= SN_FLAG_GRAD;
    param->grad = gr;
    return sn_graph_add(g, gr);
}

sn_status sn_backward(sn_graph *g, sn_tensor *loss) { return sn_backward_hook(g, loss, NULL, NULL); }

sn_status sn_backward_hook(sn_graph *g, sn_tensor *loss, sn_grad_hook hook, void *user) {
    if (!g || !loss) return sn_error(SN_ERR_INVALID_ARG, "sn_backward: graph or loss is NULL");
    if (sn_nelem(loss) != 1)
        return sn_error(SN_ERR_SHAPE, "sn_backward: the loss '%s' must have one element, it has %lld", loss->name,
                        (long long)sn_nelem(loss));
    if (!hook) hook = default_hook;
    sn_status s = sn_graph_add(g, loss);
    if (s != SN_OK) return s;
    sn_ctx *ctx = g->ctx;
    int nfwd = loss->node + 1;

    /* which tensors need a gradient */
    bool any = false;
    for (int i = 0; i < nfwd; i++) {
        sn_tensor *t = g->nodes[i];
        t->flags &= ~SN_FLAG_NEEDS_GRAD;
        if (t->flags & SN_FLAG_PARAM) t->flags |= SN_FLAG_NEEDS_GRAD;
        else if (t->op != SN_OP_NONE)
            for (int k = 0; k < t->nsrc; k++)
                if (sn_needs_grad(t->src[k])) t->flags |= SN_FLAG_NEEDS_GRAD;
        any |= (t->flags & SN_FLAG_PARAM) != 0;
    }
    if (!any || !sn_needs_grad(loss))
        return sn_error(SN_ERR_INVALID_ARG, "sn_backward: the loss '%s' depends on no parameter (flag SN_FLAG_PARAM)",
                        loss->name);

    int ntensors = sn_ctx_count(ctx);
    sn_tensor **grads = calloc((size_t)ntensors + 1, sizeof *grads);
    int *pending = calloc((size_t)ntensors + 1, sizeof *pending);
    bool *active = calloc((size_t)ntensors + 1, sizeof *active);
    if (!grads || !pending || !active) {
        free(grads); free(pending); free(active);
        return sn_error(SN_ERR_NOMEM, "sn_backward: out of host memory");
    }
    /* contributions each tensor will receive, so that a param's gradient is handed
     * to the hook (and its inputs freed) as soon as it is complete */
    active[loss->id] = true;
    for (int i = nfwd - 1; i >= 0; i--) {
        sn_tensor *t = g->nodes[i];
        if (!active[t->id] || t->op == SN_OP_NONE || !sn_needs_grad(t)) continue;
        for (int k = 0; k < t->nsrc; k++)
            if (sn_needs_grad(t->src[k]) && t->src[k]->id < ntensors) {
                active[t->src[k]->id] = true;
                pending[t->src[k]->id]++;
            }
    }

    sn_tensor *one = sn_new_1d(ctx, 1, SN_FLAG_PERSIST | SN_FLAG_CONST, "d_loss");
    if (!one) { s = SN_ERR_NOMEM; goto done; }
    one->fp[0] = 1.0f;
    grads[loss->id] = one;

    for (int i = nfwd - 1; i >= 0 && s == SN_OK; i--) {
        sn_tensor *t = g->nodes[i];
        sn_tensor *dy = grads[t->id];
        if (!dy || t->op == SN_OP_NONE || !sn_needs_grad(t)) continue;
        sn_grad_fn fn = grad_fn(t->op);
        if (!fn) {
            s = sn_error(SN_ERR_UNSUPPORTED, "sn_backward: op '%s' (%s) has no gradient", t->name, sn_op_name(t->op));
            break;
        }
        sn_tensor *dsrc[SN_MAX_SRC] = {0};
        s = fn(ctx, t, dy, dsrc);
        if (s != SN_OK) { sn_error_prefix(s, "gradient of '%s' (%s)", t->name, sn_op_name(t->op)); break; }
        /* weights' gradients first: they are consumed (or written out) at once, while
         * the input's gradient flows on, so the inputs they need die sooner */
        for (int k = t->nsrc - 1; k >= 0 && s == SN_OK; k--) {
            sn_tensor *src = t->src[k];
            if (!sn_needs_grad(src) || src->id >= ntensors) continue;
            if (dsrc[k]) {
                if (!sn_same_shape(dsrc[k], src)) {
                    char a[64], b[64];
                    s = sn_error(SN_ERR_INTERNAL, "gradient of '%s' input %d has shape %s, the input has %s", t->name,
                                 k, sn_shape_str(dsrc[k], a, sizeof a), sn_shape_str(src, b, sizeof b));
                    break;
                }
                /* in the graph now: every reader of this node's inputs runs before a
                 * hook that may update a param in place */
                s = sn_graph_add(g, dsrc[k]);
                if (s != SN_OK) break;
                grads[src->id] = grads[src->id] ? sn_add(ctx, grads[src->id], dsrc[k]) : dsrc[k];
                if (!grads[src->id]) { s = SN_ERR_NOMEM; break; }
                s = sn_graph_add(g, grads[src->id]);
            }
        }
        bool fired = false;
        for (int k = 0; k < t->nsrc && s == SN_OK; k++) {
            sn_tensor *src = t->src[k];
            if (!sn_needs_grad(src) || src->id >= ntensors || --pending[src->id] > 0) continue;
            if ((src->flags & SN_FLAG_PARAM) && grads[src->id]) {
                s = hook(g, src, grads[src->id], user);
                fired = true;
            }
        }
        if (fired && s == SN_OK) s = hook(g, NULL, NULL, user); /* this node's params are done */
    }
done:
    free(grads);
    free(pending);
    free(active);
    return s;
}
