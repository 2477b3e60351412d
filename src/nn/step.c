/* The training step as one graph (forward, MSE, backward, clipping, optimizer),
 * built and planned once and replayed per batch; and the inference graph. */
#include "sinter/nn.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sn_optim_config_default(sn_optim_config *o) {
    memset(o, 0, sizeof *o);
    o->kind = SN_OPTIM_ADAM;
    o->lr = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
}

static sn_tensor *input(sn_model *m, int64_t B, int64_t T, const char *name) {
    return sn_new_4d(m->ctx, B, 1, T, m->cfg.freq_bins, SN_FLAG_PERSIST | SN_FLAG_INPUT, name);
}

static sn_status check_dims(int batch, int frames) {
    if (batch < 1 || frames < 1)
        return sn_error(SN_ERR_INVALID_ARG, "batch (%d) and frames (%d) must be positive", batch, frames);
    return SN_OK;
}

/* m->flat_grad and a gradient view per parameter, made once per model */
static sn_status flat_grads(sn_model *m) {
    if (m->flat_grad) return SN_OK;
    m->flat_grad = sn_new_1d(m->ctx, m->nflat, SN_FLAG_PERSIST, "grads");
    if (!m->flat_grad) return SN_ERR_NOMEM;
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = m->t[i];
        if (!m->trainable[i]) continue;
        sn_tensor *g = sn_new_tensor(m->ctx, SN_F32, t->ndim, t->shape, SN_FLAG_PERSIST, NULL);
        if (!g) return SN_ERR_NOMEM;
        sn_set_name(g, "grad.%s", t->name);
        sn_alias(g, m->flat_grad, (int64_t)(t->view_offs / sizeof(float)));
        t->grad = g;
    }
    return SN_OK;
}

/* the optimizer op for a (flat or single) parameter */
static sn_tensor *update(sn_step *s, sn_tensor *p, sn_tensor *g, sn_tensor *m0, sn_tensor *m1) {
    sn_ctx *c = s->m->ctx;
    if (s->opt.kind == SN_OPTIM_SGD)
        return sn_sgd(c, p, g, m0, s->hyper, s->sumsq, s->opt.momentum, 0.0f, s->opt.weight_decay, s->opt.grad_clip,
                      false);
    return sn_adam(c, p, g, m0, m1, s->hyper, s->sumsq, s->opt.beta1, s->opt.beta2, s->opt.eps, s->opt.weight_decay,
                   s->opt.grad_clip, s->opt.kind == SN_OPTIM_ADAMW);
}

/* Without clipping no update needs every gradient: a param whose gradient holds a
 * large buffer (the recurrent weights; BatchNorm's, packed with the input gradient)
 * is updated as soon as its backward completes it, so the buffer dies at once; the
 * small rest wait for a few multi-tensor launches at the end. */
#define SN_EARLY_UPDATE_ELEMS ((int64_t)1 << 18)

static bool update_early(const sn_tensor *grad) {
    while (grad->view_src) grad = grad->view_src;
    return sn_nelem(grad) >= SN_EARLY_UPDATE_ELEMS;
}

typedef struct {
    sn_step *s;
    int n, nlate;
    sn_tensor **p, **g;   /* the group being completed */
    sn_tensor **lp, **lg; /* deferred to the end */
} grad_groups;

