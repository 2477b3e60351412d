/* Datasets (clean+noise mixed on the fly, paired noisy/clean dirs, list files),
 * the threaded batch loader, and the demo corpus generator.
 *
 * Determinism: every random choice is a pure function of
 * (seed, epoch, item index, stream) through a counter-based hash, so an item
 * and a batch are identical whatever the number of loader threads. */
#ifndef SINTER_DATA_H
#define SINTER_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- counter-based RNG ------------------------------------------------ */

/* splitmix64 finaliser: a bijective 64-bit mix. */
uint64_t sn_hash64(uint64_t x);
/* Key for one item's random stream: hash of (seed, epoch, index, stream). */
uint64_t sn_rng_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream);
/* k-th 64-bit draw of a key's stream, and a double uniform in [0,1). */
uint64_t sn_rng_u64(uint64_t key, uint64_t k);
double sn_rng_uniform(uint64_t key, uint64_t k);

/* ---- list files ---------------------------------------------------------
 * CSV, UTF-8. The first row that is not blank and not a '#' comment is the
 * header and says what the second column holds:
 *     clean,noise     each row: a clean file and the noise file to mix with it
 *                     at a random SNR / gain / segment (like the clean+noise dirs)
 *     clean,noisy     each row: a ready-made pair (noisy = clean + noise)
 * Fields may be double-quoted ("a,b.wav", "" for a quote). Relative paths are
 * resolved against the list file's folder. Every row must have exactly two
 * non-empty fields; errors name the row (1-based line number). */
enum { SN_LIST_NOISE = 1, SN_LIST_NOISY = 2 };
typedef struct sn_listfile {
    int kind;          /* SN_LIST_NOISE or SN_LIST_NOISY */
    int64_t n;         /* rows */
    char **first;      /* clean paths (resolved) */
    char **second;     /* noise or noisy paths (resolved) */
    int64_t *line;     /* 1-based line number of each row */
} sn_listfile;

/* Parses list-file text held in memory. base_dir (may be NULL or "") is
 * prepended to relative paths; name is used in error messages. */
sn_status sn_listfile_parse(const char *text, size_t len, const char *base_dir,
                            const char *name, sn_listfile *out);
/* Reads and parses a list file from disk (base_dir = its folder). */
sn_status sn_listfile_load(const char *path, sn_listfile *out);
void sn_listfile_free(sn_listfile *lf);

/* ---- datasets ------------------------------------------------------------ */

typedef struct sn_data_config {
    /* Training source, exactly one of:
     *   clean_dir + noise_dir   mix on the fly
     *   clean_dir + noisy_dir   paired files matched by relative path (no extension)
     *   list_file               CSV, see above (noise_dir unused) */
    const char *clean_dir;
    const char *noise_dir;
    const char *noisy_dir;
    const char *list_file;
    /* Validation (optional): valid_dir, or valid_fraction of the clean files
     * held out (mixing modes) / of the pairs (paired modes). valid_dir may hold
     * clean/ + noisy/ (paired), clean/ (mixed with noise_dir), or the clean
     * files themselves (mixed with noise_dir). */
    const char *valid_dir;
    double valid_fraction;
    int sample_rate;          /* model rate; files are resampled to it (16000) */
    double segment_seconds;   /* length of one item (4.0) */
    double snr_db[2];         /* uniform SNR range, dB (-5, 20) */
    double gain_db[2];        /* uniform overall gain range, dB (-10, 6) */
    double cache_mb;          /* decoded audio kept in memory; the rest streams (1024) */
    uint64_t seed;
    uint64_t valid_seed;      /* fixed seed of the validation mixtures */
} sn_data_config;

/* Fills in the defaults above (pointers NULL). */
void sn_data_config_default(sn_data_config *c);

typedef struct sn_dataset sn_dataset;

/* Scans the folders (recursively: .wav .flac .ogg), checks every file, decodes
 * what fits in cache_mb, and builds the training set and (when asked for by
 * valid_dir / valid_fraction and valid != NULL) the validation set. Silent
 * files are skipped with a warning. */
sn_status sn_dataset_open(const sn_data_config *cfg, sn_dataset **train, sn_dataset **valid);
void sn_dataset_free(sn_dataset *ds);

/* Items per epoch: clean files (mixing) or pairs (paired). */
int64_t sn_dataset_len(const sn_dataset *ds);
/* Samples per item (segment_seconds * sample_rate). */
int64_t sn_dataset_samples(const sn_dataset *ds);
int sn_dataset_sample_rate(const sn_dataset *ds);
/* 1 for a validation set: the epoch is ignored, items never change. */
int sn_dataset_is_fixed(const sn_dataset *ds);

