/* The layer list of a described model (model.layers in the config, or a
 * model.file) from YAML into sn_model_desc, and back. Arguments carry their
 * PyTorch names; one table row per (argument, layer types) pair, so parsing,
 * suggestions and the YAML dump cannot drift apart.
 *
 *   layers:
 *     - {type: zeropad2d, padding: [0, 0, 1, 0]}
 *     - {type: conv2d, name: enc.0, in_channels: 1, out_channels: 16, kernel_size: [2, 3], stride: [1, 2]}
 *     - {type: concat, from: [-1, enc.3], dim: 1}
 */
#define _POSIX_C_SOURCE 200809L
#include "io/model_yaml.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    A_INT,      /* int */
    A_PAIR,     /* int[2]: one int (both) or [h, w] */
    A_BOOL,     /* bool */
    A_FLOAT,    /* float */
    A_LIST,     /* int64 list into list/nlist */
    A_PAD4,     /* zeropad2d: one int (all four) or [left, right, top, bottom] into list */
    A_I64,      /* int64 */
    A_END,      /* int64, null = SN_SLICE_END */
    A_NORMSHAPE,/* int or [int] */
    A_FIXED,    /* accepted only with the value PyTorch's default has (fixed says which) */
    A_IGNORED,  /* accepted, no effect (inplace) */
} akind;

#define T(x) (1u << SN_LAYER_##x)
#define CONVS (T(CONV2D) | T(CONV_TRANSPOSE2D))
#define RNNS (T(LSTM) | T(GRU))

typedef struct argdef {
    const char *name;
    akind kind;
    size_t off;
    unsigned types;
    const char *fixed;   /* A_FIXED: the only value accepted ("true", "false", "0", "1", "zeros", "relu") */
    unsigned required;   /* types for which it has no default */
} argdef;

#define OFF(f) offsetof(sn_layer_desc, f)

static const argdef k_args[] = {
    {"in_channels", A_INT, OFF(in), CONVS, NULL, CONVS},
    {"out_channels", A_INT, OFF(out), CONVS, NULL, CONVS},
    {"kernel_size", A_PAIR, OFF(kernel), CONVS, NULL, CONVS},
    {"stride", A_PAIR, OFF(stride), CONVS, NULL, 0},
    {"padding", A_PAIR, OFF(padding), CONVS, NULL, 0},
    {"output_padding", A_PAIR, OFF(output_padding), T(CONV_TRANSPOSE2D), NULL, 0},
    {"padding", A_PAD4, OFF(list), T(ZEROPAD2D), NULL, T(ZEROPAD2D)},
    {"bias", A_BOOL, OFF(bias), CONVS | T(LINEAR), NULL, 0},
    {"bias", A_FIXED, 0, RNNS | T(TRANSFORMER), "true", 0},
    {"dilation", A_FIXED, 0, CONVS, "1", 0},
    {"groups", A_FIXED, 0, CONVS, "1", 0},
    {"padding_mode", A_FIXED, 0, CONVS, "zeros", 0},
    {"num_features", A_INT, OFF(in), T(BATCHNORM2D), NULL, T(BATCHNORM2D)},
    {"eps", A_FLOAT, OFF(eps), T(BATCHNORM2D) | T(LAYERNORM), NULL, 0},
    {"momentum", A_FLOAT, OFF(momentum), T(BATCHNORM2D), NULL, 0},
    {"affine", A_FIXED, 0, T(BATCHNORM2D), "true", 0},
    {"track_running_stats", A_FIXED, 0, T(BATCHNORM2D), "true", 0},
    {"in_features", A_INT, OFF(in), T(LINEAR), NULL, T(LINEAR)},
    {"out_features", A_INT, OFF(out), T(LINEAR), NULL, T(LINEAR)},
    {"input_size", A_INT, OFF(in), RNNS, NULL, RNNS},
    {"hidden_size", A_INT, OFF(out), RNNS, NULL, RNNS},
    {"num_layers", A_INT, OFF(num_layers), RNNS, NULL, 0},
    {"batch_first", A_FIXED, 0, RNNS | T(TRANSFORMER), "true", 0},
    {"bidirectional", A_FIXED, 0, RNNS, "false", 0},
    {"dropout", A_FIXED, 0, RNNS | T(TRANSFORMER), "0", 0},
    {"d_model", A_INT, OFF(in), T(TRANSFORMER), NULL, T(TRANSFORMER)},
    {"nhead", A_INT, OFF(nhead), T(TRANSFORMER), NULL, T(TRANSFORMER)},
    {"dim_feedforward", A_INT, OFF(dim_feedforward), T(TRANSFORMER), NULL, 0},
    {"layer_norm_eps", A_FLOAT, OFF(eps), T(TRANSFORMER), NULL, 0},
    {"norm_first", A_BOOL, OFF(norm_first), T(TRANSFORMER), NULL, 0},
    {"causal", A_BOOL, OFF(causal), T(TRANSFORMER), NULL, 0},
    {"activation", A_FIXED, 0, T(TRANSFORMER), "relu", 0},
    {"normalized_shape", A_NORMSHAPE, OFF(in), T(LAYERNORM), NULL, T(LAYERNORM)},
    {"elementwise_affine", A_FIXED, 0, T(LAYERNORM), "true", 0},
    {"alpha", A_FLOAT, OFF(alpha), T(ELU), NULL, 0},
    {"beta", A_FLOAT, OFF(beta), T(SOFTPLUS), NULL, 0},
    {"threshold", A_FLOAT, OFF(threshold), T(SOFTPLUS), NULL, 0},
    {"inplace", A_IGNORED, 0, T(RELU) | T(ELU), NULL, 0},
    {"shape", A_LIST, OFF(list), T(RESHAPE), NULL, T(RESHAPE)},
    {"start_dim", A_INT, OFF(dim), T(FLATTEN), NULL, 0},
    {"end_dim", A_INT, OFF(end_dim), T(FLATTEN), NULL, 0},
    {"dim", A_INT, OFF(dim), T(UNFLATTEN) | T(CONCAT) | T(SLICE), NULL, T(UNFLATTEN) | T(SLICE)},
    {"unflattened_size", A_LIST, OFF(list), T(UNFLATTEN), NULL, T(UNFLATTEN)},
    {"dims", A_LIST, OFF(list), T(PERMUTE), NULL, T(PERMUTE)},
    {"start", A_I64, OFF(start), T(SLICE), NULL, 0},
    {"end", A_END, OFF(end), T(SLICE), NULL, 0},
};
#define NARGS ((int)(sizeof k_args / sizeof k_args[0]))

