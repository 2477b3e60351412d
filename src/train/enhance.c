/* Speech enhancement of audio files with a trained CRN (sn_enhance_file):
 * audio is mixed down to mono and resampled to the model's 16 kHz; the model
 * runs on chunks of frames with its state carried (stream.h), the STFT reads
 * hop-aligned pieces of the signal and the inverse STFT carries the overlap-add
 * tail (numerator and window-square denominator) to the next chunk, so the
 * result equals whole-file processing. The output is resampled back and
 * written at the input's rate and format. The audio itself streams too: read,
 * resampled (both ways) and written in blocks, so memory stays constant
 * however long the file. `sinter enhance` is a front-end of this file. */
#include "sinter/audio.h"
#include "sinter/config.h"
#include "sinter/stream.h"
#include "sinter/train.h"
#include "io/fs.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_RATE 16000

/* mkdir -p of the folder part of path. */
static sn_status make_parent(const char *path) {
    char *p = strdup(path);
    if (!p) return sn_error(SN_ERR_NOMEM, "out of host memory");
    char *slash = strrchr(p, '/');
    sn_status st = SN_OK;
    if (slash && slash != p) {
        *slash = 0;
        st = sn_mkdirs(p);
    }
    free(p);
    return st;
}

/* The output format: the input's when the extensions agree, else the output
 * extension's container with the input's subtype if that combination exists. */
static int out_format(const char *out_path, int in_format) {
    const char *dot = strrchr(out_path, '.');
    int major = SF_FORMAT_WAV;
    if (dot && !strcasecmp(dot, ".flac")) major = SF_FORMAT_FLAC;
    else if (dot && !strcasecmp(dot, ".ogg")) major = SF_FORMAT_OGG;
    if ((in_format & SF_FORMAT_TYPEMASK) == major) return in_format;
    SF_INFO info = {.samplerate = MODEL_RATE, .channels = 1, .format = major | (in_format & SF_FORMAT_SUBMASK)};
    if (sf_format_check(&info)) return info.format;
    return major; /* the default subtype of that container */
}

/* ---- enhancement at 16 kHz --------------------------------------------------- */

struct sn_enhancer {
    sn_model *m;
    sn_backend *b, *cpu;
    sn_config cfg;          /* the model's config (the checkpoint's, or the caller's) */
    char why_whole[400];    /* why the model runs on whole files ("" when chunked) */
    volatile sig_atomic_t *stop;
    sn_stft *stft;
    sn_stream *stream;      /* NULL: whole files */
    int Tc;                 /* frames per chunk */
    float *mag, *phase, *est; /* [(Tc+2)*161]: a zero frame on each side of the chunk */
    float *yl;              /* local iSTFT of the padded chunk */
    float *den, *den_ext;   /* window-square sums of the chunk's frames / with the zero frames */
    float w2[SN_NFFT];      /* periodic Hann, squared */
};

static int stopped(const sn_enhancer *e) { return e->stop && *e->stop; }

static void enhancer_release(sn_enhancer *e) {
    sn_stream_free(e->stream);
    sn_stft_free(e->stft);
    free(e->mag), free(e->phase), free(e->est), free(e->yl), free(e->den), free(e->den_ext);
}

static sn_status enhancer_init(sn_enhancer *e, int Tc) {
    sn_status st = sn_stft_new(&e->stft);
    for (int k = 0; k < SN_NFFT; k++) {
        double w = 0.5 - 0.5 * cos(2.0 * M_PI * k / SN_NFFT);
        e->w2[k] = (float)(w * w);
    }
    if (st != SN_OK || Tc <= 0) return st;
    e->Tc = Tc;
    st = sn_stream_new(e->m, e->b, e->cpu, 1, Tc, &e->stream);
    if (st != SN_OK) return st;
    size_t nf = (size_t)(Tc + 2) * SN_NBINS, ns = (size_t)SN_HOP * (Tc + 1) + SN_NFFT;
    e->mag = calloc(nf, sizeof(float));
    e->phase = calloc(nf, sizeof(float));
    e->est = calloc(nf, sizeof(float));
    e->yl = calloc(ns, sizeof(float));
    e->den = calloc(ns, sizeof(float));
    e->den_ext = calloc(ns, sizeof(float));
    if (!e->mag || !e->phase || !e->est || !e->yl || !e->den || !e->den_ext)
        return sn_error(SN_ERR_NOMEM, "enhance: out of host memory");
    return SN_OK;
}

