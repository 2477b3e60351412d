/* Internal helpers shared by the files of src/audio (not public API). */
#ifndef SN_AUDIO_INTERNAL_H
#define SN_AUDIO_INTERNAL_H

#include "sinter/audio.h"

/* Interleaved multichannel sn_resample (libsamplerate, SRC_SINC_BEST_QUALITY). */
sn_status sn_resample_channels(const float *in, int64_t frames, int channels, int rate_in,
                               int rate_out, float **out, int64_t *n_out);

/* pystoi-compatible polyphase resampler (scipy resample_poly with the Octave
 * Kaiser window pystoi builds), in double. *out malloc'd. */
sn_status sn_resample_poly_oct(const double *in, int64_t n, int rate_out, int rate_in,
                               double **out, int64_t *n_out);

#endif
