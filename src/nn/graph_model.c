/* Models described as data (model_desc.h): the description checked, its
 * state_dict laid out as the equivalent PyTorch nn.Module's, and the forward
 * graph built layer by layer for training, inference, streaming and summaries.
 *
 * The builder fuses what the built-in CRN fuses, so that a description of the
 * CRN gives the CRN's graph node for node: zeropad2d into the next conv2d,
 * a crop of the end of a conv_transpose2d's output into it, an activation into
 * the conv / conv-transpose / linear before it, ELU into the BatchNorm before
 * it. A layer is fused into its input only when it is that input's only reader. */
#include "nn/nn_internal.h"
#include "core/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sn_graph_model {
    sn_model_desc d;
    char label[SN_DESC_MAX_LAYERS][SN_LAYER_NAME];
    int consumers[SN_DESC_MAX_LAYERS];   /* later layers reading the output (+1: the model output) */
    int rank[SN_DESC_MAX_LAYERS];        /* output dims, known from the arguments alone */
    int64_t nparam[SN_DESC_MAX_LAYERS], nbuf[SN_DESC_MAX_LAYERS];
    bool init_uniform[SN_MAX_MODEL_TENSORS];
    double init_v[SN_MAX_MODEL_TENSORS];
};

void sn_gmodel_free(struct sn_graph_model *g) { free(g); }

const sn_model_desc *sn_model_get_desc(const sn_model *m) { return m && m->graph ? &m->graph->d : NULL; }

void sn_gmodel_init_rule(const sn_model *m, int i, bool *uniform, double *v) {
    *uniform = m->graph->init_uniform[i];
    *v = m->graph->init_v[i];
}

/* ---- messages ---- */

static const char *tname(sn_layer_type t) { return sn_layer_type_name(t) ? sn_layer_type_name(t) : "?"; }

