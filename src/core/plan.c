/* The scheduler and the memory planner.
 *
 * Placement: each node goes to the primary backend when it supports the op, else to
 * the fallback (CPU), and the fallback is logged. Every input that lives on another
 * backend gets a copy node; inputs the op writes in place are copied back after it.
 * Memory: transient tensors get offsets in one arena per backend from their live
 * ranges (greedy best fit in execution order, in place for elementwise ops whose
 * input dies there). The arenas are allocated once, so the peak is known before
 * the first run and checked against the device's free memory. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STEP_SEGMENT, STEP_COPY };

typedef struct step {
    int kind;
    sn_backend *b;          /* segment's backend */
    int first, count;       /* segment: range in p->exec */
    sn_tensor *dst, *src;   /* copy */
    size_t bytes;
    void *state;            /* backend's per-segment cache */
} step;

typedef struct live {
    sn_tensor *t;
    int begin, end;         /* execution positions (inclusive) */
    int data_end;           /* last read of the data (later readers need only the saved state) */
    size_t size, offset;
    int arena;              /* 0 primary, 1 fallback */
    bool placed;
    bool shared;            /* lives inside another tensor's block */
} live;

struct sn_plan {
    sn_graph *g;
    sn_backend *b[2];
    void *arena[2];
    size_t peak[2];
    bool dry;               /* planned with dry_run: nothing allocated, cannot run */
    sn_tensor **exec;       /* compute nodes in order */
    int nexec;
    step *steps;
    int nsteps;
    int ncopies, nfallback;
    char *report;
    void *staging;
    size_t staging_size;
    live *lv;
    int nlv;
};

static sn_backend *home(sn_tensor *t) { return sn_root(t)->backend; }

static bool is_compute(const sn_tensor *t) { return t->op != SN_OP_NONE && t->op != SN_OP_VIEW; }

static bool inplace_ok(const sn_tensor *t) {
    switch (t->op) {
    case SN_OP_RELU: case SN_OP_ELU: case SN_OP_SIGMOID: case SN_OP_TANH: case SN_OP_SCALE:
    case SN_OP_RELU_BWD: case SN_OP_ELU_BWD: case SN_OP_SIGMOID_BWD: case SN_OP_TANH_BWD:
    case SN_OP_SOFTPLUS_BWD:
        return true;
    default:
        return false;
    }
}

static sn_status grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return SN_OK;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *n = realloc(*arr, (size_t)c * elem);
    if (!n) return sn_error(SN_ERR_NOMEM, "planner: out of host memory");
    *arr = n;
    *cap = c;
    return SN_OK;
}

static void report_add(sn_plan *p, const char *line) {
    size_t old = p->report ? strlen(p->report) : 0, add = strlen(line);
    char *r = realloc(p->report, old + add + 2);
    if (!r) return;
    memcpy(r + old, line, add);
    r[old + add] = '\n';
    r[old + add + 1] = 0;
    p->report = r;
}

/* copy bytes: the data and any saved state for backward */
static size_t copy_bytes(const sn_tensor *t) { return t->view_src ? sn_nbytes(t) : sn_alloc_bytes(t); }

/* ---- placement and copies ---- */

typedef struct copy_key { sn_tensor *src; sn_backend *b; sn_tensor *copy; } copy_key;

typedef struct sched {
    copy_key *cache;
    int ncache, cap_cache, cap_exec, cap_steps;
} sched;

static sn_status add_step(sn_plan *p, sched *sc, step st) {
    sn_status s = grow((void **)&p->steps, &sc->cap_steps, p->nsteps + 1, sizeof *p->steps);
    if (s == SN_OK) p->steps[p->nsteps++] = st;
    return s;
}

static sn_status add_exec(sn_plan *p, sched *sc, sn_tensor *t) {
    sn_status s = grow((void **)&p->exec, &sc->cap_exec, p->nexec + 1, sizeof *p->exec);
    if (s == SN_OK) p->exec[p->nexec++] = t;
    return s;
}

