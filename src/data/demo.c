/* Demo corpus: speech from espeak-ng (or a pure-C formant synthesiser when it
 * is absent) plus synthetic noises, so training runs with no download.
 * Every random choice is a counter-RNG draw keyed by (seed, item), so the same
 * seed writes identical files. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data_internal.h"
#include "demo_words.h"
#include "sinter/audio.h"

#define RATE 16000
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { ST_TRAIN = 1, ST_VALID = 2, ST_NOISE = 3, ST_SYNTH = 4 };

typedef struct rng {
    uint64_t key, k;
} rng;
static double ru(rng *r) { return sn_rng_uniform(r->key, r->k++); }
static int ri(rng *r, int n) { int v = (int)(ru(r) * n); return v < n ? v : n - 1; }
static double rgauss(rng *r) {
    double u = ru(r), v = ru(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(2 * M_PI * v);
}

static sn_status mkdir_p(const char *path) {
    char b[4096];
    if (snprintf(b, sizeof b, "%s", path) >= (int)sizeof b) return sn_error(SN_ERR_INVALID_ARG, "path too long: '%s'", path);
    for (char *q = b + 1;; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (mkdir(b, 0755) != 0 && errno != EEXIST)
                return sn_error(SN_ERR_IO, "cannot create folder '%s': %s", b, strerror(errno));
            *q = c;
            if (!c) break;
        }
    }
    return SN_OK;
}

/* ---- sentences ---- */

static void append(char *s, size_t cap, const char *w) {
    size_t n = strlen(s);
    snprintf(s + n, cap - n, "%s", w);
}

static void subject(rng *r, char *s, size_t cap) {
    if (ru(r) < 0.25) { append(s, cap, W_NAME[ri(r, NELEM(W_NAME))]); return; }
    append(s, cap, ru(r) < 0.7 ? "the " : "a ");
    if (ru(r) < 0.6) { append(s, cap, W_ADJ[ri(r, NELEM(W_ADJ))]); append(s, cap, " "); }
    append(s, cap, W_NOUN[ri(r, NELEM(W_NOUN))]);
}

static void sentence(rng *r, char *s, size_t cap) {
    s[0] = 0;
    const char *t = W_TEMPLATE[ri(r, NELEM(W_TEMPLATE))];
    int cap_next = 1;
    for (const char *p = t; *p; p++) {
        char w[256] = "";
        switch (*p) {
        case 'S': case 'O': subject(r, w, sizeof w); break;
        case 'V': append(w, sizeof w, W_VERB[ri(r, NELEM(W_VERB))]); break;
        case 'A': append(w, sizeof w, W_ADV[ri(r, NELEM(W_ADV))]); break;
        case 'P': append(w, sizeof w, W_PREP[ri(r, NELEM(W_PREP))]); append(w, sizeof w, " ");
                  append(w, sizeof w, W_PLACE[ri(r, NELEM(W_PLACE))]); break;
        case 'N': append(w, sizeof w, W_NUM[ri(r, NELEM(W_NUM))]); break;
        case 'T': append(w, sizeof w, W_TIME[ri(r, NELEM(W_TIME))]); break;
        case 'Q': append(w, sizeof w, W_NAME[ri(r, NELEM(W_NAME))]); break;
        default: w[0] = *p; w[1] = 0;
        }
        /* "Did the farmer carried" reads oddly but is still speech; keep it simple */
        if (cap_next && w[0] >= 'a' && w[0] <= 'z') w[0] = (char)(w[0] - 'a' + 'A');
        if (w[0] != ' ' && w[0]) cap_next = 0;
        append(s, cap, w);
    }
}

/* ---- pure-C speech: glottal pulses through moving formant resonators ---- */

