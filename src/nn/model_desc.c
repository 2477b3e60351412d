/* The layer-list description: defaults, names, lookups. See include/sinter/model_desc.h.
 * No dependency beyond libc and the status messages (the config parser and its
 * fuzz target link it alone). */
#include "sinter/model_desc.h"

#include <stdio.h>
#include <string.h>

static const char *const k_type_names[SN_LAYER_TYPE_COUNT] = {
    "conv2d", "conv_transpose2d", "batchnorm2d", "linear", "lstm", "gru", "transformer_encoder_layer",
    "layernorm", "relu", "elu", "softplus", "sigmoid", "tanh", "reshape", "flatten", "unflatten", "permute",
    "concat", "add", "mul", "zeropad2d", "slice",
};

static const struct { const char *alias; sn_layer_type t; } k_aliases[] = {
    {"conv", SN_LAYER_CONV2D},
    {"convtranspose2d", SN_LAYER_CONV_TRANSPOSE2D},
    {"batchnorm", SN_LAYER_BATCHNORM2D},
    {"dense", SN_LAYER_LINEAR},
    {"transformer", SN_LAYER_TRANSFORMER},
    {"transformerencoderlayer", SN_LAYER_TRANSFORMER},
    {"attention", SN_LAYER_TRANSFORMER},
    {"layer_norm", SN_LAYER_LAYERNORM},
    {"cat", SN_LAYER_CONCAT},
    {"pad", SN_LAYER_ZEROPAD2D},
    {"crop", SN_LAYER_SLICE},
};

const char *sn_layer_type_name(sn_layer_type t) {
    return (int)t >= 0 && t < SN_LAYER_TYPE_COUNT ? k_type_names[t] : NULL;
}

int sn_layer_type_from_name(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < SN_LAYER_TYPE_COUNT; i++)
        if (!strcmp(s, k_type_names[i])) return i;
    for (size_t i = 0; i < sizeof k_aliases / sizeof *k_aliases; i++)
        if (!strcmp(s, k_aliases[i].alias)) return (int)k_aliases[i].t;
    return -1;
}

bool sn_layer_has_params(sn_layer_type t) {
    return t == SN_LAYER_CONV2D || t == SN_LAYER_CONV_TRANSPOSE2D || t == SN_LAYER_BATCHNORM2D ||
           t == SN_LAYER_LINEAR || t == SN_LAYER_LSTM || t == SN_LAYER_GRU || t == SN_LAYER_TRANSFORMER ||
           t == SN_LAYER_LAYERNORM;
}

void sn_layer_desc_defaults(sn_layer_desc *l, sn_layer_type type) {
    memset(l, 0, sizeof *l);
    l->type = type;
    l->stride[0] = l->stride[1] = 1;
    l->bias = true;
    l->num_layers = 1;
    l->dim_feedforward = 2048;
    l->eps = 1e-5f;
    l->momentum = 0.1f;
    l->alpha = 1.0f;
    l->beta = 1.0f;
    l->threshold = 20.0f;
    l->end = SN_SLICE_END;
    l->end_dim = -1;
    /* torch.cat's default dim is 0 (the batch), never what a spectrogram model means */
    l->dim = type == SN_LAYER_FLATTEN || type == SN_LAYER_CONCAT ? 1 : 0;
}

void sn_model_desc_init(sn_model_desc *d) {
    memset(d, 0, sizeof *d);
    d->freq_bins = 161;
    d->output_act = SN_ACT_NONE;
}

sn_layer_desc *sn_model_desc_add(sn_model_desc *d, sn_layer_type type, const char *name) {
    if (!d) { sn_error(SN_ERR_INVALID_ARG, "sn_model_desc_add: description is NULL"); return NULL; }
    if (!sn_layer_type_name(type)) { sn_error(SN_ERR_INVALID_ARG, "sn_model_desc_add: unknown layer type %d", (int)type); return NULL; }
    if (d->n >= SN_DESC_MAX_LAYERS) {
        sn_error(SN_ERR_CONFIG, "a model has at most %d layers", SN_DESC_MAX_LAYERS);
        return NULL;
    }
    if (name && strlen(name) >= SN_LAYER_NAME) {
        sn_error(SN_ERR_CONFIG, "layer name '%.40s...' is longer than %d characters", name, SN_LAYER_NAME - 1);
        return NULL;
    }
    sn_layer_desc *l = &d->layer[d->n++];
    sn_layer_desc_defaults(l, type);
    if (name) strcpy(l->name, name);
    return l;
}

const char *sn_layer_label(const sn_model_desc *d, int i, char *buf, int n) {
    if (i >= 0 && i < d->n && d->layer[i].name[0]) return d->layer[i].name;
    snprintf(buf, (size_t)n, "%d", i);
    return buf;
}

int sn_model_desc_find(const sn_model_desc *d, const char *name) {
    if (!d || !name) return -2;
    for (int i = 0; i < d->n; i++)
        if (d->layer[i].name[0] && !strcmp(d->layer[i].name, name)) return i;
    /* an unnamed layer answers to its index, as nn.Sequential's children do */
    for (int i = 0; i < d->n; i++) {
        char b[16];
        if (!d->layer[i].name[0] && !strcmp(sn_layer_label(d, i, b, sizeof b), name)) return i;
    }
    return -2;
}

size_t sn_levenshtein(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 200 || lb > 200) return (size_t)-1;
    size_t row[201];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (row[j] + 1 < v) v = row[j] + 1;
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
        }
    }
    return row[lb];
}

const char *sn_suggest_word(const char *s, const char *const *names, int n) {
    if (!s) return NULL;
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (int i = 0; i < n; i++) {
        size_t d = sn_levenshtein(s, names[i]);
        if (d < bd) bd = d, best = names[i];
    }
    size_t kl = strlen(s), limit = kl / 3 > 2 ? kl / 3 : 2;
    if (best && bd <= limit) return best;
    /* a prefix or part of a longer name ("transformer" for "transformer_encoder_layer") */
    for (int i = 0; i < n && kl >= 3; i++)
        if (strstr(names[i], s)) return names[i];
    return NULL;
}