/* Whole file at once: STFT, one inference graph of T frames, iSTFT. */
static sn_status enhance_whole(sn_enhancer *e, const float *x, int64_t N, float *y) {
    int64_t T = sn_stft_frames(N);
    memset(y, 0, (size_t)N * sizeof(float));
    if (T == 0) return SN_OK;
    if (T > 1000000) return sn_error(SN_ERR_INVALID_ARG, "enhance: %lld frames is too long for one pass; use "
                                     "--chunk-seconds", (long long)T);
    float *mag = malloc((size_t)T * SN_NBINS * sizeof(float)), *ph = malloc((size_t)T * SN_NBINS * sizeof(float));
    float *est = malloc((size_t)T * SN_NBINS * sizeof(float));
    sn_infer *inf = NULL;
    sn_status st = mag && ph && est ? SN_OK : sn_error(SN_ERR_NOMEM, "enhance: out of host memory");
    if (st == SN_OK) st = sn_stft_mag_phase(e->stft, x, N, mag, ph);
    if (st == SN_OK) st = sn_infer_new(e->m, e->b, e->cpu, 1, (int)T, &inf);
    if (st == SN_OK) st = sn_infer_run(inf, mag, est);
    if (st == SN_OK) st = sn_istft_mag_phase(e->stft, est, ph, T, y, N);
    if (st == SN_OK) sn_istft_fade_edges(e->stft, y, N, T); /* the chunked path's rule (wola) */
    sn_infer_free(inf);
    free(mag), free(ph), free(est);
    return st;
}

/* The overlap-add division of an enhanced output sample. Inside the signal two
 * windows cover every sample and their squares sum to at least 0.5; in the first and
 * last hop one window does, and DESIGN.md's 1e-8 guard divides the model's estimate by
 * w^2 down to ~1e-7 there, amplifying its errors up to 1e7-fold (clicks that dominate
 * any metric of the file). Flooring the divisor at 0.5 leaves the interior exact and
 * turns the ends into a 5 ms fade instead. */
static float wola(double num, double den) {
    if (!(den > 1e-8)) return 0.0f;
    return (float)(num / (den < SN_ISTFT_EDGE_FLOOR ? SN_ISTFT_EDGE_FLOOR : den));
}

/* One chunk of n frames starting at frame t0, from x = samples
 * [160·t0, 160·(t0+n-1)+320). Its local iSTFT, with a zero frame added on each
 * side so every sample has a window-square sum far above 1e-8, gives back the
 * exact overlap-add numerator (y·den_ext); the last 160 samples wait in carry
 * for the next chunk's first frame. Writes the n·160 final samples
 * [160·t0, 160·(t0+n)) to y. */
static sn_status enhance_chunk(sn_enhancer *e, const float *x, int n, float *carry_num, float *carry_den,
                               float *y) {
    const int F = SN_NBINS, H = SN_HOP;
    int64_t L = (int64_t)H * (n - 1) + SN_NFFT;
    memset(e->mag, 0, (size_t)F * sizeof(float));
    memset(e->est, 0, (size_t)F * sizeof(float));
    memset(e->est + (size_t)(n + 1) * F, 0, (size_t)F * sizeof(float));
    memset(e->phase + (size_t)(n + 1) * F, 0, (size_t)F * sizeof(float));
    sn_status st = sn_stft_mag_phase(e->stft, x, L, e->mag + F, e->phase + F);
    if (st == SN_OK) st = sn_stream_run(e->stream, e->mag + F, n, e->est + F);
    int64_t Lx = (int64_t)H * (n + 1) + SN_NFFT; /* n + 2 frames from sample -160 */
    if (st == SN_OK) st = sn_istft_mag_phase(e->stft, e->est, e->phase, n + 2, e->yl, Lx);
    if (st != SN_OK) return st;
    /* window-square sums over the chunk's frames (den) and with the zero frames (den_ext) */
    memset(e->den, 0, (size_t)Lx * sizeof(float));
    for (int j = 1; j <= n; j++)
        for (int k = 0; k < SN_NFFT; k++) e->den[(int64_t)j * H + k] += e->w2[k];
    for (int64_t k = 0; k < Lx; k++) e->den_ext[k] = e->den[k];
    for (int k = 0; k < SN_NFFT; k++) {
        e->den_ext[k] += e->w2[k];
        e->den_ext[(int64_t)(n + 1) * H + k] += e->w2[k];
    }
    /* local index i = s + 160 for output sample s of the chunk */
    for (int64_t s = 0; s < (int64_t)n * H; s++) {
        int64_t i = s + H;
        double num = (double)e->yl[i] * e->den_ext[i], den = e->den[i];
        if (s < H) num += carry_num[s], den += carry_den[s];
        y[s] = wola(num, den);
    }
    for (int s = 0; s < H; s++) {
        int64_t i = (int64_t)n * H + H + s;
        carry_num[s] = e->yl[i] * e->den_ext[i];
        carry_den[s] = e->den[i];
    }
    return SN_OK;
}

