/* Strict JSON parser and writer helpers. See include/sinter/json.h. */
#include "sinter/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t len, pos;
    const char *label;
    int depth;
} parser;

static sn_status perr(parser *p, size_t at, const char *what) {
    return sn_error(SN_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", p->label, at, what);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static sn_json *new_node(sn_json_type t, size_t off) {
    sn_json *v = calloc(1, sizeof *v);
    if (v) {
        v->type = t;
        v->offset = off;
    }
    return v;
}

void sn_json_free(sn_json *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        sn_json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    free(v->src_);
    free(v);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *p, size_t at, unsigned *out) {
    if (at + 4 > p->len) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[at + i]);
        if (h < 0) return 0;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 1;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) { k = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { k = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { k = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (k > n) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string at p->pos (which is at '"'); output is malloc'd. */
static sn_status parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = p->pos++;
    /* Unescaped output is never longer than the input. */
    size_t end = p->pos;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return perr(p, start, "unterminated string");
    char *o = malloc(end - p->pos + 1);
    if (!o) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) { free(o); return perr(p, start, "unterminated string"); }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) { free(o); return perr(p, p->pos, "control character in a string (escape it)"); }
        if (c == '\\') {
            size_t at = p->pos;
            if (p->pos + 1 >= p->len) { free(o); return perr(p, at, "unterminated escape"); }
            char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (!read_hex4(p, p->pos, &cp)) { free(o); return perr(p, at, "\\u must be followed by 4 hex digits"); }
                p->pos += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->pos + 6 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        !read_hex4(p, p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        free(o);
                        return perr(p, at, "high surrogate \\uD800-\\uDBFF not followed by a low surrogate");
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(o);
                    return perr(p, at, "lone low surrogate in \\u escape");
                }
                /* \uXXXX is 6 input bytes, a surrogate pair 12; UTF-8 is at most 4. */
                n += put_utf8(o + n, cp);
                break;
            }
            default: free(o); return perr(p, at, "unknown escape (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
            continue;
        }
        size_t k = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (!k) { free(o); return perr(p, p->pos, "invalid UTF-8 in a string"); }
        memcpy(o + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    o[n] = 0;
    *out = o;
    *out_len = n;
    return SN_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static sn_status parse_number(parser *p, sn_json **out) {
    size_t start = p->pos, i = p->pos;
    if (i < p->len && p->s[i] == '-') i++;
    if (i >= p->len || !is_digit(p->s[i])) return perr(p, start, "invalid number");
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) return perr(p, start, "leading zeros are not allowed in numbers");
    } else {
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && p->s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(p->s[i])) return perr(p, start, "a digit must follow the decimal point");
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) return perr(p, start, "a digit must follow the exponent");
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    sn_json *v = new_node(SN_JSON_NUMBER, start);
    if (!v) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
    v->raw = p->s + start;
    v->raw_len = i - start;
    /* strtod needs a terminated string; numbers longer than the buffer are
     * absurd but valid, so fall back to a heap copy. */
    char tmp[64], *buf = tmp;
    if (v->raw_len >= sizeof tmp) {
        buf = malloc(v->raw_len + 1);
        if (!buf) { free(v); return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label); }
    }
    memcpy(buf, v->raw, v->raw_len);
    buf[v->raw_len] = 0;
    v->number = strtod(buf, NULL);
    if (buf != tmp) free(buf);
    p->pos = i;
    *out = v;
    return SN_OK;
}

static sn_status parse_value(parser *p, sn_json **out);

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap * 2 : 4;
    while (nc < need) nc *= 2;
    void *q = realloc(*arr, nc * elem);
    if (!q) return 0;
    *arr = q;
    *cap = nc;
    return 1;
}

