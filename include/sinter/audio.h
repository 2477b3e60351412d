/* Audio: file I/O (libsndfile), resampling (libsamplerate), STFT/iSTFT (FFTW,
 * float32) and metrics (SNR, SI-SDR, STOI, ESTOI, active speech level). */
#ifndef SINTER_AUDIO_H
#define SINTER_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- file I/O ---------------------------------------------------------- */

/* Sample rates a file may have (others are SN_ERR_UNSUPPORTED on reading). */
#define SN_AUDIO_MIN_RATE 1000
#define SN_AUDIO_MAX_RATE 768000

/* Interleaved float32 samples. format = libsndfile SF_FORMAT_* (major|subtype)
 * of the source, so a caller can write the result back in the same format. */
typedef struct sn_audio {
    float *data;
    int64_t frames;
    int channels;
    int sample_rate;
    int format;
} sn_audio;

/* Reads WAV/FLAC/OGG (any subtype libsndfile knows) into float32 in [-1,1)
 * for integer sources. target_rate 0 keeps the file's rate, else resamples
 * (see sn_resample). mono 1 averages the channels. Errors: SN_ERR_IO (missing,
 * unreadable), SN_ERR_FORMAT (not audio, corrupt, no samples), SN_ERR_NUMERIC
 * (NaN/Inf sample, message names the first bad frame), SN_ERR_INVALID_ARG.
 * On error *out is zeroed. Free with sn_audio_free. */
sn_status sn_audio_read(const char *path, int target_rate, int mono, sn_audio *out);
/* The same from a memory buffer (name is used in messages only). */
sn_status sn_audio_read_memory(const void *buf, size_t size, const char *name, int target_rate,
                               int mono, sn_audio *out);
/* Writes interleaved float32. format 0 = WAV PCM_16; a major type without a
 * subtype gets a default (PCM_16 for WAV/FLAC, VORBIS for OGG); a subtype
 * without a major type takes the major from the extension (.wav .flac .ogg).
 * Integer subtypes clip instead of wrapping. NaN/Inf in data is an error. */
sn_status sn_audio_write(const char *path, const float *data, int64_t frames, int channels,
                         int sample_rate, int format);
void sn_audio_free(sn_audio *a);
/* Header only: any out pointer may be NULL. */
sn_status sn_audio_info(const char *path, int *sample_rate, int64_t *frames, int *channels,
                        int *format);

/* Mono resampling with libsamplerate SRC_SINC_BEST_QUALITY. rates must be > 0
 * and rate_out/rate_in within [1/256, 256]. Equal rates copy. *out is malloc'd
 * (free with free()); *n_out is about n*rate_out/rate_in. */
sn_status sn_resample(const float *in, int64_t n, int rate_in, int rate_out, float **out,
                      int64_t *n_out);

/* Streaming mono resampler for long signals: the converter and settings of
 * sn_resample, fed block by block with its filter state carried. The
 * concatenated output equals sn_resample of the concatenated input (same
 * samples, and the same length round(n·rate_out/rate_in) once the input has
 * ended), whatever the block sizes. Memory is bounded by the block size. */
typedef struct sn_resampler sn_resampler;
sn_status sn_resampler_new(int rate_in, int rate_out, sn_resampler **r);
/* Feeds n samples (n may be 0); last != 0 ends the input and flushes the
 * filter's tail. *out gets the samples this call produced (*n_out of them,
 * possibly 0: the filter lags the input), owned by r and valid until the next
 * call. After the last call only sn_resampler_reset or _free may follow. */
sn_status sn_resampler_process(sn_resampler *r, const float *in, int64_t n, int last,
                               const float **out, int64_t *n_out);
/* Starts a new signal (clears the filter state and the counts). */
sn_status sn_resampler_reset(sn_resampler *r);
void sn_resampler_free(sn_resampler *r);

/* Block writer for long files. The samples go to a temp file beside PATH
 * (PATH.tmp<pid>.<k>) that sn_audio_writer_close renames into place, so PATH
 * is never left half written. channels, sample_rate and format as for
 * sn_audio_write (NaN/Inf is an error, integer subtypes clip). */
typedef struct sn_audio_writer sn_audio_writer;
sn_status sn_audio_writer_open(const char *path, int channels, int sample_rate, int format,
                               sn_audio_writer **w);
/* Appends frames of interleaved float32. After a failed write the writer
 * only accepts _close (which then fails and removes the temp file) or _abort. */
sn_status sn_audio_writer_write(sn_audio_writer *w, const float *data, int64_t frames);
/* Finishes the file and renames it to PATH; on any error (now or from an
 * earlier write) removes the temp file and returns it. Frees w (NULL: SN_OK). */
sn_status sn_audio_writer_close(sn_audio_writer *w);
/* Discards the file: removes the temp file, PATH is untouched. Frees w. */
void sn_audio_writer_abort(sn_audio_writer *w);

/* Block reader for long files: mono mixdown, no resampling. */
typedef struct sn_audio_reader sn_audio_reader;
sn_status sn_audio_reader_open(const char *path, sn_audio_reader **r, int *sample_rate,
                               int64_t *frames);