typedef struct reson { double a1, a2, g, y1, y2; } reson;
static void reson_set(reson *f, double fc, double bw) {
    double r = exp(-M_PI * bw / RATE);
    f->a1 = 2 * r * cos(2 * M_PI * fc / RATE);
    f->a2 = -r * r;
    f->g = 1 - r;
}
static double reson_run(reson *f, double x) {
    double y = f->g * x + f->a1 * f->y1 + f->a2 * f->y2;
    f->y2 = f->y1;
    f->y1 = y;
    return y;
}

static const double VOWELS[][3] = {{730, 1090, 2440}, {270, 2290, 3010}, {300, 870, 2240}, {530, 1840, 2480},
                                   {570, 840, 2410},  {660, 1720, 2410}, {490, 1350, 1690}, {440, 1020, 2240}};

/* n samples of speech-like sound for utterance key. */
static void synth_speech(uint64_t key, float *out, int64_t n) {
    rng r = {key, 0};
    double f0base = 85 + 140 * ru(&r);            /* speaker */
    double fscale = 0.85 + 0.35 * (f0base - 85) / 140; /* higher voices, shorter tract */
    reson fr[3] = {{0}}, fric = {0};
    double phase = 0, prevF[3] = {500, 1500, 2500};
    int64_t i = 0;
    int64_t lead = (int64_t)(RATE * (0.1 + 0.2 * ru(&r)));
    for (; i < lead && i < n; i++) out[i] = (float)(1e-4 * rgauss(&r));
    while (i < n) {
        /* one syllable: optional fricative onset, then a voiced nucleus */
        int64_t syl = (int64_t)(RATE * (0.12 + 0.18 * ru(&r)));
        int64_t onset = ru(&r) < 0.6 ? (int64_t)(RATE * (0.03 + 0.06 * ru(&r))) : 0;
        int v = ri(&r, NELEM(VOWELS));
        double tgt[3];
        for (int k = 0; k < 3; k++) tgt[k] = VOWELS[v][k] * fscale * (0.95 + 0.1 * ru(&r));
        double fc = 2500 + 3000 * ru(&r);
        reson_set(&fric, fc, 800 + 1500 * ru(&r));
        double f0s = f0base * (0.85 + 0.3 * ru(&r)), f0e = f0s * (0.9 + 0.15 * ru(&r));
        double decl = 1.0 - 0.2 * (double)i / (double)n; /* pitch declines over the sentence */
        double amp = 0.5 + 0.5 * ru(&r);
        for (int64_t k = 0; k < onset && i < n; k++, i++) {
            double e = sin(M_PI * (double)k / (double)onset);
            out[i] = (float)(0.15 * amp * e * reson_run(&fric, rgauss(&r)) * 8);
        }
        for (int64_t k = 0; k < syl && i < n; k++, i++) {
            double t = (double)k / (double)syl;
            if ((k & 31) == 0) {
                double m = t < 0.25 ? t / 0.25 : 1.0; /* glide from the last vowel */
                for (int q = 0; q < 3; q++) reson_set(&fr[q], prevF[q] + (tgt[q] - prevF[q]) * m, 60 + 40 * q + 30 * q * q);
            }
            double f0 = (f0s + (f0e - f0s) * t) * decl;
            phase += f0 / RATE;
            if (phase >= 1) phase -= 1;
            /* Rosenberg-like pulse, differentiated by the open/closed shape */
            double g = phase < 0.4 ? 0.5 * (1 - cos(M_PI * phase / 0.4)) : phase < 0.6 ? cos(M_PI * (phase - 0.4) / 0.4) : 0;
            double x = g - 0.5 + 0.02 * rgauss(&r);
            double y = 0;
            for (int q = 0; q < 3; q++) y += reson_run(&fr[q], x) * (q == 0 ? 1.0 : q == 1 ? 0.6 : 0.3);
            double env = sin(M_PI * t); /* syllable-rate AM */
            out[i] = (float)(amp * env * y);
        }
        for (int q = 0; q < 3; q++) prevF[q] = tgt[q];
        if (ru(&r) < 0.3) { /* word gap */
            int64_t gap = (int64_t)(RATE * (0.05 + 0.15 * ru(&r)));
            for (int64_t k = 0; k < gap && i < n; k++, i++) out[i] = (float)(1e-4 * rgauss(&r));
        }
    }
    /* taper the end and normalise the peak */
    float peak = 0;
    for (int64_t k = 0; k < n; k++) peak = fmaxf(peak, fabsf(out[k]));
    double want = 0.3 + 0.5 * ru(&r);
    for (int64_t k = 0; k < n; k++) out[k] = (float)(out[k] * want / (peak > 0 ? peak : 1));
    int64_t tail = n < 800 ? n : 800;
    for (int64_t k = 0; k < tail; k++) out[n - 1 - k] *= (float)k / (float)tail;
}