static sn_backend *choose(sn_plan *p, sn_tensor *t) {
    if (t->view_src && home(t)) { /* output written into persistent memory: run where it lives */
        sn_backend *h = home(t);
        return h->i->supports_op(h, t) ? h : NULL;
    }
    if (p->b[0]->i->supports_op(p->b[0], t)) return p->b[0];
    if (p->b[1]->i->supports_op(p->b[1], t)) return p->b[1];
    return NULL;
}

static sn_status place_node(sn_plan *p, sched *sc, sn_tensor *t);

/* The op can't run where its output lives: compute it on the fallback into a
 * transient, then copy it home with a COPY node placed there. */
static sn_status reroute_aliased(sn_plan *p, sched *sc, sn_tensor *t) {
    sn_tensor *out = sn_new_op(p->g->ctx, SN_OP_COPY, 1, &t, t->ndim, t->shape);
    if (!out) return SN_ERR_NOMEM;
    out->view_src = t->view_src;
    out->view_offs = t->view_offs;
    out->flags = t->flags;
    t->view_src = NULL;
    t->view_offs = 0;
    t->flags &= ~SN_FLAG_GRAD;
    sn_status s = place_node(p, sc, t);
    return s != SN_OK ? s : place_node(p, sc, out);
}

static sn_status place_node(sn_plan *p, sched *sc, sn_tensor *t) {
    sn_ctx *ctx = p->g->ctx;
    char line[512], sh[64];
    sn_backend *b = choose(p, t);
    if (!b && t->view_src && home(t) && p->b[1]->i->supports_op(p->b[1], t)) return reroute_aliased(p, sc, t);
    if (!b)
        return sn_error(SN_ERR_UNSUPPORTED, "plan: no backend runs op '%s' (%s): neither %s nor %s has a kernel for it",
                        t->name, sn_op_name(t->op), sn_backend_name(p->b[0]), sn_backend_name(p->b[1]));
    if (b != p->b[0]) {
        snprintf(line, sizeof line, "%s '%s' %s: not supported by %s, runs on %s", sn_op_name(t->op), t->name,
                 sn_shape_str(t, sh, sizeof sh), sn_backend_name(p->b[0]), sn_backend_name(b));
        report_add(p, line);
        sn_log(SN_LOG_WARN, "fallback: %s", line);
        p->nfallback++;
    }
    t->backend = b;
    sn_status s = SN_OK;
    /* inputs that live on another backend get a copy (shared by later users) */
    for (int k = 0; k < t->nsrc && s == SN_OK; k++) {
        sn_tensor *src = t->src[k];
        sn_backend *hb = (src->op == SN_OP_NONE || src->view_src) ? home(src) : src->backend;
        if (hb == b) continue;
        sn_tensor *c = NULL;
        if (!sn_op_writes_src(t, k))
            for (int q = 0; q < sc->ncache; q++)
                if (sc->cache[q].src == src && sc->cache[q].b == b) c = sc->cache[q].copy;
        if (!c) {
            c = sn_new_op(ctx, SN_OP_COPY, 1, &src, src->ndim, src->shape);
            if (!c) return SN_ERR_NOMEM;
            c->extra = src->view_src ? 0 : src->extra;
            c->backend = b;
            snprintf(c->name, sizeof c->name, "%.60s@%s", src->name, sn_backend_name(b));
            s = grow((void **)&sc->cache, &sc->cap_cache, sc->ncache + 1, sizeof *sc->cache);
            if (s != SN_OK) break;
            sc->cache[sc->ncache++] = (copy_key){src, b, c};
            s = add_step(p, sc, (step){.kind = STEP_COPY, .dst = c, .src = src, .bytes = copy_bytes(src)});
            if (s == SN_OK) s = add_exec(p, sc, c); /* an execution slot, for liveness */
            p->ncopies++;
        }
        t->src[k] = c;
    }
    if (s != SN_OK) return s;
    s = add_exec(p, sc, t);
    if (s != SN_OK) return s;
    step *last = p->nsteps ? &p->steps[p->nsteps - 1] : NULL;
    if (last && last->kind == STEP_SEGMENT && last->b == b && last->first + last->count == p->nexec - 1)
        last->count++;
    else
        s = add_step(p, sc, (step){.kind = STEP_SEGMENT, .b = b, .first = p->nexec - 1, .count = 1});
    /* inputs modified in place (optimizer state, running stats) go back home */
    for (int k = 0; k < t->nsrc && s == SN_OK; k++) {
        sn_tensor *c = t->src[k];
        if (!sn_op_writes_src(t, k) || c->op != SN_OP_COPY || c->backend != b || c->nsrc != 1) continue;
        if (!(c->name[0] && strchr(c->name, '@'))) continue; /* only copies made here */
        s = add_step(p, sc, (step){.kind = STEP_COPY, .dst = c->src[0], .src = c, .bytes = sn_nbytes(c->src[0])});
        p->ncopies++;
    }
    return s;
}

