/* TensorBoard event writer. See include/sinter/events.h.
 * Record = u64 len | u32 masked_crc32c(len) | data | u32 masked_crc32c(data).
 * Protobuf field numbers from tensorflow/core/util/event.proto and
 * tensorflow/core/framework/summary.proto. */
#define _POSIX_C_SOURCE 200809L
#include "sinter/events.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sinter/json.h" /* sn_json_buf as a byte buffer */

struct sn_events {
    int fd;
    char *path;
    pthread_mutex_t mu;
};

/* ---- CRC32C (Castagnoli), reflected polynomial 0x82F63B78 ---- */

static uint32_t g_crc_table[256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        g_crc_table[i] = c;
    }
}

uint32_t sn_crc32c(const void *data, size_t n) {
    pthread_once(&g_crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = g_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t sn_crc32c_masked(const void *data, size_t n) {
    uint32_t c = sn_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding ---- */

typedef sn_json_buf pbuf;

static void put_le(pbuf *b, uint64_t v, int bytes) {
    unsigned char t[8];
    for (int i = 0; i < bytes; i++) t[i] = (unsigned char)(v >> (8 * i));
    sn_json_buf_put(b, (const char *)t, (size_t)bytes);
}

static void put_varint(pbuf *b, uint64_t v) {
    unsigned char t[10];
    int n = 0;
    do {
        t[n] = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    sn_json_buf_put(b, (const char *)t, (size_t)n);
}

static void put_tag(pbuf *b, int field, int wire) { put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

static void put_bytes(pbuf *b, int field, const void *p, size_t n) {
    put_tag(b, field, 2);
    put_varint(b, n);
    sn_json_buf_put(b, p, n);
}

static void put_double(pbuf *b, int field, double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    put_tag(b, field, 1);
    put_le(b, u, 8);
}

static void put_float(pbuf *b, int field, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    put_tag(b, field, 5);
    put_le(b, u, 4);
}

static void put_int64(pbuf *b, int field, int64_t v) {
    put_tag(b, field, 0);
    put_varint(b, (uint64_t)v); /* negative int64: 10-byte two's complement, as protobuf does */
}

static double now_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* Event{wall_time, step, <payload already encoded as fields>}. */
static void event_header(pbuf *b, int64_t step) {
    put_double(b, 1, now_seconds());
    if (step) put_int64(b, 2, step);
}

static sn_status write_record(sn_events *ev, const pbuf *data) {
    if (data->oom) return sn_error(SN_ERR_NOMEM, "'%s': out of memory encoding an event", ev->path);
    pbuf r = {0};
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)data->len >> (8 * i));
    sn_json_buf_put(&r, (const char *)len, 8);
    put_le(&r, sn_crc32c_masked(len, 8), 4);
    sn_json_buf_put(&r, data->data, data->len);
    put_le(&r, sn_crc32c_masked(data->data, data->len), 4);
    if (r.oom) {
        sn_json_buf_free(&r);
        return sn_error(SN_ERR_NOMEM, "'%s': out of memory framing an event", ev->path);
    }
    sn_status st = SN_OK;
    pthread_mutex_lock(&ev->mu);
    /* One write per record (O_APPEND): a killed process leaves whole records
     * or, at worst, a torn last one that readers skip. A failed write (disk
     * full) is cut back, so the file ends on a whole record. */
    off_t start = lseek(ev->fd, 0, SEEK_END);
    size_t off = 0;
    while (off < r.len) {
        ssize_t w = write(ev->fd, r.data + off, r.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = sn_error(SN_ERR_IO, "cannot write TensorBoard event file '%s': %s; check free disk space", ev->path,
                          w < 0 ? strerror(errno) : "no progress");
            if (start >= 0 && ftruncate(ev->fd, start) != 0) { /* nothing more to do: readers skip a torn tail */ }
            break;
        }
        off += (size_t)w;
    }
    pthread_mutex_unlock(&ev->mu);
    sn_json_buf_free(&r);
    return st;
}

static sn_status mkdirs(const char *dir) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return sn_error(SN_ERR_NOMEM, "out of memory");
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                sn_status st = sn_error(SN_ERR_IO, "cannot create directory '%s': %s", p, strerror(errno));
                free(p);
                return st;
            }
            p[i] = c;
        }
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return sn_error(SN_ERR_IO, "'%s' exists but is not a directory; choose another run directory", dir);
    return SN_OK;
}

