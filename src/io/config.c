/* YAML training configuration. See include/sinter/config.h.
 * Table-driven: every key is one row (type, place in the struct, range), so
 * loading, overrides, suggestions and the YAML dump cannot drift apart. */
#define _POSIX_C_SOURCE 200809L
#include "sinter/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "sinter/json.h"
#include "io/model_yaml.h"

typedef enum {
    K_STR,    /* char[size] */
    K_ENUM,   /* char[size], one of choices */
    K_DEVICE, /* char[size], device spec */
    K_INT,    /* int */
    K_I64,    /* int64_t */
    K_F64,    /* double */
    K_BOOL,   /* int 0/1 */
    K_RANGE,  /* double[2], lo <= hi */
    K_F64x2,  /* double[2] */
    K_INTx5,  /* int[5] */
    K_LAYERS, /* model.layers: an int (the CRN's recurrent layers) or a list of layers (model.graph) */
    K_MODELFILE, /* model.file: char[size]; loading it applies the model.* keys it holds */
    K_PREC,   /* int sn_mixed_precision: a boolean, or bf16 / f16 */
} ktype;

typedef struct key_def {
    const char *name;
    ktype type;
    size_t off, size;
    double lo, hi;          /* inclusive bounds for numbers (and list elements) */
    int lo_open, hi_open;   /* 1: bound excluded */
    const char *choices;    /* K_ENUM: space-separated */
} key_def;

#define OFF(m) offsetof(sn_config, m), sizeof(((sn_config *)0)->m)
#define BIG 9.0e18

static const key_def k_keys[] = {
    {"name", K_STR, OFF(name), 0, 0, 0, 0, NULL},
    {"device", K_DEVICE, OFF(device), 0, 0, 0, 0, NULL},
    {"seed", K_I64, OFF(seed), -BIG, BIG, 0, 0, NULL},
    {"out_dir", K_STR, OFF(out_dir), 0, 0, 0, 0, NULL},
    {"data.clean_dir", K_STR, OFF(data.clean_dir), 0, 0, 0, 0, NULL},
    {"data.noise_dir", K_STR, OFF(data.noise_dir), 0, 0, 0, 0, NULL},
    {"data.noisy_dir", K_STR, OFF(data.noisy_dir), 0, 0, 0, 0, NULL},
    {"data.list_file", K_STR, OFF(data.list_file), 0, 0, 0, 0, NULL},
    {"data.valid_dir", K_STR, OFF(data.valid_dir), 0, 0, 0, 0, NULL},
    {"data.valid_fraction", K_F64, OFF(data.valid_fraction), 0, 0.5, 0, 0, NULL},
    {"data.sample_rate", K_INT, OFF(data.sample_rate), 1000, 384000, 0, 0, NULL},
    {"data.segment_seconds", K_F64, OFF(data.segment_seconds), 0, 3600, 1, 0, NULL},
    {"data.snr_db", K_RANGE, OFF(data.snr_db), -100, 100, 0, 0, NULL},
    {"data.gain_db", K_RANGE, OFF(data.gain_db), -100, 40, 0, 0, NULL},
    {"data.cache_mb", K_I64, OFF(data.cache_mb), 0, 1 << 24, 0, 0, NULL},
    {"train.batch_size", K_INT, OFF(train.batch_size), 1, 1 << 20, 0, 0, NULL},
    {"train.num_workers", K_INT, OFF(train.num_workers), 0, 1024, 0, 0, NULL},
    {"train.mixed_precision", K_PREC, OFF(train.mixed_precision), 0, 0, 0, 0, NULL},
    {"train.tf32", K_BOOL, OFF(train.tf32), 0, 0, 0, 0, NULL},
    {"train.epochs", K_INT, OFF(train.epochs), 0, 1e9, 0, 0, NULL},
    {"train.max_steps", K_I64, OFF(train.max_steps), 0, BIG, 0, 0, NULL},
    {"train.steps_per_epoch", K_I64, OFF(train.steps_per_epoch), 0, BIG, 0, 0, NULL},
    {"train.lr", K_F64, OFF(train.lr), 0, 1e3, 1, 0, NULL},
    {"train.optimizer", K_ENUM, OFF(train.optimizer), 0, 0, 0, 0, "adam adamw sgd"},
    {"train.weight_decay", K_F64, OFF(train.weight_decay), 0, 1e3, 0, 0, NULL},
    {"train.momentum", K_F64, OFF(train.momentum), 0, 1, 0, 1, NULL},
    {"train.betas", K_F64x2, OFF(train.betas), 0, 1, 0, 1, NULL},
    {"train.eps", K_F64, OFF(train.eps), 0, 1, 1, 0, NULL},
    {"train.grad_clip", K_F64, OFF(train.grad_clip), 0, 1e12, 0, 0, NULL},
    {"train.schedule", K_ENUM, OFF(train.schedule), 0, 0, 0, 0, "constant cosine step"},
    {"train.warmup_steps", K_I64, OFF(train.warmup_steps), 0, BIG, 0, 0, NULL},
    {"train.step_size", K_I64, OFF(train.step_size), 1, BIG, 0, 0, NULL},
    {"train.gamma", K_F64, OFF(train.gamma), 0, 1e3, 1, 0, NULL},
    {"train.log_every", K_I64, OFF(train.log_every), 1, BIG, 0, 0, NULL},
    {"train.valid_every", K_I64, OFF(train.valid_every), 0, BIG, 0, 0, NULL},
    {"train.ckpt_every", K_I64, OFF(train.ckpt_every), 0, BIG, 0, 0, NULL},
    {"train.audio_samples", K_INT, OFF(train.audio_samples), 0, 1000, 0, 0, NULL},
    {"model.name", K_ENUM, OFF(model.name), 0, 0, 0, 0, "crn graph"},
    {"model.rnn", K_ENUM, OFF(model.rnn), 0, 0, 0, 0, "lstm gru attention"},
    {"model.hidden", K_INT, OFF(model.hidden), 1, 1 << 16, 0, 0, NULL},
    {"model.layers", K_LAYERS, OFF(model.layers), 1, 64, 0, 0, NULL},
    {"model.channels", K_INTx5, OFF(model.channels), 1, 1 << 14, 0, 0, NULL},
    {"model.file", K_MODELFILE, OFF(model.file), 0, 0, 0, 0, NULL},
    {"model.output", K_ENUM, OFF(model.output), 0, 0, 0, 0, "mapping mask"},
    {"model.output_activation", K_ENUM, OFF(model.output_activation), 0, 0, 0, 0, "none relu sigmoid softplus tanh elu"},
    {"model.loss", K_ENUM, OFF(model.loss), 0, 0, 0, 0, "mse l1"},
    {"model.sync_bn", K_BOOL, OFF(model.sync_bn), 0, 0, 0, 0, NULL},
};
#define NKEYS ((int)(sizeof k_keys / sizeof k_keys[0]))
static const char *const k_sections[] = {"data", "train", "model"};
#define NSECTIONS 3

