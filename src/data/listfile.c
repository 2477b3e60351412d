/* List-file (CSV) parser. Parses from memory so it can be fuzzed. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/data.h"

void sn_listfile_free(sn_listfile *lf) {
    if (!lf) return;
    for (int64_t i = 0; i < lf->n; i++) {
        free(lf->first ? lf->first[i] : NULL);
        free(lf->second ? lf->second[i] : NULL);
    }
    free(lf->first);
    free(lf->second);
    free(lf->line);
    memset(lf, 0, sizeof *lf);
}

/* One CSV field from [p,end) into a fresh string; stops at ',' or end of line.
 * Returns NULL on memory failure, sets *bad on a malformed quote. */
static char *read_field(const char **pp, const char *end, int *bad) {
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    size_t cap = 64, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p >= end) { *bad = 1; break; }
            char c = *p++;
            if (c == '"') {
                if (p < end && *p == '"') p++;
                else break;
            }
            if (n + 2 > cap) {
                char *t = realloc(s, cap *= 2);
                if (!t) { free(s); return NULL; }
                s = t;
            }
            s[n++] = c;
        }
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p < end && *p != ',') *bad = 1;
    } else {
        while (p < end && *p != ',') {
            if (n + 2 > cap) {
                char *t = realloc(s, cap *= 2);
                if (!t) { free(s); return NULL; }
                s = t;
            }
            s[n++] = *p++;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    }
    s[n] = 0;
    *pp = p;
    return s;
}

static char *join_path(const char *base, const char *rel) {
    size_t nb = (base && *base && rel[0] != '/') ? strlen(base) : 0;
    size_t nr = strlen(rel);
    char *s = malloc(nb + nr + 2);
    if (!s) return NULL;
    if (nb) {
        memcpy(s, base, nb);
        if (s[nb - 1] != '/') s[nb++] = '/';
    }
    memcpy(s + nb, rel, nr + 1);
    return s;
}

sn_status sn_listfile_parse(const char *text, size_t len, const char *base_dir,
                            const char *name, sn_listfile *out) {
    if (!out || (!text && len)) return sn_error(SN_ERR_INVALID_ARG, "sn_listfile_parse: null argument");
    memset(out, 0, sizeof *out);
    if (!name) name = "<list>";
    const char *p = text, *end = text + len;
    int64_t line = 0, cap = 0;
    sn_status st = SN_OK;
    /* skip a UTF-8 byte-order mark */
    if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) p += 3;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == eol || *q == '#') { p = eol + (eol < end); continue; }
        if (memchr(q, 0, (size_t)(eol - q))) {
            st = sn_error(SN_ERR_FORMAT, "%s, row %lld: contains a NUL byte; a list file is text (CSV)", name, (long long)line);
            goto fail;
        }
        char *f[3] = {0, 0, 0};
        int nf = 0, bad = 0;
        while (1) {
            char *s = read_field(&q, eol, &bad);
            if (!s) { st = sn_error(SN_ERR_NOMEM, "%s: out of memory", name); goto fail; }
            if (nf < 3) f[nf] = s; else free(s);
            nf++;
            if (bad || q >= eol) break;
            q++; /* the comma */
            if (q >= eol) { /* trailing comma: one more (empty) field */
                if (nf < 3) f[nf] = calloc(1, 1);
                nf++;
                break;
            }
        }
        int ok = 1;
        if (bad) {
            st = sn_error(SN_ERR_FORMAT, "%s, row %lld: unterminated or misplaced quote; quote a whole field as \"path\"", name, (long long)line);
            ok = 0;
        } else if (!out->kind) {
            /* header */
            if (nf == 2 && f[0] && f[1] && strcmp(f[0], "clean") == 0 &&
                (strcmp(f[1], "noise") == 0 || strcmp(f[1], "noisy") == 0)) {
                out->kind = strcmp(f[1], "noise") == 0 ? SN_LIST_NOISE : SN_LIST_NOISY;
            } else {
                st = sn_error(SN_ERR_FORMAT, "%s, row %lld: the first row must be the header 'clean,noise' (mix each clean file with a noise file) or 'clean,noisy' (ready-made pairs)", name, (long long)line);
                ok = 0;
            }
        } else if (nf != 2) {
            st = sn_error(SN_ERR_FORMAT, "%s, row %lld: %d columns, expected 2 (%s)", name, (long long)line, nf,
                          out->kind == SN_LIST_NOISE ? "clean,noise" : "clean,noisy");
            ok = 0;
        } else if (!f[0][0] || !f[1][0]) {
            st = sn_error(SN_ERR_FORMAT, "%s, row %lld: empty %s path", name, (long long)line,
                          !f[0][0] ? "clean" : out->kind == SN_LIST_NOISE ? "noise" : "noisy");
            ok = 0;
        } else {
            if (out->n == cap) {
                int64_t nc = cap ? cap * 2 : 16;
                char **a = realloc(out->first, (size_t)nc * sizeof *a);
                if (a) out->first = a;
                char **b = realloc(out->second, (size_t)nc * sizeof *b);
                if (b) out->second = b;
                int64_t *l = realloc(out->line, (size_t)nc * sizeof *l);
                if (l) out->line = l;
                if (!a || !b || !l) { ok = 0; st = sn_error(SN_ERR_NOMEM, "%s: out of memory", name); }
                else cap = nc;
            }
            if (ok) {
                char *x = join_path(base_dir, f[0]), *y = join_path(base_dir, f[1]);
                if (!x || !y) {
                    free(x); free(y);
                    st = sn_error(SN_ERR_NOMEM, "%s: out of memory", name);
                    ok = 0;
                } else {
                    out->first[out->n] = x;
                    out->second[out->n] = y;
                    out->line[out->n] = line;
                    out->n++;
                }
            }
        }
        for (int i = 0; i < 3; i++) free(f[i]);
        if (!ok) goto fail;
        p = eol + (eol < end);
    }
    if (!out->kind) {
        st = sn_error(SN_ERR_FORMAT, "%s: empty list file; write a header 'clean,noise' or 'clean,noisy' and one row per file pair", name);
        goto fail;
    }
    if (out->n == 0) {
        st = sn_error(SN_ERR_FORMAT, "%s: no rows after the header; add one 'clean_path,%s_path' row per line", name,
                      out->kind == SN_LIST_NOISE ? "noise" : "noisy");
        goto fail;
    }
    return SN_OK;
fail:
    sn_listfile_free(out);
    return st;
}

sn_status sn_listfile_load(const char *path, sn_listfile *out) {
    if (!path || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_listfile_load: null argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "cannot open list file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *t = realloc(buf, cap *= 2);
        if (!t) { free(buf); buf = NULL; break; }
        buf = t;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return sn_error(SN_ERR_NOMEM, "list file '%s': out of memory", path);
    if (err) { free(buf); return sn_error(SN_ERR_IO, "cannot read list file '%s'", path); }
    /* base dir = the list file's folder */
    char *base = strdup(path);
    if (!base) { free(buf); return sn_error(SN_ERR_NOMEM, "out of memory"); }
    char *slash = strrchr(base, '/');
    if (slash) slash[1] = 0; else base[0] = 0;
    sn_status st = sn_listfile_parse(buf, n, base, path, out);
    free(base);
    free(buf);
    return st;
}