/* ---- espeak-ng ---- */

static int find_program(const char *prog) {
    if (strchr(prog, '/')) return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char buf[4096];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, prog);
        if (n && access(buf, X_OK) == 0) return 1;
        p += n + (e != NULL);
    }
    return 0;
}

static const char *const VOICES[] = {"en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                                     "en-gb-x-gbclan", "de", "fr", "es", "it", "nl"};
static const char *const VARIANTS[] = {"", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5"};

typedef struct utt_args {
    char voice[64], speed[16], pitch[16], text[512];
} utt_args;

static void utt_params(uint64_t key, utt_args *a) {
    rng r = {key, 0};
    /* mostly English voices: the words are English */
    int v = ru(&r) < 0.8 ? ri(&r, 8) : 8 + ri(&r, NELEM(VOICES) - 8);
    snprintf(a->voice, sizeof a->voice, "%s%s", VOICES[v], VARIANTS[ri(&r, NELEM(VARIANTS))]);
    snprintf(a->speed, sizeof a->speed, "%d", 130 + ri(&r, 60));
    snprintf(a->pitch, sizeof a->pitch, "%d", 25 + ri(&r, 50));
    sentence(&r, a->text, sizeof a->text);
    if (ru(&r) < 0.4) {
        size_t n = strlen(a->text);
        a->text[n] = ' ';
        sentence(&r, a->text + n + 1, sizeof a->text - n - 1);
    }
}

static pid_t spawn_espeak(const char *prog, const utt_args *a, const char *wav) {
    pid_t pid = fork();
    if (pid != 0) return pid; /* parent (or -1) */
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) { dup2(fd, 0); dup2(fd, 1); dup2(fd, 2); }
    char *argv[] = {(char *)prog, "-v", (char *)a->voice, "-s", (char *)a->speed, "-p", (char *)a->pitch,
                    "-w", (char *)wav, (char *)a->text, NULL};
    execvp(prog, argv);
    _exit(127);
}

/* Scales a clip to a peak drawn from the key and trims long silences at the ends. */
static void finish_clip(uint64_t key, float *x, int64_t *n) {
    int64_t a = 0, b = *n;
    while (a < b && fabsf(x[a]) < 1e-3f) a++;
    while (b > a && fabsf(x[b - 1]) < 1e-3f) b--;
    int64_t pad = RATE / 10;
    a = a > pad ? a - pad : 0;
    b = b + pad < *n ? b + pad : *n;
    memmove(x, x + a, (size_t)(b - a) * sizeof *x);
    *n = b - a;
    float peak = 0;
    for (int64_t i = 0; i < *n; i++) peak = fmaxf(peak, fabsf(x[i]));
    double want = 0.3 + 0.6 * sn_rng_uniform(key, 99);
    if (peak > 0)
        for (int64_t i = 0; i < *n; i++) x[i] = (float)(x[i] * want / peak);
}

typedef struct speech_set {
    char **paths;
    int64_t n;
    double seconds;
} speech_set;

static void speech_set_free(speech_set *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->paths[i]);
    free(s->paths);
    memset(s, 0, sizeof *s);
}

