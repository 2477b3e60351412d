/* `sinter data demo --out DIR [--minutes N] [--seed S] [--synth] [--jobs J]` */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sinter/data.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter data demo --out DIR [--minutes N] [--seed S] [--synth] [--jobs J]\n"
            "\n"
            "Builds a small speech + noise corpus with no download: DIR/clean, DIR/noise,\n"
            "DIR/valid/clean (16 kHz mono WAV). Speech comes from espeak-ng when it is\n"
            "installed, else from a built-in formant synthesiser; noises (white, pink,\n"
            "brown, babble, mains hum, fan, rain) are synthesised. Same seed, same files.\n"
            "\n"
            "  --out DIR      output folder (created)\n"
            "  --minutes N    minutes of training speech (default 5)\n"
            "  --seed S       random seed (default 0)\n"
            "  --synth        use the built-in speech synthesiser even if espeak-ng exists\n"
            "  --jobs J       parallel espeak-ng processes (default 3)\n"
            "\n" SN_EXIT_CODES_HELP);
}

static int parse_num(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno) {
        fprintf(stderr, "sinter data demo: %s expects a number, got '%s'\n", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* a seed: decimal digits only, within uint64 */
static int parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || strspn(s, "0123456789") != strlen(s)) {
        fprintf(stderr, "sinter data demo: --seed must be a whole number 0..%llu, got '%s'\n", (unsigned long long)UINT64_MAX, s);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

int sn_cmd_data(int argc, char **argv) {
    /* argv[0] = "data" */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "demo") != 0) {
        fprintf(stderr, "sinter data: unknown command '%s' (known: demo)\n", argv[1]);
        return 2;
    }
    const char *out = NULL;
    double minutes = 5, jobs = 0;
    uint64_t seed = 0;
    sn_demo_options o = {0};
    o.verbose = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--synth")) o.force_synth = 1;
        else if (!strcmp(a, "--out") || !strcmp(a, "--minutes") || !strcmp(a, "--seed") || !strcmp(a, "--jobs")) {
            if (!has) { fprintf(stderr, "sinter data demo: %s needs a value\n", a); return 2; }
            const char *v = argv[++i];
            if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--minutes")) { if (!parse_num(a, v, &minutes)) return 2; }
            else if (!strcmp(a, "--seed")) { if (!parse_seed(v, &seed)) return 2; }
            else if (!parse_num(a, v, &jobs) || jobs < 1 || jobs > 16) { fprintf(stderr, "sinter data demo: --jobs must be 1..16\n"); return 2; }
        } else {
            fprintf(stderr, "sinter data demo: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!out) { fprintf(stderr, "sinter data demo: --out DIR is required (see --help)\n"); return 2; }
    if (!(minutes > 0 && minutes <= 10000)) { fprintf(stderr, "sinter data demo: --minutes must be in (0, 10000]\n"); return 2; }
    o.jobs = (int)jobs;
    double t0 = now_s();
    sn_status st = sn_demo_corpus(out, minutes, seed, &o, NULL);
    if (st != SN_OK) {
        fprintf(stderr, "sinter data demo: error: %s\n", sn_last_error());
        return st == SN_ERR_NOMEM ? SN_EXIT_DEVICE : SN_EXIT_INPUT;
    }
    printf("wrote %s in %.1f s\n", out, now_s() - t0);
    return 0;
}
