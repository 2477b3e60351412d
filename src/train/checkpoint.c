/* Checkpoints: model weights with PyTorch state_dict names, optimizer state
 * sliced per parameter, run state and the resolved config in the metadata.
 * Layout in include/sinter/train.h. */
#include "sinter/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/safetensors.h"

#ifndef SN_VERSION
#define SN_VERSION "0.1.0"
#endif

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_counter(const char *name) { return ends_with(name, ".num_batches_tracked"); }

/* Element offset of each trainable tensor inside the flat buffers (same
 * packing as sn_crn_new: state_dict order, 64-element aligned). */
static void flat_offsets(const sn_model *m, int64_t *off) {
    int64_t o = 0;
    for (int i = 0; i < m->n; i++) {
        off[i] = -1;
        if (!m->trainable[i]) continue;
        off[i] = o;
        o += sn_align64(sn_nelem(m->t[i]));
    }
}

static const char *optim_names(const sn_step *s, int k) {
    if (s->opt.kind == SN_OPTIM_SGD) return k == 0 ? "momentum_buffer" : NULL;
    return k == 0 ? "exp_avg" : "exp_avg_sq";
}

sn_status sn_ckpt_save(const sn_model *m, const sn_step *opt, const sn_ckpt_state *st, const sn_config *cfg,
                       const char *path) {
    if (!m || !path) return sn_error(SN_ERR_INVALID_ARG, "sn_ckpt_save: model and path are required");
    sn_status s = SN_OK;
    sn_st_writer *w = sn_st_writer_new();
    float *vals = NULL, *state = NULL;
    int64_t *counters = calloc((size_t)m->n + 1, sizeof *counters);
    int64_t off[SN_MAX_MODEL_TENSORS];
    flat_offsets(m, off);
    /* all weights in one host buffer (kept alive until sn_st_save: add_ref) */
    int64_t total = 0;
    for (int i = 0; i < m->n; i++) total += sn_nelem(m->t[i]);
    vals = malloc((size_t)(total ? total : 1) * sizeof *vals);
    if (!w || !vals || !counters) { s = sn_error(SN_ERR_NOMEM, "saving checkpoint '%s': out of host memory", path); goto done; }
    int64_t pos = 0;
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        sn_tensor *t = m->t[i];
        int64_t n = sn_nelem(t);
        s = sn_tensor_get(t, vals + pos, n);
        if (s != SN_OK) break;
        if (is_counter(t->name)) {
            counters[i] = (int64_t)llround(vals[pos]);
            s = sn_st_add_ref(w, t->name, "I64", 0, NULL, &counters[i]);
        } else {
            s = sn_st_add_ref(w, t->name, "F32", t->ndim, t->shape, vals + pos);
        }
        pos += n;
    }
    if (s == SN_OK && opt) {
        int nk = opt->opt.kind == SN_OPTIM_SGD ? 1 : 2;
        state = malloc((size_t)m->nflat * nk * sizeof *state);
        if (!state) { s = sn_error(SN_ERR_NOMEM, "saving checkpoint '%s': out of host memory", path); goto done; }
        for (int k = 0; k < nk && s == SN_OK; k++) {
            float *buf = state + (size_t)k * m->nflat;
            s = sn_tensor_get(opt->opt_state[k], buf, m->nflat);
            for (int i = 0; i < m->n && s == SN_OK; i++) {
                if (off[i] < 0) continue;
                char name[SN_NAME_LEN + 32];
                snprintf(name, sizeof name, "optim.%s.%s", optim_names(opt, k), m->t[i]->name);
                s = sn_st_add_ref(w, name, "F32", m->t[i]->ndim, m->t[i]->shape, buf + off[i]);
            }
        }
    }
    if (s != SN_OK) goto done;
    char num[64];
    sn_ckpt_state zero = {0};
    if (!st) { zero.best_valid_loss = INFINITY; st = &zero; }
    snprintf(num, sizeof num, "%d", SN_CKPT_FORMAT_VERSION);
    s = sn_st_set_meta(w, "sinter.format_version", num);
    snprintf(num, sizeof num, "%" PRId64, st->step);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.step", num);
    snprintf(num, sizeof num, "%" PRId64, st->epoch);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.epoch", num);
    snprintf(num, sizeof num, "%" PRId64, st->epoch_step);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.epoch_step", num);
    snprintf(num, sizeof num, "%" PRIu64, st->seed);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.seed", num);
    snprintf(num, sizeof num, "%.17g", st->best_valid_loss);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.best_valid_loss", num);
    snprintf(num, sizeof num, "%d", st->world_size > 1 ? st->world_size : 1);
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.world_size", num);
    snprintf(num, sizeof num, "%" PRId64, opt ? opt->t : 0);
    if (s == SN_OK && opt) s = sn_st_set_meta(w, "sinter.optim_step", num);
    if (s == SN_OK && opt) s = sn_st_set_meta(w, "sinter.optimizer", opt->opt.kind == SN_OPTIM_SGD ? "sgd"
                                                  : opt->opt.kind == SN_OPTIM_ADAMW ? "adamw" : "adam");
    if (s == SN_OK) s = sn_st_set_meta(w, "sinter.version", SN_VERSION);
    if (s == SN_OK) s = sn_st_set_meta(w, "format", "pt"); /* what safetensors.torch writes */
    if (s == SN_OK && cfg) {
        char *yaml = NULL;
        s = sn_config_to_yaml(cfg, &yaml);
        if (s == SN_OK) s = sn_st_set_meta(w, "sinter.config", yaml);
        free(yaml);
    }
    if (s == SN_OK) s = sn_st_save(w, path);
