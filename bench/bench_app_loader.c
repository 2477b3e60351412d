/* Loader throughput: batches/s for the prototype's batches (batch 4, 4 s at
 * 16 kHz: mix, STFT, magnitudes, phase) at num_workers 0, 1, 2, 4.
 *   bench_app_loader [DIR] [--batches N] [--minutes M]
 * DIR holds clean/ and noise/ (e.g. from `sinter data demo`); without it a
 * pure-C demo corpus is built in a temp folder. Ratios are against
 * num_workers 0 (building in the caller's thread) in the same process. */
#define _DEFAULT_SOURCE
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sinter/data.h"


int main(int argc, char **argv) {
    const char *dir = NULL;
    int nb = 200;
    double minutes = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batches") && i + 1 < argc) nb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--minutes") && i + 1 < argc) minutes = atof(argv[++i]);
        else if (argv[i][0] != '-') dir = argv[i];
        else { fprintf(stderr, "usage: %s [DIR] [--batches N] [--minutes M]\n", argv[0]); return 2; }
    }
    char tmp[] = "/tmp/sn_bench_loader_XXXXXX";
    if (!dir) {
        if (!mkdtemp(tmp)) { perror("mkdtemp"); return 3; }
        sn_demo_options o = {.force_synth = 1};
        double t0 = bench_now();
        if (sn_demo_corpus(tmp, minutes, 1, &o, NULL) != SN_OK) { fprintf(stderr, "demo corpus: %s\n", sn_last_error()); return 3; }
        printf("corpus: %.1f min pure-C speech in %s (%.1f s)\n", minutes, tmp, bench_now() - t0);
        dir = tmp;
    }
    char cd[4200], nd[4200];
    snprintf(cd, sizeof cd, "%s/clean", dir);
    snprintf(nd, sizeof nd, "%s/noise", dir);
    sn_data_config c;
    sn_data_config_default(&c);
    c.clean_dir = cd;
    c.noise_dir = nd;
    c.segment_seconds = 4.0;
    double t0 = bench_now();
    sn_dataset *ds = NULL;
    if (sn_dataset_open(&c, &ds, NULL) != SN_OK) { fprintf(stderr, "dataset: %s\n", sn_last_error()); return 3; }
    printf("dataset: %lld items, open %.2f s; batch 4 x 4 s @ 16 kHz, %d batches per run, %ld cores\n",
           (long long)sn_dataset_len(ds), bench_now() - t0, nb, sysconf(_SC_NPROCESSORS_ONLN));
    int workers[] = {0, 1, 2, 4};
    double base = 0;
    for (int w = 0; w < 4; w++) {
        sn_loader_config lc;
        sn_loader_config_default(&lc);
        lc.batch_size = 4;
        lc.num_workers = workers[w];
        sn_loader *l = NULL;
        if (sn_loader_new(ds, &lc, &l) != SN_OK) { fprintf(stderr, "loader: %s\n", sn_last_error()); return 3; }
        int got = 0;
        uint64_t epoch = 0;
        double t = bench_now();
        sn_loader_start_epoch(l, epoch);
        while (got < nb) {
            sn_batch *b = NULL;
            if (sn_loader_next(l, &b) != SN_OK) { fprintf(stderr, "next: %s\n", sn_last_error()); return 3; }
            if (!b) { sn_loader_start_epoch(l, ++epoch); continue; }
            sn_loader_release(l, b);
            got++;
        }
        double dt = bench_now() - t;
        sn_loader_stats st;
        sn_loader_get_stats(l, &st);
        sn_loader_free(l);
        double bps = got / dt;
        if (w == 0) base = bps;
        printf("num_workers %d: %7.1f batches/s  (x%.2f vs 0)  wait %.2f ms/batch  build %.2f ms/batch\n", workers[w], bps,
               bps / base, 1e3 * st.wait_mean_s, 1e3 * st.build_total_s / (st.batches ? st.batches : 1));
    }
    sn_dataset_free(ds);
    if (dir == tmp) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    return 0;
}