static const argdef *find_arg(sn_layer_type t, const char *name) {
    for (int i = 0; i < NARGS; i++)
        if ((k_args[i].types & (1u << t)) && !strcmp(k_args[i].name, name)) return &k_args[i];
    return NULL;
}

/* ---- parsing ---- */

typedef struct ctx {
    const char *label;      /* file name for messages */
    yaml_document_t *doc;
    sn_model_desc *d;
} ctx;

static sn_status perr(const ctx *C, const yaml_node_t *n, int i, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static sn_status perr(const ctx *C, const yaml_node_t *n, int i, const char *fmt, ...) {
    char msg[700], where[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(where, sizeof where, "%s:%zu", C->label, n ? n->start_mark.line + 1 : 0);
    if (i < 0) return sn_error(SN_ERR_CONFIG, "%s: %s", where, msg);
    const sn_layer_desc *l = &C->d->layer[i];
    char b[16];
    const char *tn = sn_layer_type_name(l->type);
    return sn_error(SN_ERR_CONFIG, "%s: layer %d '%s'%s%s%s: %s", where, i, sn_layer_label(C->d, i, b, sizeof b),
                    tn ? " (" : "", tn ? tn : "", tn ? ")" : "", msg);
}

static const char *kind_of(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static const char *scalar(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || memchr(n->data.scalar.value, 0, n->data.scalar.length)) return NULL;
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n) {
    const char *s = scalar(n);
    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "None"));
}

static bool to_i64(const char *s, int64_t *v) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    errno = 0;
    char *e;
    long long x = strtoll(s, &e, 10);
    if (errno || *e) return false;
    *v = x;
    return true;
}

static bool to_f64(const char *s, double *v) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return false;
    char *e;
    double x = strtod(s, &e);
    if (*e || !isfinite(x)) return false;
    *v = x;
    return true;
}