static void progress(const sn_demo_options *o, const char *what, double done, double total, int64_t n) {
    if (!o->verbose) return;
    /* one line per update in logs, an updating line on a terminal */
    printf(isatty(1) ? "\r  %-6s %5.1f / %.1f min (%lld files)" : "  %-6s %5.1f / %.1f min (%lld files)\n", what,
           done / 60.0, total / 60.0, (long long)n);
    fflush(stdout);
}

/* Writes utterances into dir until `seconds` of speech; the cut-off depends
 * only on the (deterministic) durations in index order. */
static sn_status make_speech(const char *dir, double seconds, uint64_t seed, uint64_t stream, int use_espeak,
                             const sn_demo_options *o, const char *what, speech_set *out) {
    memset(out, 0, sizeof *out);
    const char *prog = o->espeak ? o->espeak : "espeak-ng";
    int jobs = o->jobs > 0 ? o->jobs : 3;
    if (jobs > 16) jobs = 16;
    int64_t cap = 64;
    out->paths = calloc((size_t)cap, sizeof *out->paths);
    if (!out->paths) return sn_error(SN_ERR_NOMEM, "out of memory");
    sn_status st = SN_OK;
    int64_t next = 0;
    char tmp[16][4200];
    while (st == SN_OK && out->seconds < seconds) {
        int wave = use_espeak ? jobs : 1;
        pid_t pids[16];
        utt_args args[16];
        for (int j = 0; j < wave; j++) {
            uint64_t key = sn_rng_key(seed, stream, (uint64_t)(next + j), 0);
            snprintf(tmp[j], sizeof tmp[j], "%s/.espeak_%d_%lld.wav", dir, j, (long long)getpid());
            pids[j] = -1;
            if (use_espeak) {
                utt_params(key, &args[j]);
                pids[j] = spawn_espeak(prog, &args[j], tmp[j]);
                if (pids[j] < 0) st = sn_error(SN_ERR_IO, "cannot start %s: %s", prog, strerror(errno));
            }
        }
        for (int j = 0; j < wave; j++) {
            int status = 0;
            if (pids[j] > 0 && waitpid(pids[j], &status, 0) < 0) status = -1;
            if (st != SN_OK) { unlink(tmp[j]); continue; }
            uint64_t key = sn_rng_key(seed, stream, (uint64_t)(next + j), 0);
            float *x = NULL;
            int64_t n = 0;
            if (use_espeak) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    st = sn_error(SN_ERR_IO, "%s failed (voice '%s', exit %d) for \"%s\"; check 'espeak-ng -v %s test', or use --synth for the built-in speech",
                                  prog, args[j].voice, WIFEXITED(status) ? WEXITSTATUS(status) : -1, args[j].text, args[j].voice);
                    unlink(tmp[j]);
                    continue;
                }
                sn_audio a;
                st = sn_audio_read(tmp[j], RATE, 1, &a);
                unlink(tmp[j]);
                if (st != SN_OK) { sn_error_prefix(st, "reading espeak-ng output"); continue; }
                x = a.data;
                n = a.frames;
            } else {
                rng r = {sn_rng_key(seed, stream, (uint64_t)next, 1), 0};
                n = (int64_t)(RATE * (1.5 + 3.5 * ru(&r)));
                x = malloc((size_t)n * sizeof *x);
                if (!x) { st = sn_error(SN_ERR_NOMEM, "out of memory"); continue; }
                synth_speech(key, x, n);
            }
            if (out->seconds >= seconds) { free(x); continue; } /* past the cut-off: drop */
            finish_clip(key, x, &n);
            if (out->n == cap) {
                char **t = realloc(out->paths, (size_t)(cap *= 2) * sizeof *t);
                if (!t) { free(x); st = sn_error(SN_ERR_NOMEM, "out of memory"); continue; }
                out->paths = t;
            }
            char p[4200];
            snprintf(p, sizeof p, "%s/utt_%05lld.wav", dir, (long long)out->n);
            st = sn_audio_write(p, x, n, 1, RATE, 0);
            free(x);
            if (st != SN_OK) continue;
            out->paths[out->n++] = strdup(p);
            out->seconds += (double)n / RATE;
        }
        next += wave;
        progress(o, what, out->seconds, seconds, out->n);
    }
    if (o->verbose && isatty(1)) printf("\n");
    return st;
}