int sn_config_key_count(void) { return NKEYS; }
const char *sn_config_key_name(int i) { return i >= 0 && i < NKEYS ? k_keys[i].name : NULL; }

void sn_config_defaults(sn_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->name, "crn");
    strcpy(c->device, "auto");
    c->seed = 0;
    strcpy(c->out_dir, "runs");
    c->data.valid_fraction = 0.1;
    c->data.sample_rate = 16000;
    c->data.segment_seconds = 4.0;
    c->data.snr_db[0] = -5;
    c->data.snr_db[1] = 15;
    c->data.gain_db[0] = -10;
    c->data.gain_db[1] = 0;
    c->data.cache_mb = 1024;
    c->train.batch_size = 4;
    c->train.num_workers = 2;
    c->train.epochs = 50;
    c->train.lr = 1e-3;
    strcpy(c->train.optimizer, "adam");
    c->train.momentum = 0.9;
    c->train.betas[0] = 0.9;
    c->train.betas[1] = 0.999;
    c->train.eps = 1e-8;
    strcpy(c->train.schedule, "constant");
    c->train.step_size = 10000;
    c->train.gamma = 0.1;
    c->train.log_every = 50;
    c->train.ckpt_every = 1000;
    c->train.audio_samples = 4;
    strcpy(c->model.name, "crn");
    strcpy(c->model.rnn, "lstm");
    c->model.hidden = 1024;
    c->model.layers = 2;
    static const int ch[SN_CONFIG_CHANNELS] = {16, 32, 64, 128, 256};
    memcpy(c->model.channels, ch, sizeof ch);
    strcpy(c->model.output, "mapping");
    strcpy(c->model.output_activation, "none");
    strcpy(c->model.loss, "mse");
    sn_model_desc_init(&c->model.graph);
}

/* ---- suggestions ---- */

static size_t levenshtein(const char *a, const char *b) { return sn_levenshtein(a, b); }

static const char *leaf_of(const char *k) {
    const char *d = strrchr(k, '.');
    return d ? d + 1 : k;
}

const char *sn_config_suggest(const char *key) {
    if (!key) return NULL;
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (int i = 0; i < NKEYS; i++) {
        size_t d = levenshtein(key, k_keys[i].name);
        if (d < bd) {
            bd = d;
            best = k_keys[i].name;
        }
    }
    /* A misspelt section at the top level of a file ("trian:"). */
    if (!strchr(key, '.'))
        for (int i = 0; i < NSECTIONS; i++) {
            size_t d = levenshtein(key, k_sections[i]);
            if (d < bd) {
                bd = d;
                best = k_sections[i];
            }
        }
    size_t kl = strlen(key);
    size_t limit = kl / 3 > 2 ? kl / 3 : 2;
    if (best && bd <= limit) return best;
    /* Right name, wrong section ("train.sample_rate" -> "data.sample_rate"). */
    const char *leaf = leaf_of(key);
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(leaf_of(k_keys[i].name), leaf) == 0) return k_keys[i].name;
    for (int i = 0; i < NKEYS; i++)
        if (levenshtein(leaf, leaf_of(k_keys[i].name)) <= 2 && strlen(leaf) > 3) return k_keys[i].name;
    return NULL;
}