done:
    sn_st_writer_free(w);
    free(vals);
    free(state);
    free(counters);
    return s;
}

/* ---- loading ---- */

static int is_float_dtype(const char *d) {
    return !strcmp(d, "F32") || !strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "F64");
}

static void shape_str(int ndim, const int64_t *sh, char *buf, size_t n) {
    size_t p = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && p < n; d++) p += (size_t)snprintf(buf + p, n - p, d ? ",%" PRId64 : "%" PRId64, sh[d]);
    if (p < n) snprintf(buf + p, n - p, "]");
}

/* Appends "; " + item to a bounded report, counting what did not fit. */
typedef struct report { char text[1536]; int n, shown; } report;
static void report_add(report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_add(report *r, const char *fmt, ...) {
    r->n++;
    if (r->shown >= 6) return;
    size_t p = strlen(r->text);
    if (p + 8 >= sizeof r->text) return;
    if (p) p += (size_t)snprintf(r->text + p, sizeof r->text - p, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text + p, sizeof r->text - p, fmt, ap);
    va_end(ap);
    r->shown++;
}

/* Every model tensor present with its shape and a usable dtype, and no
 * unexpected model-looking names. */
static sn_status check_names(const sn_safetensors *f, const sn_model *m) {
    report r = {{0}};
    int missing = 0, extra = 0, shape = 0;
    for (int i = 0; i < m->n; i++) {
        const sn_tensor *t = m->t[i];
        const sn_st_tensor *e = sn_st_find(f, t->name);
        char a[96], b[96];
        if (!e) { report_add(&r, "missing '%s'", t->name); missing++; continue; }
        if (is_counter(t->name)) {
            if (sn_st_numel(e) != 1) {
                shape_str(e->ndim, e->shape, a, sizeof a);
                report_add(&r, "'%s' has shape %s, expected a scalar", t->name, a);
                shape++;
            }
            continue;
        }
        if (!is_float_dtype(e->dtype)) {
            report_add(&r, "'%s' has dtype %s, expected a float type (F32, F16, BF16, F64)", t->name, e->dtype);
            shape++;
            continue;
        }
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same) {
            shape_str(e->ndim, e->shape, a, sizeof a);
            shape_str(t->ndim, t->shape, b, sizeof b);
            report_add(&r, "'%s' has shape %s in the file, the model needs %s", t->name, a, b);
            shape++;
        }
    }
    for (int i = 0; i < sn_st_count(f); i++) {
        const sn_st_tensor *e = sn_st_get(f, i);
        if (!strncmp(e->name, "optim.", 6)) continue;
        if (!sn_model_find(m, e->name)) { report_add(&r, "unexpected '%s'", e->name); extra++; }
    }
    if (!r.n) return SN_OK;
    char desc[256];
    return sn_error(SN_ERR_FORMAT,
                    "checkpoint '%s' does not fit the model (%s): %d missing, %d unexpected, %d with another "
                    "shape/dtype: %s%s. Is it a checkpoint of another model? Give the matching model.* settings (a "
                    "plain state_dict has no config inside)",
                    sn_st_label(f), sn_model_describe(m, desc, sizeof desc), missing, extra, shape, r.text,
                    r.n > r.shown ? "; ..." : "");
}