/* ---- one file, streamed ------------------------------------------------------
 *
 * reader (input rate, mono) -> resampler to 16 kHz -> x16 buffer -> chunks of
 * Tc frames through the model -> resampler back -> writer (input rate and
 * format). Every buffer is bounded by the read block and the chunk length, so
 * memory does not grow with the file, and the samples are those of the
 * whole-file pipeline: the resamplers carry their filter state (sn_resampler
 * equals sn_resample), the chunks the model, STFT and overlap-add state.
 * Without a stream (attention, --chunk-seconds 0) the 16 kHz signal is
 * gathered whole for one pass; reading and writing still go in blocks. */

#define READ_BLOCK 16384

typedef struct flow {
    sn_enhancer *e;
    const char *in;
    sn_resampler *down, *up;
    sn_audio_writer *w;
    float *blk;                  /* one read block */
    float *x16;                  /* 16 kHz input from sample 160·t0 (whole: from 0) */
    int64_t nx, capx;
    int64_t t0;                  /* next frame to enhance */
    int64_t n16;                 /* 16 kHz samples received */
    float *y16;                  /* one chunk of output */
    float carry_num[SN_HOP], carry_den[SN_HOP];
    int64_t frames_in;           /* input frames read so far */
    int64_t frames_out;          /* output frames written */
    float *pend;                 /* output past frames_in, held until the length is known */
    int64_t npend, cappend;
} flow;

static void flow_free(flow *p) {
    sn_resampler_free(p->down);
    sn_resampler_free(p->up);
    sn_audio_writer_abort(p->w); /* still open only on failure or interrupt */
    free(p->blk), free(p->x16), free(p->y16), free(p->pend);
}

static int reserve(float **v, int64_t *cap, int64_t need) {
    if (need <= *cap) return 1;
    int64_t c = *cap * 2 > need ? *cap * 2 : need;
    float *nv = realloc(*v, (size_t)c * sizeof(float));
    if (!nv) return 0;
    *v = nv, *cap = c;
    return 1;
}

/* The output has exactly as many frames as the input: samples at or past the
 * frames read so far wait until the input's end says whether they are kept. */
static sn_status sink_write(flow *p, const float *y, int64_t n) {
    if (n > 0 && (p->npend || p->frames_out + n > p->frames_in)) {
        if (!reserve(&p->pend, &p->cappend, p->npend + n))
            return sn_error(SN_ERR_NOMEM, "enhance '%s': out of host memory", p->in);
        memcpy(p->pend + p->npend, y, (size_t)n * sizeof(float));
        p->npend += n;
        y = p->pend, n = p->npend;
    }
    int64_t k = p->frames_in - p->frames_out;
    if (k > n) k = n;
    if (k <= 0) return SN_OK;
    sn_status st = sn_audio_writer_write(p->w, y, k);
    if (st != SN_OK) return st;
    p->frames_out += k;
    if (y == p->pend) {
        memmove(p->pend, p->pend + k, (size_t)(p->npend - k) * sizeof(float));
        p->npend -= k;
    }
    return SN_OK;
}

/* 16 kHz output -> the input's rate -> the file. */
static sn_status emit(flow *p, const float *y, int64_t n, int last) {
    const float *r;
    int64_t nr;
    sn_status st = sn_resampler_process(p->up, y, n, last, &r, &nr);
    return st == SN_OK ? sink_write(p, r, nr) : st;
}

/* Runs the chunk of n frames at frame t0 (x16 holds samples from 160·t0). */
static sn_status run_chunk(flow *p, int n) {
    sn_status st = enhance_chunk(p->e, p->x16, n, p->carry_num, p->carry_den, p->y16);
    if (st == SN_OK) st = emit(p, p->y16, (int64_t)n * SN_HOP, 0);
    if (st != SN_OK) return st;
    int64_t drop = (int64_t)n * SN_HOP;
    if (drop > p->nx) drop = p->nx;
    memmove(p->x16, p->x16 + drop, (size_t)(p->nx - drop) * sizeof(float));
    p->nx -= drop;
    p->t0 += n;
    return SN_OK;
}