/* multi-tensor updates of params p[0..n), SN_OPTIM_MT_MAX per op */
static sn_status update_multi(sn_step *s, sn_graph *g, int n, sn_tensor **p, sn_tensor **gr) {
    sn_ctx *c = s->m->ctx;
    for (int i = 0; i < n; i += SN_OPTIM_MT_MAX) {
        int k = n - i < SN_OPTIM_MT_MAX ? n - i : SN_OPTIM_MT_MAX;
        sn_tensor *u = s->opt.kind == SN_OPTIM_SGD
                           ? sn_sgd_multi(c, k, p + i, gr + i, s->opt_state[0], s->hyper, NULL, s->opt.momentum, 0.0f,
                                          s->opt.weight_decay, 0.0f, false)
                           : sn_adam_multi(c, k, p + i, gr + i, s->opt_state[0], s->opt_state[1], s->hyper, NULL,
                                           s->opt.beta1, s->opt.beta2, s->opt.eps, s->opt.weight_decay, 0.0f,
                                           s->opt.kind == SN_OPTIM_ADAMW);
        sn_status st = u ? sn_graph_add(g, u) : SN_ERR_INVALID_ARG;
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

/* sn_backward_hook: collect each node's completed params; at the group's end update the large ones */
static sn_status collect_grad(sn_graph *g, sn_tensor *p, sn_tensor *grad, void *user) {
    grad_groups *gg = user;
    if (p) {
        gg->p[gg->n] = p;
        gg->g[gg->n++] = grad;
        return SN_OK;
    }
    int ne = 0;
    for (int i = 0; i < gg->n; i++) {
        if (update_early(gg->g[i])) {
            gg->p[ne] = gg->p[i];
            gg->g[ne++] = gg->g[i];
        } else {
            gg->lp[gg->nlate] = gg->p[i];
            gg->lg[gg->nlate++] = gg->g[i];
        }
    }
    gg->n = 0;
    return update_multi(gg->s, g, ne, gg->p, gg->g);
}

static sn_status backward_with_updates(sn_step *s) {
    int n = s->m->n;
    grad_groups gg = {.s = s};
    sn_tensor **buf = calloc((size_t)4 * (n + 1), sizeof *buf);
    if (!buf) return sn_error(SN_ERR_NOMEM, "sn_step_new: out of host memory");
    gg.p = buf;
    gg.g = buf + (n + 1);
    gg.lp = buf + 2 * (n + 1);
    gg.lg = buf + 3 * (n + 1);
    sn_status st = sn_backward_hook(s->g, s->loss, collect_grad, &gg);
    if (st == SN_OK) st = update_multi(s, s->g, gg.nlate, gg.lp, gg.lg);
    free(buf);
    return st;
}

static sn_status step_build(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames,
                            const sn_optim_config *opt, bool dry, sn_step **out) {
    if (!m || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_step_new: model, backend and out are required");
    *out = NULL;
    sn_status st = check_dims(batch, frames);
    if (st != SN_OK) return st;
    sn_step *s = calloc(1, sizeof *s);
    if (!s) return sn_error(SN_ERR_NOMEM, "sn_step_new: out of host memory");
    s->m = m;
    s->batch = batch;
    s->frames = frames;
    if (opt) s->opt = *opt;
    else sn_optim_config_default(&s->opt);
    sn_ctx *c = m->ctx;
    s->x = input(m, batch, frames, "noisy_mag");
    s->y = input(m, batch, frames, "clean_mag");
    s->out = sn_model_forward(m, s->x, true);
    s->loss = m->loss == SN_LOSS_L1 ? sn_l1(c, s->out, s->y) : sn_mse(c, s->out, s->y);
    s->g = sn_graph_new(c);
    /* a described model that does not fit together is a configuration error */
    if (!s->loss || !s->g) { st = s->loss ? SN_ERR_NOMEM : m->graph ? SN_ERR_CONFIG : SN_ERR_SHAPE; goto fail; }
    s->loss->flags |= SN_FLAG_OUTPUT;
    s->out->flags |= SN_FLAG_OUTPUT;
    /* GPU memory is the scarce kind: recompute convolutions for the backward pass
     * there instead of keeping their outputs (a few percent of the step's time) */
    const char *rm = getenv("SN_REMAT"); /* 0/1 overrides, for tests and measurements */
    sn_ctx_set_remat(c, rm && *rm ? atoi(rm) : b->is_host ? 0 : 1);
    s->hyper = sn_new_1d(c, SN_HYPER_N, SN_FLAG_PERSIST | SN_FLAG_INPUT, "optim.hyper");
    bool sgd = s->opt.kind == SN_OPTIM_SGD;
    s->opt_state[0] = sn_new_1d(c, m->nflat, SN_FLAG_PERSIST, sgd ? "optim.momentum_buffer" : "optim.exp_avg");
    if (!sgd) s->opt_state[1] = sn_new_1d(c, m->nflat, SN_FLAG_PERSIST, "optim.exp_avg_sq");
    if (s->opt.grad_clip > 0 || s->opt.keep_grads) {
        /* one flat gradient buffer: the global norm needs every gradient before any update */
        st = flat_grads(m);
        if (st == SN_OK) st = sn_backward(s->g, s->loss);
        if (st != SN_OK) goto fail;
        if (s->opt.grad_clip > 0) s->sumsq = sn_sumsq(c, 1, &m->flat_grad);
        sn_tensor *upd = update(s, m->flat, m->flat_grad, s->opt_state[0], s->opt_state[1]);
        st = upd ? sn_graph_add(s->g, upd) : SN_ERR_INVALID_ARG;
    } else {
        st = backward_with_updates(s);
    }
    if (st != SN_OK) goto fail;
    st = sn_ctx_alloc_persistent(c, m->backend);
    if (st != SN_OK) goto fail;
    sn_plan_opts po = {.backend = b, .fallback = fallback ? fallback : b, .dry_run = dry};
    st = sn_plan_new(s->g, &po, &s->plan);
    if (st != SN_OK) goto fail;
    *out = s;
    return SN_OK;
fail:
    sn_step_free(s);
    return st;
}

sn_status sn_step_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames,
                      const sn_optim_config *opt, sn_step **out) {
    return step_build(m, b, fallback, batch, frames, opt, false, out);
}

sn_status sn_step_plan_memory(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames,
                              const sn_optim_config *opt, size_t *arena, size_t *persistent) {
    sn_step *s = NULL;
    sn_status st = step_build(m, b, fallback, batch, frames, opt, true, &s);
    if (st != SN_OK) return st;
    if (arena) *arena = sn_plan_peak(s->plan);
    if (persistent) *persistent = sn_ctx_persistent_bytes(m->ctx);
    sn_step_free(s);
    return SN_OK;
}

void sn_step_free(sn_step *s) {
    if (!s) return;
    sn_plan_free(s->plan);
    sn_graph_free(s->g);
    free(s);
}

size_t sn_step_peak(const sn_step *s) { return s ? sn_plan_peak(s->plan) : 0; }

/* BatchNorm's num_batches_tracked counts training forward passes (PyTorch state). */
static sn_status bump_batches_tracked(sn_model *m) {
    bool have = false;
    float v = 0;
    for (int i = 0; i < m->n; i++) {
        sn_tensor *t = m->t[i];
        size_t L = strlen(t->name);
        if (L < 20 || strcmp(t->name + L - 20, ".num_batches_tracked")) continue;
        sn_status st = SN_OK;
        if (!have) { /* every BatchNorm runs once per step: one read serves all */
            st = sn_tensor_get(t, &v, 1);
            v += 1.0f;
            have = true;
        }
        if (st == SN_OK) st = sn_tensor_set(t, &v, 1);
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

sn_status sn_step_prefetch(sn_step *s, const float *x, const float *y) {
    if (!s || !x || !y) return sn_error(SN_ERR_INVALID_ARG, "sn_step_prefetch: step, x and y are required");
    int64_t n = sn_nelem(s->x);
    sn_status st = sn_tensor_prefetch(s->x, x, n);
    if (st == SN_OK) st = sn_tensor_prefetch(s->y, y, n);
    s->have_batch = st == SN_OK;
    return st;
}

sn_status sn_step_launch(sn_step *s, float lr) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "sn_step_launch: step is NULL");
    if (!s->have_batch)
        return sn_error(SN_ERR_INVALID_ARG, "sn_step_launch: no batch; call sn_step_prefetch before each launch");
    if (s->launched) {
        sn_status st = sn_step_finish(s, NULL);
        if (st != SN_OK) return st;
    }
    s->t++;
    float h[SN_HYPER_N] = {0};
    h[SN_HYPER_LR] = lr;
    h[SN_HYPER_BC1] = (float)(1.0 - pow((double)s->opt.beta1, (double)s->t));
    h[SN_HYPER_BC2] = (float)(1.0 - pow((double)s->opt.beta2, (double)s->t));
    h[SN_HYPER_STEP] = (float)s->t;
    sn_status st = sn_tensor_set(s->hyper, h, SN_HYPER_N);
    if (st == SN_OK) st = sn_plan_launch(s->plan);
    s->have_batch = false;
    s->launched = st == SN_OK;
    return st;
}

sn_status sn_step_finish(sn_step *s, float *loss) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "sn_step_finish: step is NULL");
    if (!s->launched) return sn_error(SN_ERR_INVALID_ARG, "sn_step_finish: no step was launched");
    s->launched = false;
    sn_status st = sn_plan_wait(s->plan);
    if (st == SN_OK) st = bump_batches_tracked(s->m);
    if (st == SN_OK && loss) st = sn_tensor_get(s->loss, loss, 1);
    return st;
}

