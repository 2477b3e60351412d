/* Batch loader: worker threads build batches (mix, STFT, magnitudes, noisy
 * phase) into a fixed pool of preallocated buffers, ahead of the trainer.
 * Steps are handed to workers in order and delivered in order; a batch's
 * content depends only on (seed, epoch, step), never on the thread count. */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "sinter/audio.h"

enum { SLOT_FREE, SLOT_BUILDING, SLOT_READY, SLOT_OUT };

typedef struct slot {
    sn_batch b;
    void *mem;
    int state;
    uint64_t gen;
    sn_status st;
    char msg[512];
} slot;

struct sn_loader {
    sn_dataset *ds;
    sn_loader_config cfg;
    sn_stft *stft;
    int B, T;
    int shard, shards; /* data parallel: this process's shard of each global batch */
    int64_t N, steps;
    slot *slots;
    int nslots;
    pthread_t *th;
    int nth;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    uint64_t epoch, gen;
    int started, stop;
    int64_t next_assign, next_deliver;
    sn_loader_stats stats;
};

void sn_loader_config_default(sn_loader_config *c) {
    memset(c, 0, sizeof *c);
    c->batch_size = 4;
    c->num_workers = 2;
    c->drop_last = 1;
}

static void *default_alloc(size_t n, void *u) { (void)u; return malloc(n); }
static void default_free(void *p, void *u) { (void)u; free(p); }

int64_t sn_loader_steps(const sn_loader *l) { return l ? l->steps : 0; }

static sn_status build(sn_loader *l, uint64_t epoch, int64_t step, sn_batch *b) {
    const int64_t len = sn_dataset_len(l->ds), N = l->N;
    b->batch = l->B;
    b->frames = l->T;
    b->bins = SN_NBINS;
    b->samples = N;
    b->epoch = epoch;
    b->step = step;
    b->n_valid = 0;
    for (int j = 0; j < l->B; j++) {
        int64_t idx = (step * l->shards + l->shard) * l->B + j;
        if (idx < len) b->n_valid++;
        else idx %= len; /* pad the last batch with items from the start */
        sn_status st = sn_dataset_get(l->ds, epoch, idx, b->noisy + j * N, b->clean + j * N);
        if (st != SN_OK) return sn_error_prefix(st, "batch %lld of epoch %llu", (long long)step, (unsigned long long)epoch);
    }
    sn_status st = sn_stft_mag_phase_batch(l->stft, b->noisy, l->B, N, b->noisy_mag, b->noisy_phase);
    if (st == SN_OK) st = sn_stft_mag_phase_batch(l->stft, b->clean, l->B, N, b->clean_mag, NULL);
    return st;
}

sn_status sn_loader_build(sn_loader *l, uint64_t epoch, int64_t step, sn_batch *b) {
    if (!l || !b || !b->noisy || !b->clean || !b->noisy_mag || !b->clean_mag || !b->noisy_phase)
        return sn_error(SN_ERR_INVALID_ARG, "sn_loader_build: null argument or batch buffer");
    if (step < 0 || step >= l->steps)
        return sn_error(SN_ERR_INVALID_ARG, "sn_loader_build: step %lld outside 0..%lld", (long long)step, (long long)l->steps - 1);
    return build(l, epoch, step, b);
}