/* ---- noises ---- */

static void normalise(float *x, int64_t n, double peak_want) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    float peak = 0;
    for (int64_t i = 0; i < n; i++) { x[i] -= (float)m; peak = fmaxf(peak, fabsf(x[i])); }
    if (peak > 0)
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * peak_want / peak);
}

static const char *const NOISE_KIND[] = {"white", "pink", "brown", "babble", "hum", "fan", "rain"};

static sn_status make_noise(int kind, rng *r, float *x, int64_t n, const speech_set *sp) {
    switch (kind) {
    case 0:
        for (int64_t i = 0; i < n; i++) x[i] = (float)rgauss(r);
        break;
    case 1: { /* pink: Paul Kellet's filter on white noise */
        double b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0;
        for (int64_t i = 0; i < n; i++) {
            double w = rgauss(r);
            b0 = 0.99886 * b0 + w * 0.0555179; b1 = 0.99332 * b1 + w * 0.0750759;
            b2 = 0.96900 * b2 + w * 0.1538520; b3 = 0.86650 * b3 + w * 0.3104856;
            b4 = 0.55000 * b4 + w * 0.5329522; b5 = -0.7616 * b5 - w * 0.0168980;
            x[i] = (float)(b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362);
            b6 = w * 0.115926;
        }
        break;
    }
    case 2: { /* brown: leaky integral of white */
        double y = 0;
        for (int64_t i = 0; i < n; i++) { y = 0.998 * y + 0.05 * rgauss(r); x[i] = (float)y; }
        break;
    }
    case 3: { /* babble: several utterances at random offsets, looped */
        memset(x, 0, (size_t)n * sizeof *x);
        int talkers = 4 + ri(r, 5);
        for (int t = 0; t < talkers && sp->n > 0; t++) {
            sn_audio a;
            sn_status st = sn_audio_read(sp->paths[ri(r, (int)sp->n)], RATE, 1, &a);
            if (st != SN_OK) return st;
            int64_t off = (int64_t)(ru(r) * (double)a.frames);
            double g = 0.5 + ru(r);
            for (int64_t i = 0; i < n; i++) x[i] += (float)(g * a.data[(off + i) % a.frames]);
            sn_audio_free(&a);
        }
        break;
    }
    case 4: { /* mains hum with harmonics */
        double f = ru(r) < 0.5 ? 50 : 60, ph[12];
        for (int h = 0; h < 12; h++) ph[h] = 2 * M_PI * ru(r);
        double wob = 0.2 + 0.5 * ru(r);
        for (int64_t i = 0; i < n; i++) {
            double t = (double)i / RATE, v = 0;
            for (int h = 1; h <= 12; h++) v += sin(2 * M_PI * f * h * t + ph[h - 1]) / (h * (h % 2 ? 1.0 : 2.0));
            x[i] = (float)(v * (1 + 0.1 * sin(2 * M_PI * wob * t)) + 0.01 * rgauss(r));
        }
        break;
    }
    case 5: { /* fan: low-passed noise, a broad resonance, blade-pass tones */
        reson res = {0};
        reson_set(&res, 200 + 600 * ru(r), 300);
        double lp = 0, bp = 20 + 80 * ru(r), ph = 0;
        for (int64_t i = 0; i < n; i++) {
            double w = rgauss(r);
            lp = 0.9 * lp + 0.1 * w;
            double t = (double)i / RATE;
            ph += 2 * M_PI * bp * (1 + 0.01 * sin(2 * M_PI * 0.3 * t)) / RATE;
            x[i] = (float)(lp + 4 * reson_run(&res, w) + 0.3 * (sin(ph) + 0.5 * sin(2 * ph) + 0.25 * sin(3 * ph)));
        }
        break;
    }
    default: { /* rain and clicks: random decaying bursts on a soft bed */
        double rate = 20 + 300 * ru(r), decay = exp(-1.0 / (RATE * (0.001 + 0.004 * ru(r))));
        double env = 0, hp = 0, prev = 0;
        for (int64_t i = 0; i < n; i++) {
            if (ru(r) < rate / RATE) env += 0.3 + ru(r);
            env *= decay;
            double w = rgauss(r);
            hp = 0.7 * (hp + w - prev); /* crude high-pass: drops are bright */
            prev = w;
            x[i] = (float)(env * hp + 0.02 * w);
        }
    }
    }
    normalise(x, n, 0.3 + 0.5 * ru(r));
    return SN_OK;
}

