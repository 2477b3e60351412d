/* Status codes and the thread-local last-error message. */
#ifndef SINTER_STATUS_H
#define SINTER_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sn_status {
    SN_OK = 0,
    SN_ERR_INVALID_ARG,  /* null pointer, out-of-range value */
    SN_ERR_SHAPE,        /* tensor shapes do not fit the op */
    SN_ERR_NOMEM,        /* host or device allocation failed / too little memory */
    SN_ERR_UNSUPPORTED,  /* no backend implements it, unsupported format */
    SN_ERR_IO,           /* file system errors */
    SN_ERR_FORMAT,       /* malformed file contents (YAML, WAV, safetensors, ...) */
    SN_ERR_DEVICE,       /* GPU runtime/driver error */
    SN_ERR_NUMERIC,      /* NaN / Inf where a finite value is needed */
    SN_ERR_CONFIG,       /* bad configuration key or value */
    SN_ERR_INTERNAL,     /* a bug in sinter */
} sn_status;

/* The message of the last error set on this thread ("" if none). */
const char *sn_last_error(void);
/* Name of a status code, e.g. "SN_ERR_SHAPE". */
const char *sn_status_name(sn_status s);
/* Sets the last error (printf-style) and returns s, so callers can write
 * `return sn_error(SN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));` */
sn_status sn_error(sn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
sn_status sn_verror(sn_status s, const char *fmt, va_list ap);
/* Prepends context to the current message: "while loading 'x.wav': <old>". */
sn_status sn_error_prefix(sn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends advice to the current message: "<old>; <text>" (the application phrases advice
 * in its own terms, e.g. config keys, around the engine's numbers). */
sn_status sn_error_suffix(sn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void sn_clear_error(void);

/* Library-wide log hook: level 0=error 1=warn 2=info 3=debug. Default prints
 * warnings and errors to stderr. */
typedef void (*sn_log_fn)(int level, const char *msg, void *user);
void sn_set_log(sn_log_fn fn, void *user, int max_level);
void sn_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#define SN_LOG_ERROR 0
#define SN_LOG_WARN 1
#define SN_LOG_INFO 2
#define SN_LOG_DEBUG 3

#ifdef __cplusplus
}
#endif
#endif
