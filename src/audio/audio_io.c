/* Audio file I/O through libsndfile: whole-file reads (from a path or from
 * memory), writes, header info, and a block reader and writer for long files.
 *
 * libsndfile keeps the reason for a failed sf_open in a process-wide variable
 * (sf_error(NULL)), so under concurrent opens the reason text may belong to
 * another thread's failure; the status code and file name are always right. */
#define _POSIX_C_SOURCE 200809L
#include "sinter/audio.h"
#include "audio/audio_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sndfile.h>

#define BLOCK_SAMPLES 65536

/* Frames per decoding block: about 256 KiB of scratch whatever the channel count. */
static int64_t block_frames(int channels) {
    int64_t f = BLOCK_SAMPLES / channels;
    return f < 16 ? 16 : f;
}

/* Maps a failed sf_open to a status and a message that names the file. */
static sn_status open_error(const char *name, int err, int sys_errno) {
    const char *why = sf_error_number(err);
    switch (err) {
    case SF_ERR_UNRECOGNISED_FORMAT:
        return sn_error(SN_ERR_FORMAT,
                        "'%s' is not a recognised audio file (%s); sinter reads WAV, FLAC and OGG "
                        "files: check that the file is audio and not truncated or renamed",
                        name, why);
    case SF_ERR_UNSUPPORTED_ENCODING:
        return sn_error(SN_ERR_UNSUPPORTED,
                        "'%s' uses an audio encoding libsndfile cannot decode (%s); convert it to "
                        "WAV PCM or FLAC",
                        name, why);
    case SF_ERR_SYSTEM: /* libsndfile says only "System error." */
        return sn_error(SN_ERR_IO, "cannot open '%s': %s (check the path and permissions)", name,
                        sys_errno ? strerror(sys_errno) : why);
    default:
        return sn_error(SN_ERR_FORMAT,
                        "'%s' is corrupt or truncated (%s); re-export or remove the file", name,
                        why);
    }
}

/* Checks the path before libsndfile so that missing files, directories and
 * empty files get a precise message. */
static sn_status check_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return sn_error(SN_ERR_IO, "cannot open '%s': %s (check the path)", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return sn_error(SN_ERR_IO, "'%s' is a directory, not an audio file", path);
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return sn_error(SN_ERR_FORMAT, "'%s' is empty (0 bytes); re-export or remove the file",
                        path);
    if (access(path, R_OK) != 0)
        return sn_error(SN_ERR_IO, "cannot read '%s': %s (check its permissions)", path, strerror(errno));
    return SN_OK;
}

static SNDFILE *open_read(const char *path, SF_INFO *info, sn_status *st) {
    *st = check_path(path);
    if (*st) return NULL;
    memset(info, 0, sizeof *info);
    errno = 0;
    SNDFILE *sf = sf_open(path, SFM_READ, info);
    if (!sf) {
        *st = open_error(path, sf_error(NULL), errno);
        return NULL;
    }
    if (info->channels <= 0 || info->samplerate <= 0) {
        sf_close(sf);
        *st = sn_error(SN_ERR_FORMAT, "'%s' has a bad header (%d channels, %d Hz)", path,
                       info->channels, info->samplerate);
        return NULL;
    }
    /* no speech lives at a few Hz, and the resampler refuses ratios past 256 */
    if (info->samplerate < SN_AUDIO_MIN_RATE || info->samplerate > SN_AUDIO_MAX_RATE) {
        sf_close(sf);
        *st = sn_error(SN_ERR_UNSUPPORTED,
                       "'%s' has a sample rate of %d Hz; sinter reads audio at %d to %d Hz: "
                       "check the file's header or resample it",
                       path, info->samplerate, SN_AUDIO_MIN_RATE, SN_AUDIO_MAX_RATE);
        return NULL;
    }
    return sf;
}

static sn_status check_finite(const char *name, const float *x, int64_t n, int channels,
                              int64_t first_frame) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            int64_t frame = first_frame + i / channels;
            return sn_error(SN_ERR_NUMERIC,
                            "'%s' holds a non-finite sample (%s) at frame %lld, channel %d "
                            "(sample index %lld); fix or remove the file",
                            name, isnan(x[i]) ? "NaN" : "Inf", (long long)frame,
                            (int)(i % channels), (long long)(first_frame * channels + i));
        }
    }
    return SN_OK;
}

