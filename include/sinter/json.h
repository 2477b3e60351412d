/* A small strict JSON parser (RFC 8259) and writer helpers.
 *
 * The parser builds a tree; strings are UTF-8 checked and unescaped
 * (\uXXXX incl. surrogate pairs), numbers keep their source text so large
 * integers (safetensors offsets) are read exactly. Duplicate object keys are
 * kept (callers decide whether they are an error). No external dependency:
 * this file is part of sinter_core. */
#ifndef SINTER_JSON_H
#define SINTER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sn_json_type {
    SN_JSON_NULL,
    SN_JSON_BOOL,
    SN_JSON_NUMBER,
    SN_JSON_STRING,
    SN_JSON_ARRAY,
    SN_JSON_OBJECT,
} sn_json_type;

typedef struct sn_json sn_json;
struct sn_json {
    sn_json_type type;
    size_t offset;       /* byte offset of the value in the input */
    int boolean;         /* SN_JSON_BOOL */
    double number;       /* SN_JSON_NUMBER */
    const char *raw;     /* SN_JSON_NUMBER: source text (not NUL-terminated) */
    size_t raw_len;
    char *str;           /* SN_JSON_STRING: unescaped, NUL-terminated */
    size_t len;          /* string length in bytes (may hold embedded NULs) */
    size_t n;            /* SN_JSON_ARRAY / SN_JSON_OBJECT: element count */
    sn_json **items;     /* elements / member values */
    char **keys;         /* SN_JSON_OBJECT: member keys (unescaped, NUL-terminated) */
    size_t *key_lens;
    char *src_;          /* internal: copy of the input owned by the root */
};

/* Default nesting limit; deeper input is an error (no stack overflow). */
#define SN_JSON_MAX_DEPTH 128

/* Parses text[0..len). label names the input in error messages, e.g.
 * "'model.safetensors' header: invalid JSON at byte 17: expected ':' after an
 * object key". Free the result with sn_json_free. */
sn_status sn_json_parse(const char *text, size_t len, const char *label, sn_json **out);
void sn_json_free(sn_json *v);

/* First member named key, or NULL (also NULL when obj is not an object). */
const sn_json *sn_json_get(const sn_json *obj, const char *key);
/* 1 and *out set when v is a number written as an exact integer in range
 * (no fraction or exponent), else 0. */
int sn_json_as_int64(const sn_json *v, int64_t *out);
int sn_json_as_uint64(const sn_json *v, uint64_t *out);
const char *sn_json_type_name(sn_json_type t);

/* Growable output buffer for writing JSON (or any text). On allocation
 * failure `oom` is set and further appends are ignored. */
typedef struct sn_json_buf {
    char *data; /* NUL-terminated when len > 0 */
    size_t len, cap;
    int oom;
} sn_json_buf;

void sn_json_buf_put(sn_json_buf *b, const char *s, size_t n);
void sn_json_buf_puts(sn_json_buf *b, const char *s);
void sn_json_buf_printf(sn_json_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends s (n bytes) as a quoted JSON string with escapes. */
void sn_json_buf_string(sn_json_buf *b, const char *s, size_t n);
/* Appends a double so that it reads back exactly ("%.17g"; NaN/Inf become null). */
void sn_json_buf_number(sn_json_buf *b, double x);
void sn_json_buf_free(sn_json_buf *b);

/* Returns a malloc'd quoted, escaped JSON string for s, or NULL on OOM. */
char *sn_json_escape(const char *s);

#ifdef __cplusplus
}
#endif
#endif
