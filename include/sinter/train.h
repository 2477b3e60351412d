/* Training: the trainer loop, LR schedules, checkpoints, evaluation.
 *
 * Checkpoints are safetensors files (written atomically by sn_st_save):
 *   - model weights under their PyTorch state_dict names (F32;
 *     num_batches_tracked as an I64 scalar, shape []), so a plain
 *     `model.load_state_dict(safetensors.torch.load_file(p), strict=False)`
 *     works in PyTorch (strict=True once the optim.* entries are dropped);
 *   - optimizer state per parameter: "optim.exp_avg.<param>",
 *     "optim.exp_avg_sq.<param>" (Adam/AdamW) or "optim.momentum_buffer.<param>"
 *     (SGD), F32, the parameter's shape;
 *   - metadata: "sinter.format_version" ("1"), "sinter.config" (resolved YAML),
 *     "sinter.step", "sinter.epoch", "sinter.epoch_step", "sinter.optim_step",
 *     "sinter.best_valid_loss", "sinter.seed", "sinter.version", "sinter.world_size"
 *     (data-parallel processes; a resume needs the same number).
 * A file without "sinter.config" is read as a plain PyTorch state_dict; the
 * model then comes from the config the caller gives. */
#ifndef SINTER_TRAIN_H
#define SINTER_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "sinter/config.h"
#include "sinter/nn.h"
#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_CKPT_FORMAT_VERSION 1
#define SN_RUN_DIR_MAX 1024

/* ---- config -> model ---------------------------------------------------- */

/* model.* of a config as a CRN config (errors on an unknown model.name/rnn). */
sn_status sn_crn_config_from(const sn_config *cfg, sn_crn_config *out);
/* The model of a config on backend b (zeros): the CRN, or the described model of
 * model.name: graph (model.layers, model.output, model.output_activation); with
 * model.loss set. Every command that builds a model from a config goes through it. */
sn_status sn_model_from_config(const sn_config *cfg, sn_backend *b, sn_model **out);
/* train.* of a config as optimizer settings. */
sn_status sn_optim_config_from(const sn_config *cfg, sn_optim_config *out);

/* ---- LR schedules ---------------------------------------------------------- */

/* Learning rate for optimizer step `step` (0-based) of `total` steps:
 * constant; cosine with linear warm-up (warmup_steps) decaying to 0 at total;
 * step: lr * gamma^(step / step_size). Warm-up applies to every schedule. */
double sn_lr_at(const sn_config *cfg, int64_t step, int64_t total);

/* ---- checkpoints ------------------------------------------------------------ */

typedef struct sn_ckpt_state {
    int64_t step;            /* optimizer steps taken (global) */
    int64_t epoch;           /* epoch the next step belongs to */
    int64_t epoch_step;      /* batches of that epoch already trained on */
    double best_valid_loss;  /* lowest validation loss so far (INFINITY if none) */
    uint64_t seed;           /* the run's seed (loader + init) */
    int world_size;          /* data-parallel processes that trained it (1: one; 0 read as 1) */
} sn_ckpt_state;

/* Writes model weights, the optimizer state of `opt` (may be NULL: weights
 * only), `st` (may be NULL: zeros) and the resolved `cfg` (may be NULL) to
 * path, atomically: on failure the previous file at path is untouched and the
 * error says so. */
sn_status sn_ckpt_save(const sn_model *m, const sn_step *opt, const sn_ckpt_state *st, const sn_config *cfg,
                       const char *path);

/* Opens a checkpoint and builds its model on backend b:
 *   - with "sinter.config" in the metadata, that config (then `cfg_in`'s
 *     overrides are NOT applied: the checkpoint decides the model);
 *   - without it (a PyTorch state_dict), `cfg_in` gives the model (error when
 *     cfg_in is NULL).
 * Checks every name and shape against the model: a mismatch is an error that
 * lists the first missing / unexpected / mis-shaped names. cfg_out, st_out
 * may be NULL. *model_out is owned by the caller (sn_model_free). */
sn_status sn_ckpt_load(const char *path, const sn_config *cfg_in, sn_backend *b, sn_config *cfg_out,
                       sn_model **model_out, sn_ckpt_state *st_out);

/* Reads only the run state (metadata) of a checkpoint. */
sn_status sn_ckpt_read_state(const char *path, sn_ckpt_state *st);

/* Copies a checkpoint's weights into an existing model (same checks). */
sn_status sn_ckpt_load_weights(const char *path, sn_model *m);

/* Restores the optimizer state (exp_avg, exp_avg_sq / momentum_buffer and
 * the step count) saved in path into s (built for the same model). */
sn_status sn_ckpt_load_optim(const char *path, sn_step *s);

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct sn_eval_result {
    int64_t items;
    double loss;             /* the model's loss (MSE or L1) on magnitudes */
    double snr_in, snr;      /* dB, noisy vs clean / enhanced vs clean */
    double sisdr_in, sisdr;  /* dB */
    double sisdri;           /* sisdr - sisdr_in */
    double stoi_in, stoi, estoi_in, estoi;
} sn_eval_result;