/* Builds item `index` (0 <= index < len) of `epoch` into noisy[n] and clean[n],
 * n = sn_dataset_samples(). Thread-safe. */
sn_status sn_dataset_get(sn_dataset *ds, uint64_t epoch, int64_t index, float *noisy, float *clean);

/* ---- loader ---------------------------------------------------------------- */

/* Buffer allocator (e.g. pinned host memory for a GPU trainer). */
typedef void *(*sn_alloc_fn)(size_t bytes, void *user);
typedef void (*sn_free_fn)(void *ptr, void *user);

typedef struct sn_loader_config {
    int batch_size;    /* 4 */
    int num_workers;   /* 0 = build batches in the caller's thread */
    int prefetch;      /* buffers in the queue; 0 = 2*num_workers + 1 */
    int drop_last;     /* 1: steps = len / B; 0: ceil, last batch padded by wrapping */
    /* Data parallel: this process's shard of each epoch. Step k of shard r of S holds
     * the items of global batch k at [r*B, (r+1)*B): the S shards of a step together
     * are exactly the batch of S*B one process would train on, disjoint, the same for
     * any thread count. shard_count 0 or 1: no sharding. */
    int shard_rank, shard_count;
    sn_alloc_fn alloc; /* NULL = malloc */
    sn_free_fn free;
    void *alloc_user;
} sn_loader_config;
void sn_loader_config_default(sn_loader_config *c);

typedef struct sn_batch {
    int batch;              /* B */
    int frames;             /* T = 1 + (N - 320) / 160 */
    int bins;               /* 161 */
    int64_t samples;        /* N */
    int n_valid;            /* real items; the rest repeat earlier items (drop_last 0) */
    uint64_t epoch;
    int64_t step;
    float *noisy_mag;       /* [B,1,T,161] */
    float *clean_mag;       /* [B,1,T,161] */
    float *noisy_phase;     /* [B,T,161] radians, for resynthesis */
    float *noisy;           /* [B,N] */
    float *clean;           /* [B,N] */
} sn_batch;

typedef struct sn_loader_stats {
    int64_t batches;        /* batches handed out */
    double wait_total_s;    /* time the caller spent blocked in sn_loader_next */
    double wait_last_s;
    double wait_mean_s;     /* per batch */
    double wait_max_s;
    double build_total_s;   /* summed batch build time over all threads */
} sn_loader_stats;

typedef struct sn_loader sn_loader;

/* The dataset must outlive the loader. Threads start at the first epoch. */
sn_status sn_loader_new(sn_dataset *ds, const sn_loader_config *cfg, sn_loader **out);
int64_t sn_loader_steps(const sn_loader *l);
/* Starts (or restarts) an epoch; batches of a previous epoch still being
 * built are dropped. Batches already handed out stay valid until released. */
sn_status sn_loader_start_epoch(sn_loader *l, uint64_t epoch);
/* Next batch in step order; *out = NULL at the end of the epoch. Give each
 * batch back with sn_loader_release before it is reused. */
sn_status sn_loader_next(sn_loader *l, sn_batch **out);
void sn_loader_release(sn_loader *l, sn_batch *b);
/* Builds batch `step` of `epoch` into b synchronously (for tests / eval). */
sn_status sn_loader_build(sn_loader *l, uint64_t epoch, int64_t step, sn_batch *b);
void sn_loader_get_stats(const sn_loader *l, sn_loader_stats *st);
/* Stops and joins the threads (mid-epoch is fine) and frees every buffer. */
void sn_loader_free(sn_loader *l);

/* ---- demo corpus ------------------------------------------------------------ */

typedef struct sn_demo_options {
    int force_synth;     /* 1: pure-C speech even when espeak-ng is installed */
    int jobs;            /* parallel espeak-ng processes (0 = 3) */
    int verbose;         /* print progress to stdout */
    const char *espeak;  /* program name/path (NULL = "espeak-ng") */
} sn_demo_options;

/* Writes DIR/clean, DIR/noise, DIR/valid/clean (16 kHz mono WAV) with about
 * `minutes` of training speech. Same seed -> identical files. opt may be NULL.
 * *used_espeak (may be NULL) says which speech source was used. */
sn_status sn_demo_corpus(const char *dir, double minutes, uint64_t seed,
                         const sn_demo_options *opt, int *used_espeak);


#ifdef __cplusplus
}
#endif
#endif
