/* safetensors reader/writer. See include/sinter/safetensors.h.
 * Validation follows the reference implementation (huggingface/safetensors,
 * Rust): the data region must be covered exactly by the tensors, in any
 * header order, with no gaps, overlaps or trailing bytes. */
#define _POSIX_C_SOURCE 200809L
#include "sinter/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "sinter/json.h"

struct sn_safetensors {
    char *label;
    int n;
    sn_st_tensor *t;   /* in file (data offset) order */
    int *by_name;      /* indices of t sorted by name, for sn_st_find */
    int nmeta;
    char **meta_keys, **meta_vals;
    unsigned char *data;
    uint64_t data_len;
};

typedef struct dtype_info {
    const char *name;
    size_t size;
} dtype_info;

static const dtype_info k_dtypes[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4},
    {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}, {"U16", 2}, {"U32", 4},
    {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

size_t sn_st_dtype_size(const char *dtype) {
    if (!dtype) return 0;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(k_dtypes[i].name, dtype) == 0) return k_dtypes[i].size;
    return 0;
}

uint64_t sn_st_numel(const sn_st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static void shape_str(const sn_st_tensor *t, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void sn_st_close(sn_safetensors *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->t);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->data);
    free(f->label);
    free(f);
}

/* qsort has no context argument, so the comparators read the arrays being
 * sorted through thread-locals (parsing stays thread-safe). */
static _Thread_local const sn_st_tensor *g_sort_t;
static _Thread_local char *const *g_sort_keys;

static int cmp_by_name(const void *a, const void *b) {
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(g_sort_t[ia].name, g_sort_t[ib].name);
    return c ? c : (ia > ib) - (ia < ib);
}