static bool to_bool(const char *s, bool *v) {
    if (!s) return false;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes")) { *v = true; return true; }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no")) { *v = false; return true; }
    return false;
}

static int seq_len(const yaml_node_t *n) { return (int)(n->data.sequence.items.top - n->data.sequence.items.start); }

static yaml_node_t *seq_at(const ctx *C, const yaml_node_t *n, int k) {
    return yaml_document_get_node(C->doc, n->data.sequence.items.start[k]);
}

/* integers of a scalar or a list of scalars; want 0 = any count up to max */
static sn_status ints(const ctx *C, int i, const char *arg, const yaml_node_t *v, int64_t *out, int *count, int max,
                      bool int32) {
    int n = 1;
    if (v->type == YAML_SEQUENCE_NODE) {
        n = seq_len(v);
        if (n < 1 || n > max)
            return perr(C, v, i, "%s: expected %s%d integers, got %d", arg, max > 1 ? "1 to " : "", max, n);
    }
    for (int k = 0; k < n; k++) {
        const yaml_node_t *e = v->type == YAML_SEQUENCE_NODE ? seq_at(C, v, k) : v;
        const char *s = e ? scalar(e) : NULL;
        int64_t x;
        if (!s || !to_i64(s, &x))
            return perr(C, v, i, "%s: expected an integer%s, got %s%s%s%s", arg, max > 1 ? " or a list of them" : "",
                        s ? "'" : "", s ? s : e ? kind_of(e) : "nothing", s ? "'" : "", "");
        if (int32 && (x < -(1 << 30) || x > (1 << 30)))
            return perr(C, v, i, "%s = %lld is out of range", arg, (long long)x);
        out[k] = x;
    }
    *count = n;
    return SN_OK;
}

static sn_status set_arg(const ctx *C, int i, const argdef *a, const yaml_node_t *v) {
    sn_layer_desc *l = &C->d->layer[i];
    char *base = (char *)l + a->off;
    int64_t x[SN_LAYER_MAX_LIST] = {0};
    int n = 0;
    sn_status st;
    switch (a->kind) {
    case A_INT:
        if ((st = ints(C, i, a->name, v, x, &n, 1, true))) return st;
        *(int *)(void *)base = (int)x[0];
        return SN_OK;
    case A_NORMSHAPE:
        if ((st = ints(C, i, a->name, v, x, &n, 1, true))) return st;
        *(int *)(void *)base = (int)x[0];
        return SN_OK;
    case A_PAIR:
        if ((st = ints(C, i, a->name, v, x, &n, 2, true))) return st;
        ((int *)(void *)base)[0] = (int)x[0];
        ((int *)(void *)base)[1] = (int)x[n - 1];
        return SN_OK;
    case A_I64:
    case A_END:
        if (a->kind == A_END && is_null(v)) {
            *(int64_t *)(void *)base = SN_SLICE_END;
            return SN_OK;
        }
        if ((st = ints(C, i, a->name, v, x, &n, 1, true))) return st;
        *(int64_t *)(void *)base = x[0];
        return SN_OK;
    case A_LIST:
        if (v->type != YAML_SEQUENCE_NODE) return perr(C, v, i, "%s: expected a list of integers, got %s", a->name, kind_of(v));
        if ((st = ints(C, i, a->name, v, x, &n, SN_LAYER_MAX_LIST, true))) return st;
        memcpy(l->list, x, sizeof x);
        l->nlist = n;
        return SN_OK;
    case A_PAD4:
        if ((st = ints(C, i, a->name, v, x, &n, 4, true))) return st;
        if (n != 1 && n != 4)
            return perr(C, v, i, "%s: expected one integer or 4 (left, right, top, bottom), got %d", a->name, n);
        for (int k = 0; k < 4; k++) l->list[k] = x[n == 1 ? 0 : k];
        l->nlist = 4;
        return SN_OK;
    case A_BOOL: {
        bool b;
        if (!to_bool(scalar(v), &b)) return perr(C, v, i, "%s: expected true or false, got %s", a->name, kind_of(v));
        *(bool *)(void *)base = b;
        return SN_OK;
    }
    case A_FLOAT: {
        double f;
        if (!to_f64(scalar(v), &f) || fabs(f) > 1e30)
            return perr(C, v, i, "%s: expected a number, got %s%s%s", a->name, scalar(v) ? "'" : "",
                        scalar(v) ? scalar(v) : kind_of(v), scalar(v) ? "'" : "");
        *(float *)(void *)base = (float)f;
        return SN_OK;
    }
    case A_FIXED: {
        const char *s = scalar(v);
        bool ok = false, b;
        double f;
        if (s && !strcmp(a->fixed, "true")) ok = to_bool(s, &b) && b;
        else if (s && !strcmp(a->fixed, "false")) ok = to_bool(s, &b) && !b;
        else if (s && (!strcmp(a->fixed, "0") || !strcmp(a->fixed, "1"))) ok = to_f64(s, &f) && f == atof(a->fixed);
        else if (s) ok = !strcmp(s, a->fixed);
        if (!ok)
            return perr(C, v, i, "%s = %s is not supported; sinter implements %s = %s only", a->name, s ? s : kind_of(v),
                        a->name, a->fixed);
        return SN_OK;
    }
    case A_IGNORED: {
        bool b;
        if (!to_bool(scalar(v), &b)) return perr(C, v, i, "%s: expected true or false, got %s", a->name, kind_of(v));
        return SN_OK;
    }
    }
    return SN_OK;
}