/* Mono mixdown by averaging, so levels stay comparable to a mono source. */
static void mixdown(const float *in, int64_t frames, int channels, float *out) {
    if (channels == 1) {
        memcpy(out, in, (size_t)frames * sizeof *out);
        return;
    }
    float inv = 1.0f / (float)channels;
    for (int64_t f = 0; f < frames; f++) {
        float s = 0;
        for (int c = 0; c < channels; c++) s += in[f * channels + c];
        out[f] = s * inv;
    }
}

/* Reads an opened file in blocks (memory stays bounded by the output, not by
 * a second full-size interleaved copy when mixing down). */
static sn_status read_all(SNDFILE *sf, const SF_INFO *info, const char *name, int target_rate,
                          int mono, sn_audio *out) {
    if (target_rate < 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot read '%s' at target rate %d Hz: the rate must be > 0 (or 0 to "
                        "keep the file's rate)",
                        name, target_rate);
    int ch = info->channels, och = mono ? 1 : ch;
    /* The header's frame count is only a hint (corrupt files lie): start
     * small and grow with what is actually decoded. */
    int64_t cap = info->frames > 0 && info->frames < (1 << 16) ? info->frames : (1 << 16);
    int64_t bf = block_frames(ch);
    float *data = malloc((size_t)cap * och * sizeof *data);
    float *blk = malloc((size_t)bf * ch * sizeof *blk);
    if (!data || !blk) {
        free(data);
        free(blk);
        return sn_error(SN_ERR_NOMEM, "out of memory reading '%s'", name);
    }
    int64_t total = 0;
    sn_status st = SN_OK;
    for (;;) {
        sf_count_t got = sf_readf_float(sf, blk, bf);
        if (got <= 0) break;
        if ((st = check_finite(name, blk, (int64_t)got * ch, ch, total))) break;
        if (total + got > cap) {
            int64_t ncap = cap * 2 > total + got ? cap * 2 : total + got;
            float *nd = realloc(data, (size_t)ncap * och * sizeof *nd);
            if (!nd) {
                st = sn_error(SN_ERR_NOMEM, "out of memory reading '%s' (%lld frames)", name,
                              (long long)ncap);
                break;
            }
            data = nd;
            cap = ncap;
        }
        if (mono)
            mixdown(blk, got, ch, data + total);
        else
            memcpy(data + total * ch, blk, (size_t)got * ch * sizeof *blk);
        total += got;
    }
    free(blk);
    if (!st && sf_error(sf) != SF_ERR_NO_ERROR)
        st = sn_error(SN_ERR_FORMAT, "'%s' is corrupt: %s (after %lld frames)", name,
                      sf_strerror(sf), (long long)total);
    if (!st && total == 0)
        st = sn_error(SN_ERR_FORMAT,
                      "'%s' holds no audio samples (0 frames); re-export or remove the file", name);
    if (st) {
        free(data);
        return st;
    }
    out->data = data;
    out->frames = total;
    out->channels = och;
    out->sample_rate = info->samplerate;
    out->format = info->format;
    if (target_rate > 0 && target_rate != info->samplerate) {
        float *r = NULL;
        int64_t nr = 0;
        st = sn_resample_channels(data, total, och, info->samplerate, target_rate, &r, &nr);
        free(data);
        out->data = NULL;
        if (st) {
            memset(out, 0, sizeof *out);
            return sn_error_prefix(st, "while reading '%s'", name);
        }
        out->data = r;
        out->frames = nr;
        out->sample_rate = target_rate;
    }
    return SN_OK;
}

sn_status sn_audio_read(const char *path, int target_rate, int mono, sn_audio *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_read: path is NULL");
    SF_INFO info;
    sn_status st;
    SNDFILE *sf = open_read(path, &info, &st);
    if (!sf) return st;
    st = read_all(sf, &info, path, target_rate, mono, out);
    sf_close(sf);
    return st;
}

/* ---- reading from memory (sf_open_virtual), used by the fuzzer ---------- */

typedef struct {
    const unsigned char *p;
    sf_count_t size, pos;
} membuf;

static sf_count_t mem_len(void *u) { return ((membuf *)u)->size; }
static sf_count_t mem_seek(sf_count_t off, int whence, void *u) {
    membuf *m = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    sf_count_t np = base + off;
    if (np < 0) return -1;
    m->pos = np; /* past-the-end is allowed, like a file; reads then return 0 */
    return m->pos;
}
static sf_count_t mem_read(void *ptr, sf_count_t count, void *u) {
    membuf *m = u;
    if (count <= 0 || m->pos >= m->size) return 0;
    sf_count_t n = m->size - m->pos < count ? m->size - m->pos : count;
    memcpy(ptr, m->p + m->pos, (size_t)n);
    m->pos += n;
    return n;
}
static sf_count_t mem_write(const void *ptr, sf_count_t count, void *u) { return 0; }
static sf_count_t mem_tell(void *u) { return ((membuf *)u)->pos; }

sn_status sn_audio_read_memory(const void *buf, size_t size, const char *name, int target_rate,
                               int mono, sn_audio *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_read_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!buf && size) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_read_memory: buf is NULL");
    if (size == 0)
        return sn_error(SN_ERR_FORMAT, "'%s' is empty (0 bytes); re-export or remove the file",
                        name);
    membuf m = {buf, (sf_count_t)size, 0};
    SF_VIRTUAL_IO vio = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &m);
    if (!sf) return open_error(name, sf_error(NULL), 0);
    sn_status st;
    if (info.channels <= 0 || info.samplerate <= 0)
        st = sn_error(SN_ERR_FORMAT, "'%s' has a bad header (%d channels, %d Hz)", name,
                      info.channels, info.samplerate);
    else
        st = read_all(sf, &info, name, target_rate, mono, out);
    sf_close(sf);
    return st;
}

