/* libFuzzer target for the audio read path: the bytes go through
 * sn_audio_read_memory (sf_open_virtual), the same decoding, NaN checks,
 * mixdown and resampling as sn_audio_read, with no files involved.
 * Build and run: tests/fuzz/run_fuzz_wav.sh [seconds] */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sinter/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sn_audio a;
    /* First byte picks the options so both mono/multichannel and the
     * resampler (with its own checks) are exercised. */
    int opt = size ? data[0] : 0;
    static const int rates[4] = {0, 16000, 8000, 44100};
    if (sn_audio_read_memory(data, size, "fuzz.wav", rates[opt & 3], (opt >> 2) & 1, &a) == SN_OK) {
        volatile float sink = 0;
        for (int64_t i = 0; i < a.frames * a.channels; i += 97) sink += a.data[i];
        (void)sink;
        sn_audio_free(&a);
    } else if (!strstr(sn_last_error(), "fuzz.wav") && !strstr(sn_last_error(), "Hz")) {
        __builtin_trap(); /* every error must name the input */
    }
    return 0;
}
