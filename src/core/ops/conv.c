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
                                    int sh, int sw, int ph, int pw) {
    if (x->ndim != 4) return sn_shape_fail(name, x, w, "the input must be 4-D [N,C,H,W], it has %d dims", x->ndim);
    if (w->ndim != 4) return sn_shape_fail(name, x, w, "the weight must be 4-D, it has %d dims", w->ndim);
    if (b && (b->ndim != 1 || b->shape[0] != kout))
        return sn_shape_fail(name, w, b, "the bias must be 1-D with %lld elements (output channels)",
                             (long long)kout);
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0) {
        sn_error(SN_ERR_INVALID_ARG, "%s: stride must be >= 1 and padding >= 0 (got stride (%d,%d), padding (%d,%d))",
                 name, sh, sw, ph, pw);
        return NULL;
    }
    return x;
}

sn_tensor *sn_conv2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw) {
    return sn_conv2d_act(ctx, x, w, b, sh, sw, ph, pw, SN_ACT_NONE, 0.0f, 0.0f);
}

sn_tensor *sn_conv2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw,
                         sn_act act, float p0, float p1) {
    SN_NONNULL(x, w);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "conv2d: ctx is NULL"); return NULL; }
    if (!sn_act_check("conv2d", act, p0, p1)) return NULL;
    if (!conv_check_common("conv2d", x, w, b, w->ndim == 4 ? w->shape[0] : 0, sh, sw, ph, pw)) return NULL;
    if (w->shape[1] != x->shape[1])
        return sn_shape_fail("conv2d", x, w, "the weight has %lld input channels but the input has %lld",
                             (long long)w->shape[1], (long long)x->shape[1]);
    int64_t kh = w->shape[2], kw = w->shape[3];
    if (x->shape[2] + 2 * ph < kh || x->shape[3] + 2 * pw < kw)
        return sn_shape_fail("conv2d", x, w, "the padded input (%lld x %lld) is smaller than the kernel (%lld x %lld)",
                             (long long)(x->shape[2] + 2 * ph), (long long)(x->shape[3] + 2 * pw), (long long)kh,
                             (long long)kw);
    int64_t shape[4] = {x->shape[0], w->shape[0], (x->shape[2] + 2 * ph - kh) / sh + 1,
                        (x->shape[3] + 2 * pw - kw) / sw + 1};
    sn_tensor *s[3] = {x, w, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_CONV2D, b ? 3 : 2, s, 4, shape);
    if (t) {
        t->ip[0] = sh;
        t->ip[1] = sw;
        t->ip[2] = ph;
        t->ip[3] = pw;
        set_act(t, act, p0, p1);
    }
    return t;
}

sn_tensor *sn_conv_transpose2d(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph, int pw,
                               int oph, int opw) {
    return sn_conv_transpose2d_act(ctx, x, w, b, sh, sw, ph, pw, oph, opw, SN_ACT_NONE, 0.0f, 0.0f);
}

sn_tensor *sn_conv_transpose2d_act(sn_ctx *ctx, sn_tensor *x, sn_tensor *w, sn_tensor *b, int sh, int sw, int ph,
                                   int pw, int oph, int opw, sn_act act, float p0, float p1) {
    SN_NONNULL(x, w);
    if (!ctx) { sn_error(SN_ERR_INVALID_ARG, "conv_transpose2d: ctx is NULL"); return NULL; }
    if (!sn_act_check("conv_transpose2d", act, p0, p1)) return NULL;
    if (!conv_check_common("conv_transpose2d", x, w, b, w->ndim == 4 ? w->shape[1] : 0, sh, sw, ph, pw)) return NULL;
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
    int64_t shape[4] = {x->shape[0], w->shape[1], ho, wo};
    sn_tensor *s[3] = {x, w, b};
    sn_tensor *t = sn_new_op(ctx, SN_OP_CONVT2D, b ? 3 : 2, s, 4, shape);
    if (t) {
        int ip[6] = {sh, sw, ph, pw, oph, opw};
        for (int i = 0; i < 6; i++) t->ip[i] = ip[i];
        set_act(t, act, p0, p1);
    }
    return t;
}

static sn_tensor *bwd_node(sn_ctx *ctx, sn_op op, sn_tensor *dy, sn_tensor *other, const sn_tensor *like,
                           const sn_tensor *fwd) {
    sn_tensor *s[2] = {dy, other};
    sn_tensor *t = sn_new_op(ctx, op, 2, s, like->ndim, like->shape);
    if (t)
        for (int i = 0; i < 6; i++) t->ip[i] = fwd->ip[i];
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
     * (bwd_node copies ip[0..5] only: the *_BWD ops never see the act) */
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