sn_status sn_demo_corpus(const char *dir, double minutes, uint64_t seed, const sn_demo_options *opt, int *used_espeak) {
    sn_demo_options o = {0};
    if (opt) o = *opt;
    if (!dir || !*dir) return sn_error(SN_ERR_INVALID_ARG, "sn_demo_corpus: no output folder");
    if (!(minutes > 0 && minutes <= 10000)) return sn_error(SN_ERR_INVALID_ARG, "--minutes %g must be in (0, 10000]", minutes);
    const char *prog = o.espeak ? o.espeak : "espeak-ng";
    int espeak = !o.force_synth && find_program(prog);
    if (used_espeak) *used_espeak = espeak;
    if (o.verbose)
        printf("demo corpus in %s: %.1f min of speech from %s, seed %llu\n", dir, minutes,
               espeak ? "espeak-ng" : "the built-in speech synthesiser (espeak-ng not found)", (unsigned long long)seed);
    char cdir[4200], vdir[4200], ndir[4200];
    snprintf(cdir, sizeof cdir, "%s/clean", dir);
    snprintf(vdir, sizeof vdir, "%s/valid/clean", dir);
    snprintf(ndir, sizeof ndir, "%s/noise", dir);
    sn_status st;
    if ((st = mkdir_p(cdir)) || (st = mkdir_p(vdir)) || (st = mkdir_p(ndir))) return st;
    speech_set tr = {0}, va = {0};
    st = make_speech(cdir, minutes * 60.0, seed, ST_TRAIN, espeak, &o, "speech", &tr);
    if (st == SN_OK) st = make_speech(vdir, fmax(20.0, minutes * 6.0), seed, ST_VALID, espeak, &o, "valid", &va);
    /* noise: every kind, about half as long as the speech in all */
    int per = (int)ceil(minutes / 5.0);
    int64_t len = 20 * RATE;
    float *x = malloc((size_t)len * sizeof *x);
    if (!x && st == SN_OK) st = sn_error(SN_ERR_NOMEM, "out of memory");
    int nkinds = NELEM(NOISE_KIND), made = 0;
    for (int k = 0; st == SN_OK && k < nkinds; k++)
        for (int v = 0; st == SN_OK && v < per; v++) {
            rng r = {sn_rng_key(seed, ST_NOISE, (uint64_t)k, (uint64_t)v), 0};
            if ((st = make_noise(k, &r, x, len, &tr)) != SN_OK) break;
            char p[4300];
            snprintf(p, sizeof p, "%s/%s_%02d.wav", ndir, NOISE_KIND[k], v);
            st = sn_audio_write(p, x, len, 1, RATE, 0);
            made++;
            if (o.verbose) { printf(isatty(1) ? "\r  noise  %d / %d files" : "  noise  %d / %d files\n", made, nkinds * per); fflush(stdout); }
        }
    if (o.verbose && st == SN_OK) printf("%s  done: %lld train + %lld valid utterances (%.1f + %.1f min), %d noise files\n",
                                         isatty(1) ? "\n" : "", (long long)tr.n, (long long)va.n, tr.seconds / 60, va.seconds / 60, made);
    free(x);
    speech_set_free(&tr);
    speech_set_free(&va);
    return st;
}