static sn_status schedule(sn_plan *p, const sn_plan_opts *o) {
    sched sc = {0};
    sn_status s = SN_OK;
    int n = p->g->n; /* nodes appended while placing are placed by place_node itself */
    for (int i = 0; i < n && s == SN_OK; i++) {
        sn_tensor *t = p->g->nodes[i];
        if (t->op == SN_OP_NONE) {
            if (!home(t))
                s = sn_error(SN_ERR_INVALID_ARG,
                             "plan: input '%s' has no memory: mark it SN_FLAG_PERSIST and call "
                             "sn_ctx_alloc_persistent before sn_plan_new", t->name);
            continue;
        }
        if (t->op == SN_OP_VIEW) continue;
        s = place_node(p, &sc, t);
    }
    free(sc.cache);
    return s;
}

/* ---- memory planning ---- */

typedef struct block { size_t off, size; } block;

/* Readers that use only a node's saved state (after its data), not the data. */
static bool reads_extra_only(const sn_tensor *node, int k) {
    return node->op == SN_OP_BATCHNORM_BWD && k == 2 && node->ip[1] == 0; /* fused ELU reads y */
}

static bool transient(const sn_tensor *t) {
    return is_compute(t) && !t->view_src && !(t->flags & SN_FLAG_PERSIST);
}

/* SN_PLAN_DEBUG=1: the tensors live where the arena peaks (a developer aid). */
static void debug_peak(sn_plan *p) {
    int best = 0;
    size_t best_bytes = 0;
    for (int e = 0; e < p->nexec; e++) {
        size_t live_bytes = 0;
        for (int i = 0; i < p->nlv; i++)
            if (p->lv[i].arena == 0 && p->lv[i].begin <= e && p->lv[i].end >= e) live_bytes += p->lv[i].size;
        if (live_bytes > best_bytes) { best_bytes = live_bytes; best = e; }
    }
    fprintf(stderr, "planner: arena %.1f MB, live bytes peak %.1f MB at node %d (%s)\n", p->peak[0] / 1048576.0,
            best_bytes / 1048576.0, best, p->exec[best]->name);
    for (int i = 0; i < p->nlv; i++)
        if (p->lv[i].arena == 0 && p->lv[i].begin <= best && p->lv[i].end >= best && p->lv[i].size > (1 << 20)) {
            char sh[64];
            fprintf(stderr, "  %8.1f MB  %-28s %-24s %s live %d..%d\n", p->lv[i].size / 1048576.0, p->lv[i].t->name,
                    sn_op_name(p->lv[i].t->op), sn_shape_str(p->lv[i].t, sh, sizeof sh), p->lv[i].begin, p->lv[i].end);
        }
}