static sn_status copy_weights(const sn_safetensors *f, sn_model *m) {
    sn_status s = check_names(f, m);
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        sn_tensor *t = m->t[i];
        int64_t n = sn_nelem(t);
        float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v) return sn_error(SN_ERR_NOMEM, "loading '%s': out of host memory", sn_st_label(f));
        s = sn_st_read_f32(f, t->name, v, (size_t)n);
        for (int64_t k = 0; k < n && s == SN_OK; k++)
            if (!isfinite(v[k]))
                s = sn_error(SN_ERR_NUMERIC, "checkpoint '%s': tensor '%s' holds NaN/Inf at element %" PRId64
                             "; the file is damaged or was saved after training diverged",
                             sn_st_label(f), t->name, k);
        if (s == SN_OK) s = sn_tensor_set(t, v, n);
        free(v);
    }
    return s;
}

/* Largest step count accepted from a file: far beyond any run, and exact in a double. */
#define META_MAX ((int64_t)1 << 53)

static sn_status bad_meta(const sn_safetensors *f, const char *key, const char *v, const char *want) {
    return sn_error(SN_ERR_FORMAT, "checkpoint '%s': metadata %s = '%.40s' is not valid (%s); the file is damaged "
                    "or was edited: use another checkpoint (e.g. best.safetensors) or start a new run",
                    sn_st_label(f), key, v, want);
}

/* A metadata integer: decimal digits only, within [lo, hi]; dflt when absent
 * and not required. */
static sn_status meta_int(const sn_safetensors *f, const char *key, int required, int64_t lo, int64_t hi,
                          int64_t dflt, int64_t *out) {
    const char *v = sn_st_meta(f, key);
    char want[96];
    snprintf(want, sizeof want, "an integer in %" PRId64 "..%" PRId64 " is expected", lo, hi);
    *out = dflt;
    if (!v) return required ? bad_meta(f, key, "(missing)", want) : SN_OK;
    const char *p = v;
    if (*p == '-') p++;
    if (!*p || strlen(p) > 19 || strspn(p, "0123456789") != strlen(p)) return bad_meta(f, key, v, want);
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno || x < lo || x > hi) return bad_meta(f, key, v, want);
    *out = (int64_t)x;
    return SN_OK;
}

/* Every run-state field, checked: a sinter checkpoint (it has sinter.format_version)
 * must carry them all; a plain state_dict gives zeros. */
