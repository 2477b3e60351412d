/* conv2d and conv_transpose2d (NCHW, PyTorch weight layouts), optionally with an
 * activation epilogue, and their backward ops. */
#include "sinter/tensor.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>


static void set_act(sn_tensor *t, sn_act act, float p0, float p1) {
    t->ip[SN_IP_ACT] = act;
    t->fp[SN_FP_ACT] = act != SN_ACT_NONE ? p0 : 0.0f;
    t->fp[SN_FP_ACT + 1] = act != SN_ACT_NONE ? p1 : 0.0f;
}

static sn_tensor *conv_check_common(const char *name, sn_tensor *x, sn_tensor *w, sn_tensor *b, int64_t kout,
                                    int sh, int sw) {
    if (x->ndim != 4) return sn_shape_fail(name, x, w, "the input must be 4-D [N,C,H,W], it has %d dims", x->ndim);
    if (w->ndim != 4) return sn_shape_fail(name, x, w, "the weight must be 4-D, it has %d dims", w->ndim);
    if (b && (b->ndim != 1 || b->shape[0] != kout))
        return sn_shape_fail(name, w, b, "the bias must be 1-D with %lld elements (output channels)",
                             (long long)kout);
    if (sh < 1 || sw < 1) {
        sn_error(SN_ERR_INVALID_ARG, "%s: stride must be >= 1 (got stride (%d,%d))", name, sh, sw);
        return NULL;
    }
    return x;
}

sn_tensor *sn_conv2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw) {
    return sn_conv2d_pad(ctx, x, w, b, sh, sw, ph, ph, pw, pw, SN_ACT_NONE, 0.0f, 0.0f);
}

sn_tensor *sn_conv2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw,
                         sn_act act, float p0, float p1) {
    return sn_conv2d_pad(ctx, x, w, b, sh, sw, ph, ph, pw, pw, act, p0, p1);
}

/* The kernels take the padding before (ip[2], ip[3]) as the offset of the column grid
 * and the output shape as its extent: padding after is only the grid reaching past the
 * image, where reads are zero. */
sn_tensor *sn_conv2d_pad(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int pt, int pb,
                         int pl, int pr, sn_act act, float p0, float p1) {
    SN_NONNULL(x, w);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "conv2d: ctx is NULL"); return NULL; }
    if (!sn_act_check("conv2d", act, p0, p1)) return NULL;
    if (!conv_check_common("conv2d", x, w, b, w->ndim == 4 ? w->shape[0] : 0, sh, sw)) return NULL;
    if (pt < 0 || pb < 0 || pl < 0 || pr < 0) {
        if (pt == pb && pl == pr)
            sn_error(SN_ERR_INVALID_ARG, "conv2d: padding must be >= 0 (got padding (%d,%d))", pt, pl);
        else
            sn_error(SN_ERR_INVALID_ARG,
                     "conv2d: padding must be >= 0 (got top %d, bottom %d, left %d, right %d)", pt, pb, pl, pr);
        return NULL;
    }
    if (w->shape[1] != x->shape[1])
        return sn_shape_fail("conv2d", x, w, "the weight has %lld input channels but the input has %lld",
                             (long long)w->shape[1], (long long)x->shape[1]);
    int64_t kh = w->shape[2], kw = w->shape[3];
    int64_t hp = x->shape[2] + pt + pb, wp = x->shape[3] + pl + pr;
    if (hp < kh || wp < kw)
        return sn_shape_fail("conv2d", x, w, "the padded input (%lld x %lld) is smaller than the kernel (%lld x %lld)",
                             (long long)hp, (long long)wp, (long long)kh, (long long)kw);
    if ((hp - kh) / sh + 1 > INT32_MAX || (wp - kw) / sw + 1 > INT32_MAX || x->shape[2] > INT32_MAX ||
        x->shape[3] > INT32_MAX) {
        sn_error(SN_ERR_INVALID_ARG, "conv2d: the input (%lld x %lld) is too large", (long long)x->shape[2],
                 (long long)x->shape[3]);
        return NULL;
    }
    int64_t shape[4] = {x->shape[0], w->shape[0], (hp - kh) / sh + 1, (wp - kw) / sw + 1};
    sn_tensor *s[3] = {x, w, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_CONV2D, b ? 3 : 2, s, 4, shape);
    if (t) {
        t->ip[0] = sh;
        t->ip[1] = sw;
        t->ip[2] = pt;
        t->ip[3] = pl;
        t->ip[6] = pb;
        t->ip[7] = pr;
        set_act(t, act, p0, p1);
    }
    return t;
}

