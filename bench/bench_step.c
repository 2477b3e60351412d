/* Times the prototype's training step (forward, MSE, backward, Adam) on one device.
 *   bench_step [--device cpu|cuda[:N]|vulkan[:N]] [--threads N] [--batch 4] [--frames 400]
 *              [--hidden 1024] [--rnn lstm|gru|attention] [--steps 10] [--warmup 2]
 *              [--tf32] [--bf16] [--f16] [--infer]
 * --bf16 / --f16: mixed precision with that operand type (CUDA and the CPU take f16 as
 * bf16; Vulkan has f16 only, on cooperative matrices).
 * Prints one JSON line: median/min ms per step, time to the end of the first step
 * from program start, planned peak and persistent memory. */
#include "bench_util.h"
#include "sinter/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>



static void die(const char *what) {
    fprintf(stderr, "bench_step: %s: %s\n", what, sn_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    double t_start = bench_now();
    const char *device = "cpu", *rnn = "lstm";
    int threads = 0, batch = 4, frames = 400, hidden = 1024, steps = 10, warmup = 2;
    int tf32 = 0, bf16 = 0, f16 = 0, infer = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--device") && v) device = argv[++i];
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--frames") && v) frames = atoi(argv[++i]);
        else if (!strcmp(a, "--hidden") && v) hidden = atoi(argv[++i]);
        else if (!strcmp(a, "--rnn") && v) rnn = argv[++i];
        else if (!strcmp(a, "--steps") && v) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--tf32")) tf32 = 1;
        else if (!strcmp(a, "--bf16")) bf16 = 1;
        else if (!strcmp(a, "--f16")) f16 = 1;
        else if (!strcmp(a, "--infer")) infer = 1;
        else {
            fprintf(stderr, "bench_step: unknown argument '%s' (see the comment at the top of bench/bench_step.c)\n", a);
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    sn_backend *cpu = NULL, *b = NULL;
    if (sn_backend_open("cpu", threads, &cpu) != SN_OK) die("opening the CPU"); /* SN_PROFILE applies */
    b = cpu;
    if (strcmp(device, "cpu") && sn_backend_open(device, threads, &b) != SN_OK) die("opening the device");
    if ((tf32 || bf16 || f16) &&
        sn_backend_set_precision(b, &(sn_precision){.tf32 = tf32, .bf16 = bf16, .f16 = f16}) != SN_OK)
        die("setting the precision");
    sn_device_info info0;
    sn_backend_info(b, &info0); /* free memory before sinter allocates anything */
    sn_crn_config cfg;
    sn_crn_config_default(&cfg);
    cfg.hidden = hidden;
    cfg.rnn = !strcmp(rnn, "gru") ? SN_RNN_GRU : !strcmp(rnn, "attention") ? SN_RNN_ATTENTION : SN_RNN_LSTM;
    sn_model *m;
    if (sn_crn_new(&cfg, b, &m) != SN_OK) die("creating the model");
    if (sn_model_init(m, 0) != SN_OK) die("initialising");
    int64_t n = (int64_t)batch * frames * cfg.freq_bins;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0));
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (float)((s >> 40) * (1.0 / 16777216.0));
    }
    sn_step *st = NULL;
    sn_infer *inf = NULL;
    if (infer) {
        if (sn_infer_new(m, b, cpu, batch, frames, &inf) != SN_OK) die("planning the inference graph");
    } else if (sn_step_new(m, b, cpu, batch, frames, NULL, &st) != SN_OK)
        die("planning the step");
    double *ts = malloc((size_t)(steps + warmup + 1) * sizeof *ts);
    float loss = 0;
    double first = 0;
    /* as the trainer: the next batch uploads (copy stream) while the device runs a step */
    if (!infer && sn_step_prefetch(st, x, y) != SN_OK) die("uploading the first batch");
    for (int i = 0; i < steps + warmup + 1; i++) {
        double t0 = bench_now();
        sn_status rc;
        if (infer) {
            rc = sn_infer_run(inf, x, y);
        } else {
            rc = sn_step_launch(st, 1e-3f);
            if (rc == SN_OK) rc = sn_step_prefetch(st, x, y);
            if (rc == SN_OK) rc = sn_step_finish(st, &loss);
        }
        if (rc != SN_OK) die("running the step");
        double t1 = bench_now();
        if (i == 0) first = t1 - t_start;
        ts[i] = t1 - t0;
    }
    double *timed = ts + 1 + warmup;
    qsort(timed, (size_t)steps, sizeof *timed, bench_cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t peak = infer ? sn_plan_peak(inf->plan) : sn_step_peak(st);
    size_t ws = sn_backend_workspace(b);
    sn_device_info info1 = {0};
    sn_backend_info(b, &info1);
    double dev_used = strcmp(device, "cpu") && info0.mem_free > info1.mem_free
                          ? (double)(info0.mem_free - info1.mem_free) / 1048576.0 : -1.0;
    printf("{\"impl\":\"sinter\",\"device\":\"%s\",\"mode\":\"%s\",\"rnn\":\"%s\",\"batch\":%d,\"frames\":%d,"
           "\"threads\":%d,\"params\":%lld,\"first_step_s\":%.4f,\"step_ms_median\":%.3f,\"step_ms_min\":%.3f,"
           "\"loss\":%.6f,\"arena_mb\":%.1f,\"persistent_mb\":%.1f,\"workspace_mb\":%.1f,\"peak_mem_mb\":%.1f,"
           "\"device_used_mb\":%.1f,\"max_rss_mb\":%.1f}\n",
           device, infer ? "infer" : (bf16 ? "bf16" : f16 ? "f16" : tf32 ? "tf32" : "fp32"), rnn, batch, frames,
           sn_cpu_backend_threads(cpu), (long long)m->nparams, first, 1e3 * timed[steps / 2], 1e3 * timed[0], loss,
           peak / 1048576.0, sn_ctx_persistent_bytes(m->ctx) / 1048576.0, ws / 1048576.0,
           (peak + sn_ctx_persistent_bytes(m->ctx) + ws) / 1048576.0, dev_used, ru.ru_maxrss / 1024.0);
    sn_step_free(st);
    sn_infer_free(inf);
    sn_model_free(m);
    if (b != cpu) sn_backend_free(b);
    sn_backend_free(cpu);
    free(x);
    free(y);
    free(ts);
    return 0;
}