/* 16 kHz input arrives; full chunks run as soon as their samples are in. */
static sn_status push16(flow *p, const float *x, int64_t n) {
    if (!reserve(&p->x16, &p->capx, p->nx + n))
        return sn_error(SN_ERR_NOMEM, "enhance '%s': out of host memory", p->in);
    memcpy(p->x16 + p->nx, x, (size_t)n * sizeof(float));
    p->nx += n;
    p->n16 += n;
    if (!p->e->stream) return SN_OK;
    const int Tc = p->e->Tc;
    sn_status st = SN_OK;
    /* a full chunk needs 160·(Tc-1)+320 samples; one that ends the file may be shorter */
    while (st == SN_OK && !stopped(p->e) && p->nx >= (int64_t)SN_HOP * (Tc - 1) + SN_NFFT) st = run_chunk(p, Tc);
    return st;
}

/* The input has ended: the last chunks, the overlap-add tail, the zeros past
 * the last frame, the resampler's tail. */
static sn_status finish16(flow *p) {
    sn_enhancer *e = p->e;
    int64_t N = p->n16, T = sn_stft_frames(N);
    sn_status st = SN_OK;
    if (N < SN_NFFT)
        sn_log(SN_LOG_WARN, "enhance: '%s' is shorter than one 20 ms frame: the output is silence", p->in);
    if (!e->stream) {
        float *y = malloc((size_t)(N ? N : 1) * sizeof(float));
        if (!y) return sn_error(SN_ERR_NOMEM, "enhance '%s': out of host memory", p->in);
        st = enhance_whole(e, p->x16, N, y);
        if (st == SN_OK && !stopped(p->e)) st = emit(p, y, N, 1);
        free(y);
        return st;
    }
    while (st == SN_OK && !stopped(p->e) && p->t0 < T) st = run_chunk(p, (int)(T - p->t0 < e->Tc ? T - p->t0 : e->Tc));
    if (st != SN_OK || stopped(p->e)) return st;
    /* the last frame's second half (no further frame overlaps it), then zeros */
    float tail[SN_HOP] = {0}, zeros[SN_HOP] = {0};
    int64_t done = T * SN_HOP;
    for (int s = 0; s < SN_HOP && T > 0 && done < N; s++, done++)
        tail[s] = wola(p->carry_num[s], p->carry_den[s]);
    st = emit(p, tail, T > 0 ? done - T * SN_HOP : 0, 0);
    while (st == SN_OK && done < N) {
        int64_t k = N - done < SN_HOP ? N - done : SN_HOP;
        st = emit(p, zeros, k, 0);
        done += k;
    }
    return st == SN_OK ? emit(p, NULL, 0, 1) : st;
}

