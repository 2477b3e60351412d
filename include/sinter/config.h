/* Training configuration: a plain struct with defaults, loaded from YAML
 * (libyaml), with hydra-style `key.sub=value` overrides.
 *
 *   sn_config c;
 *   sn_config_load("conf/prototype.yaml", &c);      // defaults + file
 *   sn_config_override(&c, "train.batch_size=8");   // each CLI override
 *   sn_config_validate(&c);                          // cross-key checks
 *
 * Errors name the file (or override), the line and the key, e.g.
 * "conf/x.yaml:7: unknown key 'train.bach_size'; did you mean 'train.batch_size'?" */
#ifndef SINTER_CONFIG_H
#define SINTER_CONFIG_H

#include <stdint.h>

#include "sinter/model_desc.h"
#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_CONFIG_STR 1024   /* paths and other strings, including the NUL */
#define SN_CONFIG_NAME 128
#define SN_CONFIG_CHANNELS 5 /* encoder stages of the CRN */
/* Bounds on what the loader reads: a config is a few KB and 3 levels deep, and
 * libyaml's time grows with the square of the nesting. */
#define SN_CONFIG_MAX_BYTES (1 << 20)
#define SN_CONFIG_MAX_DEPTH 64

/* train.mixed_precision: false; true (the device's best 16-bit type: bf16 where it
 * has it, else f16); or a type named. Every value but SN_MP_OFF is non-zero. */
typedef enum { SN_MP_OFF = 0, SN_MP_AUTO = 1, SN_MP_BF16 = 2, SN_MP_F16 = 3 } sn_mixed_precision;
/* "false", "true", "bf16", "f16": how the resolved config writes it */
const char *sn_mixed_precision_name(int mp);

typedef struct sn_config {
    char name[SN_CONFIG_NAME];     /* run name, default "crn" */
    char device[32];               /* auto | cpu | cuda | cuda:N | vulkan | vulkan:N */
    int64_t seed;                  /* default 0 */
    char out_dir[SN_CONFIG_STR];   /* default "runs" */
    struct {
        char clean_dir[SN_CONFIG_STR];
        char noise_dir[SN_CONFIG_STR];
        char noisy_dir[SN_CONFIG_STR]; /* paired layout: noisy_dir/x.wav <-> clean_dir/x.wav */
        char list_file[SN_CONFIG_STR];
        char valid_dir[SN_CONFIG_STR];
        double valid_fraction;     /* 0..0.5, default 0.1 */
        int sample_rate;           /* default 16000 */
        double segment_seconds;    /* > 0, default 4.0 */
        double snr_db[2];          /* [lo, hi], default [-5, 15] */
        double gain_db[2];         /* [lo, hi], default [-10, 0] */
        int64_t cache_mb;          /* default 1024 */
    } data;
    struct {
        int batch_size;            /* >= 1, default 4 */
        int num_workers;           /* >= 0, default 2 */
        int mixed_precision;       /* sn_mixed_precision, default SN_MP_OFF (non-zero: on) */
        int tf32;                  /* bool, default 0 */
        int epochs;                /* default 50 */
        int64_t max_steps;         /* 0 = use epochs */
        int64_t steps_per_epoch;   /* 0 = one pass over the clean files */
        double lr;                 /* > 0, default 1e-3 */
        char optimizer[16];        /* adam | adamw | sgd */
        double weight_decay;       /* default 0 */
        double momentum;           /* sgd, default 0.9 */
        double betas[2];           /* default [0.9, 0.999] */
        double eps;                /* default 1e-8 */
        double grad_clip;          /* max global norm, 0 = off */
        char schedule[16];         /* constant | cosine | step */
        int64_t warmup_steps;      /* default 0 */
        int64_t step_size;         /* step schedule: steps between decays, default 10000 */
        double gamma;              /* step schedule: decay factor, default 0.1 */
        int64_t log_every;         /* steps, default 50 */
        int64_t valid_every;       /* steps, 0 = each epoch */
        int64_t ckpt_every;        /* steps, 0 = each epoch, default 1000 */
        int audio_samples;         /* validation files sent to TensorBoard, default 4 */
    } train;
    struct {
        char name[32];             /* crn | graph (a described model: the layer list in graph) */
        char rnn[16];              /* lstm | gru | attention */
        int hidden;                /* default 1024 */
        int layers;                /* default 2 (crn); a YAML list here is the graph's layer list */
        int channels[SN_CONFIG_CHANNELS]; /* default [16, 32, 64, 128, 256] */
        int sync_bn;               /* data parallel: BatchNorm statistics over the global batch; default false */
        char file[SN_CONFIG_STR];  /* model.* keys (or just the layer list) read from this YAML file;
                                      the resolved config holds what it gave, inline */
        char output[16];           /* graph: mapping | mask (estimate = act(net(x)) * x) */
        char output_activation[16];/* graph: none | relu | sigmoid | softplus | tanh | elu */
        char loss[8];              /* mse | l1 */
        sn_model_desc graph;       /* model.layers as a list (graph.n = 0: none given) */
    } model;
} sn_config;

void sn_config_defaults(sn_config *c);
/* Defaults, then the file. On error *c is unchanged. */
sn_status sn_config_load(const char *path, sn_config *c);
/* Same from a string (e.g. the config saved in checkpoint metadata); label
 * names it in errors. */
sn_status sn_config_from_yaml_string(const char *text, const char *label, sn_config *c);
/* Applies "key.sub=value" (value in YAML syntax: 3e-4, true, [0.9, 0.99];
 * string keys take the text as is). On error *c is unchanged. */
sn_status sn_config_override(sn_config *c, const char *kv);
/* Checks that involve several keys (call after the overrides). */
sn_status sn_config_validate(const sn_config *c);
/* The resolved config as YAML (malloc'd; free()). Loads back to the same config. */
sn_status sn_config_to_yaml(const sn_config *c, char **out);

/* A layer list from YAML text (a list of layers, or a mapping with `layers:`), as
 * model.layers takes it; label names the source in errors. */
sn_status sn_model_desc_parse(const char *text, const char *label, sn_model_desc *out);
/* The layer list as YAML ("layers:\n  - {type: ...}\n"; malloc'd, free()). */
sn_status sn_model_desc_to_yaml(const sn_model_desc *d, char **out);

/* Valid keys, for help text and completion: count, and the i-th dotted name. */
int sn_config_key_count(void);
const char *sn_config_key_name(int i);
/* Nearest valid key to `key` (Levenshtein), or NULL when nothing is close. */
const char *sn_config_suggest(const char *key);

#ifdef __cplusplus
}
#endif
#endif
