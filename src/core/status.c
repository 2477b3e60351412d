#include "sinter/status.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[2048];

const char *sn_last_error(void) { return g_msg; }

void sn_clear_error(void) { g_msg[0] = 0; }

const char *sn_status_name(sn_status s) {
    switch (s) {
    case SN_OK: return "SN_OK";
    case SN_ERR_INVALID_ARG: return "SN_ERR_INVALID_ARG";
    case SN_ERR_SHAPE: return "SN_ERR_SHAPE";
    case SN_ERR_NOMEM: return "SN_ERR_NOMEM";
    case SN_ERR_UNSUPPORTED: return "SN_ERR_UNSUPPORTED";
    case SN_ERR_IO: return "SN_ERR_IO";
    case SN_ERR_FORMAT: return "SN_ERR_FORMAT";
    case SN_ERR_DEVICE: return "SN_ERR_DEVICE";
    case SN_ERR_NUMERIC: return "SN_ERR_NUMERIC";
    case SN_ERR_CONFIG: return "SN_ERR_CONFIG";
    case SN_ERR_INTERNAL: return "SN_ERR_INTERNAL";
    }
    return "SN_ERR_UNKNOWN";
}

sn_status sn_verror(sn_status s, const char *fmt, va_list ap) {
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    return s;
}

sn_status sn_error(sn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sn_verror(s, fmt, ap);
    va_end(ap);
    return s;
}

sn_status sn_error_prefix(sn_status s, const char *fmt, ...) {
    char old[sizeof g_msg];
    memcpy(old, g_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof g_msg) { /* the old message, cut to what is left */
        memcpy(g_msg + n, ": ", 2);
        snprintf(g_msg + n + 2, sizeof g_msg - (size_t)n - 2, "%s", old);
    }
    return s;
}

sn_status sn_error_suffix(sn_status s, const char *fmt, ...) {
    size_t n = strlen(g_msg);
    if (n + 2 >= sizeof g_msg) return s;
    memcpy(g_msg + n, "; ", 3);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg + n + 2, sizeof g_msg - n - 2, fmt, ap);
    va_end(ap);
    return s;
}

static sn_log_fn g_log_fn;
static void *g_log_user;
static int g_log_level = SN_LOG_WARN;

void sn_set_log(sn_log_fn fn, void *user, int max_level) {
    g_log_fn = fn;
    g_log_user = user;
    g_log_level = max_level;
}

void sn_log(int level, const char *fmt, ...) {
    if (level > g_log_level) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, buf, g_log_user);
        return;
    }
    static const char *tags[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "sinter %s: %s\n", tags[level < 0 ? 0 : level > 3 ? 3 : level], buf);
}
