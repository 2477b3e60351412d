/* Reverse-mode autodiff: walks the forward graph backwards and appends, for each
 * node, the nodes its family's gradient builder makes. */
#include "core/core.h"

#include <stdlib.h>

static sn_grad_fn grad_fn(sn_op op) {
    switch (op) {
    case SN_OP_ADD: case SN_OP_MUL: case SN_OP_SCALE: case SN_OP_EXPAND: case SN_OP_REDUCE_TO:
        return sn_grad_binary;
    case SN_OP_RELU: case SN_OP_ELU: case SN_OP_SOFTPLUS: case SN_OP_SIGMOID: case SN_OP_TANH:
        return sn_grad_unary;
    case SN_OP_VIEW: case SN_OP_COPY: case SN_OP_CONCAT: case SN_OP_PAD: case SN_OP_SLICE: case SN_OP_PERMUTE:
        return sn_grad_shape;
    case SN_OP_MATMUL: case SN_OP_LINEAR:
        return sn_grad_matmul;
    case SN_OP_CONV2D: case SN_OP_CONVT2D:
        return sn_grad_conv;
    case SN_OP_BATCHNORM:
        return sn_grad_batchnorm;
    case SN_OP_LAYERNORM: case SN_OP_SOFTMAX:
        return sn_grad_norm;
    case SN_OP_LSTM: case SN_OP_GRU:
        return sn_grad_rnn;
    case SN_OP_ATTENTION:
        return sn_grad_attention;
    case SN_OP_MSE: case SN_OP_L1: case SN_OP_SUM: case SN_OP_MEAN:
        return sn_grad_loss;
    default:
        return NULL;
    }
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

sn_status sn_backward(sn_graph *g, sn_tensor *loss) {
    if (!g || !loss) return sn_error(SN_ERR_INVALID_ARG, "sn_backward: graph or loss is NULL");
    if (sn_nelem(loss) != 1)
        return sn_error(SN_ERR_SHAPE, "sn_backward: the loss '%s' must have one element, it has %lld", loss->name,
                        (long long)sn_nelem(loss));
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

    sn_tensor **grads = calloc((size_t)sn_ctx_count(ctx) + 1, sizeof *grads);
    if (!grads) return sn_error(SN_ERR_NOMEM, "sn_backward: out of host memory");
    int ntensors = sn_ctx_count(ctx);

    sn_tensor *one = sn_new_1d(ctx, 1, SN_FLAG_PERSIST | SN_FLAG_CONST, "d_loss");
    if (!one) { free(grads); return SN_ERR_NOMEM; }
    one->fp[0] = 1.0f;
    grads[loss->id] = one;

    for (int i = nfwd - 1; i >= 0 && s == SN_OK; i--) {
        sn_tensor *t = g->nodes[i];
        sn_tensor *dy = t->id < ntensors ? grads[t->id] : NULL;
        if (!dy || t->op == SN_OP_NONE || !sn_needs_grad(t)) continue;
        sn_grad_fn fn = grad_fn(t->op);
        if (!fn) {
            s = sn_error(SN_ERR_UNSUPPORTED, "sn_backward: op '%s' (%s) has no gradient", t->name, sn_op_name(t->op));
            break;
        }
        sn_tensor *dsrc[SN_MAX_SRC] = {0};
        s = fn(ctx, t, dy, dsrc);
        if (s != SN_OK) { sn_error_prefix(s, "gradient of '%s' (%s)", t->name, sn_op_name(t->op)); break; }
        for (int k = 0; k < t->nsrc && s == SN_OK; k++) {
            sn_tensor *src = t->src[k];
            if (!dsrc[k] || !sn_needs_grad(src)) continue;
            if (!sn_same_shape(dsrc[k], src)) {
                char a[64], b[64];
                s = sn_error(SN_ERR_INTERNAL, "gradient of '%s' input %d has shape %s, the input has %s", t->name, k,
                             sn_shape_str(dsrc[k], a, sizeof a), sn_shape_str(src, b, sizeof b));
                break;
            }
            if (src->id >= ntensors) continue;
            grads[src->id] = grads[src->id] ? sn_add(ctx, grads[src->id], dsrc[k]) : dsrc[k];
            if (!grads[src->id]) s = SN_ERR_NOMEM;
        }
    }
    /* params: final gradients, written where the caller wants them */
    for (int i = 0; i < nfwd && s == SN_OK; i++) {
        sn_tensor *t = g->nodes[i];
        if (!(t->flags & SN_FLAG_PARAM)) continue;
        sn_tensor *gr = grads[t->id];
        if (!gr) continue;
        gr = grad_into(ctx, gr, t->grad);
        if (!gr) { s = SN_ERR_NOMEM; break; }
        gr->flags |= SN_FLAG_GRAD;
        t->grad = gr;
        s = sn_graph_add(g, gr);
    }
    free(grads);
    return s;
}