static sn_status unknown_arg(const ctx *C, int i, const yaml_node_t *kn, const char *key) {
    sn_layer_type t = C->d->layer[i].type;
    const char *names[NARGS + 3];
    int n = 0;
    names[n++] = "type", names[n++] = "name", names[n++] = "from";
    for (int k = 0; k < NARGS; k++)
        if (k_args[k].types & (1u << t)) names[n++] = k_args[k].name;
    const char *s = sn_suggest_word(key, names, n);
    if (s) return perr(C, kn, i, "unknown argument '%s'; did you mean '%s'?", key, s);
    for (int k = 0; k < NARGS; k++)
        if (!strcmp(k_args[k].name, key)) {
            for (int tt = 0; tt < SN_LAYER_TYPE_COUNT; tt++)
                if (k_args[k].types & (1u << tt))
                    return perr(C, kn, i, "'%s' is not an argument of %s (it is one of %s)", key, sn_layer_type_name(t),
                                sn_layer_type_name((sn_layer_type)tt));
        }
    char list[600] = "";
    for (int k = 3; k < n; k++) {
        size_t u = strlen(list);
        snprintf(list + u, sizeof list - u, "%s%s", k > 3 ? ", " : "", names[k]);
    }
    return perr(C, kn, i, "unknown argument '%s'; %s takes %s", key, sn_layer_type_name(t), n > 3 ? list : "no arguments");
}

static sn_status parse_from(const ctx *C, int i, const yaml_node_t *v) {
    sn_layer_desc *l = &C->d->layer[i];
    int n = v->type == YAML_SEQUENCE_NODE ? seq_len(v) : 1;
    if (v->type == YAML_MAPPING_NODE) return perr(C, v, i, "from: expected a layer name, an index or a list of them");
    if (n < 1 || n > SN_LAYER_MAX_FROM)
        return perr(C, v, i, "from: lists %d inputs; give 1 to %d", n, SN_LAYER_MAX_FROM);
    for (int k = 0; k < n; k++) {
        const yaml_node_t *e = v->type == YAML_SEQUENCE_NODE ? seq_at(C, v, k) : v;
        const char *s = e ? scalar(e) : NULL;
        if (!s) return perr(C, v, i, "from: expected a layer name or index, got %s", e ? kind_of(e) : "nothing");
        int64_t x;
        int ref;
        if (!strcmp(s, "input")) {
            ref = SN_FROM_INPUT;
        } else if (to_i64(s, &x)) {
            ref = x < 0 ? (int)(i + (x < -1000000 ? -1000000 : x)) : (x > 1000000 ? 1000000 : (int)x);
            if ((ref < -1 || ref >= i) && i == 0)
                return perr(C, v, i, "from: %s refers to layer %d; the first layer can only read 'input'", s, ref);
            if (ref < -1 || ref >= i)
                return perr(C, v, i, "from: %s refers to layer %d; only earlier layers (0..%d) or 'input' can be inputs",
                            s, ref, i - 1);
        } else {
            ref = sn_model_desc_find(C->d, s);
            if (ref < 0 || ref >= i) {
                if (ref >= i) return perr(C, v, i, "from: layer '%s' (layer %d) does not come before this one", s, ref);
                const char *names[SN_DESC_MAX_LAYERS + 1];
                char idx[SN_DESC_MAX_LAYERS][12];
                int nn = 0;
                names[nn++] = "input";
                for (int j = 0; j < i; j++) names[nn++] = sn_layer_label(C->d, j, idx[j], sizeof idx[j]);
                const char *sug = sn_suggest_word(s, names, nn);
                if (sug) return perr(C, v, i, "from: no earlier layer is named '%s'; did you mean '%s'?", s, sug);
                return perr(C, v, i, "from: no earlier layer is named '%s' (name a layer above, 'input', or -1 for the "
                            "previous one)", s);
            }
        }
        l->from[k] = ref;
    }
    l->nfrom = n;
    /* "from: -1" alone is the default: keep the description canonical */
    if (n == 1 && l->from[0] == i - 1) l->nfrom = 0;
    return SN_OK;
}