static sn_status unknown_key(const char *where, const char *key) {
    const char *s = sn_config_suggest(key);
    if (s) return sn_error(SN_ERR_CONFIG, "%s: unknown key '%s'; did you mean '%s'?", where, key, s);
    return sn_error(SN_ERR_CONFIG, "%s: unknown key '%s'; valid keys are name, device, seed, out_dir, data.*, train.*, model.* "
                    "(see conf/prototype.yaml)",
                    where, key);
}

static const key_def *find_key(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(k_keys[i].name, name) == 0) return &k_keys[i];
    return NULL;
}

static int is_section(const char *name) {
    for (int i = 0; i < NSECTIONS; i++)
        if (strcmp(k_sections[i], name) == 0) return 1;
    return 0;
}

/* ---- scalar parsing ---- */

static int parse_i64(const char *s, int64_t *out) {
    if (!*s) return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || isspace((unsigned char)*s)) return 0;
    *out = v;
    return 1;
}

static int parse_f64(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    /* strtod also takes hex, inf and nan; YAML users mean none of those. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_bool(const char *s, int *out) {
    static const char *t[] = {"true", "yes", "on", "1"}, *f[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) { *out = 1; return 1; }
        if (strcasecmp(s, f[i]) == 0) { *out = 0; return 1; }
    }
    return 0;
}

static int valid_device(const char *s) {
    if (!strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cuda") || !strcmp(s, "vulkan")) return 1;
    const char *n = NULL;
    if (!strncmp(s, "cuda:", 5)) n = s + 5;
    else if (!strncmp(s, "vulkan:", 7)) n = s + 7;
    if (!n || !*n || strlen(n) > 3) return 0;
    for (; *n; n++)
        if (!isdigit((unsigned char)*n)) return 0;
    return 1;
}

/* A run name becomes one folder below out_dir: one path component of safe characters. */
static int safe_run_name(const char *s) {
    if (!strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '.' || *s == '_' || *s == '-')) return 0;
    return 1;
}

static sn_status bad_run_name(const char *where, const char *s) {
    return sn_error(SN_ERR_CONFIG,
                    "%s: name = '%s' is not a valid run name; it becomes a folder below out_dir, so use only "
                    "letters, digits, '.', '_' and '-' (no '/', not '.' or '..')",
                    where, s);
}