static sn_status lerr(const struct sn_graph_model *g, int i, sn_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static sn_status lerr(const struct sn_graph_model *g, int i, sn_status st, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const sn_layer_desc *l = &g->d.layer[i];
    if (l->line > 0)
        return sn_error(st, "layer %d '%s' (%s, line %d): %s", i, g->label[i], tname(l->type), l->line, msg);
    return sn_error(st, "layer %d '%s' (%s): %s", i, g->label[i], tname(l->type), msg);
}

static const char *shape_txt(const sn_tensor *t, char *b, size_t n) { return sn_shape_str(t, b, n); }

/* ---- static checks: everything the arguments alone decide ---- */

static bool name_ok(const char *s) {
    if (!*s) return true;
    const char *seg = s;
    for (const char *p = s;; p++) {
        if (*p == '.' || !*p) {
            if (p == seg) return false; /* empty segment */
            if (!*p) return true;
            seg = p + 1;
            continue;
        }
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
}

static int input_of(const sn_layer_desc *l, int i, int k) {
    return l->nfrom ? l->from[k] : i - 1; /* -1 = SN_FROM_INPUT */
}

static int ninputs(const sn_layer_desc *l) { return l->nfrom ? l->nfrom : 1; }

static int norm_dim(int d, int rank) { return d < 0 ? d + rank : d; }

static sn_status check_pair(const struct sn_graph_model *g, int i, const char *what, const int *v, int lo, int hi) {
    for (int k = 0; k < 2; k++)
        if (v[k] < lo || v[k] > hi)
            return lerr(g, i, SN_ERR_CONFIG, "%s = (%d, %d) is out of range; each must be in [%d, %d]", what, v[0], v[1],
                        lo, hi);
    return SN_OK;
}

static sn_status check_size(const struct sn_graph_model *g, int i, const char *what, int v, int hi) {
    if (v < 1 || v > hi) return lerr(g, i, SN_ERR_CONFIG, "%s = %d is out of range; it must be in [1, %d]", what, v, hi);
    return SN_OK;
}

static sn_status check_layer_args(const struct sn_graph_model *g, int i) {
    const sn_layer_desc *l = &g->d.layer[i];
    sn_status s = SN_OK;
    switch (l->type) {
    case SN_LAYER_CONV2D:
    case SN_LAYER_CONV_TRANSPOSE2D:
        if ((s = check_size(g, i, "in_channels", l->in, 65536))) return s;
        if ((s = check_size(g, i, "out_channels", l->out, 65536))) return s;
        if ((s = check_pair(g, i, "kernel_size", l->kernel, 1, 64))) return s;
        if ((s = check_pair(g, i, "stride", l->stride, 1, 64))) return s;
        if ((s = check_pair(g, i, "padding", l->padding, 0, 64))) return s;
        if (l->type == SN_LAYER_CONV_TRANSPOSE2D) {
            for (int k = 0; k < 2; k++)
                if (l->output_padding[k] < 0 || l->output_padding[k] >= l->stride[k])
                    return lerr(g, i, SN_ERR_CONFIG,
                                "output_padding = (%d, %d) must be >= 0 and smaller than stride = (%d, %d)",
                                l->output_padding[0], l->output_padding[1], l->stride[0], l->stride[1]);
        } else if (l->output_padding[0] || l->output_padding[1]) {
            return lerr(g, i, SN_ERR_CONFIG, "output_padding belongs to conv_transpose2d, not conv2d");
        }
        break;
    case SN_LAYER_BATCHNORM2D:
        if ((s = check_size(g, i, "num_features", l->in, 65536))) return s;
        if (!(l->eps > 0)) return lerr(g, i, SN_ERR_CONFIG, "eps = %g must be > 0", l->eps);
        if (!(l->momentum >= 0 && l->momentum <= 1))
            return lerr(g, i, SN_ERR_CONFIG, "momentum = %g must be in [0, 1]", l->momentum);
        break;
    case SN_LAYER_LINEAR:
        if ((s = check_size(g, i, "in_features", l->in, 1 << 20))) return s;
        if ((s = check_size(g, i, "out_features", l->out, 1 << 20))) return s;
        break;
    case SN_LAYER_LSTM:
    case SN_LAYER_GRU:
        if ((s = check_size(g, i, "input_size", l->in, 1 << 20))) return s;
        if ((s = check_size(g, i, "hidden_size", l->out, 1 << 16))) return s;
        if ((s = check_size(g, i, "num_layers", l->num_layers, 16))) return s;
        if (!l->bias) return lerr(g, i, SN_ERR_CONFIG, "bias: false is not supported for recurrent layers");
        break;
    case SN_LAYER_TRANSFORMER:
        if ((s = check_size(g, i, "d_model", l->in, 1 << 16))) return s;
        if ((s = check_size(g, i, "nhead", l->nhead, 1024))) return s;
        if ((s = check_size(g, i, "dim_feedforward", l->dim_feedforward, 1 << 20))) return s;
        if (l->in % l->nhead)
            return lerr(g, i, SN_ERR_CONFIG, "nhead = %d does not divide d_model = %d; pick a divisor of it", l->nhead,
                        l->in);
        if (!(l->eps > 0)) return lerr(g, i, SN_ERR_CONFIG, "layer_norm_eps = %g must be > 0", l->eps);
        break;
    case SN_LAYER_LAYERNORM:
        if ((s = check_size(g, i, "normalized_shape", l->in, 1 << 20))) return s;
        if (!(l->eps > 0)) return lerr(g, i, SN_ERR_CONFIG, "eps = %g must be > 0", l->eps);
        break;
    case SN_LAYER_ELU:
        if (!(l->alpha > 0)) return lerr(g, i, SN_ERR_CONFIG, "alpha = %g must be > 0", l->alpha);
        break;
    case SN_LAYER_SOFTPLUS:
        if (!(l->beta > 0) || !(l->threshold > 0))
            return lerr(g, i, SN_ERR_CONFIG, "beta = %g and threshold = %g must be > 0", l->beta, l->threshold);
        break;
    case SN_LAYER_RESHAPE:
    case SN_LAYER_UNFLATTEN: {
        const char *what = l->type == SN_LAYER_RESHAPE ? "shape" : "unflattened_size";
        if (l->nlist < 1 || l->nlist > SN_LAYER_MAX_LIST)
            return lerr(g, i, SN_ERR_CONFIG, "%s needs 1 to %d sizes, got %d", what, SN_LAYER_MAX_LIST, l->nlist);
        int neg = 0;
        for (int k = 0; k < l->nlist; k++) {
            int64_t v = l->list[k];
            if (v == -1) neg++;
            else if (v < (l->type == SN_LAYER_RESHAPE ? 0 : 1) || v > (1 << 30))
                return lerr(g, i, SN_ERR_CONFIG, "%s[%d] = %lld is not a size%s", what, k, (long long)v,
                            l->type == SN_LAYER_RESHAPE ? " (-1 infers one, 0 keeps the input's)" : " (-1 infers one)");
        }
        if (neg > 1) return lerr(g, i, SN_ERR_CONFIG, "%s has %d entries of -1; at most one can be inferred", what, neg);
        break;
    }
    case SN_LAYER_PERMUTE:
        if (l->nlist < 1 || l->nlist > SN_LAYER_MAX_LIST)
            return lerr(g, i, SN_ERR_CONFIG, "dims needs 1 to %d entries, got %d", SN_LAYER_MAX_LIST, l->nlist);
        break;
    case SN_LAYER_ZEROPAD2D:
        if (l->nlist != 4)
            return lerr(g, i, SN_ERR_CONFIG, "padding needs 4 values (left, right, top, bottom), got %d", l->nlist);
        for (int k = 0; k < 4; k++)
            if (l->list[k] < 0 || l->list[k] > 4096)
                return lerr(g, i, SN_ERR_CONFIG, "padding[%d] = %lld is out of range; it must be in [0, 4096]", k,
                            (long long)l->list[k]);
        break;
    default:
        break;
    }
    return SN_OK;
}

/* ranks from the arguments: lets the static checks normalise negative dims */
static sn_status static_rank(const struct sn_graph_model *g, int i, int *out) {
    const sn_layer_desc *l = &g->d.layer[i];
    int src = input_of(l, i, 0);
    int r = src < 0 ? 4 : g->rank[src];
    switch (l->type) {
    case SN_LAYER_CONV2D:
    case SN_LAYER_CONV_TRANSPOSE2D:
    case SN_LAYER_BATCHNORM2D:
        if (r != 4)
            return lerr(g, i, SN_ERR_SHAPE, "the input has %d dims; this layer takes [batch, channels, time, frequency]",
                        r);
        break;
    case SN_LAYER_LSTM:
    case SN_LAYER_GRU:
    case SN_LAYER_TRANSFORMER:
        if (r != 3)
            return lerr(g, i, SN_ERR_SHAPE,
                        "the input has %d dims; this layer takes [batch, time, features] (batch_first): flatten "
                        "the channels and frequencies first (permute [0, 2, 1, 3], then flatten with start_dim 2)",
                        r);
        break;
    case SN_LAYER_ZEROPAD2D:
        if (r < 2) return lerr(g, i, SN_ERR_SHAPE, "the input has %d dims; zeropad2d pads the last two", r);
        break;
    case SN_LAYER_RESHAPE: r = l->nlist; break;
    case SN_LAYER_FLATTEN: {
        int a = norm_dim(l->dim, r), b = norm_dim(l->end_dim, r);
        if (a < 0 || a >= r || b < 0 || b >= r || a > b)
            return lerr(g, i, SN_ERR_SHAPE, "start_dim %d and end_dim %d do not fit an input of %d dims", l->dim,
                        l->end_dim, r);
        r -= b - a;
        break;
    }
    case SN_LAYER_UNFLATTEN: {
        int a = norm_dim(l->dim, r);
        if (a < 0 || a >= r) return lerr(g, i, SN_ERR_SHAPE, "dim %d does not fit an input of %d dims", l->dim, r);
        r += l->nlist - 1;
        break;
    }
    case SN_LAYER_PERMUTE: {
        if (l->nlist != r)
            return lerr(g, i, SN_ERR_SHAPE, "dims has %d entries for an input of %d dims", l->nlist, r);
        bool seen[SN_LAYER_MAX_LIST] = {0};
        for (int k = 0; k < r; k++) {
            int d = norm_dim((int)l->list[k], r);
            if (d < 0 || d >= r || seen[d])
                return lerr(g, i, SN_ERR_SHAPE, "dims is not a permutation of 0..%d (entry %d is %lld)", r - 1, k,
                            (long long)l->list[k]);
            seen[d] = true;
        }
        break;
    }
    case SN_LAYER_CONCAT:
    case SN_LAYER_SLICE: {
        int d = norm_dim(l->dim, r);
        if (d < 0 || d >= r) return lerr(g, i, SN_ERR_SHAPE, "dim %d does not fit an input of %d dims", l->dim, r);
        break;
    }
    default:
        break;
    }
    for (int k = 1; k < ninputs(l); k++) {
        int s2 = input_of(l, i, k);
        int r2 = s2 < 0 ? 4 : g->rank[s2];
        if (r2 != r && l->type == SN_LAYER_CONCAT)
            return lerr(g, i, SN_ERR_SHAPE, "its inputs have %d and %d dims; concat needs equal ranks", r, r2);
    }
    *out = r;
    return SN_OK;
}

static sn_status check_desc(struct sn_graph_model *g) {
    const sn_model_desc *d = &g->d;
    if (d->n < 1) return sn_error(SN_ERR_CONFIG, "the model has no layers: describe at least one in model.layers");
    if (d->n > SN_DESC_MAX_LAYERS)
        return sn_error(SN_ERR_CONFIG, "the model has %d layers; at most %d are supported", d->n, SN_DESC_MAX_LAYERS);
    if (d->freq_bins < 1 || d->freq_bins > 65536)
        return sn_error(SN_ERR_CONFIG, "freq_bins = %d is out of range", d->freq_bins);
    if ((int)d->output_act < 0 || d->output_act >= SN_ACT_COUNT)
        return sn_error(SN_ERR_CONFIG, "output activation %d is unknown", (int)d->output_act);
    for (int i = 0; i < d->n; i++) {
        const sn_layer_desc *l = &d->layer[i];
        if (l->name[0]) snprintf(g->label[i], SN_LAYER_NAME, "%.*s", SN_LAYER_NAME - 1, l->name);
        else snprintf(g->label[i], SN_LAYER_NAME, "%d", i);
        if (!sn_layer_type_name(l->type)) return sn_error(SN_ERR_CONFIG, "layer %d: unknown type %d", i, (int)l->type);
        if (memchr(l->name, 0, SN_LAYER_NAME) == NULL || !name_ok(l->name))
            return lerr(g, i, SN_ERR_CONFIG,
                        "name '%.*s' is not a module path: use letters, digits and '_' in parts joined by '.' "
                        "(e.g. enc.0)", SN_LAYER_NAME - 1, l->name);
        if (l->nfrom < 0 || l->nfrom > SN_LAYER_MAX_FROM)
            return lerr(g, i, SN_ERR_CONFIG, "from lists %d inputs; at most %d", l->nfrom, SN_LAYER_MAX_FROM);
        for (int k = 0; k < l->nfrom; k++)
            if (l->from[k] < SN_FROM_INPUT || l->from[k] >= i)
                return lerr(g, i, SN_ERR_CONFIG, "from refers to layer %d: only earlier layers (0..%d) or 'input' can be "
                            "inputs", l->from[k], i - 1);
        bool multi = l->type == SN_LAYER_CONCAT || l->type == SN_LAYER_ADD || l->type == SN_LAYER_MUL;
        if (multi && l->nfrom < 2)
            return lerr(g, i, SN_ERR_CONFIG, "needs at least two inputs: list them in from (e.g. from: [-1, enc.3])");
        if (!multi && l->nfrom > 1)
            return lerr(g, i, SN_ERR_CONFIG, "takes one input, but from lists %d", l->nfrom);
        sn_status s = check_layer_args(g, i);
        if (s != SN_OK) return s;
        for (int j = 0; j < i; j++) {
            if (!strcmp(g->label[i], g->label[j]))
                return lerr(g, i, SN_ERR_CONFIG, "layer %d is named '%s' too; names must be unique", j, g->label[j]);
            /* a module with parameters cannot also hold submodules of another layer */
            const char *a = g->label[j], *b = g->label[i];
            size_t la = strlen(a), lb = strlen(b);
            bool pj = sn_layer_has_params(d->layer[j].type), pi = sn_layer_has_params(l->type);
            if ((pj && lb > la && !strncmp(a, b, la) && b[la] == '.') ||
                (pi && la > lb && !strncmp(a, b, lb) && a[lb] == '.'))
                return lerr(g, i, SN_ERR_CONFIG, "the name '%s' nests inside '%s' (layer %d), which has parameters: "
                            "no PyTorch module holds both", b, a, j);
        }
        s = static_rank(g, i, &g->rank[i]);
        if (s != SN_OK) return s;
    }
    for (int i = 0; i < d->n; i++) g->consumers[i] = i == d->n - 1;
    for (int i = 0; i < d->n; i++)
        for (int k = 0; k < ninputs(&d->layer[i]); k++) {
            int s = input_of(&d->layer[i], i, k);
            if (s >= 0) g->consumers[s]++;
        }
    return SN_OK;
}

/* ---- the state_dict ---- */

typedef struct pspec {
    sn_param_spec s;
    bool uniform;
    double v;
    int layer;
} pspec;

typedef struct plist {
    int n;
    pspec p[SN_MAX_MODEL_TENSORS + 64];
    bool overflow;
} plist;

static void padd(plist *L, int layer, const char *pre, const char *suffix, bool trainable, bool uniform, double v,
                 int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    if (L->n >= (int)(sizeof L->p / sizeof L->p[0])) { L->overflow = true; return; }
    pspec *p = &L->p[L->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->s.name, sizeof p->s.name, "%s.%s", pre, suffix);
    p->s.ndim = ndim;
    int64_t sh[4] = {a, b, c, d};
    memcpy(p->s.shape, sh, sizeof sh);
    p->s.trainable = trainable;
    p->uniform = uniform;
    p->v = v;
    p->layer = layer;
}

/* U(+-1/sqrt(fan_in)): PyTorch's kaiming_uniform(a=sqrt(5)) for weights, and its bias rule */
static double kaiming(int64_t fan_in) { return 1.0 / sqrt((double)fan_in); }

static void list_params(const struct sn_graph_model *g, plist *L) {
    const sn_model_desc *d = &g->d;
    for (int i = 0; i < d->n; i++) {
        const sn_layer_desc *l = &d->layer[i];
        const char *P = g->label[i];
        int64_t kh = l->kernel[0], kw = l->kernel[1];
        switch (l->type) {
        case SN_LAYER_CONV2D: {
            double bd = kaiming((int64_t)l->in * kh * kw);
            padd(L, i, P, "weight", true, true, bd, 4, l->out, l->in, kh, kw);
            if (l->bias) padd(L, i, P, "bias", true, true, bd, 1, l->out, 0, 0, 0);
            break;
        }
        case SN_LAYER_CONV_TRANSPOSE2D: {
            double bd = kaiming((int64_t)l->out * kh * kw); /* PyTorch's fan_in is weight dim 1 */
            padd(L, i, P, "weight", true, true, bd, 4, l->in, l->out, kh, kw);
            if (l->bias) padd(L, i, P, "bias", true, true, bd, 1, l->out, 0, 0, 0);
            break;
        }
        case SN_LAYER_LINEAR: {
            double bd = kaiming(l->in);
            padd(L, i, P, "weight", true, true, bd, 2, l->out, l->in, 0, 0);
            if (l->bias) padd(L, i, P, "bias", true, true, bd, 1, l->out, 0, 0, 0);
            break;
        }
        case SN_LAYER_BATCHNORM2D:
            padd(L, i, P, "weight", true, false, 1, 1, l->in, 0, 0, 0);
            padd(L, i, P, "bias", true, false, 0, 1, l->in, 0, 0, 0);
            padd(L, i, P, "running_mean", false, false, 0, 1, l->in, 0, 0, 0);
            padd(L, i, P, "running_var", false, false, 1, 1, l->in, 0, 0, 0);
            padd(L, i, P, "num_batches_tracked", false, false, 0, 0, 0, 0, 0, 0);
            break;
        case SN_LAYER_LAYERNORM:
            padd(L, i, P, "weight", true, false, 1, 1, l->in, 0, 0, 0);
            padd(L, i, P, "bias", true, false, 0, 1, l->in, 0, 0, 0);
            break;
        case SN_LAYER_LSTM:
        case SN_LAYER_GRU: {
            int64_t G = l->type == SN_LAYER_LSTM ? 4 : 3, H = l->out;
            double bd = kaiming(H);
            for (int k = 0; k < l->num_layers; k++) {
                char nm[32];
                snprintf(nm, sizeof nm, "weight_ih_l%d", k);
                padd(L, i, P, nm, true, true, bd, 2, G * H, k ? H : l->in, 0, 0);
                snprintf(nm, sizeof nm, "weight_hh_l%d", k);
                padd(L, i, P, nm, true, true, bd, 2, G * H, H, 0, 0);
                snprintf(nm, sizeof nm, "bias_ih_l%d", k);
                padd(L, i, P, nm, true, true, bd, 1, G * H, 0, 0, 0);
                snprintf(nm, sizeof nm, "bias_hh_l%d", k);
                padd(L, i, P, nm, true, true, bd, 1, G * H, 0, 0, 0);
            }
            break;
        }
        case SN_LAYER_TRANSFORMER: {
            int64_t E = l->in, FF = l->dim_feedforward;
            padd(L, i, P, "self_attn.in_proj_weight", true, true, sqrt(6.0 / (double)(4 * E)), 2, 3 * E, E, 0, 0);
            padd(L, i, P, "self_attn.in_proj_bias", true, false, 0, 1, 3 * E, 0, 0, 0);
            padd(L, i, P, "self_attn.out_proj.weight", true, true, kaiming(E), 2, E, E, 0, 0);
            padd(L, i, P, "self_attn.out_proj.bias", true, false, 0, 1, E, 0, 0, 0);
            padd(L, i, P, "linear1.weight", true, true, kaiming(E), 2, FF, E, 0, 0);
            padd(L, i, P, "linear1.bias", true, true, kaiming(E), 1, FF, 0, 0, 0);
            padd(L, i, P, "linear2.weight", true, true, kaiming(FF), 2, E, FF, 0, 0);
            padd(L, i, P, "linear2.bias", true, true, kaiming(FF), 1, E, 0, 0, 0);
            padd(L, i, P, "norm1.weight", true, false, 1, 1, E, 0, 0, 0);
            padd(L, i, P, "norm1.bias", true, false, 0, 1, E, 0, 0, 0);
            padd(L, i, P, "norm2.weight", true, false, 1, 1, E, 0, 0, 0);
            padd(L, i, P, "norm2.bias", true, false, 0, 1, E, 0, 0, 0);
            break;
        }
        default:
            break;
        }
    }
}

/* state_dict order of the equivalent nn.Module: submodules in the order their
 * attribute is first registered, i.e. first seen in the layer list, so
 * enc.0, ebn.0, enc.1, ... lists every enc.* before every ebn.*. rank[i][k] is the
 * index of the first entry sharing entry i's first k+1 name parts. */
#define MAX_DEPTH 16

static int nparts(const char *s) {
    int n = 1;
    for (; *s; s++) n += *s == '.';
    return n;
}

static size_t prefix_len(const char *s, int parts) {
    size_t i = 0;
    for (int k = 0; s[i]; i++)
        if (s[i] == '.' && ++k == parts) break;
    return i;
}

static void sort_params(plist *L) {
    int n = L->n;
    int(*rank)[MAX_DEPTH] = calloc((size_t)(n > 0 ? n : 1), sizeof *rank);
    int *depth = calloc((size_t)(n > 0 ? n : 1), sizeof *depth);
    pspec *tmp = malloc(sizeof(pspec) * (size_t)(n > 0 ? n : 1));
    if (!rank || !depth || !tmp) { free(rank), free(depth), free(tmp); return; } /* keeps layer order */
    for (int i = 0; i < n; i++) {
        const char *a = L->p[i].s.name;
        depth[i] = nparts(a) < MAX_DEPTH ? nparts(a) : MAX_DEPTH;
        for (int k = 0; k < depth[i]; k++) {
            size_t pl = prefix_len(a, k + 1);
            rank[i][k] = i;
            for (int j = 0; j < i; j++) {
                const char *b = L->p[j].s.name;
                if (!strncmp(a, b, pl) && (b[pl] == '.' || b[pl] == 0) && prefix_len(b, k + 1) == pl) {
                    rank[i][k] = j;
                    break;
                }
            }
        }
    }
    /* stable insertion sort by the rank vectors */
    int *ord = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!ord) { free(rank), free(depth), free(tmp); return; }
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0) {
            int a = ord[j - 1], b = i, c = 0;
            for (int k = 0; k < MAX_DEPTH && k < depth[a] && k < depth[b]; k++)
                if (rank[a][k] != rank[b][k]) { c = rank[a][k] < rank[b][k] ? -1 : 1; break; }
            if (c <= 0) break;
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = i;
    }
    for (int i = 0; i < n; i++) tmp[i] = L->p[ord[i]];
    memcpy(L->p, tmp, sizeof(pspec) * (size_t)n);
    free(ord), free(rank), free(depth), free(tmp);
}