static void *worker(void *arg) {
    sn_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        slot *s = NULL;
        if (l->started && l->next_assign < l->steps)
            for (int i = 0; i < l->nslots; i++)
                if (l->slots[i].state == SLOT_FREE) { s = &l->slots[i]; break; }
        if (!s) {
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        int64_t step = l->next_assign++;
        uint64_t gen = l->gen, epoch = l->epoch;
        s->state = SLOT_BUILDING;
        s->gen = gen;
        pthread_mutex_unlock(&l->mu);

        double t0 = sn_data_now();
        sn_status st = build(l, epoch, step, &s->b);
        double dt = sn_data_now() - t0;

        pthread_mutex_lock(&l->mu);
        l->stats.build_total_s += dt;
        s->st = st;
        if (st != SN_OK) snprintf(s->msg, sizeof s->msg, "%s", sn_last_error());
        if (s->gen != l->gen) {
            s->state = SLOT_FREE; /* an abandoned epoch */
            pthread_cond_signal(&l->cv_work);
        } else {
            s->state = SLOT_READY;
            pthread_cond_broadcast(&l->cv_ready);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void sn_loader_free(sn_loader *l) {
    if (!l) return;
    if (l->th) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < l->nth; i++) pthread_join(l->th[i], NULL);
        free(l->th);
    }
    if (l->slots)
        for (int i = 0; i < l->nslots; i++)
            if (l->slots[i].mem) l->cfg.free(l->slots[i].mem, l->cfg.alloc_user);
    free(l->slots);
    sn_stft_free(l->stft);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    free(l);
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

sn_status sn_loader_new(sn_dataset *ds, const sn_loader_config *cfg, sn_loader **out) {
    if (!ds || !cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_new: null argument");
    *out = NULL;
    if (cfg->batch_size < 1 || cfg->batch_size > 65536)
        return sn_error(SN_ERR_CONFIG, "train.batch_size %d must be at least 1", cfg->batch_size);
    if (cfg->num_workers < 0 || cfg->num_workers > 256)
        return sn_error(SN_ERR_CONFIG, "train.num_workers %d must be in 0..256 (0 = load in the training thread)", cfg->num_workers);
    if (cfg->prefetch < 0) return sn_error(SN_ERR_CONFIG, "loader prefetch %d must be >= 0", cfg->prefetch);
    int shards = cfg->shard_count > 1 ? cfg->shard_count : 1;
    if (cfg->shard_rank < 0 || cfg->shard_rank >= shards)
        return sn_error(SN_ERR_INVALID_ARG, "sn_loader_new: shard %d outside 0..%d", cfg->shard_rank, shards - 1);
    if (!!cfg->alloc != !!cfg->free)
        return sn_error(SN_ERR_INVALID_ARG, "sn_loader_new: set both the alloc and the free callback, or neither");
    int64_t len = sn_dataset_len(ds);
    if (len <= 0) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_new: the dataset is empty");
    sn_loader *l = calloc(1, sizeof *l);
    if (!l) return sn_error(SN_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    l->ds = ds;
    l->cfg = *cfg;
    if (!l->cfg.alloc) {
        l->cfg.alloc = default_alloc;
        l->cfg.free = default_free;
    }
    l->B = cfg->batch_size;
    l->shard = cfg->shard_rank;
    l->shards = shards;
    l->N = sn_dataset_samples(ds);
    l->T = (int)sn_stft_frames(l->N);
    int64_t gb = (int64_t)l->B * shards; /* the global batch */
    l->steps = cfg->drop_last ? len / gb : (len + gb - 1) / gb;
    if (l->steps == 0) {
        sn_loader_free(l);
        if (shards > 1)
            return sn_error(SN_ERR_CONFIG, "the dataset has %lld items, fewer than the global batch %lld (train.batch_size "
                            "%d x %d processes): not one full batch; lower the batch size or add files",
                            (long long)len, (long long)gb, cfg->batch_size, shards);
        return sn_error(SN_ERR_CONFIG, "the dataset has %lld items, fewer than train.batch_size %d: not one full batch; lower the batch size or add files",
                        (long long)len, cfg->batch_size);
    }
    sn_status st = sn_stft_new(&l->stft);
    if (st != SN_OK) { sn_loader_free(l); return st; }

    l->nslots = cfg->prefetch > 0 ? cfg->prefetch : 2 * cfg->num_workers + 1;
    if (l->nslots < 2) l->nslots = 2;
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    if (!l->slots) { sn_loader_free(l); return sn_error(SN_ERR_NOMEM, "out of memory"); }
    /* one block per batch: pinned allocations are expensive, so few and big */
    size_t spec = (size_t)l->B * (size_t)l->T * SN_NBINS * sizeof(float);
    size_t wav = (size_t)l->B * (size_t)l->N * sizeof(float);
    size_t total = 3 * align64(spec) + 2 * align64(wav);
    for (int i = 0; i < l->nslots; i++) {
        char *m = l->cfg.alloc(total, l->cfg.alloc_user);
        if (!m) {
            sn_loader_free(l);
            return sn_error(SN_ERR_NOMEM, "cannot allocate batch buffer %d of %d (%.1f MB each); lower train.batch_size or data.segment_seconds",
                            i + 1, l->nslots, total / 1048576.0);
        }
        slot *s = &l->slots[i];
        s->mem = m;
        s->b.noisy_mag = (float *)m;
        s->b.clean_mag = (float *)(m + align64(spec));
        s->b.noisy_phase = (float *)(m + 2 * align64(spec));
        s->b.noisy = (float *)(m + 3 * align64(spec));
        s->b.clean = (float *)(m + 3 * align64(spec) + align64(wav));
    }
    if (cfg->num_workers > 0) {
        l->th = calloc((size_t)cfg->num_workers, sizeof *l->th);
        if (!l->th) { sn_loader_free(l); return sn_error(SN_ERR_NOMEM, "out of memory"); }
        for (int i = 0; i < cfg->num_workers; i++) {
            if (pthread_create(&l->th[i], NULL, worker, l) != 0) {
                sn_loader_free(l);
                return sn_error(SN_ERR_INTERNAL, "cannot start loader thread %d of %d", i + 1, cfg->num_workers);
            }
            l->nth++;
        }
    }
    *out = l;
    return SN_OK;
}

sn_status sn_loader_start_epoch(sn_loader *l, uint64_t epoch) {
    if (!l) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_start_epoch: null loader");
    pthread_mutex_lock(&l->mu);
    l->gen++;
    l->epoch = epoch;
    l->next_assign = 0;
    l->next_deliver = 0;
    l->started = 1;
    for (int i = 0; i < l->nslots; i++)
        if (l->slots[i].state == SLOT_READY) l->slots[i].state = SLOT_FREE;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return SN_OK;
}

static void account_wait(sn_loader *l, double w) {
    l->stats.batches++;
    l->stats.wait_total_s += w;
    l->stats.wait_last_s = w;
    if (w > l->stats.wait_max_s) l->stats.wait_max_s = w;
    l->stats.wait_mean_s = l->stats.wait_total_s / (double)l->stats.batches;
}

sn_status sn_loader_next(sn_loader *l, sn_batch **out) {
    if (!l || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_next: null argument");
    *out = NULL;
    double t0 = sn_data_now();
    pthread_mutex_lock(&l->mu);
    if (!l->started) {
        pthread_mutex_unlock(&l->mu);
        sn_loader_start_epoch(l, 0);
        pthread_mutex_lock(&l->mu);
    }
    if (l->next_deliver >= l->steps) {
        pthread_mutex_unlock(&l->mu);
        return SN_OK; /* end of epoch */
    }
    if (l->nth == 0) {
        slot *s = NULL;
        for (int i = 0; i < l->nslots && !s; i++)
            if (l->slots[i].state == SLOT_FREE) s = &l->slots[i];
        if (!s) {
            pthread_mutex_unlock(&l->mu);
            return sn_error(SN_ERR_INVALID_ARG, "sn_loader_next: all %d batch buffers are held by the caller; sn_loader_release a batch first", l->nslots);
        }
        int64_t step = l->next_deliver;
        s->state = SLOT_BUILDING;
        pthread_mutex_unlock(&l->mu);
        sn_status st = build(l, l->epoch, step, &s->b);
        pthread_mutex_lock(&l->mu);
        double dt = sn_data_now() - t0;
        l->stats.build_total_s += dt;
        if (st != SN_OK) {
            s->state = SLOT_FREE;
            pthread_mutex_unlock(&l->mu);
            return st;
        }
        s->state = SLOT_OUT;
        l->next_deliver++;
        account_wait(l, dt);
        pthread_mutex_unlock(&l->mu);
        *out = &s->b;
        return SN_OK;
    }
    for (;;) {
        slot *s = NULL;
        int held = 0;
        for (int i = 0; i < l->nslots; i++) {
            slot *c = &l->slots[i];
            if (c->state == SLOT_OUT) held++;
            if (c->state == SLOT_READY && c->gen == l->gen && c->b.step == l->next_deliver) s = c;
        }
        if (s) {
            l->next_deliver++;
            if (s->st != SN_OK) {
                sn_status st = s->st;
                sn_error(st, "%s", s->msg);
                s->state = SLOT_FREE;
                pthread_cond_signal(&l->cv_work);
                pthread_mutex_unlock(&l->mu);
                return st;
            }
            s->state = SLOT_OUT;
            account_wait(l, sn_data_now() - t0);
            pthread_mutex_unlock(&l->mu);
            *out = &s->b;
            return SN_OK;
        }
        if (held == l->nslots) {
            pthread_mutex_unlock(&l->mu);
            return sn_error(SN_ERR_INVALID_ARG, "sn_loader_next: all %d batch buffers are held by the caller; sn_loader_release a batch first", l->nslots);
        }
        pthread_cond_wait(&l->cv_ready, &l->mu);
    }
}

void sn_loader_release(sn_loader *l, sn_batch *b) {
    if (!l || !b) return;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->nslots; i++)
        if (&l->slots[i].b == b && l->slots[i].state == SLOT_OUT) {
            l->slots[i].state = SLOT_FREE;
            pthread_cond_signal(&l->cv_work);
        }
    pthread_mutex_unlock(&l->mu);
}

void sn_loader_get_stats(const sn_loader *l, sn_loader_stats *st) {
    if (!l || !st) return;
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    *st = l->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
}