static int choice_ok(const char *choices, const char *s) {
    size_t n = strlen(s);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, s, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* `where` is "file:line" or "override 'k=v'". */
static sn_status check_range(const char *where, const key_def *k, double v, const char *elem) {
    int bad = (k->lo_open ? v <= k->lo : v < k->lo) || (k->hi_open ? v >= k->hi : v > k->hi);
    if (!bad) return SN_OK;
    /* integers print as integers: 1048576, not 1.04858e+06 */
    int integral = k->type == K_INT || k->type == K_I64 || k->type == K_INTx5;
    const char *f = integral ? "%.0f" : "%g";
    char lo[40], hi[40], val[40], range[128];
    snprintf(lo, sizeof lo, f, k->lo);
    snprintf(hi, sizeof hi, f, k->hi);
    snprintf(val, sizeof val, f, v);
    if (k->hi >= BIG) snprintf(range, sizeof range, "%s %s", k->lo_open ? ">" : ">=", lo);
    else snprintf(range, sizeof range, "in %s%s, %s%s", k->lo_open ? "(" : "[", lo, hi, k->hi_open ? ")" : "]");
    return sn_error(SN_ERR_CONFIG, "%s: %s%s = %s is out of range; it must be %s", where, k->name, elem, val, range);
}

static const char *kind_name(ktype t) {
    switch (t) {
    case K_INT:
    case K_I64: return "an integer";
    case K_LAYERS: return "an integer (the CRN's recurrent layers) or a list of layers";
    case K_F64: return "a number";
    case K_BOOL: return "a boolean (true or false)";
    case K_PREC: return "true, false, bf16 or f16";
    case K_RANGE: return "a list of two numbers [lo, hi]";
    case K_F64x2: return "a list of two numbers";
    case K_INTx5: return "a list of 5 integers";
    default: return "a string";
    }
}

/* Sets one scalar element (i = index for lists, -1 for plain keys). */
static sn_status set_scalar(const char *where, const key_def *k, sn_config *c, const char *s, int i) {
    char *base = (char *)c + k->off;
    char elem[16] = "";
    if (i >= 0) snprintf(elem, sizeof elem, "[%d]", i);
    switch (k->type) {
    case K_STR:
    case K_ENUM:
    case K_DEVICE:
    case K_MODELFILE: {
        size_t n = strlen(s);
        if (n >= k->size)
            return sn_error(SN_ERR_CONFIG, "%s: %s is %zu characters long; at most %zu are allowed", where, k->name, n,
                            k->size - 1);
        if (k->type == K_ENUM && !choice_ok(k->choices, s))
            return sn_error(SN_ERR_CONFIG, "%s: %s = '%s' is not valid; choose one of: %s", where, k->name, s, k->choices);
        if (k->off == offsetof(sn_config, name) && !safe_run_name(s)) return bad_run_name(where, s);
        if (k->type == K_DEVICE && !valid_device(s))
            return sn_error(SN_ERR_CONFIG,
                            "%s: device = '%s' is not valid; use auto, cpu, cuda, cuda:N, vulkan or vulkan:N "
                            "('sinter devices' lists them)",
                            where, s);
        memcpy(base, s, n + 1);
        return SN_OK;
    }
    case K_INT:
    case K_I64:
    case K_INTx5:
    case K_LAYERS: {
        int64_t v;
        if (!parse_i64(s, &v))
            return sn_error(SN_ERR_CONFIG, "%s: %s%s: expected an integer, got '%s'", where, k->name, elem, s);
        sn_status st = check_range(where, k, (double)v, elem);
        if (st) return st;
        if (k->type == K_I64) *(int64_t *)(void *)base = v;
        else ((int *)(void *)base)[i < 0 ? 0 : i] = (int)v;
        return SN_OK;
    }
    case K_F64:
    case K_RANGE:
    case K_F64x2: {
        double v;
        if (!parse_f64(s, &v))
            return sn_error(SN_ERR_CONFIG, "%s: %s%s: expected a number, got '%s'", where, k->name, elem, s);
        sn_status st = check_range(where, k, v, elem);
        if (st) return st;
        ((double *)(void *)base)[i < 0 ? 0 : i] = v;
        return SN_OK;
    }
    case K_BOOL: {
        int v;
        if (!parse_bool(s, &v))
            return sn_error(SN_ERR_CONFIG, "%s: %s: expected a boolean (true or false), got '%s'", where, k->name, s);
        *(int *)(void *)base = v;
        return SN_OK;
    }
    case K_PREC: {
        /* true: the device's best 16-bit type (bf16 where it has it), as before this took names */
        int v;
        if (parse_bool(s, &v)) v = v ? SN_MP_AUTO : SN_MP_OFF;
        else if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16")) v = SN_MP_BF16;
        else if (!strcasecmp(s, "f16") || !strcasecmp(s, "fp16") || !strcasecmp(s, "float16")) v = SN_MP_F16;
        else
            return sn_error(SN_ERR_CONFIG, "%s: %s: expected true, false, bf16 or f16, got '%s'", where, k->name, s);
        *(int *)(void *)base = v;
        return SN_OK;
    }
    }
    return sn_error(SN_ERR_INTERNAL, "config: bad key type");
}

static int list_len(ktype t) { return t == K_INTx5 ? SN_CONFIG_CHANNELS : (t == K_RANGE || t == K_F64x2) ? 2 : 0; }

/* Checks a scalar's bytes: libyaml allows \0 escapes, C strings do not. */
static int scalar_text(yaml_node_t *n, const char **out) {
    if (memchr(n->data.scalar.value, 0, n->data.scalar.length)) return 0;
    *out = (const char *)n->data.scalar.value;
    return 1;
}

static const char *node_kind(yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static int is_null_scalar(yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static sn_status apply_mapping(const char *label, const char *prefix, sn_config *c, yaml_document_t *doc,
                               yaml_node_t *map);

/* model.file: a YAML file holding model.* keys (name, layers, output, ...) or just
 * the layer list. A relative path is looked up beside the config that names it
 * first, then from the working directory. */
static sn_status load_model_file(const char *where, const char *parent, sn_config *c, const char *path) {
    char full[SN_CONFIG_STR * 2];
    snprintf(full, sizeof full, "%s", path);
    const char *slash = parent ? strrchr(parent, '/') : NULL;
    if (path[0] != '/' && slash) {
        snprintf(full, sizeof full, "%.*s/%s", (int)(slash - parent), parent, path);
        FILE *t = fopen(full, "rb");
        if (t) fclose(t);
        else snprintf(full, sizeof full, "%s", path);
    }
    if (strlen(full) >= SN_CONFIG_STR)
        return sn_error(SN_ERR_CONFIG, "%s: model.file path is too long", where);
    struct stat sb;
    if (stat(full, &sb) != 0)
        return sn_error(SN_ERR_IO, "%s: cannot open model.file '%s': %s", where, full, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return sn_error(SN_ERR_IO, "%s: model.file '%s' is not a regular file", where, full);
    FILE *f = fopen(full, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open model.file '%s': %s", where, full, strerror(errno));
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        return sn_error(SN_ERR_NOMEM, "%s: cannot initialise the YAML parser", full);
    }
    yaml_parser_set_input_file(&p, f);
    yaml_document_t doc;
    sn_status st = SN_OK;
    if (!yaml_parser_load(&p, &doc)) {
        st = sn_error(SN_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s; fix the YAML syntax", full,
                      p.problem_mark.line + 1, p.problem_mark.column + 1, p.problem ? p.problem : "malformed YAML");
        yaml_parser_delete(&p);
        fclose(f);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null_scalar(root)) {
        st = sn_error(SN_ERR_CONFIG, "%s: model.file '%s' is empty", where, full);
    } else if (root->type == YAML_SEQUENCE_NODE) {
        st = sn_desc_from_yaml_node(&doc, root, full, &c->model.graph);
        if (st == SN_OK) strcpy(c->model.name, "graph");
    } else if (root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < root->data.mapping.pairs.top && !st; q++) {
            yaml_node_t *kn = yaml_document_get_node(&doc, q->key);
            if (kn && kn->type == YAML_SCALAR_NODE && !strcmp((const char *)kn->data.scalar.value, "file"))
                st = sn_error(SN_ERR_CONFIG, "%s:%zu: a model file cannot name another model.file", full,
                              kn->start_mark.line + 1);
        }
        if (st == SN_OK) st = apply_mapping(full, "model", c, &doc, root);
    } else {
        st = sn_error(SN_ERR_CONFIG, "%s:%zu: a model file holds model.* keys (name, layers, ...) or a list of layers, "
                      "got a scalar", full, root->start_mark.line + 1);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
    if (st == SN_OK) snprintf(c->model.file, sizeof c->model.file, "%s", full);
    return st;
}

/* label: the file the node comes from (NULL for an override): model.file is looked up beside it */
static sn_status set_node(const char *where, const char *label, const key_def *k, sn_config *c,
                          yaml_document_t *doc, yaml_node_t *n) {
    if (k->type == K_LAYERS && n->type == YAML_SEQUENCE_NODE) {
        sn_status st = sn_desc_from_yaml_node(doc, n, label ? label : where, &c->model.graph);
        if (st == SN_OK) strcpy(c->model.name, "graph");
        return st;
    }
    if (k->type == K_MODELFILE && n->type == YAML_SCALAR_NODE && !is_null_scalar(n)) {
        const char *s;
        if (!scalar_text(n, &s)) return sn_error(SN_ERR_CONFIG, "%s: %s: value contains a NUL character", where, k->name);
        if (!*s) { c->model.file[0] = 0; return SN_OK; }
        return load_model_file(where, label, c, s);
    }
    int want = list_len(k->type);
    if (want) {
        if (n->type != YAML_SEQUENCE_NODE)
            return sn_error(SN_ERR_CONFIG, "%s: %s: expected %s, got %s", where, k->name, kind_name(k->type),
                            node_kind(n));
        int have = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (have != want)
            return sn_error(SN_ERR_CONFIG, "%s: %s: expected %s, got %d element%s", where, k->name, kind_name(k->type),
                            have, have == 1 ? "" : "s");
        for (int i = 0; i < want; i++) {
            yaml_node_t *e = yaml_document_get_node(doc, n->data.sequence.items.start[i]);
            const char *s;
            if (!e || e->type != YAML_SCALAR_NODE)
                return sn_error(SN_ERR_CONFIG, "%s: %s[%d]: expected a number, got %s", where, k->name, i,
                                e ? node_kind(e) : "nothing");
            if (!scalar_text(e, &s))
                return sn_error(SN_ERR_CONFIG, "%s: %s[%d]: value contains a NUL character", where, k->name, i);
            sn_status st = set_scalar(where, k, c, s, i);
            if (st) return st;
        }
        if (k->type == K_RANGE) {
            double *r = (double *)(void *)((char *)c + k->off);
            if (r[0] > r[1])
                return sn_error(SN_ERR_CONFIG, "%s: %s = [%g, %g]: lo must not exceed hi", where, k->name, r[0], r[1]);
        }
        return SN_OK;
    }
    if (n->type != YAML_SCALAR_NODE)
        return sn_error(SN_ERR_CONFIG, "%s: %s: expected %s, got %s", where, k->name, kind_name(k->type), node_kind(n));
    const char *s;
    if (!scalar_text(n, &s)) return sn_error(SN_ERR_CONFIG, "%s: %s: value contains a NUL character", where, k->name);
    /* An empty value clears a path ("noise_dir:"), but is no number. */
    if (is_null_scalar(n)) {
        if (k->type == K_STR || k->type == K_MODELFILE) {
            ((char *)c + k->off)[0] = 0;
            return SN_OK;
        }
        return sn_error(SN_ERR_CONFIG, "%s: %s: expected %s, got an empty value", where, k->name, kind_name(k->type));
    }
    return set_scalar(where, k, c, s, -1);
}

/* ---- YAML documents ---- */

static sn_status yaml_fail(yaml_parser_t *p, const char *label) {
    const char *prob = p->problem ? p->problem : "malformed YAML";
    if (p->context)
        return sn_error(SN_ERR_CONFIG,
                        "%s:%zu:%zu: YAML syntax error: %s %s started at line %zu, column %zu; fix the YAML syntax",
                        label, p->problem_mark.line + 1, p->problem_mark.column + 1, prob, p->context,
                        p->context_mark.line + 1, p->context_mark.column + 1);
    return sn_error(SN_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s; fix the YAML syntax", label,
                    p->problem_mark.line + 1, p->problem_mark.column + 1, prob);
}

static sn_status apply_mapping(const char *label, const char *prefix, sn_config *c, yaml_document_t *doc,
                               yaml_node_t *map) {
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(doc, pr->key), *vn = yaml_document_get_node(doc, pr->value);
        if (!kn || !vn) return sn_error(SN_ERR_CONFIG, "%s: malformed mapping", label);
        char where[1200];
        snprintf(where, sizeof where, "%s:%zu", label, kn->start_mark.line + 1);
        const char *ks;
        if (kn->type != YAML_SCALAR_NODE || !scalar_text(kn, &ks))
            return sn_error(SN_ERR_CONFIG, "%s: keys must be plain names, got %s", where, node_kind(kn));
        char full[256];
        if (snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", ks) >= (int)sizeof full)
            return sn_error(SN_ERR_CONFIG, "%s: key '%.40s...' is too long", where, ks);
        /* Duplicates are a mistake YAML parsers silently accept. */
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
            yaml_node_t *qk = yaml_document_get_node(doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE && !strcmp((const char *)qk->data.scalar.value, ks))
                return sn_error(SN_ERR_CONFIG, "%s: key '%s' appears twice (first at line %zu)", where, full,
                                qk->start_mark.line + 1);
        }
        if (!*prefix && is_section(ks)) {
            if (is_null_scalar(vn)) continue; /* "train:" with nothing under it */
            if (vn->type != YAML_MAPPING_NODE)
                return sn_error(SN_ERR_CONFIG, "%s: '%s' must be a mapping of %s.* keys, got %s", where, ks, ks,
                                node_kind(vn));
            sn_status st = apply_mapping(label, ks, c, doc, vn);
            if (st) return st;
            continue;
        }
        const key_def *k = find_key(full);
        if (!k) return unknown_key(where, full);
        sn_status st = set_node(where, label, k, c, doc, vn);
        if (st) return st;
    }
    return SN_OK;
}

/* A mapping with `layers:` at the top is a model file (name, layers, output, ...). */
static int model_file_root(yaml_document_t *doc, yaml_node_t *root) {
    for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < root->data.mapping.pairs.top; q++) {
        yaml_node_t *k = yaml_document_get_node(doc, q->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, "layers")) return 1;
    }
    return 0;
}

static sn_status load_parser(yaml_parser_t *p, const char *label, sn_config *out) {
    yaml_document_t doc;
    if (!yaml_parser_load(p, &doc)) return yaml_fail(p, label);
    sn_config c;
    sn_config_defaults(&c);
    sn_status st = SN_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null_scalar(root)) {
        if (root->type == YAML_MAPPING_NODE && model_file_root(&doc, root)) {
            /* a model file (as in conf/models) given where a config goes: its keys are model keys */
            st = apply_mapping(label, "model", &c, &doc, root);
            if (st == SN_OK) snprintf(c.model.file, sizeof c.model.file, "%s", label);
        } else if (root->type != YAML_MAPPING_NODE)
            st = sn_error(SN_ERR_CONFIG, "%s:%zu: the config must be a mapping of keys (name: ..., train: ...), got %s",
                          label, root->start_mark.line + 1, node_kind(root));
        else
            st = apply_mapping(label, "", &c, &doc, root);
    }
    yaml_document_delete(&doc);
    if (st == SN_OK) {
        /* A second document is almost surely a mistake ("---" in the middle). */
        yaml_document_t extra;
        if (!yaml_parser_load(p, &extra)) return yaml_fail(p, label);
        int has = yaml_document_get_root_node(&extra) != NULL;
        size_t line = has ? yaml_document_get_root_node(&extra)->start_mark.line + 1 : 0;
        yaml_document_delete(&extra);
        if (has)
            return sn_error(SN_ERR_CONFIG, "%s:%zu: a second YAML document ('---') follows; a config file holds one",
                            label, line);
        *out = c;
    }
    return st;
}