static sn_status parse_layer(const ctx *C, int i, const yaml_node_t *m) {
    sn_model_desc *d = C->d;
    if (m->type != YAML_MAPPING_NODE)
        return perr(C, m, -1, "layer %d: expected a mapping ({type: conv2d, ...}), got %s", i, kind_of(m));
    const yaml_node_t *tv = NULL, *nv = NULL, *fv = NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(C->doc, p->key), *v = yaml_document_get_node(C->doc, p->value);
        const char *ks = k ? scalar(k) : NULL;
        if (!ks || !v) return perr(C, m, -1, "layer %d: keys must be plain names", i);
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(C->doc, q->key);
            if (qk && scalar(qk) && !strcmp(scalar(qk), ks))
                return perr(C, k, -1, "layer %d: argument '%s' appears twice", i, ks);
        }
        if (!strcmp(ks, "type")) tv = v;
        else if (!strcmp(ks, "name")) nv = v;
        else if (!strcmp(ks, "from")) fv = v;
    }
    if (!tv) return perr(C, m, -1, "layer %d: no type (e.g. type: conv2d)", i);
    const char *ts = scalar(tv);
    int t = sn_layer_type_from_name(ts);
    if (t < 0) {
        const char *type_names[SN_LAYER_TYPE_COUNT];
        int n = 0;
        for (int k = 0; k < SN_LAYER_TYPE_COUNT; k++) type_names[n++] = sn_layer_type_name((sn_layer_type)k);
        const char *s = ts ? sn_suggest_word(ts, type_names, n) : NULL;
        if (s) return perr(C, tv, -1, "layer %d: unknown type '%s'; did you mean '%s'?", i, ts, s);
        return perr(C, tv, -1, "layer %d: unknown type '%s'; the types are conv2d, conv_transpose2d, batchnorm2d, "
                    "linear, lstm, gru, transformer_encoder_layer, layernorm, relu, elu, softplus, sigmoid, tanh, "
                    "reshape, flatten, unflatten, permute, concat, add, mul, zeropad2d, slice",
                    i, ts ? ts : kind_of(tv));
    }
    const char *name = NULL;
    if (nv) {
        name = scalar(nv);
        if (!name || !*name) return perr(C, nv, -1, "layer %d: name must be a non-empty string", i);
        if (strlen(name) >= SN_LAYER_NAME)
            return perr(C, nv, -1, "layer %d: name '%.40s...' is longer than %d characters", i, name, SN_LAYER_NAME - 1);
    }
    sn_layer_desc *l = sn_model_desc_add(d, (sn_layer_type)t, name);
    if (!l) return perr(C, m, -1, "%s", sn_last_error());
    l->line = (int)m->start_mark.line + 1;
    if (name) {
        for (int j = 0; j < i; j++) {
            char b[16];
            if (!strcmp(sn_layer_label(d, j, b, sizeof b), name))
                return perr(C, nv, i, "layer %d (line %d) is named '%s' too; names must be unique", j, d->layer[j].line,
                            name);
        }
    }
    bool seen[NARGS] = {0};
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(C->doc, p->key), *v = yaml_document_get_node(C->doc, p->value);
        const char *ks = scalar(k);
        if (!strcmp(ks, "type") || !strcmp(ks, "name")) continue;
        if (!strcmp(ks, "from")) {
            sn_status st = parse_from(C, i, fv);
            if (st) return st;
            continue;
        }
        const argdef *a = find_arg(l->type, ks);
        if (!a) return unknown_arg(C, i, k, ks);
        sn_status st = set_arg(C, i, a, v);
        if (st) return st;
        seen[a - k_args] = true;
    }
    for (int q = 0; q < NARGS; q++)
        if ((k_args[q].required & (1u << l->type)) && !seen[q])
            return perr(C, m, i, "missing argument '%s'", k_args[q].name);
    return SN_OK;
}