struct sn_dataset;
/* Runs the inference graph over every item of ds (batches of `batch`),
 * resynthesises with the noisy phase and averages the metrics. `metrics`
 * 0 computes loss + SI-SDR only (fast), 1 adds SNR, STOI and ESTOI. */
sn_status sn_evaluate(sn_model *m, sn_backend *b, struct sn_dataset *ds, int batch, int metrics,
                      sn_eval_result *out);

/* ---- the trainer ------------------------------------------------------------------ */

typedef struct sn_train_opts {
    const char *resume_dir;   /* continue the run in this directory (its last.safetensors) */
    const char *run_dir;      /* use exactly this new directory (NULL: out_dir/name-YYYYmmdd-HHMMSS) */
    int64_t max_steps;        /* > 0 overrides train.max_steps */
    int cpu_threads;          /* 0 = all cores */
    int quiet;                /* 1: nothing on stdout (train.log is still written) */
    volatile sig_atomic_t *stop; /* set non-zero (e.g. by a signal handler) to checkpoint and stop */
    const char *dump_batches; /* write every trained batch to this .safetensors (parity checks) */
    int nan_at_step;          /* tests: poison the loss at this global step (0 = off) */
} sn_train_opts;
void sn_train_opts_default(sn_train_opts *o);

typedef struct sn_train_result {
    char run_dir[SN_RUN_DIR_MAX];
    int64_t steps;            /* global step at the end */
    int64_t epochs_done;
    double first_loss, last_loss;   /* mean over the first / last log window */
    double best_valid_loss;
    sn_eval_result valid;     /* the last validation */
    int has_valid;
    int interrupted;          /* stopped through opts->stop (checkpoint written) */
    int rank, world;          /* data parallel: this process's rank and the process count (0 of 1 alone) */
    int diverged;             /* stopped because the loss became NaN/Inf (SN_ERR_NUMERIC) */
    double seconds;
} sn_train_result;

/* Trains cfg (validated) into a new run directory, or continues resume_dir.
 * Returns SN_OK (also when interrupted: result->interrupted), SN_ERR_NUMERIC
 * when the loss became NaN/Inf (result->diverged; the message names the step
 * and the last good checkpoint), SN_ERR_CONFIG/IO/FORMAT/DEVICE/NOMEM on setup
 * errors.
 *  - A run directory is locked (<run>/.lock, flock) while a process trains in
 *    it: a second train or --resume of it gets SN_ERR_IO naming the PID.
 *  - A new run's directory is made after the device, data, model and memory
 *    were checked, and removed again when start-up fails after that.
 *  - Every write of the run (train.log, metrics.csv, events, samples, loss.svg,
 *    checkpoints) is checked: the first failure stops training after one last
 *    attempt at the checkpoint alone, with SN_ERR_IO naming the file and the
 *    free space.
 *  - --resume removes the temporary files of writes a killed process left, and
 *    marks the resume step in the TensorBoard file (SessionLog START). */
sn_status sn_train(const sn_config *cfg, const sn_train_opts *opts, sn_train_result *result);

/* ---- enhancement (inference on audio files) ---------------------------------------- */

typedef struct sn_enhancer sn_enhancer;

typedef struct sn_enhance_opts {
    const char *device;       /* "auto" (default), "cpu", "cuda:N", ... */
    int cpu_threads;          /* 0 = all cores */
    double chunk_seconds;     /* model chunk length (state carried, output equal to whole-file
                                 processing); 0 = whole files. Default 10. A model with no exact
                                 chunked form (sn_model_streamable) always runs whole files. */
    double longest_seconds;   /* > 0: the longest file to come; chunks are no longer than it needs */
    volatile sig_atomic_t *stop; /* non-zero: sn_enhance_file stops, removes its partial output and
                                    returns SN_OK */
} sn_enhance_opts;
void sn_enhance_opts_default(sn_enhance_opts *o);

/* Opens the device and the checkpoint's model (sn_ckpt_load: `cfg` gives the
 * model of a plain state_dict; NULL then refuses one). A device spec that
 * names no usable device gives SN_ERR_DEVICE. */
sn_status sn_enhancer_open(const char *ckpt, const sn_config *cfg, const sn_enhance_opts *opts, sn_enhancer **out);
/* Enhances one file: read (any rate and channel count, mixed to mono),
 * resample to 16 kHz, the model in chunks, resample back, write `out` at the
 * input's rate and in its format (atomically: a failed or interrupted file
 * leaves no output and no temporary file). The output's folder is created.
 * audio_seconds (may be NULL) gets the input's duration. */
sn_status sn_enhance_file(sn_enhancer *e, const char *in, const char *out, double *audio_seconds);
const sn_model *sn_enhancer_model(const sn_enhancer *e);
const sn_config *sn_enhancer_config(const sn_enhancer *e);
sn_backend *sn_enhancer_backend(const sn_enhancer *e);
int sn_enhancer_chunk_frames(const sn_enhancer *e); /* 0: whole files */
/* Why the model runs on whole files (a layer with no exact chunked form, or
 * chunk_seconds 0); "" when it runs in chunks. */
const char *sn_enhancer_whole_reason(const sn_enhancer *e);
void sn_enhancer_free(sn_enhancer *e);


#ifdef __cplusplus
}
#endif
#endif