/* libyaml's scanner costs O(depth) per token (it rechecks every open flow
 * level), so 100,000 nested '[' take seconds to minutes: the nesting is
 * counted on the event stream first, which stops at the first level too deep. */
static sn_status check_depth(const unsigned char *text, size_t n, const char *label) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sn_error(SN_ERR_NOMEM, "%s: cannot initialise the YAML parser", label);
    yaml_parser_set_input_string(&p, text, n);
    sn_status st = SN_OK;
    int depth = 0;
    for (int done = 0; !done && st == SN_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) break; /* the loader reports syntax errors in its own words */
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth > SN_CONFIG_MAX_DEPTH)
                st = sn_error(SN_ERR_CONFIG, "%s:%zu:%zu: lists and mappings are nested deeper than %d levels; a "
                              "config needs 3 at most (is it the right file?)",
                              label, ev.start_mark.line + 1, ev.start_mark.column + 1, SN_CONFIG_MAX_DEPTH);
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return st;
}

static sn_status load_text(const char *text, size_t n, const char *label, sn_config *c) {
    if (n > SN_CONFIG_MAX_BYTES)
        return sn_error(SN_ERR_CONFIG, "%s: the config is %zu bytes; at most %d are read (a config is a few KB: is "
                        "it the right file?)", label, n, SN_CONFIG_MAX_BYTES);
    sn_status st = check_depth((const unsigned char *)text, n, label);
    if (st != SN_OK) return st;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sn_error(SN_ERR_NOMEM, "%s: cannot initialise the YAML parser", label);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
    st = load_parser(&p, label, c);
    yaml_parser_delete(&p);
    return st;
}