static sn_status parse_array(parser *p, sn_json **out) {
    sn_json *v = new_node(SN_JSON_ARRAY, p->pos);
    if (!v) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
    p->pos++;
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; *out = v; return SN_OK; }
    for (;;) {
        sn_json *item = NULL;
        sn_status st = parse_value(p, &item);
        if (st) { sn_json_free(v); return st; }
        if (!grow((void **)&v->items, &cap, v->n + 1, sizeof *v->items)) {
            sn_json_free(item);
            sn_json_free(v);
            return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
        }
        v->items[v->n++] = item;
        skip_ws(p);
        if (p->pos >= p->len) { size_t o = v->offset; sn_json_free(v); return perr(p, o, "unterminated array (missing ']')"); }
        char c = p->s[p->pos];
        if (c == ']') { p->pos++; break; }
        if (c != ',') { sn_json_free(v); return perr(p, p->pos, "expected ',' or ']' in an array"); }
        p->pos++;
    }
    *out = v;
    return SN_OK;
}

static sn_status parse_object(parser *p, sn_json **out) {
    sn_json *v = new_node(SN_JSON_OBJECT, p->pos);
    if (!v) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
    p->pos++;
    size_t cap = 0, kcap = 0, lcap = 0;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; *out = v; return SN_OK; }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            sn_json_free(v);
            return perr(p, p->pos, p->pos >= p->len ? "unterminated object (missing '}')" : "expected a string key in an object");
        }
        char *key;
        size_t klen;
        sn_status st = parse_string(p, &key, &klen);
        if (st) { sn_json_free(v); return st; }
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            free(key);
            sn_json_free(v);
            return perr(p, p->pos, "expected ':' after an object key");
        }
        p->pos++;
        sn_json *item = NULL;
        st = parse_value(p, &item);
        if (st) { free(key); sn_json_free(v); return st; }
        if (!grow((void **)&v->items, &cap, v->n + 1, sizeof *v->items) ||
            !grow((void **)&v->keys, &kcap, v->n + 1, sizeof *v->keys) ||
            !grow((void **)&v->key_lens, &lcap, v->n + 1, sizeof *v->key_lens)) {
            free(key);
            sn_json_free(item);
            sn_json_free(v);
            return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
        }
        v->keys[v->n] = key;
        v->key_lens[v->n] = klen;
        v->items[v->n++] = item;
        skip_ws(p);
        if (p->pos >= p->len) { size_t o = v->offset; sn_json_free(v); return perr(p, o, "unterminated object (missing '}')"); }
        char c = p->s[p->pos];
        if (c == '}') { p->pos++; break; }
        if (c != ',') { sn_json_free(v); return perr(p, p->pos, "expected ',' or '}' in an object"); }
        p->pos++;
    }
    *out = v;
    return SN_OK;
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->pos + n > p->len || memcmp(p->s + p->pos, w, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static sn_status parse_value(parser *p, sn_json **out) {
    skip_ws(p);
    if (p->pos >= p->len) return perr(p, p->pos, "unexpected end of input (expected a value)");
    size_t at = p->pos;
    char c = p->s[p->pos];
    sn_status st;
    switch (c) {
    case '{':
    case '[':
        if (++p->depth > SN_JSON_MAX_DEPTH) {
            char m[96];
            snprintf(m, sizeof m, "nesting deeper than %d levels", SN_JSON_MAX_DEPTH);
            return perr(p, at, m);
        }
        st = c == '{' ? parse_object(p, out) : parse_array(p, out);
        p->depth--;
        return st;
    case '"': {
        sn_json *v = new_node(SN_JSON_STRING, at);
        if (!v) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
        st = parse_string(p, &v->str, &v->len);
        if (st) { free(v); return st; }
        *out = v;
        return SN_OK;
    }
    case 't':
    case 'f':
    case 'n': {
        sn_json_type t = c == 'n' ? SN_JSON_NULL : SN_JSON_BOOL;
        int ok = c == 't' ? match_word(p, "true") : c == 'f' ? match_word(p, "false") : match_word(p, "null");
        if (!ok) return perr(p, at, "invalid literal (expected true, false or null)");
        sn_json *v = new_node(t, at);
        if (!v) return sn_error(SN_ERR_NOMEM, "%s: out of memory parsing JSON", p->label);
        v->boolean = c == 't';
        *out = v;
        return SN_OK;
    }
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, out);
        return perr(p, at, "unexpected character (expected a value)");
    }
}