static sn_status plan_memory(sn_plan *p, bool no_inplace) {
    sn_ctx *ctx = p->g->ctx;
    int n = sn_ctx_count(ctx);
    int *idx = malloc((size_t)n * sizeof *idx); /* tensor id -> live index */
    if (!idx) return sn_error(SN_ERR_NOMEM, "planner: out of host memory");
    for (int i = 0; i < n; i++) idx[i] = -1;
    p->lv = calloc((size_t)p->nexec + 1, sizeof *p->lv);
    if (!p->lv) { free(idx); return sn_error(SN_ERR_NOMEM, "planner: out of host memory"); }
    for (int e = 0; e < p->nexec; e++) {
        sn_tensor *t = p->exec[e];
        t->node = e;
        if (!transient(t)) continue;
        idx[t->id] = p->nlv;
        p->lv[p->nlv++] = (live){t, e, e, e, (sn_alloc_bytes(t) + 255) & ~(size_t)255, 0, t->backend == p->b[0] ? 0 : 1};
    }
    /* last uses: through views, down to the root */
    for (int e = 0; e < p->nexec; e++) {
        sn_tensor *t = p->exec[e];
        for (int k = 0; k < t->nsrc; k++) {
            sn_tensor *r = sn_root(t->src[k]);
            if (idx[r->id] < 0) continue;
            live *l = &p->lv[idx[r->id]];
            if (l->end < e) l->end = e;
            if (!reads_extra_only(t, k) && l->data_end < e) l->data_end = e;
        }
    }
    for (int i = 0; i < p->nlv; i++)
        if (p->lv[i].t->flags & SN_FLAG_OUTPUT) p->lv[i].end = p->lv[i].data_end = p->nexec;
    /* outputs read by views that are outputs */
    for (int i = 0; i < n; i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (!(t->flags & SN_FLAG_OUTPUT) || !t->view_src) continue;
        sn_tensor *r = sn_root(t);
        if (idx[r->id] >= 0) p->lv[idx[r->id]].end = p->lv[idx[r->id]].data_end = p->nexec;
    }

    /* in place: a tensor joins the block of an input whose data dies where it is made
     * (the input's saved state, if any, stays intact after the data) */
    int *host = malloc((size_t)(p->nlv + 1) * sizeof *host);
    int *bb = malloc((size_t)(p->nlv + 1) * sizeof *bb), *be = malloc((size_t)(p->nlv + 1) * sizeof *be);
    size_t *bsize = malloc((size_t)(p->nlv + 1) * sizeof *bsize), *boff = calloc((size_t)p->nlv + 1, sizeof *boff);
    int *blocks = malloc((size_t)(p->nlv + 1) * sizeof *blocks), nblocks = 0;
    if (!host || !bb || !be || !bsize || !boff || !blocks) {
        free(host); free(bb); free(be); free(bsize); free(boff); free(blocks); free(idx);
        return sn_error(SN_ERR_NOMEM, "planner: out of host memory");
    }
    for (int i = 0; i < p->nlv; i++) {
        live *l = &p->lv[i];
        host[i] = i;
        bb[i] = l->begin;
        be[i] = l->end;
        bsize[i] = l->size;
        sn_tensor *t = l->t;
        if (no_inplace || !inplace_ok(t) || t->nsrc == 0) continue;
        sn_tensor *s0 = t->src[0];
        int j = idx[s0->id];
        if (j < 0 || s0->view_src || (s0->flags & SN_FLAG_OUTPUT)) continue;
        live *d = &p->lv[j];
        if (d->data_end != l->begin || d->arena != l->arena ||
            sn_align64(sn_nelem(t)) * (int64_t)sn_dtype_size(t->dtype) >
                sn_align64(sn_nelem(s0)) * (int64_t)sn_dtype_size(s0->dtype))
            continue;
        int h = host[j];
        host[i] = h;
        if (be[h] < l->end) be[h] = l->end;
        if (bsize[h] < l->size) bsize[h] = l->size;
        l->shared = true;
    }
    /* greedy by size: the biggest blocks first, each at the lowest offset free over its
     * whole live range (near-optimal for the long-lived activations of a training step) */
    for (int i = 0; i < p->nlv; i++)
        if (host[i] == i) blocks[nblocks++] = i;
    for (int i = 1; i < nblocks; i++) { /* insertion sort: size desc, then begin asc */
        int v = blocks[i], k = i - 1;
        while (k >= 0 && (bsize[blocks[k]] < bsize[v] || (bsize[blocks[k]] == bsize[v] && bb[blocks[k]] > bb[v]))) {
            blocks[k + 1] = blocks[k];
            k--;
        }
        blocks[k + 1] = v;
    }
    block *busy = malloc((size_t)(nblocks + 1) * sizeof *busy);
    for (int q = 0; q < nblocks && busy; q++) {
        int B = blocks[q], nbusy = 0;
        for (int r = 0; r < q; r++) {
            int P = blocks[r];
            if (p->lv[P].arena == p->lv[B].arena && bb[P] <= be[B] && bb[B] <= be[P])
                busy[nbusy++] = (block){boff[P], bsize[P]};
        }
        for (int i = 1; i < nbusy; i++) { /* by offset */
            block v = busy[i];
            int k = i - 1;
            while (k >= 0 && busy[k].off > v.off) { busy[k + 1] = busy[k]; k--; }
            busy[k + 1] = v;
        }
        size_t off = 0;
        for (int i = 0; i < nbusy; i++) {
            if (busy[i].off >= off + bsize[B]) break;
            if (busy[i].off + busy[i].size > off) off = busy[i].off + busy[i].size;
        }
        boff[B] = off;
        int a = p->lv[B].arena;
        if (off + bsize[B] > p->peak[a]) p->peak[a] = off + bsize[B];
    }
    for (int i = 0; i < p->nlv; i++) {
        p->lv[i].offset = boff[host[i]];
        p->lv[i].placed = true;
    }
    bool ok = busy != NULL;
    free(busy); free(host); free(bb); free(be); free(bsize); free(boff); free(blocks);
    if (getenv("SN_PLAN_DEBUG")) debug_peak(p);
    free(idx);
    return ok ? SN_OK : sn_error(SN_ERR_NOMEM, "planner: out of host memory");
}