sn_status sn_config_from_yaml_string(const char *text, const char *label, sn_config *c) {
    if (!text || !c) return sn_error(SN_ERR_INVALID_ARG, "sn_config_from_yaml_string: NULL argument");
    if (!label) label = "<config>";
    return load_text(text, strlen(text), label, c);
}

sn_status sn_config_load(const char *path, sn_config *c) {
    if (!path || !c) return sn_error(SN_ERR_INVALID_ARG, "sn_config_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "cannot open config '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return sn_error(SN_ERR_IO, "config '%s' is a folder, not a file; give the YAML file (e.g. "
                        "conf/prototype.yaml)", path);
    }
    /* read at most one byte past the cap (the size of a pipe or device is not known before) */
    size_t cap = SN_CONFIG_MAX_BYTES + 1, n = 0;
    char *text = malloc(cap + 1);
    if (!text) {
        fclose(f);
        return sn_error(SN_ERR_NOMEM, "%s: out of memory reading the config", path);
    }
    for (size_t got; n < cap && (got = fread(text + n, 1, cap - n, f)) > 0;) n += got;
    int err = ferror(f) ? errno : 0;
    fclose(f);
    text[n] = 0;
    sn_status st;
    if (err) st = sn_error(SN_ERR_IO, "cannot read config '%s': %s", path, strerror(err));
    else if (n > SN_CONFIG_MAX_BYTES)
        st = sn_error(SN_ERR_CONFIG, "config '%s' is larger than %d bytes; a config is a few KB: is it the right "
                      "file?", path, SN_CONFIG_MAX_BYTES);
    else st = load_text(text, n, path, c);
    free(text);
    return st;
}