sn_status sn_events_open(const char *dir, sn_events **out) {
    if (!out || !dir || !*dir) return sn_error(SN_ERR_INVALID_ARG, "sn_events_open: dir or out is NULL/empty");
    *out = NULL;
    sn_status st = mkdirs(dir);
    if (st) return sn_error_prefix(st, "TensorBoard events");
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    size_t cap = strlen(dir) + strlen(host) + 96;
    char *path = malloc(cap);
    if (!path) return sn_error(SN_ERR_NOMEM, "sn_events_open: out of memory");
    long t = (long)time(NULL);
    int fd = -1;
    /* Two writers in one second must not share a file. */
    for (int k = 0; k < 1000 && fd < 0; k++) {
        if (k == 0) snprintf(path, cap, "%s/events.out.tfevents.%010ld.%s", dir, t, host);
        else snprintf(path, cap, "%s/events.out.tfevents.%010ld.%s.%d", dir, t, host, k);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        st = sn_error(SN_ERR_IO, "cannot create TensorBoard event file '%s': %s; check that the directory is writable",
                      path, strerror(errno));
        free(path);
        return st;
    }
    sn_events *ev = calloc(1, sizeof *ev);
    if (!ev) {
        close(fd);
        free(path);
        return sn_error(SN_ERR_NOMEM, "sn_events_open: out of memory");
    }
    ev->fd = fd;
    ev->path = path;
    pthread_mutex_init(&ev->mu, NULL);
    pbuf b = {0};
    event_header(&b, 0);
    put_bytes(&b, 3, "brain.Event:2", 13);
    st = write_record(ev, &b);
    sn_json_buf_free(&b);
    if (st) {
        sn_events_close(ev);
        return st;
    }
    *out = ev;
    return SN_OK;
}

const char *sn_events_path(const sn_events *ev) { return ev ? ev->path : NULL; }

void sn_events_close(sn_events *ev) {
    if (!ev) return;
    if (ev->fd >= 0) {
        fsync(ev->fd); /* durable across a power loss too, once at the end */
        close(ev->fd);
    }
    pthread_mutex_destroy(&ev->mu);
    free(ev->path);
    free(ev);
}

static sn_status check_tag(const sn_events *ev, const char *tag) {
    if (!ev) return sn_error(SN_ERR_INVALID_ARG, "TensorBoard events: writer is NULL");
    if (!tag || !*tag) return sn_error(SN_ERR_INVALID_ARG, "'%s': event tag is empty", ev->path);
    return SN_OK;
}

/* Event{wall_time, step, summary{value{...}}} around an encoded Value body. */
static sn_status write_value(sn_events *ev, int64_t step, const pbuf *value) {
    pbuf summary = {0}, e = {0};
    put_bytes(&summary, 1, value->data, value->len);
    event_header(&e, step);
    put_bytes(&e, 5, summary.data, summary.len);
    if (summary.oom) e.oom = 1;
    sn_status st = write_record(ev, &e);
    sn_json_buf_free(&summary);
    sn_json_buf_free(&e);
    return st;
}

sn_status sn_events_session_start(sn_events *ev, int64_t step) {
    if (!ev) return sn_error(SN_ERR_INVALID_ARG, "TensorBoard events: writer is NULL");
    /* Event.session_log (7) = SessionLog{status (1) = START (1)}; TensorBoard
     * drops the events of earlier files at this step and after */
    pbuf sl = {0}, e = {0};
    put_tag(&sl, 1, 0);
    put_varint(&sl, 1);
    event_header(&e, step);
    put_bytes(&e, 7, sl.data, sl.len);
    if (sl.oom) e.oom = 1;
    sn_status st = write_record(ev, &e);
    sn_json_buf_free(&sl);
    sn_json_buf_free(&e);
    return st;
}