static sn_status read_state(const sn_safetensors *f, sn_ckpt_state *st) {
    memset(st, 0, sizeof *st);
    st->best_valid_loss = INFINITY;
    int req = sn_st_meta(f, "sinter.format_version") != NULL;
    int64_t ver = 0, seed_dummy = 0;
    sn_status s = meta_int(f, "sinter.format_version", 0, 1, SN_CKPT_FORMAT_VERSION, 1, &ver);
    if (s == SN_OK) s = meta_int(f, "sinter.step", req, 0, META_MAX, 0, &st->step);
    if (s == SN_OK) s = meta_int(f, "sinter.epoch", req, 0, META_MAX, 0, &st->epoch);
    if (s == SN_OK) s = meta_int(f, "sinter.epoch_step", req, 0, META_MAX, 0, &st->epoch_step);
    if (s == SN_OK) s = meta_int(f, "sinter.optim_step", 0, 0, META_MAX, 0, &seed_dummy);
    if (s != SN_OK) return s;
    const char *v = sn_st_meta(f, "sinter.seed");
    if (v) {
        errno = 0;
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || strspn(v, "0123456789") != strlen(v))
            return bad_meta(f, "sinter.seed", v, "an unsigned integer is expected");
        st->seed = x;
    } else if (req) {
        return bad_meta(f, "sinter.seed", "(missing)", "an unsigned integer is expected");
    }
    v = sn_st_meta(f, "sinter.best_valid_loss");
    if (v) {
        char *end;
        double x = strtod(v, &end);
        if (!*v || *end || isnan(x) || x < 0)
            return bad_meta(f, "sinter.best_valid_loss", v, "a non-negative number or inf is expected");
        st->best_valid_loss = x;
    }
    v = sn_st_meta(f, "sinter.optimizer");
    if (v && strcmp(v, "adam") && strcmp(v, "adamw") && strcmp(v, "sgd"))
        return bad_meta(f, "sinter.optimizer", v, "adam, adamw or sgd is expected");
    int64_t ws = 1; /* older checkpoints: one process */
    s = meta_int(f, "sinter.world_size", 0, 1, 1 << 20, 1, &ws);
    st->world_size = (int)ws;
    return s;
}

static sn_status open_ckpt(const char *path, sn_safetensors **f) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "no checkpoint path given");
    sn_status s = sn_st_open(path, f);
    if (s != SN_OK) return sn_error_prefix(s, "cannot load checkpoint '%s'", path);
    const char *ver = sn_st_meta(*f, "sinter.format_version");
    if (ver && strspn(ver, "0123456789") == strlen(ver) && strlen(ver) < 10 && atoi(ver) > SN_CKPT_FORMAT_VERSION) {
        sn_st_close(*f);
        *f = NULL;
        return sn_error(SN_ERR_UNSUPPORTED, "checkpoint '%s' has format version %s; this sinter reads up to %d: "
                        "update sinter", path, ver, SN_CKPT_FORMAT_VERSION);
    }
    return SN_OK;
}

sn_status sn_ckpt_load(const char *path, const sn_config *cfg_in, sn_backend *b, sn_config *cfg_out,
                       sn_model **model_out, sn_ckpt_state *st_out) {
    if (!b || !model_out) return sn_error(SN_ERR_INVALID_ARG, "sn_ckpt_load: backend and model_out are required");
    *model_out = NULL;
    sn_safetensors *f = NULL;
    sn_status s = open_ckpt(path, &f);
    if (s != SN_OK) return s;
    sn_config cfg;
    const char *yaml = sn_st_meta(f, "sinter.config");
    if (yaml) {
        char label[1100];
        snprintf(label, sizeof label, "%s (sinter.config)", path);
        s = sn_config_from_yaml_string(yaml, label, &cfg);
        /* the file is damaged, not the user's config */
        if (s != SN_OK)
            s = sn_error_prefix(SN_ERR_FORMAT, "checkpoint '%s' is damaged: its config (sinter.config) does not load",
                                path);
    } else if (cfg_in) {
        cfg = *cfg_in;
    } else {
        s = sn_error(SN_ERR_CONFIG, "checkpoint '%s' has no sinter config inside (a plain PyTorch state_dict?): "
                     "give a config with the model.* settings", path);
    }
    sn_model *m = NULL;
    if (s == SN_OK) s = sn_model_from_config(&cfg, b, &m);
    if (s == SN_OK) s = copy_weights(f, m);
    sn_ckpt_state state;
    if (s == SN_OK) s = read_state(f, &state);
    if (s == SN_OK) {
        if (cfg_out) *cfg_out = cfg;
        if (st_out) *st_out = state;
        *model_out = m;
    } else {
        sn_model_free(m);
    }
    sn_st_close(f);
    return s;
}