sn_status sn_desc_from_yaml_node(yaml_document_t *doc, yaml_node_t *seq, const char *label, sn_model_desc *out) {
    sn_model_desc *d = malloc(sizeof *d);
    if (!d) return sn_error(SN_ERR_NOMEM, "out of host memory");
    sn_model_desc_init(d);
    ctx C = {label ? label : "<model>", doc, d};
    sn_status st = SN_OK;
    if (seq->type != YAML_SEQUENCE_NODE)
        st = perr(&C, seq, -1, "model.layers: expected a list of layers ({type: ..., ...}), got %s", kind_of(seq));
    else if (seq_len(seq) == 0)
        st = perr(&C, seq, -1, "model.layers is empty: describe at least one layer");
    else if (seq_len(seq) > SN_DESC_MAX_LAYERS)
        st = perr(&C, seq, -1, "model.layers has %d layers; at most %d are supported", seq_len(seq), SN_DESC_MAX_LAYERS);
    for (int i = 0; st == SN_OK && i < seq_len(seq); i++) {
        yaml_node_t *m = seq_at(&C, seq, i);
        if (!m) st = perr(&C, seq, -1, "layer %d: malformed", i);
        else st = parse_layer(&C, i, m);
    }
    if (st == SN_OK) {
        /* keep the output settings the caller had */
        d->freq_bins = out->freq_bins > 0 ? out->freq_bins : 161;
        d->mask = out->mask;
        d->output_act = out->output_act;
        *out = *d;
    }
    free(d);
    return st;
}

sn_status sn_model_desc_parse(const char *text, const char *label, sn_model_desc *out) {
    if (!text || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_desc_parse: text and out are required");
    if (!label) label = "<model>";
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sn_error(SN_ERR_NOMEM, "%s: cannot initialise the YAML parser", label);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    yaml_document_t doc;
    sn_status st;
    if (!yaml_parser_load(&p, &doc)) {
        st = sn_error(SN_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s", label, p.problem_mark.line + 1,
                      p.problem_mark.column + 1, p.problem ? p.problem : "malformed YAML");
        yaml_parser_delete(&p);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc), *seq = root;
    if (root && root->type == YAML_MAPPING_NODE) {
        /* {layers: [...]} */
        seq = NULL;
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < root->data.mapping.pairs.top; q++) {
            yaml_node_t *k = yaml_document_get_node(&doc, q->key);
            if (k && scalar(k) && !strcmp(scalar(k), "layers")) seq = yaml_document_get_node(&doc, q->value);
        }
    }
    sn_model_desc *tmp = malloc(sizeof *tmp);
    if (!tmp) st = sn_error(SN_ERR_NOMEM, "out of host memory");
    else if (!seq) st = sn_error(SN_ERR_CONFIG, "%s: expected a list of layers, or a mapping with 'layers:'", label);
    else {
        sn_model_desc_init(tmp);
        st = sn_desc_from_yaml_node(&doc, seq, label, tmp);
        if (st == SN_OK) *out = *tmp;
    }
    free(tmp);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return st;
}

/* ---- YAML output ---- */

static void put_float(sn_json_buf *b, float f) {
    char s[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)f);
        if ((float)strtod(s, NULL) == f) break;
    }
    /* "1e-05" reads back as a string in YAML 1.1 resolvers; sinter reads numbers itself */
    sn_json_buf_puts(b, s);
}

