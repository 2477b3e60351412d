/* Graphs in topological order, persistent memory, host transfers. */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sn_tensor *sn_shape_fail(const char *op, const sn_tensor *a, const sn_tensor *b, const char *fmt, ...) {
    char msg[1024], sa[128] = "", sb[128] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (a) sn_shape_str(a, sa, sizeof sa);
    if (b) sn_shape_str(b, sb, sizeof sb);
    if (a && b)
        sn_error(SN_ERR_SHAPE, "%s: %s (inputs '%s' %s and '%s' %s)", op, msg, a->name, sa, b->name, sb);
    else if (a)
        sn_error(SN_ERR_SHAPE, "%s: %s (input '%s' %s)", op, msg, a->name, sa);
    else
        sn_error(SN_ERR_SHAPE, "%s: %s", op, msg);
    return NULL;
}

sn_graph *sn_graph_new(sn_ctx *ctx) {
    sn_graph *g = calloc(1, sizeof *g);
    if (g) g->ctx = ctx;
    return g;
}

void sn_graph_free(sn_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g);
}

static bool in_graph(const sn_graph *g, const sn_tensor *t) {
    return t->node >= 0 && t->node < g->n && g->nodes[t->node] == t;
}

static sn_status push(sn_graph *g, sn_tensor *t) {
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 256;
        sn_tensor **n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) return sn_error(SN_ERR_NOMEM, "graph: out of host memory");
        g->nodes = n;
        g->cap = cap;
    }
    t->node = g->n;
    g->nodes[g->n++] = t;
    return SN_OK;
}

/* Iterative DFS post-order, so deep graphs cannot overflow the stack. */
sn_status sn_graph_add(sn_graph *g, sn_tensor *t) {
    if (!g || !t) return sn_error(SN_ERR_INVALID_ARG, "sn_graph_add: %s is NULL (did an op fail? %s)",
                                  g ? "tensor" : "graph", sn_last_error());
    if (in_graph(g, t)) return SN_OK;
    int cap = 1024, sp = 0;
    struct frame { sn_tensor *t; int next; } *st = malloc((size_t)cap * sizeof *st);
    if (!st) return sn_error(SN_ERR_NOMEM, "graph: out of host memory");
    st[sp++] = (struct frame){t, 0};
    sn_status s = SN_OK;
    while (sp > 0 && s == SN_OK) {
        struct frame *f = &st[sp - 1];
        int ndeps = f->t->nsrc + (f->t->view_src ? 1 : 0);
        if (f->next < ndeps) {
            sn_tensor *d = f->next < f->t->nsrc ? f->t->src[f->next] : f->t->view_src;
            f->next++;
            if (!d) {
                s = sn_error(SN_ERR_INVALID_ARG, "graph: '%s' has a NULL input", f->t->name);
                break;
            }
            if (in_graph(g, d)) continue;
            bool on_stack = false;
            for (int i = 0; i < sp; i++) on_stack |= st[i].t == d;
            if (on_stack) {
                s = sn_error(SN_ERR_INTERNAL, "graph: cycle through '%s'", d->name);
                break;
            }
            if (sp == cap) {
                cap *= 2;
                struct frame *n = realloc(st, (size_t)cap * sizeof *st);
                if (!n) { s = sn_error(SN_ERR_NOMEM, "graph: out of host memory"); break; }
                st = n;
            }
            st[sp++] = (struct frame){d, 0};
        } else {
            s = push(g, f->t);
            sp--;
        }
    }
    free(st);
    return s;
}

/* ---- persistent memory ---- */

static bool needs_memory(const sn_tensor *t) {
    return (t->flags & SN_FLAG_PERSIST) && !t->view_src && !(t->flags & SN_FLAG_ALLOCATED);
}