sn_status sn_config_override(sn_config *c, const char *kv) {
    if (!c || !kv) return sn_error(SN_ERR_INVALID_ARG, "sn_config_override: NULL argument");
    char where[300];
    snprintf(where, sizeof where, "override '%.250s'", kv);
    const char *eq = strchr(kv, '=');
    if (!eq)
        return sn_error(SN_ERR_CONFIG, "%s: expected key=value, e.g. train.lr=3e-4 or device=cuda:0", where);
    size_t kl = (size_t)(eq - kv);
    char key[128];
    if (kl == 0) return sn_error(SN_ERR_CONFIG, "%s: the key before '=' is empty; expected key=value", where);
    if (kv[0] == '+' || kv[0] == '~')
        return sn_error(SN_ERR_CONFIG, "%s: '%c' (hydra's add/delete) is not supported; write key=value", where, kv[0]);
    if (kl >= sizeof key) return sn_error(SN_ERR_CONFIG, "%s: key is too long", where);
    memcpy(key, kv, kl);
    key[kl] = 0;
    for (size_t i = 0; i < kl; i++)
        if (!(islower((unsigned char)key[i]) || isdigit((unsigned char)key[i]) || key[i] == '_' || key[i] == '.'))
            return sn_error(SN_ERR_CONFIG, "%s: key '%s' has a character that no key has ('%c'); keys look like "
                            "train.batch_size",
                            where, key, key[i]);
    const key_def *k = find_key(key);
    if (!k) {
        if (is_section(key))
            return sn_error(SN_ERR_CONFIG, "%s: '%s' is a section; override one of its keys, e.g. %s", where, key,
                            sn_config_suggest(key) ? sn_config_suggest(key) : "train.lr");
        return unknown_key(where, key);
    }
    const char *val = eq + 1;
    sn_config tmp = *c;
    sn_status st;
    if (k->type == K_STR || k->type == K_ENUM || k->type == K_DEVICE) {
        /* Paths are taken literally: "a: b" or "#x" would confuse YAML. */
        st = set_scalar(where, k, &tmp, val, -1);
    } else {
        st = check_depth((const unsigned char *)val, strlen(val), where);
        if (st != SN_OK) return st;
        yaml_parser_t p;
        if (!yaml_parser_initialize(&p)) return sn_error(SN_ERR_NOMEM, "%s: cannot initialise the YAML parser", where);
        yaml_parser_set_input_string(&p, (const unsigned char *)val, strlen(val));
        yaml_document_t doc;
        if (!yaml_parser_load(&p, &doc)) {
            st = sn_error(SN_ERR_CONFIG, "%s: value '%s' is not valid YAML: %s", where, val,
                          p.problem ? p.problem : "syntax error");
            yaml_parser_delete(&p);
            return st;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root)
            st = sn_error(SN_ERR_CONFIG, "%s: %s: expected %s, got an empty value", where, k->name, kind_name(k->type));
        else
            st = set_node(where, NULL, k, &tmp, &doc, root);
        yaml_document_delete(&doc);
        yaml_parser_delete(&p);
    }
    if (st == SN_OK) *c = tmp;
    return st;
}

const char *sn_mixed_precision_name(int mp) {
    switch (mp) {
    case SN_MP_OFF: return "false";
    case SN_MP_BF16: return "bf16";
    case SN_MP_F16: return "f16";
    default: return "true";
    }
}