sn_tensor *sn_conv_transpose2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw,
                               int oph, int opw) {
    return sn_conv_transpose2d_crop(ctx, x, w, b, sh, sw, ph, pw, oph, opw, 0, 0, SN_ACT_NONE, 0.0f, 0.0f);
}

sn_tensor *sn_conv_transpose2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph,
                                   int pw, int oph, int opw, sn_act act, float p0, float p1) {
    return sn_conv_transpose2d_crop(ctx, x, w, b, sh, sw, ph, pw, oph, opw, 0, 0, act, p0, p1);
}

/* The kernels scatter into the output shape: positions of the full output past the
 * crop fall outside it and are dropped, as the backward's reads of them are zero. */
sn_tensor *sn_conv_transpose2d_crop(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph,
                                    int pw, int oph, int opw, int crop_bottom, int crop_right, sn_act act, float p0,
                                    float p1) {
    SN_NONNULL(x, w);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "conv_transpose2d: ctx is NULL"); return NULL; }
    if (!sn_act_check("conv_transpose2d", act, p0, p1)) return NULL;
    if (!conv_check_common("conv_transpose2d", x, w, b, w->ndim == 4 ? w->shape[1] : 0, sh, sw)) return NULL;
    if (ph < 0 || pw < 0) {
        sn_error(SN_ERR_INVALID_ARG, "conv_transpose2d: padding must be >= 0 (got padding (%d,%d))", ph, pw);
        return NULL;
    }
    if (crop_bottom < 0 || crop_right < 0) {
        sn_error(SN_ERR_INVALID_ARG, "conv_transpose2d: crop must be >= 0 (got bottom %d, right %d)", crop_bottom,
                 crop_right);
        return NULL;
    }
    if (w->shape[0] != x->shape[1])
        return sn_shape_fail("conv_transpose2d", x, w,
                             "the weight [in,out,kh,kw] has %lld input channels but the input has %lld",
                             (long long)w->shape[0], (long long)x->shape[1]);
    if (oph < 0 || opw < 0 || oph >= sh || opw >= sw) {
        sn_error(SN_ERR_INVALID_ARG,
                 "conv_transpose2d: output padding (%d,%d) must be >= 0 and smaller than the stride (%d,%d)", oph,
                 opw, sh, sw);
        return NULL;
    }
    int64_t kh = w->shape[2], kw = w->shape[3];
    int64_t ho = (x->shape[2] - 1) * sh - 2 * ph + kh + oph, wo = (x->shape[3] - 1) * sw - 2 * pw + kw + opw;
    if (ho < 1 || wo < 1)
        return sn_shape_fail("conv_transpose2d", x, w, "the output would be empty (%lld x %lld): padding too large",
                             (long long)ho, (long long)wo);
    if (crop_bottom >= ho || crop_right >= wo)
        return sn_shape_fail("conv_transpose2d", x, w,
                             "the crop (%d rows, %d columns) must be smaller than the output (%lld x %lld)",
                             crop_bottom, crop_right, (long long)ho, (long long)wo);
    int64_t shape[4] = {x->shape[0], w->shape[1], ho - crop_bottom, wo - crop_right};
    sn_tensor *s[3] = {x, w, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_CONVT2D, b ? 3 : 2, s, 4, shape);
    if (t) {
        int ip[8] = {sh, sw, ph, pw, oph, opw, crop_bottom, crop_right};
        for (int i = 0; i < 8; i++) t->ip[i] = ip[i];
        set_act(t, act, p0, p1);
    }
    return t;
}

/* ip slots the *_BWD ops take from the forward: 0..7 (CONV2D_BWD_DATA's 4, 5 are then
 * overwritten with x's H, W; CONV2D has nothing there) */
#define CONV_BWD_NIP 8

static sn_tensor *bwd_node(sn_ctx *ctx, sn_op op, sn_tensor *dy, sn_tensor *other, const sn_tensor *like,
                           const sn_tensor *fwd) {
    sn_tensor *s[2] = {dy, other};
    sn_tensor *t = sn_new_op(ctx, op, 2, s, like->ndim, like->shape);
    if (t)
        for (int i = 0; i < CONV_BWD_NIP; i++) t->ip[i] = fwd->ip[i];
    return t;
}