sn_status sn_ctx_alloc_persistent(sn_ctx *ctx, sn_backend *b) {
    if (!ctx || !b) return sn_error(SN_ERR_INVALID_ARG, "sn_ctx_alloc_persistent: ctx or backend is NULL");
    size_t total = 0;
    for (int i = 0; i < ctx->n; i++)
        if (needs_memory(ctx->t[i])) total += (sn_alloc_bytes(ctx->t[i]) + 255) & ~(size_t)255;
    if (total > 0) {
        void *base = NULL;
        sn_status s = b->i->alloc(b, total, &base);
        if (s != SN_OK)
            return sn_error_prefix(s, "allocating %.1f MB for parameters and optimizer state on %s",
                                   total / 1048576.0, sn_backend_name(b));
        s = b->i->fill_zero(b, base, total);
        if (s != SN_OK) { b->i->release(b, base); return s; }
        sn_alloc_rec *r = realloc(ctx->allocs, (size_t)(ctx->nalloc + 1) * sizeof *r);
        if (!r) { b->i->release(b, base); return sn_error(SN_ERR_NOMEM, "out of host memory"); }
        ctx->allocs = r;
        ctx->allocs[ctx->nalloc++] = (sn_alloc_rec){b, base, total};
        size_t off = 0;
        for (int i = 0; i < ctx->n; i++) {
            sn_tensor *t = ctx->t[i];
            if (!needs_memory(t)) continue;
            t->data = (char *)base + off;
            t->backend = b;
            t->flags |= SN_FLAG_ALLOCATED;
            off += (sn_alloc_bytes(t) + 255) & ~(size_t)255;
            if (t->flags & SN_FLAG_CONST) {
                int64_t n = sn_nelem(t);
                float *v = malloc((size_t)n * sizeof *v);
                if (!v) return sn_error(SN_ERR_NOMEM, "out of host memory");
                for (int64_t k = 0; k < n; k++) v[k] = t->fp[0];
                s = b->i->upload(b, t->data, v, (size_t)n * sizeof *v);
                free(v);
                if (s != SN_OK) return s;
            }
        }
    }
    /* aliases of persistent memory (params inside a flat buffer, grads written into one) */
    for (int i = 0; i < ctx->n; i++) {
        sn_tensor *t = ctx->t[i];
        if (!t->view_src) continue;
        sn_tensor *r = sn_root(t);
        if ((r->flags & SN_FLAG_ALLOCATED) && r->data) {
            t->data = (char *)r->data + sn_root_offset(t);
            t->backend = r->backend;
        }
    }
    return SN_OK;
}

size_t sn_ctx_persistent_bytes(const sn_ctx *ctx) {
    size_t n = 0;
    for (int i = 0; ctx && i < ctx->nalloc; i++) n += ctx->allocs[i].bytes;
    return n;
}

void sn_ctx_release_persistent(sn_ctx *ctx) {
    for (int i = 0; i < ctx->nalloc; i++) ctx->allocs[i].b->i->release(ctx->allocs[i].b, ctx->allocs[i].base);
    free(ctx->allocs);
    ctx->allocs = NULL;
    ctx->nalloc = 0;
}

static sn_status check_resident(const sn_tensor *t, const char *fn) {
    if (!t) return sn_error(SN_ERR_INVALID_ARG, "%s: tensor is NULL", fn);
    if (!t->data || !t->backend)
        return sn_error(SN_ERR_INVALID_ARG,
                        "%s: tensor '%s' has no memory yet (persistent tensors need sn_ctx_alloc_persistent; "
                        "others are readable after sn_plan_new when flagged SN_FLAG_OUTPUT)", fn, t->name);
    return SN_OK;
}

/* a transfer of n elements between t and host: t resident, n its size, host given */
static sn_status check_transfer(const sn_tensor *t, const void *host, int64_t n, const char *fn, bool to_host) {
    sn_status s = check_resident(t, fn);
    if (s != SN_OK) return s;
    if (!host || n != sn_nelem(t))
        return sn_error(SN_ERR_INVALID_ARG, "%s: '%s' has %lld elements, %s %lld%s", fn, t->name,
                        (long long)sn_nelem(t), to_host ? "asked for" : "got", (long long)n,
                        host ? "" : to_host ? " (NULL buffer)" : " (NULL data)");
    return SN_OK;
}

sn_status sn_tensor_set(sn_tensor *t, const float *host, int64_t n) {
    sn_status s = check_transfer(t, host, n, "sn_tensor_set", false);
    if (s != SN_OK) return s;
    return t->backend->i->upload(t->backend, t->data, host, (size_t)n * sizeof(float));
}

sn_status sn_tensor_prefetch(sn_tensor *t, const float *host, int64_t n) {
    sn_status s = check_transfer(t, host, n, "sn_tensor_prefetch", false);
    if (s != SN_OK) return s;
    const sn_backend_i *i = t->backend->i;
    return (i->prefetch ? i->prefetch : i->upload)(t->backend, t->data, host, (size_t)n * sizeof(float));
}

sn_status sn_tensor_get(const sn_tensor *t, float *host, int64_t n) {
    sn_status s = check_transfer(t, host, n, "sn_tensor_get", true);
    if (s != SN_OK) return s;
    return t->backend->i->download(t->backend, host, t->data, (size_t)n * sizeof(float));
}

sn_status sn_tensor_zero(sn_tensor *t) {
    sn_status s = check_resident(t, "sn_tensor_zero");
    if (s != SN_OK) return s;
    return t->backend->i->fill_zero(t->backend, t->data, sn_nbytes(t));
}