sn_status sn_config_validate(const sn_config *c) {
    if (!c) return sn_error(SN_ERR_INVALID_ARG, "sn_config_validate: NULL config");
    if (memchr(c->name, 0, sizeof c->name) == NULL || !safe_run_name(c->name)) return bad_run_name("config", c->name);
    if (c->train.epochs == 0 && c->train.max_steps == 0)
        return sn_error(SN_ERR_CONFIG, "train.epochs and train.max_steps are both 0: set one of them (e.g. "
                        "train.epochs=50)");
    if (c->data.noisy_dir[0] && !c->data.clean_dir[0])
        return sn_error(SN_ERR_CONFIG, "data.noisy_dir is set but data.clean_dir is not: the paired layout needs both");
    if (c->train.warmup_steps && c->train.max_steps && c->train.warmup_steps > c->train.max_steps)
        return sn_error(SN_ERR_CONFIG, "train.warmup_steps (%lld) exceeds train.max_steps (%lld)",
                        (long long)c->train.warmup_steps, (long long)c->train.max_steps);
    bool graph = !strcmp(c->model.name, "graph");
    if (graph && c->model.graph.n == 0)
        return sn_error(SN_ERR_CONFIG, "model.name is graph but no layers are given: list them under model.layers, or "
                        "name a file with model.file (see conf/models/)");
    if (!graph && c->model.graph.n > 0)
        return sn_error(SN_ERR_CONFIG, "model.layers lists %d layers, but model.name is '%s': set model.name: graph to "
                        "train them", c->model.graph.n, c->model.name);
    if (!graph && (strcmp(c->model.output, "mapping") || strcmp(c->model.output_activation, "none")))
        return sn_error(SN_ERR_CONFIG, "model.output and model.output_activation apply to model.name: graph; the %s "
                        "model has its own output", c->model.name);
    return SN_OK;
}

/* ---- YAML output ---- */

/* Shortest text that reads back to exactly x. */
static void put_double(sn_json_buf *b, double x) {
    char s[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, x);
        if (strtod(s, NULL) == x) break;
    }
    sn_json_buf_puts(b, s);
}

static void put_value(sn_json_buf *b, const key_def *k, const sn_config *c) {
    const char *base = (const char *)c + k->off;
    switch (k->type) {
    case K_STR:
    case K_ENUM:
    case K_DEVICE:
        /* A JSON string is a valid YAML double-quoted scalar. */
        sn_json_buf_string(b, base, strlen(base));
        break;
    case K_MODELFILE:
        /* what the file gave is in the dump itself */
        sn_json_buf_puts(b, "\"\"");
        break;
    case K_LAYERS: sn_json_buf_printf(b, "%d", *(const int *)(const void *)base); break;
    case K_INT: sn_json_buf_printf(b, "%d", *(const int *)(const void *)base); break;
    case K_I64: sn_json_buf_printf(b, "%lld", (long long)*(const int64_t *)(const void *)base); break;
    case K_BOOL: sn_json_buf_puts(b, *(const int *)(const void *)base ? "true" : "false"); break;
    case K_PREC: sn_json_buf_puts(b, sn_mixed_precision_name(*(const int *)(const void *)base)); break;
    case K_F64: put_double(b, *(const double *)(const void *)base); break;
    case K_RANGE:
    case K_F64x2: {
        const double *d = (const double *)(const void *)base;
        sn_json_buf_puts(b, "[");
        put_double(b, d[0]);
        sn_json_buf_puts(b, ", ");
        put_double(b, d[1]);
        sn_json_buf_puts(b, "]");
        break;
    }
    case K_INTx5: {
        const int *v = (const int *)(const void *)base;
        sn_json_buf_puts(b, "[");
        for (int i = 0; i < SN_CONFIG_CHANNELS; i++) sn_json_buf_printf(b, "%s%d", i ? ", " : "", v[i]);
        sn_json_buf_puts(b, "]");
        break;
    }
    }
}

sn_status sn_config_to_yaml(const sn_config *c, char **out) {
    if (!c || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_config_to_yaml: NULL argument");
    sn_json_buf b = {0};
    sn_json_buf_puts(&b, "# sinter resolved configuration\n");
    char section[16] = "";
    for (int i = 0; i < NKEYS; i++) {
        const key_def *k = &k_keys[i];
        const char *dot = strchr(k->name, '.');
        if (dot) {
            size_t sl = (size_t)(dot - k->name);
            if (strlen(section) != sl || strncmp(section, k->name, sl)) {
                snprintf(section, sizeof section, "%.*s", (int)sl, k->name);
                sn_json_buf_put(&b, k->name, sl);
                sn_json_buf_puts(&b, ":\n");
            }
            sn_json_buf_printf(&b, "  %s: ", dot + 1);
        } else {
            sn_json_buf_printf(&b, "%s: ", k->name);
        }
        if (k->type == K_LAYERS && c->model.graph.n > 0) {
            sn_json_buf_puts(&b, "\n");
            sn_desc_to_yaml(&c->model.graph, &b, "    ");
            continue;
        }
        put_value(&b, k, c);
        sn_json_buf_puts(&b, "\n");
    }
    if (b.oom) {
        sn_json_buf_free(&b);
        return sn_error(SN_ERR_NOMEM, "sn_config_to_yaml: out of memory");
    }
    *out = b.data;
    return SN_OK;
}