static bool arg_differs(const argdef *a, const sn_layer_desc *l, const sn_layer_desc *def) {
    if (a->required & (1u << l->type)) return true;
    const char *x = (const char *)l + a->off, *y = (const char *)def + a->off;
    switch (a->kind) {
    case A_INT:
    case A_NORMSHAPE: return *(const int *)(const void *)x != *(const int *)(const void *)y;
    case A_PAIR: return memcmp(x, y, 2 * sizeof(int)) != 0;
    case A_BOOL: return *(const bool *)(const void *)x != *(const bool *)(const void *)y;
    case A_FLOAT: return *(const float *)(const void *)x != *(const float *)(const void *)y;
    case A_I64:
    case A_END: return *(const int64_t *)(const void *)x != *(const int64_t *)(const void *)y;
    case A_LIST:
    case A_PAD4: return l->nlist != def->nlist || memcmp(l->list, def->list, sizeof l->list) != 0;
    default: return false;
    }
}

void sn_desc_to_yaml(const sn_model_desc *d, sn_json_buf *b, const char *indent) {
    for (int i = 0; i < d->n; i++) {
        const sn_layer_desc *l = &d->layer[i];
        sn_layer_desc def;
        sn_layer_desc_defaults(&def, l->type);
        sn_json_buf_printf(b, "%s- {type: %s", indent, sn_layer_type_name(l->type) ? sn_layer_type_name(l->type) : "?");
        if (l->name[0]) {
            sn_json_buf_puts(b, ", name: ");
            sn_json_buf_string(b, l->name, strnlen(l->name, SN_LAYER_NAME));
        }
        if (l->nfrom > 0) {
            sn_json_buf_puts(b, ", from: [");
            for (int k = 0; k < l->nfrom && k < SN_LAYER_MAX_FROM; k++) {
                int f = l->from[k];
                if (k) sn_json_buf_puts(b, ", ");
                if (f < 0) sn_json_buf_puts(b, "input");
                else if (f < d->n && d->layer[f].name[0]) sn_json_buf_string(b, d->layer[f].name, strnlen(d->layer[f].name, SN_LAYER_NAME));
                else sn_json_buf_printf(b, "%d", f);
            }
            sn_json_buf_puts(b, "]");
        }
        for (int q = 0; q < NARGS; q++) {
            const argdef *a = &k_args[q];
            if (!(a->types & (1u << l->type)) || a->kind == A_FIXED || a->kind == A_IGNORED) continue;
            if (!arg_differs(a, l, &def)) continue;
            const char *x = (const char *)l + a->off;
            sn_json_buf_printf(b, ", %s: ", a->name);
            switch (a->kind) {
            case A_INT:
            case A_NORMSHAPE: sn_json_buf_printf(b, "%d", *(const int *)(const void *)x); break;
            case A_PAIR: sn_json_buf_printf(b, "[%d, %d]", ((const int *)(const void *)x)[0], ((const int *)(const void *)x)[1]); break;
            case A_BOOL: sn_json_buf_puts(b, *(const bool *)(const void *)x ? "true" : "false"); break;
            case A_FLOAT: put_float(b, *(const float *)(const void *)x); break;
            case A_I64: sn_json_buf_printf(b, "%lld", (long long)*(const int64_t *)(const void *)x); break;
            case A_END: {
                int64_t e = *(const int64_t *)(const void *)x;
                if (e == SN_SLICE_END) sn_json_buf_puts(b, "null");
                else sn_json_buf_printf(b, "%lld", (long long)e);
                break;
            }
            case A_LIST:
            case A_PAD4:
                sn_json_buf_puts(b, "[");
                for (int k = 0; k < l->nlist && k < SN_LAYER_MAX_LIST; k++)
                    sn_json_buf_printf(b, "%s%lld", k ? ", " : "", (long long)l->list[k]);
                sn_json_buf_puts(b, "]");
                break;
            default: break;
            }
        }
        sn_json_buf_puts(b, "}\n");
    }
}

sn_status sn_model_desc_to_yaml(const sn_model_desc *d, char **out) {
    if (!d || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_desc_to_yaml: NULL argument");
    sn_json_buf b = {0};
    sn_json_buf_puts(&b, "layers:\n");
    sn_desc_to_yaml(d, &b, "  ");
    if (b.oom) {
        sn_json_buf_free(&b);
        return sn_error(SN_ERR_NOMEM, "sn_model_desc_to_yaml: out of memory");
    }
    *out = b.data;
    return SN_OK;
}