sn_status sn_graph_model_new(const sn_model_desc *d, sn_backend *b, sn_model **out) {
    if (!d || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_graph_model_new: description, backend and out are required");
    *out = NULL;
    struct sn_graph_model *g = calloc(1, sizeof *g);
    plist *L = calloc(1, sizeof *L);
    sn_model *m = calloc(1, sizeof *m);
    if (!g || !L || !m) { free(g), free(L), free(m); return sn_error(SN_ERR_NOMEM, "sn_graph_model_new: out of host memory"); }
    g->d = *d;
    sn_status s = check_desc(g);
    if (s == SN_OK) {
        list_params(g, L);
        if (L->overflow || L->n > SN_MAX_MODEL_TENSORS)
            s = sn_error(SN_ERR_CONFIG, "the model has more than %d state_dict entries; sinter supports up to that",
                         SN_MAX_MODEL_TENSORS);
    }
    if (s == SN_OK) {
        sort_params(L);
        for (int i = 0; i < L->n; i++) {
            const pspec *p = &L->p[i];
            g->init_uniform[i] = p->uniform;
            g->init_v[i] = p->v;
            int64_t k = 1;
            for (int dd = 0; dd < p->s.ndim; dd++) k *= p->s.shape[dd];
            if (p->s.trainable) g->nparam[p->layer] += k;
            else g->nbuf[p->layer] += k;
        }
        sn_crn_config_default(&m->cfg);
        m->cfg.freq_bins = d->freq_bins;
        m->graph = g;
        sn_param_spec *ps = malloc(sizeof *ps * (size_t)(L->n ? L->n : 1));
        if (!ps) s = sn_error(SN_ERR_NOMEM, "sn_graph_model_new: out of host memory");
        for (int i = 0; ps && i < L->n; i++) ps[i] = L->p[i].s;
        if (s == SN_OK) s = sn_model_make_tensors(m, ps, L->n, b);
        free(ps);
    }
    free(L);
    if (s != SN_OK) {
        if (m->graph) sn_model_free(m);
        else { free(g), free(m); }
        return s;
    }
    *out = m;
    return SN_OK;
}

/* ---- the forward graph ---- */

enum { RK_NONE = 0, RK_PAD, RK_CONV, RK_CONVT, RK_LINEAR, RK_BN };

/* How a layer's output was made, so that a later layer can remake it fused. */
typedef struct recipe {
    int kind;
    sn_tensor *x, *w, *b, *bn[4];
    int sh, sw, pt, pb, pl, pr;  /* conv: stride, padding top/bottom/left/right */
    int ph, pw, oph, opw, cb, cr; /* conv-transpose: padding, output padding, crop bottom/right */
    int64_t pad[4];              /* zeropad2d: left, right, top, bottom */
    sn_act act;
    float p0, p1, eps, momentum;
} recipe;

typedef struct gb {
    sn_model *m;
    const struct sn_graph_model *g;
    sn_ctx *c;
    bool training;
    sn_stream *stream;
    sn_tensor *x;
    sn_tensor *out[SN_DESC_MAX_LAYERS];
    recipe r[SN_DESC_MAX_LAYERS];
} gb;

static sn_tensor *param(gb *B, int i, const char *suffix) {
    char nm[SN_NAME_LEN + 64];
    snprintf(nm, sizeof nm, "%s.%s", B->g->label[i], suffix);
    sn_tensor *t = sn_model_find(B->m, nm);
    if (!t) lerr(B->g, i, SN_ERR_INTERNAL, "parameter '%s' missing", nm);
    return t;
}

static sn_tensor *make(gb *B, const recipe *r) {
    sn_ctx *c = B->c;
    switch (r->kind) {
    case RK_CONV:
        return sn_conv2d_pad(c, r->x, r->w, r->b, r->sh, r->sw, r->pt, r->pb, r->pl, r->pr, r->act, r->p0, r->p1);
    case RK_CONVT:
        return sn_conv_transpose2d_crop(c, r->x, r->w, r->b, r->sh, r->sw, r->ph, r->pw, r->oph, r->opw, r->cb, r->cr,
                                        r->act, r->p0, r->p1);
    case RK_LINEAR: return sn_linear_act(c, r->x, r->w, r->b, r->act, r->p0, r->p1);
    case RK_BN:
        if (r->act == SN_ACT_ELU)
            return sn_batchnorm2d_elu(c, r->x, r->bn[0], r->bn[1], r->bn[2], r->bn[3], B->training, r->eps,
                                      r->momentum, r->p0);
        return sn_batchnorm2d(c, r->x, r->bn[0], r->bn[1], r->bn[2], r->bn[3], B->training, r->eps, r->momentum);
    case RK_PAD: {
        int pads[2 * SN_MAX_DIMS] = {0};
        int n = r->x->ndim;
        pads[2 * (n - 1)] = (int)r->pad[0];
        pads[2 * (n - 1) + 1] = (int)r->pad[1];
        pads[2 * (n - 2)] = (int)r->pad[2];
        pads[2 * (n - 2) + 1] = (int)r->pad[3];
        return sn_pad(c, r->x, pads);
    }
    default: return NULL;
    }
}

static bool fusable(const gb *B, int src) { return src >= 0 && B->g->consumers[src] == 1; }

/* act applied to the output of layer src (x): fused into src's op where it can be */
static sn_tensor *activation(gb *B, int i, int src, sn_tensor *x, sn_act act, float p0, float p1) {
    if (fusable(B, src)) {
        recipe r = B->r[src];
        bool into_op = (r.kind == RK_CONV || r.kind == RK_LINEAR || r.kind == RK_CONVT) &&
                       r.act == SN_ACT_NONE && (act != SN_ACT_SOFTPLUS || p1 >= 17.0f);
        bool into_bn = r.kind == RK_BN && r.act == SN_ACT_NONE && act == SN_ACT_ELU;
        if (into_op || into_bn) {
            r.act = act, r.p0 = p0, r.p1 = p1;
            if (i >= 0) B->r[i] = r;
            return make(B, &r);
        }
    }
    switch (act) {
    case SN_ACT_RELU: return sn_relu(B->c, x);
    case SN_ACT_ELU: return sn_elu(B->c, x, p0);
    case SN_ACT_SOFTPLUS: return sn_softplus(B->c, x, p0, p1);
    case SN_ACT_SIGMOID: return sn_sigmoid(B->c, x);
    case SN_ACT_TANH: return sn_tanh(B->c, x);
    default: return x;
    }
}

/* ---- streaming state (see stream.h) ---- */

static sn_tensor *state_in(gb *B, int i, int ndim, const int64_t *shape, const char *what) {
    sn_stream *s = B->stream;
    if (s->nstate >= SN_STREAM_MAX_STATE) {
        lerr(B->g, i, SN_ERR_UNSUPPORTED, "the model carries more than %d states between chunks", SN_STREAM_MAX_STATE);
        return NULL;
    }
    sn_tensor *t = sn_new_tensor(B->c, SN_F32, ndim, shape, SN_FLAG_PERSIST | SN_FLAG_INPUT, NULL);
    if (!t) return NULL;
    sn_set_name(t, "stream.%s.%s", B->g->label[i], what);
    s->state_in[s->nstate] = t;
    s->state_out[s->nstate] = NULL;
    s->nstate++;
    return t;
}

static void state_out(gb *B, sn_tensor *in, sn_tensor *out) {
    sn_stream *s = B->stream;
    for (int k = 0; k < s->nstate; k++)
        if (s->state_in[k] == in) {
            s->state_out[k] = out;
            if (out) out->flags |= SN_FLAG_OUTPUT;
        }
}

static sn_tensor *time_slice(sn_ctx *c, sn_tensor *x, int64_t start, int64_t len) {
    if (!x) return NULL;
    int64_t st[4] = {0, 0, start, 0}, sh[4] = {x->shape[0], x->shape[1], len, x->shape[3]};
    return sn_slice(c, x, st, sh);
}

/* ---- layers ---- */

static bool dims_equal_but(const sn_tensor *a, const sn_tensor *b, int skip, int *bad) {
    for (int d = 0; d < a->ndim; d++)
        if (d != skip && a->shape[d] != b->shape[d]) { *bad = d; return false; }
    return true;
}

static sn_tensor *layer(gb *B, int i, sn_tensor **in, int nin) {
    const struct sn_graph_model *g = B->g;
    const sn_layer_desc *l = &g->d.layer[i];
    sn_ctx *c = B->c;
    sn_tensor *x = in[0];
    int src = input_of(l, i, 0);
    char s1[96], s2[96];
    recipe *r = &B->r[i];
    memset(r, 0, sizeof *r);
    switch (l->type) {
    case SN_LAYER_CONV2D:
    case SN_LAYER_CONV_TRANSPOSE2D:
    case SN_LAYER_BATCHNORM2D: {
        if (x->ndim != 4) {
            lerr(g, i, SN_ERR_SHAPE, "the input is %s; this layer takes [batch, channels, time, frequency]",
                 shape_txt(x, s1, sizeof s1));
            return NULL;
        }
        const char *arg = l->type == SN_LAYER_BATCHNORM2D ? "num_features" : "in_channels";
        if (x->shape[1] != l->in) {
            lerr(g, i, SN_ERR_SHAPE, "the input %s has %lld channels but %s is %d", shape_txt(x, s1, sizeof s1),
                 (long long)x->shape[1], arg, l->in);
            return NULL;
        }
        if (l->type == SN_LAYER_BATCHNORM2D) {
            r->kind = RK_BN;
            r->x = x;
            r->bn[0] = param(B, i, "weight"), r->bn[1] = param(B, i, "bias");
            r->bn[2] = param(B, i, "running_mean"), r->bn[3] = param(B, i, "running_var");
            r->eps = l->eps, r->momentum = l->momentum;
            return make(B, r);
        }
        r->w = param(B, i, "weight");
        r->b = l->bias ? param(B, i, "bias") : NULL;
        r->x = x;
        r->sh = l->stride[0], r->sw = l->stride[1];
        if (l->type == SN_LAYER_CONV_TRANSPOSE2D) {
            r->kind = RK_CONVT;
            r->ph = l->padding[0], r->pw = l->padding[1], r->oph = l->output_padding[0], r->opw = l->output_padding[1];
            int64_t ho = (x->shape[2] - 1) * l->stride[0] - 2 * l->padding[0] + l->kernel[0] + l->output_padding[0];
            int64_t wo = (x->shape[3] - 1) * l->stride[1] - 2 * l->padding[1] + l->kernel[1] + l->output_padding[1];
            if (ho < 1 || wo < 1) {
                lerr(g, i, SN_ERR_SHAPE, "the output for input %s would be empty (%lld x %lld): padding too large",
                     shape_txt(x, s1, sizeof s1), (long long)ho, (long long)wo);
                return NULL;
            }
            return make(B, r);
        }
        r->kind = RK_CONV;
        r->pt = r->pb = l->padding[0];
        r->pl = r->pr = l->padding[1];
        if (fusable(B, src) && B->r[src].kind == RK_PAD && B->r[src].x->ndim == 4) {
            const recipe *p = &B->r[src];
            r->x = p->x;
            r->pl += (int)p->pad[0], r->pr += (int)p->pad[1], r->pt += (int)p->pad[2], r->pb += (int)p->pad[3];
            if (B->stream && (p->pad[2] || p->pad[3])) {
                /* causal conv (stream_check): the last kh-1 frames of the previous chunk
                 * stand in for the zero pad at the start of time */
                int64_t kh1 = l->kernel[0] - 1;
                int64_t sh[4] = {r->x->shape[0], r->x->shape[1], kh1, r->x->shape[3]};
                sn_tensor *prev = state_in(B, i, 4, sh, "prev");
                sn_tensor *cat[2] = {prev, r->x};
                sn_tensor *xc = sn_concat(c, 2, cat, 2);
                if (!xc) return NULL;
                state_out(B, prev, time_slice(c, xc, xc->shape[2] - kh1, kh1));
                r->x = xc;
                r->pt = r->pb = 0;
            }
        }
        int64_t hp = r->x->shape[2] + r->pt + r->pb, wp = r->x->shape[3] + r->pl + r->pr;
        if (hp < l->kernel[0] || wp < l->kernel[1]) {
            lerr(g, i, SN_ERR_SHAPE, "kernel_size (%d, %d) is larger than the padded input (%lld x %lld) of %s",
                 l->kernel[0], l->kernel[1], (long long)hp, (long long)wp, shape_txt(x, s1, sizeof s1));
            return NULL;
        }
        return make(B, r);
    }
    case SN_LAYER_LINEAR:
        if (x->shape[x->ndim - 1] != l->in) {
            lerr(g, i, SN_ERR_SHAPE, "the input %s has %lld features in its last dim but in_features is %d",
                 shape_txt(x, s1, sizeof s1), (long long)x->shape[x->ndim - 1], l->in);
            return NULL;
        }
        r->kind = RK_LINEAR;
        r->x = x, r->w = param(B, i, "weight"), r->b = l->bias ? param(B, i, "bias") : NULL;
        return make(B, r);
    case SN_LAYER_LAYERNORM:
        if (x->shape[x->ndim - 1] != l->in) {
            lerr(g, i, SN_ERR_SHAPE, "the input %s has %lld features in its last dim but normalized_shape is %d",
                 shape_txt(x, s1, sizeof s1), (long long)x->shape[x->ndim - 1], l->in);
            return NULL;
        }
        return sn_layernorm(c, x, param(B, i, "weight"), param(B, i, "bias"), l->eps);
    case SN_LAYER_LSTM:
    case SN_LAYER_GRU: {
        if (x->ndim != 3 || x->shape[2] != l->in) {
            lerr(g, i, SN_ERR_SHAPE, "the input is %s; this layer takes [batch, time, %d] (input_size %d)",
                 shape_txt(x, s1, sizeof s1), l->in, l->in);
            return NULL;
        }
        bool lstm = l->type == SN_LAYER_LSTM;
        /* one op per layer, as the CRN: each layer's saved state dies with its backward */
        for (int k = 0; k < l->num_layers && x; k++) {
            char nm[4][32];
            snprintf(nm[0], 32, "weight_ih_l%d", k);
            snprintf(nm[1], 32, "weight_hh_l%d", k);
            snprintf(nm[2], 32, "bias_ih_l%d", k);
            snprintf(nm[3], 32, "bias_hh_l%d", k);
            sn_tensor *w[4];
            for (int q = 0; q < 4; q++) w[q] = param(B, i, nm[q]);
            if (!B->stream) {
                x = lstm ? sn_lstm(c, x, 1, l->out, w) : sn_gru(c, x, 1, l->out, w);
                continue;
            }
            int64_t sh[3] = {1, x->shape[0], l->out};
            char what[32];
            snprintf(what, sizeof what, "h_l%d", k);
            sn_tensor *h0 = state_in(B, i, 3, sh, what), *c0 = NULL;
            if (lstm) {
                snprintf(what, sizeof what, "c_l%d", k);
                c0 = state_in(B, i, 3, sh, what);
            }
            sn_tensor *y = lstm ? sn_lstm_state(c, x, 1, l->out, w, h0, c0) : sn_gru_state(c, x, 1, l->out, w, h0);
            state_out(B, h0, sn_rnn_final_state(c, y, 0));
            if (lstm) state_out(B, c0, sn_rnn_final_state(c, y, 1));
            x = y;
        }
        return x;
    }
    case SN_LAYER_TRANSFORMER: {
        if (x->ndim != 3 || x->shape[2] != l->in) {
            lerr(g, i, SN_ERR_SHAPE, "the input is %s; this layer takes [batch, time, %d] (d_model %d)",
                 shape_txt(x, s1, sizeof s1), l->in, l->in);
            return NULL;
        }
        sn_tensor *n1w = param(B, i, "norm1.weight"), *n1b = param(B, i, "norm1.bias");
        sn_tensor *n2w = param(B, i, "norm2.weight"), *n2b = param(B, i, "norm2.bias");
        sn_tensor *h = l->norm_first ? sn_layernorm(c, x, n1w, n1b, l->eps) : x;
        h = sn_attention(c, h, param(B, i, "self_attn.in_proj_weight"), param(B, i, "self_attn.in_proj_bias"),
                         param(B, i, "self_attn.out_proj.weight"), param(B, i, "self_attn.out_proj.bias"), l->nhead,
                         l->causal);
        x = sn_add(c, x, h);
        if (!l->norm_first) x = sn_layernorm(c, x, n1w, n1b, l->eps);
        h = l->norm_first ? sn_layernorm(c, x, n2w, n2b, l->eps) : x;
        h = sn_linear_act(c, h, param(B, i, "linear1.weight"), param(B, i, "linear1.bias"), SN_ACT_RELU, 0, 0);
        h = sn_linear(c, h, param(B, i, "linear2.weight"), param(B, i, "linear2.bias"));
        x = sn_add(c, x, h);
        if (!l->norm_first) x = sn_layernorm(c, x, n2w, n2b, l->eps);
        return x;
    }
    case SN_LAYER_RELU: return activation(B, i, src, x, SN_ACT_RELU, 0, 0);
    case SN_LAYER_ELU: return activation(B, i, src, x, SN_ACT_ELU, l->alpha, 0);
    case SN_LAYER_SOFTPLUS: return activation(B, i, src, x, SN_ACT_SOFTPLUS, l->beta, l->threshold);
    case SN_LAYER_SIGMOID: return activation(B, i, src, x, SN_ACT_SIGMOID, 0, 0);
    case SN_LAYER_TANH: return activation(B, i, src, x, SN_ACT_TANH, 0, 0);
    case SN_LAYER_RESHAPE: {
        int64_t sh[SN_MAX_DIMS], known = 1;
        int infer = -1;
        for (int k = 0; k < l->nlist; k++) {
            sh[k] = l->list[k];
            if (sh[k] == 0) {
                if (k >= x->ndim) {
                    lerr(g, i, SN_ERR_SHAPE, "shape[%d] = 0 keeps the input's dim %d, but the input %s has %d dims", k,
                         k, shape_txt(x, s1, sizeof s1), x->ndim);
                    return NULL;
                }
                sh[k] = x->shape[k];
            }
            if (sh[k] == -1) infer = k;
            else known *= sh[k];
        }
        int64_t n = sn_nelem(x);
        if (infer >= 0 && known > 0 && n % known == 0) sh[infer] = n / known, known *= sh[infer];
        if (known != n || (infer >= 0 && sh[infer] < 1)) {
            lerr(g, i, SN_ERR_SHAPE, "the input %s has %lld elements, which shape does not hold",
                 shape_txt(x, s1, sizeof s1), (long long)n);
            return NULL;
        }
        return sn_reshape(c, x, l->nlist, sh);
    }
    case SN_LAYER_FLATTEN: {
        int a = norm_dim(l->dim, x->ndim), b = norm_dim(l->end_dim, x->ndim);
        int64_t sh[SN_MAX_DIMS];
        int n = 0;
        for (int d = 0; d < x->ndim; d++) {
            if (d > a && d <= b) sh[n - 1] *= x->shape[d];
            else sh[n++] = x->shape[d];
        }
        return sn_reshape(c, x, n, sh);
    }
    case SN_LAYER_UNFLATTEN: {
        int a = norm_dim(l->dim, x->ndim);
        int64_t sh[SN_MAX_DIMS], known = 1;
        int n = 0, infer = -1;
        if (x->ndim + l->nlist - 1 > SN_MAX_DIMS) {
            lerr(g, i, SN_ERR_SHAPE, "the output would have more than %d dims", SN_MAX_DIMS);
            return NULL;
        }
        for (int d = 0; d < x->ndim; d++) {
            if (d != a) { sh[n++] = x->shape[d]; continue; }
            for (int k = 0; k < l->nlist; k++) {
                if (l->list[k] == -1) infer = n;
                else known *= l->list[k];
                sh[n++] = l->list[k];
            }
        }
        if (infer >= 0 && known > 0 && x->shape[a] % known == 0) sh[infer] = x->shape[a] / known, known *= sh[infer];
        if (known != x->shape[a]) {
            lerr(g, i, SN_ERR_SHAPE, "dim %d of the input %s has size %lld, which unflattened_size does not multiply to",
                 a, shape_txt(x, s1, sizeof s1), (long long)x->shape[a]);
            return NULL;
        }
        return sn_reshape(c, x, n, sh);
    }
    case SN_LAYER_PERMUTE: {
        int perm[SN_MAX_DIMS];
        for (int k = 0; k < l->nlist; k++) perm[k] = norm_dim((int)l->list[k], x->ndim);
        return sn_permute(c, x, perm);
    }
    case SN_LAYER_CONCAT: {
        int dim = norm_dim(l->dim, x->ndim), bad = 0;
        for (int k = 1; k < nin; k++)
            if (in[k]->ndim != x->ndim || !dims_equal_but(x, in[k], dim, &bad)) {
                if (in[k]->ndim != x->ndim)
                    lerr(g, i, SN_ERR_SHAPE, "shapes %s and %s have different ranks", shape_txt(x, s1, sizeof s1),
                         shape_txt(in[k], s2, sizeof s2));
                else
                    lerr(g, i, SN_ERR_SHAPE, "shapes %s and %s differ in dim %d (concat joins dim %d)",
                         shape_txt(x, s1, sizeof s1), shape_txt(in[k], s2, sizeof s2), bad, dim);
                return NULL;
            }
        return sn_concat(c, nin, in, dim);
    }
    case SN_LAYER_ADD:
    case SN_LAYER_MUL:
        for (int k = 1; k < nin; k++) {
            /* numpy broadcasting of each later input onto the first */
            const sn_tensor *b = in[k];
            bool ok = b->ndim <= x->ndim;
            int bad = -1;
            for (int d = 0; ok && d < b->ndim; d++) {
                int64_t bd = b->shape[b->ndim - 1 - d], ad = x->shape[x->ndim - 1 - d];
                if (bd != ad && bd != 1) ok = false, bad = x->ndim - 1 - d;
            }
            if (!ok) {
                if (bad >= 0)
                    lerr(g, i, SN_ERR_SHAPE, "shapes %s and %s differ in dim %d", shape_txt(x, s1, sizeof s1),
                         shape_txt(b, s2, sizeof s2), bad);
                else
                    lerr(g, i, SN_ERR_SHAPE, "shape %s does not broadcast onto %s", shape_txt(b, s2, sizeof s2),
                         shape_txt(x, s1, sizeof s1));
                return NULL;
            }
        }
        for (int k = 1; k < nin && x; k++)
            x = l->type == SN_LAYER_ADD ? sn_add(c, x, in[k]) : sn_mul(c, x, in[k]);
        return x;
    case SN_LAYER_ZEROPAD2D:
        r->kind = RK_PAD;
        r->x = x;
        memcpy(r->pad, l->list, sizeof r->pad);
        return make(B, r);
    case SN_LAYER_SLICE: {
        int dim = norm_dim(l->dim, x->ndim);
        int64_t n = x->shape[dim], a = l->start, e = l->end;
        if (a < 0) a += n;
        if (e != SN_SLICE_END && e < 0) e += n;
        if (e == SN_SLICE_END || e > n) e = n;
        if (a < 0) a = 0;
        if (a >= e) {
            lerr(g, i, SN_ERR_SHAPE, "start %lld and end %lld leave nothing of dim %d (size %lld) of %s",
                 (long long)l->start, (long long)(l->end == SN_SLICE_END ? n : l->end), dim, (long long)n,
                 shape_txt(x, s1, sizeof s1));
            return NULL;
        }
        if (fusable(B, src) && B->r[src].kind == RK_CONVT && a == 0 && (dim == 2 || dim == 3)) {
            recipe q = B->r[src];
            if (B->stream && dim == 2) {
                /* carried overlap (stream_check): frames past the chunk, less the bias,
                 * are what the next chunk's first frames miss */
                int64_t k1 = n - e, T = e;
                if (T < k1) {
                    lerr(g, i, SN_ERR_UNSUPPORTED, "a chunk of %lld frames is shorter than the %lld frames carried",
                         (long long)T, (long long)k1);
                    return NULL;
                }
                int64_t sh[4] = {x->shape[0], x->shape[1], k1, x->shape[3]};
                sn_tensor *carry = state_in(B, i, 4, sh, "overlap");
                sn_tensor *tail = time_slice(c, x, T, k1);
                if (q.b) {
                    int64_t bs[4] = {1, q.b->shape[0], 1, 1};
                    tail = sn_add(c, tail, sn_scale(c, sn_reshape(c, q.b, 4, bs), -1.0f));
                }
                state_out(B, carry, tail);
                sn_tensor *y = time_slice(c, x, 0, T);
                int pads[8] = {0, 0, 0, 0, 0, (int)(T - k1), 0, 0};
                return sn_add(c, y, T > k1 ? sn_pad(c, carry, pads) : carry);
            }
            if (q.act == SN_ACT_NONE && q.cb == 0 && q.cr == 0) {
                if (dim == 2) q.cb = (int)(n - e);
                else q.cr = (int)(n - e);
                *r = q;
                return make(B, r);
            }
        }
        int64_t st[SN_MAX_DIMS] = {0}, sh[SN_MAX_DIMS];
        memcpy(sh, x->shape, sizeof sh);
        st[dim] = a;
        sh[dim] = e - a;
        return sn_slice(c, x, st, sh);
    }
    default:
        lerr(g, i, SN_ERR_INTERNAL, "no builder for this type");
        return NULL;
    }
}

static sn_tensor *build(gb *B, sn_tensor *x) {
    const struct sn_graph_model *g = B->g;
    const sn_model_desc *d = &g->d;
    B->x = x;
    char s1[96], s2[96];
    if (x->ndim != 4 || x->shape[1] != 1 || x->shape[3] != d->freq_bins) {
        sn_error(SN_ERR_SHAPE, "model input '%s' is %s; expected [batch, 1, frames, %d]", x->name,
                 shape_txt(x, s1, sizeof s1), d->freq_bins);
        return NULL;
    }
    for (int i = 0; i < d->n; i++) {
        const sn_layer_desc *l = &d->layer[i];
        sn_tensor *in[SN_LAYER_MAX_FROM];
        int nin = ninputs(l);
        for (int k = 0; k < nin; k++) {
            int s = input_of(l, i, k);
            in[k] = s < 0 ? x : B->out[s];
            if (!in[k]) return NULL;
        }
        sn_clear_error();
        B->out[i] = layer(B, i, in, nin);
        if (!B->out[i]) {
            if (strncmp(sn_last_error(), "layer ", 6)) {
                char msg[600];
                snprintf(msg, sizeof msg, "%s", sn_last_error());
                lerr(g, i, SN_ERR_SHAPE, "%s", msg[0] ? msg : "could not build this layer");
            }
            return NULL;
        }
    }
    int last = d->n - 1;
    sn_tensor *y = B->out[last];
    if (d->output_act != SN_ACT_NONE) {
        float p0 = d->output_act == SN_ACT_ELU || d->output_act == SN_ACT_SOFTPLUS ? 1.0f : 0.0f;
        float p1 = d->output_act == SN_ACT_SOFTPLUS ? 20.0f : 0.0f;
        y = activation(B, -1, last, y, d->output_act, p0, p1);
    }
    if (!y) return NULL;
    if (!sn_same_shape(y, x)) {
        sn_error(SN_ERR_SHAPE, "the model's output (layer %d '%s') is %s; it must have the input's shape %s "
                 "([batch, 1, frames, %d])", last, g->label[last], shape_txt(y, s1, sizeof s1),
                 shape_txt(x, s2, sizeof s2), d->freq_bins);
        return NULL;
    }
    if (d->mask) y = sn_mul(B->c, y, x);
    return y;
}

sn_tensor *sn_gmodel_forward(sn_model *m, sn_tensor *x, bool training) {
    gb *B = calloc(1, sizeof *B);
    if (!B) { sn_error(SN_ERR_NOMEM, "out of host memory"); return NULL; }
    B->m = m, B->g = m->graph, B->c = m->ctx, B->training = training;
    sn_tensor *y = build(B, x);
    free(B);
    return y;
}

sn_tensor *sn_gmodel_stream_forward(sn_model *m, sn_stream *s, sn_tensor *x) {
    gb *B = calloc(1, sizeof *B);
    if (!B) { sn_error(SN_ERR_NOMEM, "out of host memory"); return NULL; }
    B->m = m, B->g = m->graph, B->c = m->ctx, B->training = false, B->stream = s;
    sn_tensor *y = build(B, x);
    free(B);
    return y;
}

sn_status sn_graph_model_summary(sn_model *m, int batch, int frames, sn_layer_info *info) {
    if (!m || !m->graph || !info) return sn_error(SN_ERR_INVALID_ARG, "sn_graph_model_summary: a graph model is required");
    if (batch < 1 || frames < 1) return sn_error(SN_ERR_INVALID_ARG, "batch and frames must be positive");
    const struct sn_graph_model *g = m->graph;
    sn_tensor *x = sn_new_4d(m->ctx, batch, 1, frames, g->d.freq_bins, 0, "summary_in");
    gb *B = calloc(1, sizeof *B);
    if (!x || !B) { free(B); return sn_error(SN_ERR_NOMEM, "out of host memory"); }
    B->m = m, B->g = g, B->c = m->ctx, B->training = true;
    sn_tensor *y = build(B, x);
    for (int i = 0; i < g->d.n && y; i++) {
        sn_layer_info *f = &info[i];
        memset(f, 0, sizeof *f);
        snprintf(f->label, sizeof f->label, "%s", g->label[i]);
        f->type = tname(g->d.layer[i].type);
        f->ndim = B->out[i]->ndim;
        memcpy(f->shape, B->out[i]->shape, sizeof f->shape);
        f->params = g->nparam[i];
        f->buffers = g->nbuf[i];
        const sn_layer_desc *l = &g->d.layer[i];
        for (int k = 0; k < l->nfrom; k++) {
            size_t u = strlen(f->from);
            snprintf(f->from + u, sizeof f->from - u, "%s%s", k ? ", " : "", l->from[k] < 0 ? "input" : g->label[l->from[k]]);
        }
    }
    free(B);
    return y ? SN_OK : SN_ERR_CONFIG;
}

/* ---- can it stream? ---- */

static int single_reader(const struct sn_graph_model *g, int i) {
    if (g->consumers[i] != 1) return -1;
    for (int j = i + 1; j < g->d.n; j++)
        for (int k = 0; k < ninputs(&g->d.layer[j]); k++)
            if (input_of(&g->d.layer[j], j, k) == i) return j;
    return -1;
}

bool sn_model_streamable(const sn_model *m, char *why, int n) {
    if (why && n > 0) why[0] = 0;
    if (!m) return false;
    if (!m->graph) {
        if (m->cfg.rnn != SN_RNN_ATTENTION) return true;
        if (why) snprintf(why, (size_t)n, "the attention model has no exact chunked form (no KV cache)");
        return false;
    }
    const struct sn_graph_model *g = m->graph;
    const sn_model_desc *d = &g->d;
    int td[SN_DESC_MAX_LAYERS];
#define NO(...)                                                                                                        \
    do {                                                                                                               \
        if (why) {                                                                                                     \
            int u_ = snprintf(why, (size_t)n, "layer %d '%s' (%s): ", i, g->label[i], tname(l->type));                 \
            if (u_ >= 0 && u_ < n) snprintf(why + u_, (size_t)(n - u_), __VA_ARGS__);                                  \
        }                                                                                                              \
        return false;                                                                                                  \
    } while (0)
    for (int i = 0; i < d->n; i++) {
        const sn_layer_desc *l = &d->layer[i];
        int s0 = input_of(l, i, 0);
        int t = s0 < 0 ? 2 : td[s0];
        int rk = s0 < 0 ? 4 : g->rank[s0];
        int rd = single_reader(g, i);
        if (t < 0) NO("its input no longer has a time dim of its own");
        for (int k = 1; k < ninputs(l); k++) {
            int sk = input_of(l, i, k);
            if ((sk < 0 ? 2 : td[sk]) != t) NO("its inputs hold time in different dims");
        }
        switch (l->type) {
        case SN_LAYER_CONV2D:
            if (t != 2) NO("time must be dim 2 of its input");
            if (l->kernel[0] > 1 || l->stride[0] != 1 || l->padding[0] != 0) {
                const sn_layer_desc *p = s0 >= 0 ? &d->layer[s0] : NULL;
                if (!(l->stride[0] == 1 && l->padding[0] == 0 && p && p->type == SN_LAYER_ZEROPAD2D &&
                      g->consumers[s0] == 1 && p->list[2] == l->kernel[0] - 1 && p->list[3] == 0))
                    NO("a kernel of %d frames is causal only after a zeropad2d of %d frames at the start of time "
                       "(top), with stride 1 and padding 0 in time", l->kernel[0], l->kernel[0] - 1);
            }
            break;
        case SN_LAYER_ZEROPAD2D:
            if (t == rk - 1 && (l->list[0] || l->list[1])) NO("it pads the time dim");
            if (t == rk - 2 && (l->list[2] || l->list[3])) {
                const sn_layer_desc *q = rd >= 0 ? &d->layer[rd] : NULL;
                if (!q || q->type != SN_LAYER_CONV2D || l->list[3] != 0 || l->list[2] != q->kernel[0] - 1)
                    NO("padding in time is causal only as %s frames at the start (top) right before a conv2d with "
                       "a kernel of one frame more", "kernel-1");
            }
            break;
        case SN_LAYER_CONV_TRANSPOSE2D:
            if (t != 2) NO("time must be dim 2 of its input");
            if (l->kernel[0] > 1 || l->stride[0] != 1 || l->padding[0] != 0 || l->output_padding[0] != 0) {
                const sn_layer_desc *q = rd >= 0 ? &d->layer[rd] : NULL;
                bool ok = l->stride[0] == 1 && l->padding[0] == 0 && l->output_padding[0] == 0 && q &&
                          q->type == SN_LAYER_SLICE && norm_dim(q->dim, 4) == 2 && q->start == 0 &&
                          q->end == -(int64_t)(l->kernel[0] - 1);
                if (!ok)
                    NO("a kernel of %d frames is causal only when its only reader is a slice of dim 2 with start 0, "
                       "end %d (dropping the last frames), with stride 1 and padding 0 in time",
                       l->kernel[0], -(l->kernel[0] - 1));
            }
            break;
        case SN_LAYER_BATCHNORM2D:
            if (t == 1) NO("time is its channel dim");
            break;
        case SN_LAYER_LINEAR:
        case SN_LAYER_LAYERNORM:
            if (t == rk - 1) NO("time is its feature (last) dim");
            break;
        case SN_LAYER_LSTM:
        case SN_LAYER_GRU:
            if (t != 1) NO("time must be dim 1 (batch_first)");
            break;
        case SN_LAYER_TRANSFORMER:
            NO("self-attention over the whole sequence has no exact chunked form (no KV cache)");
        case SN_LAYER_RESHAPE:
            for (int k = 0; k <= t; k++)
                if (k >= l->nlist || l->list[k] != 0) NO("it may move the time dim: keep it and the dims before it with 0, or use flatten/unflatten");
            break;
        case SN_LAYER_FLATTEN: {
            int a = norm_dim(l->dim, rk), b = norm_dim(l->end_dim, rk);
            if (t >= a && t <= b && a < b) NO("it merges the time dim with others");
            if (t > b) t -= b - a;
            break;
        }
        case SN_LAYER_UNFLATTEN: {
            int a = norm_dim(l->dim, rk);
            if (a == t) NO("it splits the time dim");
            if (t > a) t += l->nlist - 1;
            break;
        }
        case SN_LAYER_PERMUTE: {
            int nt = -1;
            for (int k = 0; k < l->nlist; k++)
                if (norm_dim((int)l->list[k], rk) == t) nt = k;
            t = nt;
            break;
        }
        case SN_LAYER_CONCAT:
            if (norm_dim(l->dim, rk) == t) NO("it joins along time");
            break;
        case SN_LAYER_SLICE:
            if (norm_dim(l->dim, rk) == t) {
                const sn_layer_desc *p = s0 >= 0 ? &d->layer[s0] : NULL;
                if (!(p && p->type == SN_LAYER_CONV_TRANSPOSE2D && g->consumers[s0] == 1 && p->kernel[0] > 1 &&
                      l->start == 0 && l->end == -(int64_t)(p->kernel[0] - 1)))
                    NO("it cuts the time dim (only the causal crop of a conv_transpose2d can stream)");
            }
            break;
        default:
            break;
        }
        td[i] = t;
    }
    int i = d->n - 1;
    const sn_layer_desc *l = &d->layer[i];
    if (td[i] != 2) NO("the output must hold time in dim 2");
#undef NO
    return true;
}