sn_status sn_ckpt_load_weights(const char *path, sn_model *m) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_ckpt_load_weights: model is NULL");
    sn_safetensors *f = NULL;
    sn_status s = open_ckpt(path, &f);
    if (s == SN_OK) s = copy_weights(f, m);
    sn_st_close(f);
    return s;
}

sn_status sn_ckpt_load_optim(const char *path, sn_step *st) {
    if (!st) return sn_error(SN_ERR_INVALID_ARG, "sn_ckpt_load_optim: step is NULL");
    sn_safetensors *f = NULL;
    sn_status s = open_ckpt(path, &f);
    if (s != SN_OK) return s;
    const sn_model *m = st->m;
    int64_t off[SN_MAX_MODEL_TENSORS];
    flat_offsets(m, off);
    int nk = st->opt.kind == SN_OPTIM_SGD ? 1 : 2;
    const char *kind = sn_st_meta(f, "sinter.optimizer");
    const char *want = st->opt.kind == SN_OPTIM_SGD ? "sgd" : st->opt.kind == SN_OPTIM_ADAMW ? "adamw" : "adam";
    if (kind && strcmp(kind, want) && !(strcmp(want, "sgd") && strcmp(kind, "sgd")))
        s = sn_error(SN_ERR_CONFIG, "checkpoint '%s' holds %s optimizer state but train.optimizer is %s; resume "
                     "with the same optimizer", path, kind, want);
    float *buf = calloc((size_t)m->nflat, sizeof *buf);
    if (!buf && s == SN_OK) s = sn_error(SN_ERR_NOMEM, "loading optimizer state: out of host memory");
    for (int k = 0; k < nk && s == SN_OK; k++) {
        for (int i = 0; i < m->n && s == SN_OK; i++) {
            if (off[i] < 0) continue;
            char name[SN_NAME_LEN + 32];
            snprintf(name, sizeof name, "optim.%s.%s", optim_names(st, k), m->t[i]->name);
            const sn_st_tensor *e = sn_st_find(f, name);
            if (!e) {
                s = sn_error(SN_ERR_FORMAT, "checkpoint '%s' has no optimizer state '%s' (saved without "
                             "optimizer state?); it can be used for inference or fine-tuning, not --resume",
                             path, name);
                break;
            }
            const sn_tensor *t = m->t[i];
            int same = e->ndim == t->ndim && is_float_dtype(e->dtype);
            for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
            if (!same) {
                char a[96], b[96];
                shape_str(e->ndim, e->shape, a, sizeof a);
                shape_str(t->ndim, t->shape, b, sizeof b);
                s = sn_error(SN_ERR_FORMAT, "checkpoint '%s': optimizer state '%s' is %s %s, its parameter is F32 "
                             "%s; the file is damaged or from another model", path, name, e->dtype, a, b);
            } else
                s = sn_st_read_f32(f, name, buf + off[i], (size_t)sn_nelem(m->t[i]));
        }
        if (s == SN_OK) s = sn_tensor_set(st->opt_state[k], buf, m->nflat);
    }
    sn_ckpt_state rs;
    int64_t t = 0;
    if (s == SN_OK) s = read_state(f, &rs);
    if (s == SN_OK) s = meta_int(f, "sinter.optim_step", 0, 0, META_MAX, rs.step, &t);
    if (s == SN_OK) st->t = t;
    free(buf);
    sn_st_close(f);
    return s;
}

sn_status sn_ckpt_read_state(const char *path, sn_ckpt_state *st) {
    if (!st) return sn_error(SN_ERR_INVALID_ARG, "sn_ckpt_read_state: state is NULL");
    sn_safetensors *f = NULL;
    sn_status s = open_ckpt(path, &f);
    if (s == SN_OK) s = read_state(f, st);
    sn_st_close(f);
    return s;
}