static int cmp_by_offset(const void *a, const void *b) {
    const sn_st_tensor *x = &g_sort_t[*(const int *)a], *y = &g_sort_t[*(const int *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    uint64_t ex = x->offset + x->nbytes, ey = y->offset + y->nbytes;
    if (ex != ey) return ex < ey ? -1 : 1;
    int ia = *(const int *)a, ib = *(const int *)b;
    return (ia > ib) - (ia < ib);
}

static int cmp_str_idx(const void *a, const void *b) {
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(g_sort_keys[ia], g_sort_keys[ib]);
    return c ? c : (ia > ib) - (ia < ib);
}

#define FAIL(code, ...)                    \
    do {                                   \
        st = sn_error(code, __VA_ARGS__);  \
        goto fail;                         \
    } while (0)

static sn_status parse_tensor(const char *label, const char *name, const sn_json *e, uint64_t data_len,
                              sn_st_tensor *t) {
    sn_status st = SN_OK;
    if (e->type != SN_JSON_OBJECT)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': header entry is %s, expected an object with dtype, shape and data_offsets",
             label, name, sn_json_type_name(e->type));
    const sn_json *dt = NULL, *sh = NULL, *off = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const sn_json **slot = strcmp(e->keys[i], "dtype") == 0 ? &dt
                               : strcmp(e->keys[i], "shape") == 0 ? &sh
                               : strcmp(e->keys[i], "data_offsets") == 0 ? &off
                               : NULL;
        if (!slot) continue; /* unknown fields are ignored, as by the reference reader */
        if (*slot) FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': duplicate field '%s' in the header", label, name, e->keys[i]);
        *slot = e->items[i];
    }
    if (!dt) FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': header entry has no \"dtype\"; the file is corrupt", label, name);
    if (!sh) FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': header entry has no \"shape\"; the file is corrupt", label, name);
    if (!off)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': header entry has no \"data_offsets\"; the file is corrupt", label, name);

    if (dt->type != SN_JSON_STRING)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': dtype is %s, expected a string such as \"F32\"", label, name,
             sn_json_type_name(dt->type));
    size_t esize = strlen(dt->str) == dt->len ? sn_st_dtype_size(dt->str) : 0;
    if (!esize)
        FAIL(SN_ERR_UNSUPPORTED,
             "'%s': tensor '%s': unknown dtype \"%.32s\" (supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL U16 U32 "
             "U64 F8_E4M3 F8_E5M2)",
             label, name, dt->str);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->str);

    if (sh->type != SN_JSON_ARRAY)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': shape is %s, expected an array of non-negative integers", label, name,
             sn_json_type_name(sh->type));
    if (sh->n > SN_ST_MAX_DIMS)
        FAIL(SN_ERR_UNSUPPORTED, "'%s': tensor '%s': %zu dimensions; sinter supports at most %d", label, name, sh->n,
             SN_ST_MAX_DIMS);
    t->ndim = (int)sh->n;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < sh->n; i++) {
        int64_t d;
        if (!sn_json_as_int64(sh->items[i], &d) || d < 0)
            FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': shape[%zu] is %s%.*s; dimensions must be non-negative integers",
                 label, name, i, sh->items[i]->type == SN_JSON_NUMBER ? "" : sn_json_type_name(sh->items[i]->type),
                 sh->items[i]->type == SN_JSON_NUMBER ? (int)(sh->items[i]->raw_len > 40 ? 40 : sh->items[i]->raw_len) : 0,
                 sh->items[i]->type == SN_JSON_NUMBER ? sh->items[i]->raw : "");
        t->shape[i] = d;
        if (d && numel > UINT64_MAX / (uint64_t)d) overflow = 1;
        else numel *= (uint64_t)d;
    }
    if (overflow || numel > UINT64_MAX / esize)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': shape is too large (byte size overflows 64 bits); the file is corrupt",
             label, name);

    uint64_t b, en;
    if (off->type != SN_JSON_ARRAY || off->n != 2 || !sn_json_as_uint64(off->items[0], &b) ||
        !sn_json_as_uint64(off->items[1], &en))
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': data_offsets must be an array of two non-negative integers [begin, end]",
             label, name);
    if (en < b)
        FAIL(SN_ERR_FORMAT, "'%s': tensor '%s': data_offsets [%llu, %llu] end before they begin; the file is corrupt",
             label, name, (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        FAIL(SN_ERR_FORMAT,
             "'%s': tensor '%s': data_offsets [%llu, %llu] run past the end of the data region (%llu bytes); the file "
             "is truncated or corrupt",
             label, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
    t->offset = b;
    t->nbytes = en - b;
    if (t->nbytes != numel * esize) {
        char s[256];
        shape_str(t, s, sizeof s);
        FAIL(SN_ERR_FORMAT,
             "'%s': tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s with shape %s needs %llu; the "
             "file is corrupt",
             label, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)t->nbytes, t->dtype, s,
             (unsigned long long)(numel * esize));
    }
    return SN_OK;
fail:
    return st;
}

sn_status sn_st_parse(const void *buf, size_t len, const char *label, sn_safetensors **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_st_parse: out is NULL");
    *out = NULL;
    if (!label) label = "<memory>";
    if (!buf && len) return sn_error(SN_ERR_INVALID_ARG, "'%s': sn_st_parse: buffer is NULL", label);
    const unsigned char *p = buf;
    if (len < 8)
        return sn_error(SN_ERR_FORMAT,
                        "'%s': file is %zu bytes, shorter than the 8-byte header length; the file is truncated or not a "
                        "safetensors file",
                        label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > SN_ST_MAX_HEADER)
        return sn_error(SN_ERR_FORMAT,
                        "'%s': header length %llu is larger than the %llu-byte limit; the file is corrupt or not a "
                        "safetensors file",
                        label, (unsigned long long)hlen, (unsigned long long)SN_ST_MAX_HEADER);
    if (hlen > len - 8)
        return sn_error(SN_ERR_FORMAT,
                        "'%s': header length %llu runs past the end of the file (%llu bytes); the file is truncated "
                        "or not a safetensors file",
                        label, (unsigned long long)hlen, (unsigned long long)len);

    sn_status st = SN_OK;
    sn_json *root = NULL;
    int *order = NULL;
    sn_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->label = dupstr(label))) {
        free(f);
        return sn_error(SN_ERR_NOMEM, "'%s': out of memory", label);
    }
    char jl[600];
    snprintf(jl, sizeof jl, "'%s' header", label);
    st = sn_json_parse((const char *)p + 8, (size_t)hlen, jl, &root);
    if (st) {
        sn_error_prefix(st, "not a valid safetensors file");
        goto fail;
    }
    if (root->type != SN_JSON_OBJECT)
        FAIL(SN_ERR_FORMAT, "'%s': header is %s, expected a JSON object; the file is corrupt or not a safetensors file",
             label, sn_json_type_name(root->type));

    uint64_t data_len = (uint64_t)len - 8 - hlen;
    f->data_len = data_len;
    f->t = calloc(root->n ? root->n : 1, sizeof *f->t);
    if (!f->t) FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
    int seen_meta = 0;
    for (size_t i = 0; i < root->n; i++) {
        const char *key = root->keys[i];
        const sn_json *e = root->items[i];
        if (strlen(key) != root->key_lens[i])
            FAIL(SN_ERR_FORMAT, "'%s': a tensor name contains a NUL character; the file is corrupt", label);
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta) FAIL(SN_ERR_FORMAT, "'%s': \"__metadata__\" appears twice in the header", label);
            seen_meta = 1;
            if (e->type == SN_JSON_NULL) continue;
            if (e->type != SN_JSON_OBJECT)
                FAIL(SN_ERR_FORMAT, "'%s': __metadata__ is %s, expected an object of string to string", label,
                     sn_json_type_name(e->type));
            f->meta_keys = calloc(e->n ? e->n : 1, sizeof *f->meta_keys);
            f->meta_vals = calloc(e->n ? e->n : 1, sizeof *f->meta_vals);
            if (!f->meta_keys || !f->meta_vals) FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
            for (size_t j = 0; j < e->n; j++) {
                const sn_json *v = e->items[j];
                if (v->type != SN_JSON_STRING)
                    FAIL(SN_ERR_FORMAT, "'%s': __metadata__ entry '%s' is %s; metadata values must be strings", label,
                         e->keys[j], sn_json_type_name(v->type));
                if (strlen(e->keys[j]) != e->key_lens[j] || strlen(v->str) != v->len)
                    FAIL(SN_ERR_FORMAT, "'%s': __metadata__ entry '%s' contains a NUL character", label, e->keys[j]);
                f->meta_keys[f->nmeta] = dupstr(e->keys[j]);
                f->meta_vals[f->nmeta] = dupstr(v->str);
                f->nmeta++;
                if (!f->meta_keys[f->nmeta - 1] || !f->meta_vals[f->nmeta - 1])
                    FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
            }
            continue;
        }
        sn_st_tensor *t = &f->t[f->n];
        st = parse_tensor(label, key, e, data_len, t);
        if (st) goto fail;
        if (!(t->name = dupstr(key))) FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
        f->n++;
    }

    if (f->nmeta > 1) {
        order = malloc((size_t)f->nmeta * sizeof *order);
        if (!order) FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
        for (int i = 0; i < f->nmeta; i++) order[i] = i;
        g_sort_keys = f->meta_keys;
        qsort(order, (size_t)f->nmeta, sizeof *order, cmp_str_idx);
        for (int i = 1; i < f->nmeta; i++)
            if (strcmp(f->meta_keys[order[i]], f->meta_keys[order[i - 1]]) == 0)
                FAIL(SN_ERR_FORMAT, "'%s': __metadata__ key '%s' appears twice", label, f->meta_keys[order[i]]);
        free(order);
        order = NULL;
    }

    /* Names: sorted index for lookup; neighbours equal means a duplicate. */
    f->by_name = malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!f->by_name || !order) FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
    for (int i = 0; i < f->n; i++) f->by_name[i] = order[i] = i;
    g_sort_t = f->t;
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->t[f->by_name[i]].name, f->t[f->by_name[i - 1]].name) == 0)
            FAIL(SN_ERR_FORMAT, "'%s': tensor name '%s' appears twice in the header; the file is corrupt", label,
                 f->t[f->by_name[i]].name);

    /* Coverage: walking tensors by offset, each must start where the last ended. */
    qsort(order, (size_t)f->n, sizeof *order, cmp_by_offset);
    uint64_t cursor = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        const sn_st_tensor *t = &f->t[order[i]];
        if (t->offset > cursor)
            FAIL(SN_ERR_FORMAT,
                 "'%s': bytes [%llu, %llu) of the data region belong to no tensor (gap before '%s'); the file is "
                 "corrupt",
                 label, (unsigned long long)cursor, (unsigned long long)t->offset, t->name);
        if (t->offset < cursor)
            FAIL(SN_ERR_FORMAT, "'%s': tensor '%s' (bytes [%llu, %llu)) overlaps tensor '%s' (ends at %llu); the file is corrupt",
                 label, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                 prev ? prev : "?", (unsigned long long)cursor);
        cursor = t->offset + t->nbytes;
        prev = t->name;
    }
    if (cursor != data_len)
        FAIL(SN_ERR_FORMAT,
             "'%s': the data region has %llu bytes but the tensors cover only %llu; the file has trailing data or "
             "is corrupt",
             label, (unsigned long long)data_len, (unsigned long long)cursor);

    /* Reorder tensors into file order, remapping the name index. */
    {
        sn_st_tensor *sorted = malloc((size_t)(f->n ? f->n : 1) * sizeof *sorted);
        int *inv = malloc((size_t)(f->n ? f->n : 1) * sizeof *inv);
        if (!sorted || !inv) {
            free(sorted);
            free(inv);
            FAIL(SN_ERR_NOMEM, "'%s': out of memory", label);
        }
        for (int i = 0; i < f->n; i++) {
            sorted[i] = f->t[order[i]];
            inv[order[i]] = i;
        }
        for (int i = 0; i < f->n; i++) f->by_name[i] = inv[f->by_name[i]];
        free(f->t);
        free(inv);
        f->t = sorted;
    }

    /* Own 64-byte aligned copy so sn_st_data can be used directly by kernels. */
    size_t alloc = (size_t)((data_len + 63) & ~(uint64_t)63);
    f->data = aligned_alloc(64, alloc ? alloc : 64);
    if (!f->data) FAIL(SN_ERR_NOMEM, "'%s': out of memory for %llu bytes of tensor data", label, (unsigned long long)data_len);
    if (data_len) memcpy(f->data, p + 8 + hlen, (size_t)data_len);

    free(order);
    sn_json_free(root);
    *out = f;
    return SN_OK;