sn_status sn_grad_conv(sn_ctx *ctx, sn_tensor *node, sn_tensor *dy, sn_tensor **dsrc) {
    sn_tensor *x = node->src[0], *w = node->src[1], *b = node->nsrc > 2 ? node->src[2] : NULL;
    bool t = node->op == SN_OP_CONVT2D;
    if (node->op != SN_OP_CONV2D && !t)
        return sn_error(SN_ERR_UNSUPPORTED, "%s '%s': no gradient (second-order gradients are not supported)",
                        sn_op_name(node->op), node->name);
    if (!sn_same_shape(dy, node))
        return sn_error(SN_ERR_SHAPE, "gradient of %s '%s': dy shape differs from the output", sn_op_name(node->op),
                        node->name);
    /* activation epilogue: its derivative from the output, then the plain conv's
     * (bwd_node copies ip[0..7] only: the *_BWD ops never see the act) */
    if (node->ip[SN_IP_ACT] != SN_ACT_NONE) {
        sn_status s = sn_act_grad(ctx, node, &dy);
        if (s != SN_OK) return s;
    }
    if (sn_needs_grad(x)) {
        dsrc[0] = bwd_node(ctx, t ? SN_OP_CONVT2D_BWD_DATA : SN_OP_CONV2D_BWD_DATA, dy, w, x, node);
        if (dsrc[0] && !t) {
            dsrc[0]->ip[4] = (int32_t)x->shape[2];
            dsrc[0]->ip[5] = (int32_t)x->shape[3];
        }
    }
    if (sn_needs_grad(w))
        dsrc[1] = bwd_node(ctx, t ? SN_OP_CONVT2D_BWD_W : SN_OP_CONV2D_BWD_W, dy, sn_remat(ctx, x), w, node);
    if (sn_needs_grad(b)) {
        dsrc[2] = sn_new_op(ctx, SN_OP_BIAS_GRAD, 1, &dy, 1, b->shape);
        if (dsrc[2]) dsrc[2]->ip[0] = 1;  /* channel axis */
    }
    for (int i = 0; i < node->nsrc; i++)
        if (sn_needs_grad(node->src[i]) && !dsrc[i]) return SN_ERR_NOMEM;
    return SN_OK;
}

sn_status sn_conv_geom_of(const sn_tensor *node, sn_conv_geom *g) {
    memset(g, 0, sizeof *g);
    const sn_tensor *s0 = node->src[0], *s1 = node->src[1];
    switch (node->op) {
    case SN_OP_CONV2D: case SN_OP_CONVT2D: g->x = s0; g->w = s1; g->y = node; break;
    case SN_OP_CONV2D_BWD_DATA: case SN_OP_CONVT2D_BWD_DATA: g->y = s0; g->w = s1; g->x = node; break;
    case SN_OP_CONV2D_BWD_W: case SN_OP_CONVT2D_BWD_W: g->y = s0; g->x = s1; g->w = node; break;
    default: return sn_error(SN_ERR_INTERNAL, "sn_conv_geom_of: %s is not a conv op", sn_op_name(node->op));
    }
    g->transposed = node->op == SN_OP_CONVT2D || node->op == SN_OP_CONVT2D_BWD_DATA || node->op == SN_OP_CONVT2D_BWD_W;
    const sn_tensor *img = g->transposed ? g->y : g->x, *grid = g->transposed ? g->x : g->y;
    g->N = g->x->shape[0];
    g->C = img->shape[1], g->Hs = img->shape[2], g->Ws = img->shape[3];
    g->R = grid->shape[1], g->Hc = grid->shape[2], g->Wc = grid->shape[3];
    g->kh = g->w->shape[2], g->kw = g->w->shape[3];
    g->sh = node->ip[0], g->sw = node->ip[1], g->ph = node->ip[2], g->pw = node->ip[3];
    g->act = SN_ACT_NONE;
    if (node->op == SN_OP_CONV2D || node->op == SN_OP_CONVT2D) {
        g->bias = node->nsrc > 2 ? node->src[2] : NULL;
        g->act = node->ip[SN_IP_ACT];
        g->p0 = node->fp[SN_FP_ACT], g->p1 = node->fp[SN_FP_ACT + 1];
    }
    return SN_OK;
}
