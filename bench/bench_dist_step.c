/* Times the prototype's data-parallel training step: one process per device, started
 * by mpirun (or alone: one device). Each rank trains on cuda:<local rank> (--device
 * cuda) or the CPU with per-device batch --batch; gradients are averaged through NCCL
 * (GPUs) or MPI (CPU) in buckets that overlap the backward pass.
 *   mpirun -np 2 bench_dist_step [--device cuda|cpu] [--batch 16] [--frames 400]
 *          [--hidden 1024] [--steps 20] [--warmup 3] [--threads N] [--sync-bn]
 * Rank 0 prints one JSON line: median ms per step (the slowest rank's, steps aligned
 * by a barrier), global samples/s, world size, buckets. */
#include "bench_util.h"
#include "sinter/dist.h"
#include "sinter/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>



static sn_comm *g_comm;

static void die(const char *what) {
    char msg[1200];
    snprintf(msg, sizeof msg, "bench_dist_step: %s: %s", what, sn_last_error());
    sn_comm_abort(g_comm, 1, msg);
}

int main(int argc, char **argv) {
    const char *device = "cuda";
    int batch = 16, frames = 400, hidden = 1024, steps = 20, warmup = 3, threads = 0, sync_bn = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--device") && v) device = argv[++i];
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--frames") && v) frames = atoi(argv[++i]);
        else if (!strcmp(a, "--hidden") && v) hidden = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && v) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--sync-bn")) sync_bn = 1;
        else {
            fprintf(stderr, "bench_dist_step: unknown argument '%s' (see bench/bench_dist_step.c)\n", a);
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    if (sn_dist_init(&g_comm) != SN_OK) die("joining the processes");
    int rank = sn_comm_rank(g_comm), world = sn_comm_size(g_comm), lr = sn_comm_local_rank(g_comm);
    char dev[32];
    if (!strcmp(device, "cuda")) snprintf(dev, sizeof dev, "cuda:%d", lr);
    else snprintf(dev, sizeof dev, "%s", device);
    if (!strcmp(dev, "cpu") && threads == 0) {
        threads = 0; /* the backend's default: all cores; divided when several share a host */
        if (sn_comm_local_size(g_comm) > 1) {
            sn_backend *probe = sn_cpu_backend_new(0);
            threads = sn_cpu_backend_threads(probe) / sn_comm_local_size(g_comm);
            sn_backend_free(probe);
            if (threads < 1) threads = 1;
        }
    }
    sn_backend *cpu = sn_cpu_backend_new(threads), *b = cpu;
    if (strcmp(dev, "cpu") && sn_backend_open(dev, threads, &b) != SN_OK) die("opening the device");
    sn_comm *nccl = NULL;
    if (world > 1) {
        if (b != cpu && sn_dist_have_nccl()) {
            if (sn_comm_nccl_new(g_comm, lr, &nccl) != SN_OK) die("creating the NCCL communicator");
            if (sn_comm_attach(nccl, b) != SN_OK) die("attaching NCCL");
        }
        if (sn_comm_attach(g_comm, cpu) != SN_OK) die("attaching MPI");
    }
    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.hidden = hidden;
    sn_model *m;
    if (sn_crn_new(&cfg, b, &m) != SN_OK) die("creating the model");
    if (sn_model_init(m, 0) != SN_OK) die("initialising");
    int64_t n = (int64_t)batch * frames * cfg.freq_bins;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    uint64_t s = 12345 + (uint64_t)rank;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0));
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (float)((s >> 40) * (1.0 / 16777216.0));
    }
    sn_optim_config oc;
    sn_optim_config_default(&oc);
    oc.sync_bn = sync_bn;
    sn_step *st = NULL;
    if (sn_step_new(m, b, cpu, batch, frames, &oc, &st) != SN_OK) die("planning the step");
    int total = steps + warmup + 1;
    double *ts = malloc((size_t)total * sizeof *ts);
    float loss = 0;
    if (sn_step_prefetch(st, x, y) != SN_OK) die("uploading the first batch");
    for (int i = 0; i < total; i++) {
        if (sn_comm_barrier(g_comm) != SN_OK) die("barrier");
        double t0 = bench_now();
        sn_status rc = sn_step_launch(st, 1e-3f);
        if (rc == SN_OK) rc = sn_step_prefetch(st, x, y);
        if (rc == SN_OK) rc = sn_step_finish(st, &loss);
        if (rc != SN_OK) die("running the step");
        float dt = (float)(bench_now() - t0);
        /* the step takes as long as its slowest rank */
        if (sn_comm_allreduce(g_comm, &dt, &dt, 1, SN_REDUCE_MAX, NULL) != SN_OK) die("all-reduce");
        ts[i] = dt;
    }
    double *timed = ts + 1 + warmup;
    qsort(timed, (size_t)steps, sizeof *timed, bench_cmp_double);
    double med = timed[steps / 2];
    if (rank == 0)
        printf("{\"impl\":\"sinter\",\"device\":\"%s\",\"world\":%d,\"collective\":\"%s\",\"batch_per_device\":%d,"
               "\"global_batch\":%d,\"frames\":%d,\"sync_bn\":%d,\"buckets\":%d,\"step_ms_median\":%.3f,"
               "\"step_ms_min\":%.3f,\"samples_per_s\":%.2f,\"loss\":%.6f}\n",
               device, world, world == 1 ? "none" : nccl ? "nccl" : "mpi", batch, batch * world, frames, sync_bn,
               st->nbuckets, 1e3 * med, 1e3 * timed[0], batch * world / med, loss);
    sn_step_free(st);
    sn_model_free(m);
    if (b != cpu) sn_backend_free(b);
    sn_backend_free(cpu);
    free(x);
    free(y);
    free(ts);
    sn_comm_free(nccl);
    sn_comm_free(g_comm);
    return 0;
}