fail:
    free(order);
    sn_json_free(root);
    sn_st_close(f);
    return st;
}

sn_status sn_st_open(const char *path, sn_safetensors **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_st_open: out is NULL");
    *out = NULL;
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_st_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sn_error(SN_ERR_IO, "cannot open '%s': %s; check the path", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sn_error(SN_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sn_error(SN_ERR_IO, "'%s' is not a regular file; expected a .safetensors file", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return sn_error(SN_ERR_NOMEM, "'%s': out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sn_error(SN_ERR_IO, "error reading '%s': %s", path, strerror(e));
        }
        if (r == 0) break; /* file shrank while reading: validate what we have */
        got += (size_t)r;
    }
    close(fd);
    sn_status st = sn_st_parse(buf, got, path, out);
    free(buf);
    return st;
}

int sn_st_count(const sn_safetensors *f) { return f ? f->n : 0; }

const sn_st_tensor *sn_st_get(const sn_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->n) return NULL;
    return &f->t[i];
}

const sn_st_tensor *sn_st_find(const sn_safetensors *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const sn_st_tensor *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const void *sn_st_data(const sn_safetensors *f, const sn_st_tensor *t) {
    if (!f || !t) return NULL;
    return f->data + t->offset;
}

const char *sn_st_label(const sn_safetensors *f) { return f ? f->label : NULL; }

const char *sn_st_meta(const sn_safetensors *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int sn_st_meta_count(const sn_safetensors *f) { return f ? f->nmeta : 0; }

const char *sn_st_meta_key(const sn_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->nmeta) return NULL;
    return f->meta_keys[i];
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3FF;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static sn_status find_for_read(const sn_safetensors *f, const char *name, size_t n, const sn_st_tensor **out) {
    if (!f || !name) return sn_error(SN_ERR_INVALID_ARG, "sn_st_read: file or name is NULL");
    const sn_st_tensor *t = sn_st_find(f, name);
    if (!t)
        return sn_error(SN_ERR_FORMAT, "'%s': no tensor named '%s' (the file has %d tensors); the checkpoint does not "
                        "match this model",
                        f->label, name, f->n);
    if (sn_st_numel(t) != n) {
        char s[256];
        shape_str(t, s, sizeof s);
        return sn_error(SN_ERR_SHAPE, "'%s': tensor '%s' has shape %s (%llu elements) but %zu were expected; the "
                        "checkpoint does not match this model configuration",
                        f->label, name, s, (unsigned long long)sn_st_numel(t), n);
    }
    *out = t;
    return SN_OK;
}

static sn_status convert(const sn_safetensors *f, const char *name, size_t n, void *dst, int to_f64) {
    const sn_st_tensor *t;
    sn_status st = find_for_read(f, name, n, &t);
    if (st) return st;
    const unsigned char *src = f->data + t->offset;
    const char *d = t->dtype;
    float *o32 = dst;
    double *o64 = dst;
    int kind = !strcmp(d, "F32") ? 1 : !strcmp(d, "F64") ? 2 : !strcmp(d, "F16") ? 3 : !strcmp(d, "BF16") ? 4
             : !strcmp(d, "I64") ? 5 : !strcmp(d, "I32") ? 6 : !strcmp(d, "I16") ? 7 : !strcmp(d, "I8") ? 8
             : (!strcmp(d, "U8") || !strcmp(d, "BOOL")) ? 9 : 0;
    if (!kind)
        return sn_error(SN_ERR_UNSUPPORTED, "'%s': tensor '%s' has dtype %s, which sinter cannot convert to float",
                        f->label, name, d);
    if (kind == 1 && !to_f64) {
        memcpy(dst, src, n * 4);
        return SN_OK;
    }
    for (size_t i = 0; i < n; i++) {
        double v;
        switch (kind) {
        case 1: { float x; memcpy(&x, src + 4 * i, 4); v = x; break; }
        case 2: { double x; memcpy(&x, src + 8 * i, 8); v = x; break; }
        case 3: { uint16_t x; memcpy(&x, src + 2 * i, 2); v = f16_to_f32(x); break; }
        case 4: { uint16_t x; memcpy(&x, src + 2 * i, 2); uint32_t b = (uint32_t)x << 16; float y; memcpy(&y, &b, 4); v = y; break; }
        case 5: { int64_t x; memcpy(&x, src + 8 * i, 8); v = (double)x; break; }
        case 6: { int32_t x; memcpy(&x, src + 4 * i, 4); v = x; break; }
        case 7: { int16_t x; memcpy(&x, src + 2 * i, 2); v = x; break; }
        case 8: v = (int8_t)src[i]; break;
        default: v = src[i]; break;
        }
        if (to_f64) o64[i] = v;
        else o32[i] = (float)v;
    }
    return SN_OK;
}

sn_status sn_st_read_f32(const sn_safetensors *f, const char *name, float *dst, size_t n) {
    if (!dst && n) return sn_error(SN_ERR_INVALID_ARG, "sn_st_read_f32: dst is NULL");
    return convert(f, name, n, dst, 0);
}

sn_status sn_st_read_f64(const sn_safetensors *f, const char *name, double *dst, size_t n) {
    if (!dst && n) return sn_error(SN_ERR_INVALID_ARG, "sn_st_read_f64: dst is NULL");
    return convert(f, name, n, dst, 1);
}

/* ---- writer ---- */

typedef struct st_entry {
    char *name;
    char dtype[8];
    int ndim;
    int64_t shape[SN_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    int owned;
} st_entry;

struct sn_st_writer {
    st_entry *e;
    int n, cap;
    char **mk, **mv;
    int nm, mcap;
};

sn_st_writer *sn_st_writer_new(void) { return calloc(1, sizeof(sn_st_writer)); }

void sn_st_writer_free(sn_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        if (w->e[i].owned) free((void *)w->e[i].data);
    }
    for (int i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->e);
    free(w->mk);
    free(w->mv);
    free(w);
}

static sn_status add_entry(sn_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                           const void *data, int copy) {
    if (!w || !name) return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: writer or name is NULL");
    if (!name[0]) return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor name is empty");
    if (strcmp(name, "__metadata__") == 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: '__metadata__' is reserved and cannot name a tensor");
    size_t es = sn_st_dtype_size(dtype);
    if (!es)
        return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s': unknown dtype \"%s\" (use F32, F16, BF16, F64, I64, "
                        "I32, I16, I8, U8 or BOOL)", name, dtype ? dtype : "(null)");
    if (ndim < 0 || ndim > SN_ST_MAX_DIMS || (ndim && !shape))
        return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s': ndim %d out of range 0..%d", name, ndim,
                        SN_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s': dimension %d is negative (%lld)", name, i,
                            (long long)shape[i]);
        if (shape[i] && numel > UINT64_MAX / 16 / (uint64_t)shape[i])
            return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s': shape is too large", name);
        numel *= (uint64_t)shape[i];
    }
    uint64_t nbytes = numel * es;
    if (nbytes && !data) return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s': data is NULL", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return sn_error(SN_ERR_INVALID_ARG, "sn_st_add: tensor '%s' was already added; names must be unique", name);
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        st_entry *q = realloc(w->e, (size_t)nc * sizeof *q);
        if (!q) return sn_error(SN_ERR_NOMEM, "sn_st_add: out of memory");
        w->e = q;
        w->cap = nc;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = dupstr(name);
    if (!e->name) return sn_error(SN_ERR_NOMEM, "sn_st_add: out of memory");
    snprintf(e->dtype, sizeof e->dtype, "%s", dtype);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    if (copy && nbytes) {
        void *d = malloc((size_t)nbytes);
        if (!d) {
            free(e->name);
            return sn_error(SN_ERR_NOMEM, "sn_st_add: tensor '%s': out of memory copying %llu bytes", name,
                            (unsigned long long)nbytes);
        }
        memcpy(d, data, (size_t)nbytes);
        e->data = d;
        e->owned = 1;
    } else {
        e->data = data;
    }
    w->n++;
    return SN_OK;
}

sn_status sn_st_add(sn_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                    const void *data) {
    return add_entry(w, name, dtype, ndim, shape, data, 1);
}

sn_status sn_st_add_ref(sn_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                        const void *data) {
    return add_entry(w, name, dtype, ndim, shape, data, 0);
}

sn_status sn_st_set_meta(sn_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return sn_error(SN_ERR_INVALID_ARG, "sn_st_set_meta: writer, key or value is NULL");
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) {
            char *v = dupstr(value);
            if (!v) return sn_error(SN_ERR_NOMEM, "sn_st_set_meta: out of memory");
            free(w->mv[i]);
            w->mv[i] = v;
            return SN_OK;
        }
    if (w->nm == w->mcap) {
        int nc = w->mcap ? w->mcap * 2 : 8;
        char **a = realloc(w->mk, (size_t)nc * sizeof *a);
        if (!a) return sn_error(SN_ERR_NOMEM, "sn_st_set_meta: out of memory");
        w->mk = a;
        char **b = realloc(w->mv, (size_t)nc * sizeof *b);
        if (!b) return sn_error(SN_ERR_NOMEM, "sn_st_set_meta: out of memory");
        w->mv = b;
        w->mcap = nc;
    }
    char *k = dupstr(key), *v = dupstr(value);
    if (!k || !v) {
        free(k);
        free(v);
        return sn_error(SN_ERR_NOMEM, "sn_st_set_meta: out of memory");
    }
    w->mk[w->nm] = k;
    w->mv[w->nm] = v;
    w->nm++;
    return SN_OK;
}