static sn_status check_fits(sn_plan *p, const sn_plan_opts *o) {
    size_t avail = o->mem_free;
    sn_backend *b = p->b[0];
    if (!avail) {
        sn_device_info info;
        if (sn_backend_info(b, &info) == SN_OK) avail = info.mem_free;
    }
    if (avail && p->peak[0] > avail)
        return sn_error(SN_ERR_NOMEM,
                        "the graph needs %.1f MB of working memory on %s but only %.1f MB is free (a smaller "
                        "batch or shorter input needs less)",
                        p->peak[0] / 1048576.0, sn_backend_name(b), avail / 1048576.0);
    return SN_OK;
}

sn_status sn_plan_new(sn_graph *g, const sn_plan_opts *o, sn_plan **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_plan_new: out is NULL");
    *out = NULL;
    if (!g || !o || !o->backend)
        return sn_error(SN_ERR_INVALID_ARG, "sn_plan_new: graph, options and options.backend are required");
    sn_plan *p = calloc(1, sizeof *p);
    if (!p) return sn_error(SN_ERR_NOMEM, "sn_plan_new: out of host memory");
    p->g = g;
    p->b[0] = o->backend;
    p->b[1] = o->fallback ? o->fallback : o->backend;
    sn_status s = schedule(p, o);
    if (s == SN_OK) s = plan_memory(p, o->no_inplace);
    if (s == SN_OK && o->dry_run) {
        p->dry = true;
        *out = p;
        return SN_OK;
    }
    if (s == SN_OK) s = check_fits(p, o);
    for (int a = 0; a < 2 && s == SN_OK; a++) {
        if (a == 1 && p->b[1] == p->b[0]) break;
        if (!p->peak[a]) continue;
        s = p->b[a]->i->alloc(p->b[a], p->peak[a], &p->arena[a]);
        if (s != SN_OK)
            sn_error_prefix(s, "allocating the %.1f MB working arena on %s", p->peak[a] / 1048576.0,
                            sn_backend_name(p->b[a]));
    }
    if (s == SN_OK) {
        for (int i = 0; i < p->nlv; i++) {
            live *l = &p->lv[i];
            int a = (l->arena == 1 && p->b[1] == p->b[0]) ? 0 : l->arena;
            l->t->data = (char *)p->arena[a] + l->offset;
        }
        /* views and aliases point into their roots (roots resolved first by id order) */
        for (int i = 0; i < sn_ctx_count(g->ctx); i++) {
            sn_tensor *t = sn_ctx_tensor(g->ctx, i);
            if (!t->view_src) continue;
            sn_tensor *r = sn_root(t);
            if (r->data) {
                t->data = (char *)r->data + sn_root_offset(t);
                if (t->op == SN_OP_VIEW || t->op == SN_OP_NONE) t->backend = r->backend;
            }
        }
        for (int i = 0; i < p->nsteps && s == SN_OK; i++)
            if (p->steps[i].kind == STEP_COPY && p->steps[i].bytes > p->staging_size) p->staging_size = p->steps[i].bytes;
        if (p->staging_size && !(p->staging = malloc(p->staging_size)))
            s = sn_error(SN_ERR_NOMEM, "sn_plan_new: out of host memory for copies");
    }
    if (s != SN_OK) {
        sn_plan_free(p);
        return s;
    }
    *out = p;
    return SN_OK;
}