void sn_audio_free(sn_audio *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

sn_status sn_audio_info(const char *path, int *sample_rate, int64_t *frames, int *channels,
                        int *format) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_info: path is NULL");
    SF_INFO info;
    sn_status st;
    SNDFILE *sf = open_read(path, &info, &st);
    if (!sf) return st;
    if (sample_rate) *sample_rate = info.samplerate;
    if (frames) *frames = info.frames;
    if (channels) *channels = info.channels;
    if (format) *format = info.format;
    sf_close(sf);
    return SN_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int major_from_ext(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && !strcasecmp(dot, ".flac")) return SF_FORMAT_FLAC;
    if (dot && (!strcasecmp(dot, ".ogg") || !strcasecmp(dot, ".oga"))) return SF_FORMAT_OGG;
    return SF_FORMAT_WAV;
}

struct sn_audio_writer {
    SNDFILE *sf;
    int channels;
    int64_t frames;  /* written so far */
    sn_status error; /* sticky: the first failed write */
    char *tmp;
    char path[];
};

/* Checks the arguments and resolves the format (shared with sn_audio_write,
 * so both give the same messages). */
static sn_status writer_format(const char *path, int channels, int sample_rate, int format,
                               int64_t frames, SF_INFO *info) {
    if (frames < 0 || channels <= 0 || sample_rate <= 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "cannot write '%s': bad shape or rate (%lld frames, %d channels, %d Hz)",
                        path, (long long)frames, channels, sample_rate);
    int major = format & SF_FORMAT_TYPEMASK, sub = format & SF_FORMAT_SUBMASK;
    if (format == 0) {
        major = SF_FORMAT_WAV;
        sub = SF_FORMAT_PCM_16;
    }
    if (!major) major = major_from_ext(path);
    if (!sub) sub = major == SF_FORMAT_OGG ? SF_FORMAT_VORBIS : SF_FORMAT_PCM_16;
    memset(info, 0, sizeof *info);
    info->samplerate = sample_rate;
    info->channels = channels;
    info->format = major | sub;
    if (!sf_format_check(info))
        return sn_error(SN_ERR_UNSUPPORTED,
                        "cannot write '%s': libsndfile does not support format 0x%06x (major "
                        "0x%x, subtype 0x%x) with %d channels at %d Hz; use 0 for WAV PCM_16",
                        path, major | sub, major, sub, channels, sample_rate);
    return SN_OK;
}