/* Header JSON including the 8-byte length prefix, padded with spaces so the
 * data region starts at a multiple of 8. */
static sn_status build_header(const sn_st_writer *w, sn_json_buf *b) {
    sn_json_buf_put(b, "\0\0\0\0\0\0\0\0", 8);
    sn_json_buf_puts(b, "{");
    int first = 1;
    if (w->nm) {
        sn_json_buf_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i) sn_json_buf_puts(b, ",");
            sn_json_buf_string(b, w->mk[i], strlen(w->mk[i]));
            sn_json_buf_puts(b, ":");
            sn_json_buf_string(b, w->mv[i], strlen(w->mv[i]));
        }
        sn_json_buf_puts(b, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->e[i];
        if (!first) sn_json_buf_puts(b, ",");
        first = 0;
        sn_json_buf_string(b, e->name, strlen(e->name));
        sn_json_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", e->dtype);
        for (int d = 0; d < e->ndim; d++) sn_json_buf_printf(b, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        sn_json_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                           (unsigned long long)(off + e->nbytes));
        off += e->nbytes;
    }
    sn_json_buf_puts(b, "}");
    while (b->len % 8) sn_json_buf_puts(b, " ");
    if (b->oom) return sn_error(SN_ERR_NOMEM, "safetensors: out of memory building the header");
    uint64_t hl = b->len - 8;
    for (int i = 0; i < 8; i++) b->data[i] = (char)((hl >> (8 * i)) & 0xFF);
    return SN_OK;
}

