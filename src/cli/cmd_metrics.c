/* `sinter metrics REF.wav EST.wav [--json]`: SNR, SI-SDR, STOI and ESTOI of an
 * estimate against a reference. Exit codes: 0 ok, 2 usage error, 3 input error. */
#include "cli.h"
#include "sinter/audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter metrics REF.wav EST.wav [--json]\n"
            "\n"
            "Scores EST (an enhanced or noisy signal) against REF (the clean signal):\n"
            "  SNR     signal-to-noise ratio, dB\n"
            "  SI-SDR  scale-invariant signal-to-distortion ratio, dB\n"
            "  STOI    short-time objective intelligibility (0..1, as pystoi)\n"
            "  ESTOI   extended STOI (0..1, as pystoi)\n"
            "Both files are mixed down to mono; EST is resampled to REF's rate if they\n"
            "differ; if the lengths differ the longer one is cut (with a warning).\n"
            "\n"
            "options:\n"
            "  --json     print one JSON object instead of a table\n"
            "  -h, --help this text\n"
            "\n" SN_EXIT_CODES_HELP);
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* JSON has no inf/nan: print null for them. */
static void json_num(const char *key, double v, int last) {
    printf("  \"%s\": ", key);
    if (isfinite(v)) printf("%.6f", v);
    else printf("null");
    printf(last ? "\n" : ",\n");
}

int sn_cmd_metrics(int argc, char **argv) {
    const char *files[2] = {NULL, NULL};
    int nfiles = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sinter metrics: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (nfiles < 2) {
            files[nfiles++] = a;
        } else {
            fprintf(stderr, "sinter metrics: too many files ('%s'); give REF.wav and EST.wav\n", a);
            return 2;
        }
    }
    if (nfiles != 2) {
        fprintf(stderr, "sinter metrics: need two files, REF.wav and EST.wav\n");
        usage(stderr);
        return 2;
    }
    sn_audio ref, est;
    sn_status st = sn_audio_read(files[0], 0, 1, &ref);
    if (st) {
        fprintf(stderr, "sinter metrics: %s\n", sn_last_error());
        return st == SN_ERR_NOMEM ? SN_EXIT_DEVICE : SN_EXIT_INPUT;
    }
    st = sn_audio_read(files[1], ref.sample_rate, 1, &est);
    if (st) {
        fprintf(stderr, "sinter metrics: %s\n", sn_last_error());
        sn_audio_free(&ref);
        return st == SN_ERR_NOMEM ? SN_EXIT_DEVICE : SN_EXIT_INPUT;
    }
    int64_t n = ref.frames < est.frames ? ref.frames : est.frames;
    if (ref.frames != est.frames)
        fprintf(stderr,
                "sinter metrics: warning: lengths differ (%s: %lld, %s: %lld samples at %d Hz); "
                "scoring the first %lld\n",
                files[0], (long long)ref.frames, files[1], (long long)est.frames, ref.sample_rate,
                (long long)n);
    /* a silent reference makes SNR and SI-SDR meaningless numbers (about -185 dB): say so */
    double energy = 0;
    for (int64_t i = 0; i < n; i++) energy += (double)ref.data[i] * ref.data[i];
    if (n > 0 && sqrt(energy / (double)n) < 1e-6)
        fprintf(stderr, "sinter metrics: warning: the reference '%s' is silent (RMS below 1e-6): SNR and SI-SDR "
                "against silence are meaningless; check the order (REF first) and the file\n", files[0]);
    double snr = sn_snr(ref.data, est.data, n), sisdr = sn_si_sdr(ref.data, est.data, n);
    double stoi = NAN, estoi = NAN;
    int rc = 0;
    if (sn_stoi(ref.data, est.data, n, ref.sample_rate, 0, &stoi) ||
        sn_stoi(ref.data, est.data, n, ref.sample_rate, 1, &estoi)) {
        fprintf(stderr, "sinter metrics: STOI of '%s' vs '%s': %s\n", files[1], files[0],
                sn_last_error());
        rc = 3;
    }
    if (!rc) {
        if (json) {
            printf("{\n  \"ref\": ");
            json_str(files[0]);
            printf(",\n  \"est\": ");
            json_str(files[1]);
            printf(",\n  \"sample_rate\": %d,\n  \"samples\": %lld,\n", ref.sample_rate,
                   (long long)n);
            json_num("snr_db", snr, 0);
            json_num("si_sdr_db", sisdr, 0);
            json_num("stoi", stoi, 0);
            json_num("estoi", estoi, 1);
            printf("}\n");
        } else {
            printf("ref     %s\nest     %s\n", files[0], files[1]);
            printf("length  %lld samples at %d Hz (%.2f s)\n", (long long)n, ref.sample_rate,
                   (double)n / ref.sample_rate);
            printf("SNR     %8.3f dB\nSI-SDR  %8.3f dB\nSTOI    %8.4f\nESTOI   %8.4f\n", snr, sisdr,
                   stoi, estoi);
        }
    }
    sn_audio_free(&ref);
    sn_audio_free(&est);
    return rc;
}