sn_status sn_audio_writer_open(const char *path, int channels, int sample_rate, int format,
                               sn_audio_writer **w) {
    if (!w) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_writer_open: w is NULL");
    *w = NULL;
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_writer_open: path is NULL");
    SF_INFO info;
    sn_status st = writer_format(path, channels, sample_rate, format, 0, &info);
    if (st) return st;
    /* Write beside the target and rename, so a crash never leaves half a file;
     * the counter keeps two writers of one process apart. */
    static unsigned long counter;
    unsigned long k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    size_t plen = strlen(path) + 64;
    sn_audio_writer *wr = calloc(1, sizeof *wr + strlen(path) + 1);
    char *tmp = malloc(plen);
    if (!wr || !tmp) {
        free(wr);
        free(tmp);
        return sn_error(SN_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    snprintf(tmp, plen, "%s.tmp%ld.%lu", path, (long)getpid(), k);
    errno = 0;
    SNDFILE *sf = sf_open(tmp, SFM_WRITE, &info);
    if (!sf) {
        int e = errno;
        /* sf_open may have created the file before its header write failed (disk full) */
        unlink(tmp);
        st = sn_error(SN_ERR_IO, "cannot write '%s': %s (check that the directory exists and is "
                                 "writable, and the free space)",
                      path, e ? strerror(e) : sf_strerror(NULL));
        free(wr);
        free(tmp);
        return st;
    }
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    wr->sf = sf;
    wr->channels = channels;
    wr->tmp = tmp;
    strcpy(wr->path, path);
    *w = wr;
    return SN_OK;
}

sn_status sn_audio_writer_write(sn_audio_writer *w, const float *data, int64_t frames) {
    if (!w || frames < 0 || (!data && frames > 0))
        return sn_error(SN_ERR_INVALID_ARG, "sn_audio_writer_write: bad arguments");
    if (w->error)
        return sn_error(w->error, "cannot write '%s': an earlier write failed", w->path);
    /* NaN cannot be stored in integer subtypes and is never wanted in audio. */
    sn_status st = check_finite(w->path, data, frames * w->channels, w->channels, w->frames);
    if (st) {
        w->error = SN_ERR_NUMERIC;
        return sn_error_prefix(SN_ERR_NUMERIC, "refusing to write");
    }
    for (int64_t off = 0; off < frames;) {
        sf_count_t n = frames - off < BLOCK_SAMPLES ? frames - off : BLOCK_SAMPLES;
        sf_count_t got = sf_writef_float(w->sf, data + off * w->channels, n);
        if (got != n) {
            w->error = SN_ERR_IO;
            return sn_error(SN_ERR_IO, "cannot write '%s': %s after %lld frames (disk full?)",
                            w->path, sf_strerror(w->sf), (long long)(w->frames + off));
        }
        off += n;
    }
    w->frames += frames;
    return SN_OK;
}

static void writer_free(sn_audio_writer *w) {
    free(w->tmp);
    free(w);
}

void sn_audio_writer_abort(sn_audio_writer *w) {
    if (!w) return;
    sf_close(w->sf);
    unlink(w->tmp);
    writer_free(w);
}

sn_status sn_audio_writer_close(sn_audio_writer *w) {
    if (!w) return SN_OK;
    sn_status st = w->error;
    if (st) st = sn_error(st, "cannot write '%s': a write failed; the file was not created",
                          w->path);
    if (sf_close(w->sf) != 0 && !st)
        st = sn_error(SN_ERR_IO, "cannot finish writing '%s' (disk full?)", w->path);
    if (!st && rename(w->tmp, w->path) != 0)
        st = sn_error(SN_ERR_IO, "cannot write '%s': rename failed: %s", w->path, strerror(errno));
    if (st) unlink(w->tmp);
    writer_free(w);
    return st;
}

sn_status sn_audio_write(const char *path, const float *data, int64_t frames, int channels,
                         int sample_rate, int format) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_write: path is NULL");
    if (!data && frames > 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_audio_write '%s': data is NULL", path);
    SF_INFO info;
    sn_status st = writer_format(path, channels, sample_rate, format, frames, &info);
    if (st) return st;
    /* checked before a temp file exists */
    st = check_finite(path, data, frames * channels, channels, 0);
    if (st) return sn_error_prefix(SN_ERR_NUMERIC, "refusing to write");
    sn_audio_writer *w = NULL;
    st = sn_audio_writer_open(path, channels, sample_rate, format, &w);
    if (st) return st;
    st = sn_audio_writer_write(w, data, frames);
    if (st) {
        sn_audio_writer_abort(w);
        return st;
    }
    return sn_audio_writer_close(w);
}

/* ---- block reader --------------------------------------------------------- */

struct sn_audio_reader {
    SNDFILE *sf;
    int channels;
    int64_t pos;
    int64_t bf;
    float *blk; /* interleaved scratch, bf frames */
    char path[];
};

sn_status sn_audio_reader_open(const char *path, sn_audio_reader **r, int *sample_rate,
                               int64_t *frames) {
    if (!r) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_reader_open: r is NULL");
    *r = NULL;
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_reader_open: path is NULL");
    SF_INFO info;
    sn_status st;
    SNDFILE *sf = open_read(path, &info, &st);
    if (!sf) return st;
    if (info.frames == 0) {
        sf_close(sf);
        return sn_error(SN_ERR_FORMAT,
                        "'%s' holds no audio samples (0 frames); re-export or remove the file", path);
    }
    sn_audio_reader *rd = calloc(1, sizeof *rd + strlen(path) + 1);
    float *blk = malloc((size_t)block_frames(info.channels) * info.channels * sizeof *blk);
    if (!rd || !blk) {
        free(rd);
        free(blk);
        sf_close(sf);
        return sn_error(SN_ERR_NOMEM, "out of memory opening '%s'", path);
    }
    rd->sf = sf;
    rd->channels = info.channels;
    rd->blk = blk;
    rd->bf = block_frames(info.channels);
    strcpy(rd->path, path);
    if (sample_rate) *sample_rate = info.samplerate;
    if (frames) *frames = info.frames;
    *r = rd;
    return SN_OK;
}

sn_status sn_audio_reader_read(sn_audio_reader *r, float *dst, int64_t n, int64_t *got) {
    if (got) *got = 0;
    if (!r || !got || (!dst && n > 0) || n < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_audio_reader_read: bad arguments");
    int64_t done = 0;
    while (done < n) {
        sf_count_t want = n - done < r->bf ? n - done : r->bf;
        sf_count_t g = sf_readf_float(r->sf, r->blk, want);
        if (g <= 0) break;
        sn_status st = check_finite(r->path, r->blk, (int64_t)g * r->channels, r->channels, r->pos);
        if (st) return st;
        mixdown(r->blk, g, r->channels, dst + done);
        done += g;
        r->pos += g;
        if (g < want) break;
    }
    if (sf_error(r->sf) != SF_ERR_NO_ERROR)
        return sn_error(SN_ERR_FORMAT, "'%s' is corrupt: %s (at frame %lld)", r->path,
                        sf_strerror(r->sf), (long long)r->pos);
    *got = done;
    return SN_OK;
}

sn_status sn_audio_reader_seek(sn_audio_reader *r, int64_t frame) {
    if (!r || frame < 0) return sn_error(SN_ERR_INVALID_ARG, "sn_audio_reader_seek: bad arguments");
    if (sf_seek(r->sf, frame, SEEK_SET) < 0)
        return sn_error(SN_ERR_INVALID_ARG, "cannot seek '%s' to frame %lld: %s", r->path,
                        (long long)frame, sf_strerror(r->sf));
    r->pos = frame;
    return SN_OK;
}

void sn_audio_reader_close(sn_audio_reader *r) {
    if (!r) return;
    sf_close(r->sf);
    free(r->blk);
    free(r);
}