sn_status sn_step_run(sn_step *s, const float *x, const float *y, float lr, float *loss) {
    if (!s || !x || !y) return sn_error(SN_ERR_INVALID_ARG, "sn_step_run: step, x and y are required");
    if (s->launched) {
        sn_status st = sn_step_finish(s, NULL);
        if (st != SN_OK) return st;
    }
    sn_status st = sn_step_prefetch(s, x, y);
    if (st == SN_OK) st = sn_step_launch(s, lr);
    if (st == SN_OK) st = sn_step_finish(s, loss);
    return st;
}

sn_status sn_infer_new(sn_model *m, sn_backend *b, sn_backend *fallback, int batch, int frames, sn_infer **out) {
    if (!m || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_infer_new: model, backend and out are required");
    *out = NULL;
    sn_status st = check_dims(batch, frames);
    if (st != SN_OK) return st;
    sn_infer *f = calloc(1, sizeof *f);
    if (!f) return sn_error(SN_ERR_NOMEM, "sn_infer_new: out of host memory");
    f->m = m;
    f->batch = batch;
    f->frames = frames;
    f->x = input(m, batch, frames, "infer_in");
    f->out = sn_model_forward(m, f->x, false);
    f->g = sn_graph_new(m->ctx);
    if (!f->out || !f->g) { st = f->out ? SN_ERR_NOMEM : m->graph ? SN_ERR_CONFIG : SN_ERR_SHAPE; goto fail; }
    f->out->flags |= SN_FLAG_OUTPUT;
    st = sn_graph_add(f->g, f->out);
    if (st == SN_OK) st = sn_ctx_alloc_persistent(m->ctx, m->backend);
    sn_plan_opts po = {.backend = b, .fallback = fallback ? fallback : b};
    if (st == SN_OK) st = sn_plan_new(f->g, &po, &f->plan);
    if (st != SN_OK) goto fail;
    *out = f;
    return SN_OK;
fail:
    sn_infer_free(f);
    return st;
}

void sn_infer_free(sn_infer *f) {
    if (!f) return;
    sn_plan_free(f->plan);
    sn_graph_free(f->g);
    free(f);
}

sn_status sn_infer_run(sn_infer *f, const float *x, float *y) {
    if (!f || !x || !y) return sn_error(SN_ERR_INVALID_ARG, "sn_infer_run: x and y are required");
    int64_t n = sn_nelem(f->x);
    sn_status st = sn_tensor_set(f->x, x, n);
    if (st == SN_OK) st = sn_plan_run(f->plan);
    if (st == SN_OK) st = sn_tensor_get(f->out, y, sn_nelem(f->out));
    return st;
}
