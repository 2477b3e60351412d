/* libFuzzer target: the command-line parsing of `sinter` (main.c's dispatch
 * and suggestions, and the argument and config-override parsing of train,
 * enhance, eval, metrics and data) on arbitrary argument vectors. The input is
 * split into arguments at NUL and newline bytes.
 *
 * The subcommands are the real src/cli files with the real config loader;
 * the work behind them (training, enhancement, audio, devices) is replaced by
 * the refusals below, so each run ends right after its arguments are parsed.
 * It runs in an empty folder and '/' becomes '_' in every argument, so no
 * argument can name a file outside it: nothing exists there to read, and what
 * a parse creates (a --dump-batches folder) stays there. */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sinter/audio.h"
#include "sinter/backend.h"
#include "sinter/config.h"
#include "sinter/data.h"
#include "sinter/train.h"

int sn_cli_main(int argc, char **argv); /* main.c, renamed by the build script */

/* ---- what the parsers hand their arguments to ---- */

static sn_status refuse(const char *what) { return sn_error(SN_ERR_IO, "fuzz: %s is not part of the parse", what); }

sn_status sn_train(const sn_config *cfg, const sn_train_opts *o, sn_train_result *r) {
    /* what the parser promises the trainer: a validated config, sane options */
    if (!cfg || !o || sn_config_validate(cfg) != SN_OK || o->max_steps < 0 || o->cpu_threads < 0 || !o->stop) abort();
    if (r) memset(r, 0, sizeof *r);
    return refuse("training");
}
void sn_train_opts_default(sn_train_opts *o) { memset(o, 0, sizeof *o); }
void sn_enhance_opts_default(sn_enhance_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = "auto";
    o->chunk_seconds = 10;
}
sn_status sn_enhancer_open(const char *ckpt, const sn_config *cfg, const sn_enhance_opts *o, sn_enhancer **out) {
    (void)ckpt, (void)cfg, (void)o;
    *out = NULL;
    return refuse("the enhancer");
}
sn_status sn_enhance_file(sn_enhancer *e, const char *in, const char *out, double *s) {
    (void)e, (void)in, (void)out, (void)s;
    return refuse("enhancement");
}
const sn_model *sn_enhancer_model(const sn_enhancer *e) { (void)e; abort(); }
const sn_config *sn_enhancer_config(const sn_enhancer *e) { (void)e; abort(); }
sn_backend *sn_enhancer_backend(const sn_enhancer *e) { (void)e; abort(); }
int sn_enhancer_chunk_frames(const sn_enhancer *e) { (void)e; abort(); }
const char *sn_enhancer_whole_reason(const sn_enhancer *e) { (void)e; abort(); }
void sn_enhancer_free(sn_enhancer *e) { (void)e; }
sn_status sn_audio_info(const char *p, int *r, int64_t *f, int *c, int *fmt) {
    (void)p, (void)r, (void)f, (void)c, (void)fmt;
    return refuse("audio");
}
sn_status sn_audio_read(const char *p, int r, int mono, sn_audio *out) {
    (void)p, (void)r, (void)mono;
    memset(out, 0, sizeof *out);
    return refuse("audio");
}
void sn_audio_free(sn_audio *a) { (void)a; }
double sn_snr(const float *a, const float *b, int64_t n) { (void)a, (void)b, (void)n; abort(); }
double sn_si_sdr(const float *a, const float *b, int64_t n) { (void)a, (void)b, (void)n; abort(); }
sn_status sn_stoi(const float *a, const float *b, int64_t n, int r, int x, double *o) {
    (void)a, (void)b, (void)n, (void)r, (void)x, (void)o;
    abort();
}
sn_status sn_backend_open(const char *spec, int threads, sn_backend **b) {
    (void)spec, (void)threads;
    *b = NULL;
    return refuse("a device");
}
void sn_backend_free(sn_backend *b) { (void)b; }
const char *sn_backend_name(sn_backend *b) { (void)b; return "fuzz"; }
const char *sn_model_describe(const sn_model *m, char *buf, int n) { (void)m, (void)buf, (void)n; abort(); }
sn_status sn_ckpt_load(const char *p, const sn_config *c, sn_backend *b, sn_config *co, sn_model **m, sn_ckpt_state *s) {
    (void)p, (void)c, (void)b, (void)co, (void)s;
    *m = NULL;
    return refuse("a checkpoint");
}
void sn_model_free(sn_model *m) { (void)m; }
void sn_data_config_default(sn_data_config *c) { memset(c, 0, sizeof *c); }
sn_status sn_dataset_open(const sn_data_config *c, sn_dataset **t, sn_dataset **v) {
    (void)c, (void)t, (void)v;
    return refuse("data");
}
void sn_dataset_free(sn_dataset *d) { (void)d; }
sn_status sn_evaluate(sn_model *m, sn_backend *b, struct sn_dataset *d, int n, int k, sn_eval_result *r) {
    (void)m, (void)b, (void)d, (void)n, (void)k, (void)r;
    abort();
}
sn_status sn_demo_corpus(const char *d, double m, uint64_t s, const sn_demo_options *o, int *u) {
    (void)d, (void)m, (void)s, (void)o, (void)u;
    return refuse("the demo corpus");
}
/* listing devices, benchmarking and describing models have their own small parsers, not fuzzed here */
int sn_cmd_devices(int argc, char **argv) { (void)argc, (void)argv; return 0; }
int sn_cmd_model(int argc, char **argv) { (void)argc, (void)argv; return 0; }
int sn_cmd_bench(int argc, char **argv) { (void)argc, (void)argv; return 0; }

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("SN_FUZZ_SANDBOX");
    if (!dir || chdir(dir) != 0) {
        fprintf(stderr, "fuzz_cli: set SN_FUZZ_SANDBOX to an empty folder (the script does)\n");
        exit(1);
    }
    return 0;
}

#define MAX_ARGS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "sinter";
    for (size_t i = 0, start = 0; i <= size && argc <= MAX_ARGS; i++) {
        if (i < size && buf[i] == '/') buf[i] = '_';
        if (i == size || buf[i] == 0 || buf[i] == '\n') {
            buf[i] = 0;
            argv[argc++] = buf + start;
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    int rc = sn_cli_main(argc, argv);
    /* every outcome is a code of the table */
    if (!(rc == 0 || rc == 1 || rc == 2 || rc == 3 || rc == 4 || rc == 130)) abort();
    free(buf);
    return 0;
}
