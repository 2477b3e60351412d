/* The parity harness (sn_parity.h): device vs CPU, op by op. */
#include "sn_parity.h"

#include <math.h>
#include <stdlib.h>

sn_parity sn_par;

double sn_par_nerr(const float *a, const float *ref, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= e)) e = d;
    }
    return e / fmax(m, 1e-30);
}

sn_tensor *sn_par_leaf(sn_ctx *c, int nd, const int64_t *shape, float lo, float hi, const char *name) {
    sn_tensor *t = sn_new_tensor(c, SN_F32, nd, shape, 0, name);
    assert_non_null(t);
    sn_test_leaf(t, &sn_par.seed, lo, hi);
    t->flags |= SN_FLAG_NEEDS_GRAD;
    return t;
}

void sn_par_grads(sn_ctx *c, sn_tensor *node, sn_grad_fn fn) {
    assert_non_null(node);
    sn_tensor *dy = sn_new_tensor(c, SN_F32, node->ndim, node->shape, 0, "dy");
    sn_test_leaf(dy, &sn_par.seed, -1.0f, 1.0f);
    sn_tensor *ds[SN_MAX_SRC] = {0};
    SN_ASSERT_OK(fn(c, node, dy, ds));
}

bool sn_par_is_packed(sn_op op) {
    return op == SN_OP_BATCHNORM_BWD || op == SN_OP_LAYERNORM_BWD || op == SN_OP_LSTM_BWD || op == SN_OP_GRU_BWD ||
           op == SN_OP_ATTENTION_BWD || op == SN_OP_ADAM || op == SN_OP_SGD || op == SN_OP_ADAM_MT ||
           op == SN_OP_SGD_MT;
}

sn_tensor *sn_par_hyper_leaf(sn_ctx *c, float lr, float b1, float b2, int step) {
    sn_tensor *h = SN_PAR_LEAF(c, 0, 1, "hyper", SN_HYPER_N);
    float *v = h->data;
    v[SN_HYPER_LR] = lr;
    v[SN_HYPER_BC1] = 1.0f - powf(b1, (float)step);
    v[SN_HYPER_BC2] = 1.0f - powf(b2, (float)step);
    v[SN_HYPER_STEP] = (float)step;
    h->flags &= ~SN_FLAG_NEEDS_GRAD;
    return h;
}

void sn_par_bind(sn_backend *b, sn_ctx *c, sn_par_devmap *m) {
    m->n = sn_ctx_count(c);
    m->dev = calloc((size_t)m->n, sizeof *m->dev);
    m->host = calloc((size_t)m->n, sizeof *m->host);
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        m->host[i] = t->data;
        if (t->view_src) {
            t->data = (char *)t->view_src->data + t->view_offs;
            continue;
        }
        size_t bytes = sn_alloc_bytes(t);
        SN_ASSERT_OK(b->i->alloc(b, bytes, &m->dev[i]));
        /* zero: alignment gaps then match the CPU's calloc'd buffers */
        SN_ASSERT_OK(b->i->fill_zero(b, m->dev[i], bytes));
        if (t->op == SN_OP_NONE && m->host[i])
            SN_ASSERT_OK(b->i->upload(b, m->dev[i], m->host[i], sn_nbytes(t)));
        else if (t->op == SN_OP_NONE && (t->flags & SN_FLAG_CONST)) { /* e.g. autodiff's d_loss = 1 */
            int64_t ne = sn_nelem(t);
            float *v = malloc((size_t)ne * sizeof *v);
            for (int64_t k = 0; k < ne; k++) v[k] = t->fp[0];
            SN_ASSERT_OK(b->i->upload(b, m->dev[i], v, (size_t)ne * sizeof *v));
            SN_ASSERT_OK(b->i->synchronize(b));
            free(v);
        }
        t->data = m->dev[i];
        t->backend = b;
    }
}

float **sn_par_unbind(sn_backend *b, sn_ctx *c, sn_par_devmap *m) {
    float **res = calloc((size_t)m->n, sizeof *res);
    SN_ASSERT_OK(b->i->synchronize(b));
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (m->dev[i]) {
            size_t bytes = sn_alloc_bytes(t);
            res[i] = malloc(bytes);
            SN_ASSERT_OK(b->i->download(b, res[i], m->dev[i], bytes));
            b->i->release(b, m->dev[i]);
        }
        t->data = t->op == SN_OP_NONE ? m->host[i] : NULL;
        t->backend = NULL;
    }
    free(m->dev);
    free(m->host);
    return res;
}

const float *sn_par_res_of(float **res, sn_tensor *t) {
    sn_tensor *r = sn_root(t);
    return (const float *)((const char *)res[r->id] + sn_root_offset(t));
}

void sn_par_check(sn_ctx *c, double tol, double tol_extra, const char *label) {
    sn_backend *dev = sn_par.dev;
    const char *name = sn_par.name;
    sn_par_devmap m;
    sn_par_bind(dev, c, &m);
    int n = sn_ctx_count(c);
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE || t->op == SN_OP_VIEW) continue;
        if (sn_par.claims && !dev->i->supports_op(dev, t))
            fail_msg("%s: %s does not claim %s", label, name, sn_op_name(t->op));
        sn_status s = dev->i->compute(dev, &t, 1, NULL);
        if (s != SN_OK) fail_msg("%s: %s %s: %s", label, name, t->name, sn_last_error());
    }
    float **res = sn_par_unbind(dev, c, &m);
    SN_ASSERT_OK(sn_test_eval(c, sn_par.cpu));
    int checked = 0;
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(c, i);
        if (t->op == SN_OP_NONE) continue;
        if (!sn_par_is_packed(t->op)) {
            double e = sn_par_nerr(sn_par_res_of(res, t), t->data, sn_nelem(t));
            if (!(e <= tol))
                fail_msg("%s: %s (%s) %s vs CPU error %.3g > %.3g", label, t->name, sn_op_name(t->op), name, e, tol);
            if (t->extra && !t->view_src) {
                int64_t ne = (int64_t)(t->extra / sizeof(float));
                double ee = sn_par_nerr(sn_par_res_of(res, t) + sn_align64(sn_nelem(t)), sn_extra_ptr(t), ne);
                if (!(ee <= tol_extra))
                    fail_msg("%s: %s saved state differs from the CPU layout/values: %.3g > %.3g", label, t->name, ee,
                             tol_extra);
            }
            checked++;
        }
        for (int k = 0; k < t->nsrc; k++) {
            sn_tensor *s = t->src[k];
            if (!sn_op_writes_src(t, k) || s->op != SN_OP_NONE) continue;
            double e = sn_par_nerr(sn_par_res_of(res, s), s->data, sn_nelem(s));
            if (!(e <= tol)) fail_msg("%s: %s updated in place by %s: error %.3g > %.3g", label, s->name, t->name, e, tol);
            checked++;
        }
    }
    assert_true(checked > 0);
    for (int i = 0; i < n; i++) free(res[i]);
    free(res);
    sn_test_free_data(c);
}