sn_status sn_json_parse(const char *text, size_t len, const char *label, sn_json **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_json_parse: out is NULL");
    *out = NULL;
    if (!label) label = "JSON";
    if (!text && len) return sn_error(SN_ERR_INVALID_ARG, "%s: sn_json_parse: text is NULL", label);
    /* Numbers point into the input, so the root keeps its own copy. */
    char *src = malloc(len + 1);
    if (!src) return sn_error(SN_ERR_NOMEM, "%s: out of memory copying %zu bytes of JSON", label, len);
    if (len) memcpy(src, text, len);
    src[len] = 0;
    parser p = {src, len, 0, label, 0};
    sn_json *v = NULL;
    sn_status st = parse_value(&p, &v);
    if (st) { free(src); return st; }
    skip_ws(&p);
    if (p.pos != len) {
        sn_json_free(v);
        free(src);
        return perr(&p, p.pos, "unexpected data after the top-level value");
    }
    v->src_ = src;
    *out = v;
    return SN_OK;
}

const sn_json *sn_json_get(const sn_json *obj, const char *key) {
    if (!obj || obj->type != SN_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return obj->items[i];
    return NULL;
}

/* Parses the raw digits; 0 when the text has a fraction/exponent or overflows. */
static int raw_integer(const sn_json *v, int *neg, uint64_t *mag) {
    if (!v || v->type != SN_JSON_NUMBER || !v->raw_len) return 0;
    size_t i = 0;
    *neg = 0;
    if (v->raw[0] == '-') { *neg = 1; i = 1; }
    if (i >= v->raw_len) return 0;
    uint64_t m = 0;
    for (; i < v->raw_len; i++) {
        char c = v->raw[i];
        if (!is_digit(c)) return 0;
        unsigned d = (unsigned)(c - '0');
        if (m > (UINT64_MAX - d) / 10) return 0;
        m = m * 10 + d;
    }
    *mag = m;
    return 1;
}

int sn_json_as_uint64(const sn_json *v, uint64_t *out) {
    int neg;
    uint64_t m;
    if (!raw_integer(v, &neg, &m)) return 0;
    if (neg && m != 0) return 0;
    *out = m;
    return 1;
}

int sn_json_as_int64(const sn_json *v, int64_t *out) {
    int neg;
    uint64_t m;
    if (!raw_integer(v, &neg, &m)) return 0;
    if (neg) {
        if (m > (uint64_t)INT64_MAX + 1) return 0;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)m;
    }
    return 1;
}

const char *sn_json_type_name(sn_json_type t) {
    switch (t) {
    case SN_JSON_NULL: return "null";
    case SN_JSON_BOOL: return "a boolean";
    case SN_JSON_NUMBER: return "a number";
    case SN_JSON_STRING: return "a string";
    case SN_JSON_ARRAY: return "an array";
    case SN_JSON_OBJECT: return "an object";
    }
    return "?";
}

/* ---- writer ---- */

static int buf_reserve(sn_json_buf *b, size_t extra) {
    if (b->oom) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra + 1) {
        if (nc > SIZE_MAX / 2) { b->oom = 1; return 0; }
        nc *= 2;
    }
    char *q = realloc(b->data, nc);
    if (!q) { b->oom = 1; return 0; }
    b->data = q;
    b->cap = nc;
    return 1;
}

void sn_json_buf_put(sn_json_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void sn_json_buf_puts(sn_json_buf *b, const char *s) { sn_json_buf_put(b, s, strlen(s)); }

void sn_json_buf_printf(sn_json_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sn_json_buf_string(sn_json_buf *b, const char *s, size_t n) {
    sn_json_buf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            sn_json_buf_put(b, s + i - run, run);
            run = 0;
            sn_json_buf_puts(b, esc);
        } else {
            run++;
        }
    }
    sn_json_buf_put(b, s + n - run, run);
    sn_json_buf_put(b, "\"", 1);
}

void sn_json_buf_number(sn_json_buf *b, double x) {
    if (!isfinite(x)) { sn_json_buf_puts(b, "null"); return; }
    sn_json_buf_printf(b, "%.17g", x);
}

void sn_json_buf_free(sn_json_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

char *sn_json_escape(const char *s) {
    sn_json_buf b = {0};
    sn_json_buf_string(&b, s ? s : "", s ? strlen(s) : 0);
    if (b.oom) { sn_json_buf_free(&b); return NULL; }
    return b.data;
}
