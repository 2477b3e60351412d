/* Private helpers shared by src/train and the train/eval subcommands. */
#ifndef SN_TRAIN_INTERNAL_H
#define SN_TRAIN_INTERNAL_H

#include "sinter/audio.h"
#include "sinter/data.h"
#include "sinter/train.h"

/* Called for each validation item (in order) with its waveforms; return
 * non-zero to stop being called. */
typedef int (*sn_eval_item_fn)(int64_t index, const float *noisy, const float *enhanced, const float *clean,
                               int64_t n, int sample_rate, void *user);

/* Evaluation with an inference graph built by the caller (batch f->batch,
 * frames matching ds). */
sn_status sn_evaluate_with(sn_infer *f, sn_dataset *ds, int metrics, sn_eval_result *out, sn_eval_item_fn cb,
                           void *user);

/* sn_data_config from the data.* keys (pointers into cfg). */
void sn_data_config_from(const sn_config *cfg, sn_data_config *dc);

/* Opens the backend of cfg->device, a CPU fallback when it is a GPU, and
 * checks train.mixed_precision against the device. */
sn_status sn_open_device(const sn_config *cfg, int cpu_threads, sn_backend **b, sn_backend **fallback);

#endif