sn_status sn_events_scalar(sn_events *ev, const char *tag, int64_t step, double value) {
    sn_status st = check_tag(ev, tag);
    if (st) return st;
    pbuf v = {0};
    put_bytes(&v, 1, tag, strlen(tag));
    put_float(&v, 2, (float)value);
    st = v.oom ? sn_error(SN_ERR_NOMEM, "out of memory") : write_value(ev, step, &v);
    sn_json_buf_free(&v);
    return st;
}

sn_status sn_wav16_encode(const float *x, int64_t n, int sample_rate, unsigned char **out, size_t *len) {
    if (!out || !len || (n && !x) || n < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_wav16_encode: bad arguments");
    if (sample_rate <= 0) return sn_error(SN_ERR_INVALID_ARG, "sn_wav16_encode: sample rate %d must be > 0", sample_rate);
    if (n > ((int64_t)1 << 29))
        return sn_error(SN_ERR_INVALID_ARG, "sn_wav16_encode: %lld samples is too long for an in-memory WAV",
                        (long long)n);
    uint32_t data_bytes = (uint32_t)(n * 2);
    size_t total = 44 + (size_t)data_bytes;
    unsigned char *w = malloc(total);
    if (!w) return sn_error(SN_ERR_NOMEM, "sn_wav16_encode: out of memory for %zu bytes", total);
    uint32_t riff = 36 + data_bytes, fmt_len = 16, rate = (uint32_t)sample_rate, byte_rate = rate * 2;
    memcpy(w, "RIFF", 4);
    for (int i = 0; i < 4; i++) w[4 + i] = (unsigned char)(riff >> (8 * i));
    memcpy(w + 8, "WAVEfmt ", 8);
    for (int i = 0; i < 4; i++) w[16 + i] = (unsigned char)(fmt_len >> (8 * i));
    w[20] = 1; w[21] = 0;  /* PCM */
    w[22] = 1; w[23] = 0;  /* mono */
    for (int i = 0; i < 4; i++) w[24 + i] = (unsigned char)(rate >> (8 * i));
    for (int i = 0; i < 4; i++) w[28 + i] = (unsigned char)(byte_rate >> (8 * i));
    w[32] = 2; w[33] = 0;  /* block align */
    w[34] = 16; w[35] = 0; /* bits per sample */
    memcpy(w + 36, "data", 4);
    for (int i = 0; i < 4; i++) w[40 + i] = (unsigned char)(data_bytes >> (8 * i));
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (!(v == v)) v = 0; /* NaN would make lrintf undefined */
        if (v > 1) v = 1;
        if (v < -1) v = -1;
        int s = (int)lrintf(v * 32767.0f);
        w[44 + 2 * i] = (unsigned char)(s & 0xFF);
        w[45 + 2 * i] = (unsigned char)((s >> 8) & 0xFF);
    }
    *out = w;
    *len = total;
    return SN_OK;
}

sn_status sn_events_audio(sn_events *ev, const char *tag, int64_t step, const float *x, int64_t n, int sample_rate) {
    sn_status st = check_tag(ev, tag);
    if (st) return st;
    unsigned char *wav;
    size_t wlen;
    st = sn_wav16_encode(x, n, sample_rate, &wav, &wlen);
    if (st) return sn_error_prefix(st, "'%s': audio '%s'", ev->path, tag);
    pbuf a = {0}, v = {0};
    put_float(&a, 1, (float)sample_rate);
    put_int64(&a, 2, 1);
    put_int64(&a, 3, n);
    put_bytes(&a, 4, wav, wlen);
    put_bytes(&a, 5, "audio/wav", 9);
    free(wav);
    put_bytes(&v, 1, tag, strlen(tag));
    put_bytes(&v, 6, a.data, a.len);
    if (a.oom) v.oom = 1;
    st = v.oom ? sn_error(SN_ERR_NOMEM, "'%s': out of memory encoding audio '%s'", ev->path, tag)
               : write_value(ev, step, &v);
    sn_json_buf_free(&a);
    sn_json_buf_free(&v);
    return st;
}