sn_status sn_st_serialize(sn_st_writer *w, void **out, size_t *out_len) {
    if (!w || !out || !out_len) return sn_error(SN_ERR_INVALID_ARG, "sn_st_serialize: NULL argument");
    sn_json_buf b = {0};
    sn_status st = build_header(w, &b);
    if (st) {
        sn_json_buf_free(&b);
        return st;
    }
    for (int i = 0; i < w->n; i++) sn_json_buf_put(&b, w->e[i].data, (size_t)w->e[i].nbytes);
    if (b.oom) {
        sn_json_buf_free(&b);
        return sn_error(SN_ERR_NOMEM, "sn_st_serialize: out of memory");
    }
    *out = b.data;
    *out_len = b.len;
    return SN_OK;
}

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        /* Some kernels cap a single write at ~2 GiB. */
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = write(fd, c, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = ENOSPC;
            return -1;
        }
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

sn_status sn_st_save(sn_st_writer *w, const char *path) {
    if (!w || !path) return sn_error(SN_ERR_INVALID_ARG, "sn_st_save: writer or path is NULL");
    sn_json_buf hdr = {0};
    sn_status st = build_header(w, &hdr);
    if (st) {
        sn_json_buf_free(&hdr);
        return st;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) {
        sn_json_buf_free(&hdr);
        return sn_error(SN_ERR_NOMEM, "sn_st_save: out of memory");
    }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    const char *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto io_fail;
    what = "write";
    if (write_all(fd, hdr.data, hdr.len) != 0) goto io_fail;
    for (int i = 0; i < w->n; i++)
        if (write_all(fd, w->e[i].data, (size_t)w->e[i].nbytes) != 0) goto io_fail;
    what = "fsync";
    if (fsync(fd) != 0) goto io_fail;
    what = "close";
    {
        int r = close(fd);
        fd = -1;
        if (r != 0) goto io_fail;
    }
    what = "rename";
    if (rename(tmp, path) != 0) goto io_fail;

    /* Make the rename itself durable: fsync the directory. */
    {
        char *dir = malloc(pl + 2);
        if (dir) {
            memcpy(dir, path, pl + 1);
            char *slash = strrchr(dir, '/');
            if (!slash) strcpy(dir, ".");
            else if (slash == dir) dir[1] = 0;
            else *slash = 0;
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                /* Some filesystems refuse fsync on directories (EINVAL); the data is already safe. */
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    free(tmp);
    sn_json_buf_free(&hdr);
    return SN_OK;

io_fail: {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    st = sn_error(SN_ERR_IO,
                  "cannot save '%s': %s of temporary file '%s' failed: %s; the temporary file was removed and any "
                  "existing '%s' is unchanged. Check free disk space and that the directory exists and is writable",
                  path, what, tmp, strerror(e), path);
    free(tmp);
    sn_json_buf_free(&hdr);
    return st;
}
}