/* One file: read (mono), resample to 16 kHz, enhance, resample back, write. */
sn_status sn_enhance_file(sn_enhancer *e, const char *in, const char *out, double *audio_s) {
    if (!e || !in || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_enhance_file: enhancer, input and output are required");
    double dummy;
    if (!audio_s) audio_s = &dummy;
    *audio_s = 0;
    flow p = {.e = e, .in = in};
    sn_audio_reader *rd = NULL;
    int rate = 0, format = 0;
    sn_status st = sn_audio_reader_open(in, &rd, &rate, NULL);
    if (st != SN_OK) return st;
    st = sn_audio_info(in, NULL, NULL, NULL, &format);
    if (st == SN_OK) st = sn_resampler_new(rate, MODEL_RATE, &p.down);
    if (st == SN_OK) st = sn_resampler_new(MODEL_RATE, rate, &p.up);
    /* a rate the resampler refuses is the file's fault, not the caller's */
    if (st == SN_ERR_INVALID_ARG) st = sn_error_prefix(SN_ERR_UNSUPPORTED, "'%s' (%d Hz)", in, rate);
    if (st == SN_OK && e->stream) st = sn_stream_reset(e->stream);
    if (st == SN_OK) {
        p.blk = malloc(READ_BLOCK * sizeof(float));
        p.y16 = e->stream ? malloc((size_t)e->Tc * SN_HOP * sizeof(float)) : NULL;
        if (!p.blk || (e->stream && !p.y16)) st = sn_error(SN_ERR_NOMEM, "enhance '%s': out of host memory", in);
    }
    if (st == SN_OK) st = make_parent(out);
    if (st == SN_OK) st = sn_audio_writer_open(out, 1, rate, out_format(out, format), &p.w);
    for (int last = 0; st == SN_OK && !last && !stopped(e);) {
        int64_t got = 0;
        const float *x;
        int64_t nx;
        st = sn_audio_reader_read(rd, p.blk, READ_BLOCK, &got);
        last = got == 0;
        p.frames_in += got;
        if (last && st == SN_OK && p.frames_in == 0)
            st = sn_error(SN_ERR_FORMAT, "'%s' holds no audio samples (0 frames); re-export or remove the file",
                          in);
        if (st == SN_OK) st = sn_resampler_process(p.down, p.blk, got, last, &x, &nx);
        if (st == SN_OK) st = push16(&p, x, nx);
    }
    if (st == SN_OK && !stopped(e)) st = finish16(&p);
    if (st == SN_OK && !stopped(e)) {
        /* resampling rounds the length: make it the input's exactly */
        static const float zeros[1024];
        while (st == SN_OK && p.frames_out < p.frames_in) {
            int64_t k = p.frames_in - p.frames_out < 1024 ? p.frames_in - p.frames_out : 1024;
            st = sink_write(&p, zeros, k);
        }
        sn_audio_writer *w = p.w;
        p.w = NULL;
        if (st == SN_OK) st = sn_audio_writer_close(w);
        else sn_audio_writer_abort(w);
    }
    *audio_s = rate > 0 ? (double)p.frames_in / rate : 0;
    sn_audio_reader_close(rd);
    flow_free(&p);
    return st;
}


/* ---- the enhancer --------------------------------------------------------------- */

void sn_enhance_opts_default(sn_enhance_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = "auto";
    o->chunk_seconds = 10.0;
}

sn_status sn_enhancer_open(const char *ckpt, const sn_config *cfg, const sn_enhance_opts *opts, sn_enhancer **out) {
    if (!ckpt || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_enhancer_open: checkpoint and out are required");
    *out = NULL;
    sn_enhance_opts dflt;
    sn_enhance_opts_default(&dflt);
    if (!opts) opts = &dflt;
    if (!(opts->chunk_seconds >= 0 && opts->chunk_seconds <= 3600))
        return sn_error(SN_ERR_INVALID_ARG, "enhance: chunk length %g s is outside 0..3600", opts->chunk_seconds);
    sn_enhancer *e = calloc(1, sizeof *e);
    if (!e) return sn_error(SN_ERR_NOMEM, "enhance: out of host memory");
    e->stop = opts->stop;
    sn_status st = sn_backend_open(opts->device ? opts->device : "auto", opts->cpu_threads, &e->b);
    /* a device spec that names no device is the device's fault here, not the config's */
    if (st != SN_OK) {
        sn_enhancer_free(e);
        return st == SN_ERR_CONFIG ? sn_error_prefix(SN_ERR_DEVICE, "opening the device") : st;
    }
    e->cpu = e->b->is_host ? e->b : sn_cpu_backend_new(opts->cpu_threads);
    if (!e->cpu) st = sn_error(SN_ERR_NOMEM, "enhance: cannot open the CPU backend");
    if (st == SN_OK) st = sn_ckpt_load(ckpt, cfg, e->b, &e->cfg, &e->m, NULL);
    /* chunk length: no longer than the longest file needs */
    int Tc = 0;
    if (st == SN_OK && opts->chunk_seconds <= 0) snprintf(e->why_whole, sizeof e->why_whole, "chunking is off");
    if (st == SN_OK && opts->chunk_seconds > 0 && sn_model_streamable(e->m, e->why_whole, sizeof e->why_whole)) {
        e->why_whole[0] = 0;
        Tc = (int)fmax(1.0, round(opts->chunk_seconds * MODEL_RATE / SN_HOP));
        if (opts->longest_seconds > 0) {
            int64_t maxT = sn_stft_frames((int64_t)(opts->longest_seconds * MODEL_RATE) + 8);
            if (maxT < 1) maxT = 1;
            if (Tc > maxT) Tc = (int)maxT;
        }
    }
    if (st == SN_OK) st = enhancer_init(e, Tc);
    if (st != SN_OK) {
        sn_enhancer_free(e);
        return st;
    }
    *out = e;
    return SN_OK;
}

const sn_model *sn_enhancer_model(const sn_enhancer *e) { return e ? e->m : NULL; }
const sn_config *sn_enhancer_config(const sn_enhancer *e) { return e ? &e->cfg : NULL; }
sn_backend *sn_enhancer_backend(const sn_enhancer *e) { return e ? e->b : NULL; }
int sn_enhancer_chunk_frames(const sn_enhancer *e) { return e ? e->Tc : 0; }
const char *sn_enhancer_whole_reason(const sn_enhancer *e) { return e ? e->why_whole : ""; }

void sn_enhancer_free(sn_enhancer *e) {
    if (!e) return;
    enhancer_release(e);
    sn_model_free(e->m);
    if (e->cpu && e->cpu != e->b) sn_backend_free(e->cpu);
    if (e->b) sn_backend_free(e->b);
    free(e);
}