void sn_plan_free(sn_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->nsteps; i++)
        if (p->steps[i].kind == STEP_SEGMENT && p->steps[i].state)
            p->steps[i].b->i->segment_free(p->steps[i].b, p->steps[i].state);
    for (int a = 0; a < 2; a++)
        if (p->arena[a]) p->b[a]->i->release(p->b[a], p->arena[a]);
    free(p->exec);
    free(p->steps);
    free(p->report);
    free(p->staging);
    free(p->lv);
    free(p);
}

static sn_status do_copy(sn_plan *p, step *st) {
    sn_backend *sb = st->src->backend ? st->src->backend : home(st->src);
    sn_backend *db = st->dst->backend ? st->dst->backend : home(st->dst);
    if (sb->is_host && db->is_host) {
        memmove(st->dst->data, st->src->data, st->bytes);
        return SN_OK;
    }
    if (sb->is_host) return db->i->upload(db, st->dst->data, st->src->data, st->bytes);
    if (db->is_host) return sb->i->download(sb, st->dst->data, st->src->data, st->bytes);
    sn_status s = sb->i->download(sb, p->staging, st->src->data, st->bytes);
    return s != SN_OK ? s : db->i->upload(db, st->dst->data, p->staging, st->bytes);
}

sn_status sn_plan_run(sn_plan *p) {
    sn_status s = sn_plan_launch(p);
    return s != SN_OK ? s : sn_plan_wait(p);
}

sn_status sn_plan_wait(sn_plan *p) {
    if (!p) return sn_error(SN_ERR_INVALID_ARG, "sn_plan_wait: plan is NULL");
    return p->b[0]->i->synchronize(p->b[0]);
}

sn_status sn_plan_launch(sn_plan *p) {
    if (!p) return sn_error(SN_ERR_INVALID_ARG, "sn_plan_launch: plan is NULL");
    if (p->dry) return sn_error(SN_ERR_INVALID_ARG, "sn_plan_launch: the plan was made with dry_run (memory only)");
    for (int i = 0; i < p->nsteps; i++) {
        step *st = &p->steps[i];
        sn_status s;
        if (st->kind == STEP_SEGMENT)
            s = st->b->i->compute(st->b, p->exec + st->first, st->count, &st->state);
        else
            s = do_copy(p, st);
        if (s != SN_OK) return s;
    }
    return SN_OK;
}

size_t sn_plan_peak(const sn_plan *p) { return p ? p->peak[0] : 0; }
size_t sn_plan_fallback_peak(const sn_plan *p) { return p && p->b[1] != p->b[0] ? p->peak[1] : 0; }
int sn_plan_fallback_count(const sn_plan *p) { return p ? p->nfallback : 0; }
const char *sn_plan_fallback_report(const sn_plan *p) { return p && p->report ? p->report : ""; }
int sn_plan_copy_count(const sn_plan *p) { return p ? p->ncopies : 0; }

bool sn_plan_tensor_range(const sn_plan *p, const sn_tensor *t, size_t *begin, size_t *end, int *first, int *last) {
    for (int i = 0; p && i < p->nlv; i++)
        if (p->lv[i].t == t) {
            if (begin) *begin = p->lv[i].offset;
            if (end) *end = p->lv[i].offset + sn_alloc_bytes(t);
            if (first) *first = p->lv[i].begin;
            if (last) *last = p->lv[i].end;
            return true;
        }
    return false;
}