/* Reads up to n mono frames into dst; *got = 0 at the end of the file. */
sn_status sn_audio_reader_read(sn_audio_reader *r, float *dst, int64_t n, int64_t *got);
/* Moves to an absolute frame (for random segments of long files). */
sn_status sn_audio_reader_seek(sn_audio_reader *r, int64_t frame);
void sn_audio_reader_close(sn_audio_reader *r);

/* ---- STFT (DESIGN.md: periodic Hann 320, hop 160, no centering) ---------- */

#define SN_NFFT 320
#define SN_HOP 160
#define SN_NBINS 161

/* 1 + (n-320)/160, 0 if n < 320. */
int64_t sn_stft_frames(int64_t n_samples);

/* Holds the window and the FFTW plans (made once per process, under a mutex).
 * After sn_stft_new an sn_stft is read-only: one object may be used by many
 * threads at once (each call allocates its own scratch). */
typedef struct sn_stft sn_stft;
sn_status sn_stft_new(sn_stft **s);
void sn_stft_free(sn_stft *s);
/* re, im: [T,161], T = sn_stft_frames(n). */
sn_status sn_stft_forward(sn_stft *s, const float *x, int64_t n, float *re, float *im);
/* mag = |X|, phase = atan2(im, re); [T,161] each; phase may be NULL. */
sn_status sn_stft_mag_phase(sn_stft *s, const float *x, int64_t n, float *mag, float *phase);
/* Weighted overlap-add inverse: y[i] = sum_t w·irfft(Y_t) / sum_t w^2 where
 * that sum > 1e-8, else 0. Writes all n samples of y; frames past n are cut. */
sn_status sn_istft(sn_stft *s, const float *re, const float *im, int64_t T, float *y, int64_t n);
/* Resynthesis from magnitude + (noisy) phase: Y = mag·exp(j·phase). */
sn_status sn_istft_mag_phase(sn_stft *s, const float *mag, const float *phase, int64_t T,
                             float *y, int64_t n);
/* x [B,n] -> mag, phase [B,T,161]; phase may be NULL. */
sn_status sn_stft_mag_phase_batch(sn_stft *s, const float *x, int batch, int64_t n, float *mag,
                                  float *phase);
/* mag, phase [B,T,161] -> y [B,n]. */
/* DESIGN.md's iSTFT divides by the window-square sum wherever it exceeds 1e-8; in the
 * first and last hop only one window covers a sample and that sum falls to ~1e-7,
 * so any inconsistency in an estimated spectrum is amplified into clicks. For audio
 * meant to be listened to or scored whole, this rescales those samples as if the
 * divisor were floored at SN_ISTFT_EDGE_FLOOR (the smallest two-window sum): the
 * interior is untouched, the ends fade over ~5 ms. y holds an iSTFT of T frames. */
#define SN_ISTFT_EDGE_FLOOR 0.5
void sn_istft_fade_edges(const sn_stft *s, float *y, int64_t n, int64_t T);
sn_status sn_istft_mag_phase_batch(sn_stft *s, const float *mag, const float *phase, int batch,
                                   int64_t T, float *y, int64_t n);

/* ---- metrics ------------------------------------------------------------ */

/* dB, computed in double: 10·log10((Σref² + ε) / (Σ(ref-est)² + ε)), ε = DBL_EPSILON. */
double sn_snr(const float *ref, const float *est, int64_t n);
/* Scale-invariant SDR (Le Roux et al. 2019), dB. Both signals are made zero
 * mean first; α = (<est,ref>+ε)/(‖ref‖²+ε); 10·log10((‖α·ref‖²+ε)/(‖est-α·ref‖²+ε)). */
double sn_si_sdr(const float *ref, const float *est, int64_t n);
/* sn_si_sdr(ref, est) - sn_si_sdr(ref, mix). */
double sn_si_sdr_improvement(const float *ref, const float *est, const float *mix, int64_t n);
/* STOI (Taal et al. 2011) or, extended != 0, ESTOI (Jensen & Taal 2016),
 * following pystoi 0.4 step for step (same polyphase resampler to 10 kHz, same
 * silent-frame removal). Like pystoi, returns 1e-5 (with a warning in the log)
 * when fewer than 30 frames remain after removing silent frames. */
sn_status sn_stoi(const float *ref, const float *est, int64_t n, int sample_rate, int extended,
                  double *out);
/* Active speech level in dB re full scale (10·log10 of the mean square over
 * the active samples), after ITU-T P.56 method B: envelope from |x| with two
 * 30 ms one-pole smoothers, 200 ms hangover, the active threshold where the
 * active level sits 15.9 dB above it (thresholds on a 0.1 dB grid, linear
 * interpolation between them instead of P.56's bisection). Returns -100 for
 * silence or n == 0, NAN for a NULL x or sample_rate <= 0. */
double sn_active_level(const float *x, int64_t n, int sample_rate);


#ifdef __cplusplus
}
#endif
#endif
