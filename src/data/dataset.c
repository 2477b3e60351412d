/* Datasets: clean+noise mixed on the fly, paired noisy/clean files, list files,
 * and a fixed validation set. Every random choice comes from the counter RNG
 * keyed by (seed, epoch, index, stream), so an item never depends on which
 * thread builds it or in what order. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data_internal.h"
#include "sinter/audio.h"

double sn_data_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sn_data_config_default(sn_data_config *c) {
    memset(c, 0, sizeof *c);
    c->sample_rate = 16000;
    c->segment_seconds = 4.0;
    c->snr_db[0] = -5.0;
    c->snr_db[1] = 20.0;
    c->gain_db[0] = -10.0;
    c->gain_db[1] = 6.0;
    c->cache_mb = 1024.0;
    c->seed = 0;
    c->valid_seed = 0x5eed5eedull;
}

/* ---- decoded files, shared by the training and validation sets ----------- */

typedef struct sn_file {
    char *path;
    int rate;          /* native rate */
    int64_t len;       /* frames at the model rate */
    float *data;       /* decoded at the model rate, or NULL: streamed */
    double level_db;   /* active speech level of the whole file (-100 silent) */
    double power;      /* mean square of the whole file */
    int cache;         /* decided from the header before decoding */
} sn_file;

typedef struct sn_store {
    sn_file *f;
    int64_t n;
    int refs;
    int rate;
} sn_store;

static void store_unref(sn_store *s) {
    if (!s || --s->refs > 0) return;
    for (int64_t i = 0; i < s->n; i++) {
        free(s->f[i].path);
        free(s->f[i].data);
    }
    free(s->f);
    free(s);
}

/* Adds a path (deduplicated by linear search on a sorted index would be nicer;
 * a hash-free dedup via the caller's sorted order is enough here). */
static int64_t store_add(sn_store *s, const char *path, int64_t *cap) {
    if (s->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 64;
        sn_file *t = realloc(s->f, (size_t)nc * sizeof *t);
        if (!t) return -1;
        s->f = t;
        *cap = nc;
    }
    memset(&s->f[s->n], 0, sizeof s->f[0]);
    if (!(s->f[s->n].path = strdup(path))) return -1;
    return s->n++;
}

/* Parallel decode of every file at open: levels, silence check, cache fill. */
typedef struct decode_job {
    sn_store *s;
    int64_t next;
    pthread_mutex_t mu;
    int64_t err_index;   /* lowest failing file, so the error is reproducible */
    sn_status err;
    char msg[1024];
} decode_job;

static void *decode_worker(void *arg) {
    decode_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int64_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->s->n) break;
        sn_file *f = &j->s->f[i];
        sn_audio a;
        sn_status st = sn_audio_read(f->path, j->s->rate, 1, &a);
        if (st == SN_OK && a.frames <= 0) {
            sn_audio_free(&a);
            st = sn_error(SN_ERR_FORMAT, "audio file '%s' has no samples", f->path);
        }
        if (st != SN_OK) {
            pthread_mutex_lock(&j->mu);
            if (j->err == SN_OK || i < j->err_index) {
                j->err = st;
                j->err_index = i;
                snprintf(j->msg, sizeof j->msg, "%s", sn_last_error());
            }
            pthread_mutex_unlock(&j->mu);
            continue;
        }
        f->len = a.frames;
        double ss = 0;
        for (int64_t k = 0; k < a.frames; k++) ss += (double)a.data[k] * a.data[k];
        f->power = ss / (double)a.frames;
        f->level_db = f->power > 0 ? sn_active_level(a.data, a.frames, j->s->rate) : -100.0;
        if (f->cache) f->data = a.data;
        else sn_audio_free(&a);
    }
    return NULL;
}

static sn_status store_load(sn_store *s, double cache_mb) {
    /* the cache decision is made from headers in file order, so it is the same
     * on every run and does not depend on decode timing */
    double budget = cache_mb * 1048576.0, used = 0;
    for (int64_t i = 0; i < s->n; i++) {
        sn_file *f = &s->f[i];
        int64_t frames = 0;
        int ch = 0;
        sn_status st = sn_audio_info(f->path, &f->rate, &frames, &ch, NULL);
        if (st != SN_OK) return st;
        if (frames <= 0 || f->rate <= 0 || ch <= 0)
            return sn_error(SN_ERR_FORMAT, "audio file '%s' has no samples (frames %lld, rate %d, channels %d); remove it from the dataset",
                            f->path, (long long)frames, f->rate, ch);
        double bytes = (double)frames * s->rate / f->rate * sizeof(float);
        if (used + bytes <= budget) {
            f->cache = 1;
            used += bytes;
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu > 0 ? (int)(ncpu < 8 ? ncpu : 8) : 1;
    if (nt > s->n) nt = (int)s->n;
    decode_job j = {.s = s, .next = 0, .err = SN_OK, .err_index = -1};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[8];
    int started = 0;
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[started], NULL, decode_worker, &j) == 0) started++;
    decode_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.err != SN_OK) return sn_error(j.err, "%s", j.msg);
    return SN_OK;
}

/* Reads [off, off+n) at the model rate; past the end is zero. */
static sn_status file_read(const sn_store *s, const sn_file *f, int64_t off, int64_t n, float *dst) {
    if (off < 0) off = 0;
    int64_t avail = off < f->len ? f->len - off : 0;
    int64_t take = avail < n ? avail : n;
    if (f->data) {
        memcpy(dst, f->data + off, (size_t)take * sizeof *dst);
        memset(dst + take, 0, (size_t)(n - take) * sizeof *dst);
        return SN_OK;
    }
    memset(dst, 0, (size_t)n * sizeof *dst);
    if (take <= 0) return SN_OK;
    sn_audio_reader *r = NULL;
    int rate = 0;
    int64_t frames = 0;
    sn_status st = sn_audio_reader_open(f->path, &r, &rate, &frames);
    if (st != SN_OK) return st;
    /* streamed: read the matching native span (with a margin for the
     * resampler's edges) and resample only that */
    int64_t noff = (int64_t)((double)off * rate / s->rate);
    int64_t nlen = rate == s->rate ? take : (int64_t)ceil((double)take * rate / s->rate) + 64;
    float *buf = malloc((size_t)nlen * sizeof *buf);
    if (!buf) { sn_audio_reader_close(r); return sn_error(SN_ERR_NOMEM, "out of memory reading '%s'", f->path); }
    int64_t got = 0;
    st = sn_audio_reader_seek(r, noff);
    while (st == SN_OK && got < nlen) {
        int64_t g = 0;
        st = sn_audio_reader_read(r, buf + got, nlen - got, &g);
        if (g <= 0) break;
        got += g;
    }
    sn_audio_reader_close(r);
    if (st != SN_OK) { free(buf); return sn_error_prefix(st, "while streaming '%s'", f->path); }
    if (rate == s->rate) {
        memcpy(dst, buf, (size_t)(got < take ? got : take) * sizeof *dst);
    } else if (got > 0) {
        float *rs = NULL;
        int64_t nrs = 0;
        st = sn_resample(buf, got, rate, s->rate, &rs, &nrs);
        if (st == SN_OK) {
            memcpy(dst, rs, (size_t)(nrs < take ? nrs : take) * sizeof *dst);
            free(rs);
        }
    }
    free(buf);
    return st;
}

/* Reads n samples starting at off, looping the file (noise). */
static sn_status file_read_loop(const sn_store *s, const sn_file *f, int64_t off, int64_t n, float *dst) {
    off = f->len > 0 ? off % f->len : 0;
    while (n > 0) {
        int64_t take = f->len - off < n ? f->len - off : n;
        sn_status st = file_read(s, f, off, take, dst);
        if (st != SN_OK) return st;
        dst += take;
        n -= take;
        off = 0;
    }
    return SN_OK;
}

/* ---- datasets ------------------------------------------------------------ */

enum { MODE_MIX = 1, MODE_PAIRED = 2 };

typedef struct sn_item { int64_t a, b; } sn_item; /* clean, noise/noisy (-1: random noise) */

struct sn_dataset {
    sn_store *store;
    int mode;
    int fixed;
    sn_item *items;
    int64_t n;
    int64_t *noise;   /* noise pool (store indices) */
    int64_t nnoise;
    int64_t samples;
    double snr[2], gain[2];
    uint64_t seed;
};

int64_t sn_dataset_len(const sn_dataset *ds) { return ds ? ds->n : 0; }
int64_t sn_dataset_samples(const sn_dataset *ds) { return ds ? ds->samples : 0; }
int sn_dataset_sample_rate(const sn_dataset *ds) { return ds ? ds->store->rate : 0; }
int sn_dataset_is_fixed(const sn_dataset *ds) { return ds ? ds->fixed : 0; }

void sn_dataset_free(sn_dataset *ds) {
    if (!ds) return;
    store_unref(ds->store);
    free(ds->items);
    free(ds->noise);
    free(ds);
}

/* Keyed bijection on [0,n): a 4-round Feistel network with cycle walking, so a
 * shuffled epoch order needs no state shared between threads. */
static int64_t permute(int64_t i, int64_t n, uint64_t key) {
    if (n <= 1) return 0;
    int bits = 2;
    while (((int64_t)1 << bits) < n) bits++;
    if (bits & 1) bits++;
    int h = bits / 2;
    uint64_t mask = ((uint64_t)1 << h) - 1;
    uint64_t x = (uint64_t)i;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (int round = 0; round < 4; round++) {
            uint64_t f = sn_hash64(key ^ ((uint64_t)round << 56) ^ r) & mask;
            uint64_t t = r;
            r = l ^ f;
            l = t;
        }
        x = (l << h) | r;
    } while ((int64_t)x >= n);
    return (int64_t)x;
}

static double db_to_pow(double db) { return pow(10.0, db / 10.0); }

sn_status sn_dataset_get(sn_dataset *ds, uint64_t epoch, int64_t index, float *noisy, float *clean) {
    if (!ds || !noisy || !clean) return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_get: null argument");
    if (index < 0 || index >= ds->n)
        return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_get: index %lld outside 0..%lld", (long long)index, (long long)ds->n - 1);
    if (ds->fixed) epoch = 0;
    const sn_store *s = ds->store;
    const int64_t N = ds->samples;
    uint64_t key = sn_rng_key(ds->seed, epoch, (uint64_t)index, 0);
    int64_t slot = ds->fixed ? index : permute(index, ds->n, sn_rng_key(ds->seed, epoch, 0, 1));
    const sn_item *it = &ds->items[slot];
    const sn_file *cf = &s->f[it->a];
    sn_status st;

    /* the clean segment (and for pairs, the same span of the noisy file) */
    int64_t len = cf->len;
    if (ds->mode == MODE_PAIRED && s->f[it->b].len < len) len = s->f[it->b].len;
    int64_t off = len > N ? (int64_t)(sn_rng_uniform(key, 0) * (double)(len - N + 1)) : 0;
    if (off > len - N && len > N) off = len - N;
    int64_t take = len < N ? len : N;
    if ((st = file_read(s, cf, off, take, clean)) != SN_OK) return st;
    memset(clean + take, 0, (size_t)(N - take) * sizeof *clean);

    if (ds->mode == MODE_PAIRED) {
        if ((st = file_read(s, &s->f[it->b], off, take, noisy)) != SN_OK) return st;
        memset(noisy + take, 0, (size_t)(N - take) * sizeof *noisy);
    } else {
        int64_t ni = it->b >= 0 ? it->b
                                : ds->noise[(int64_t)(sn_rng_uniform(key, 1) * (double)ds->nnoise) % ds->nnoise];
        const sn_file *nf = &s->f[ni];
        int64_t noff = (int64_t)(sn_rng_uniform(key, 2) * (double)nf->len);
        if ((st = file_read_loop(s, nf, noff, N, noisy)) != SN_OK) return st;
        double snr = ds->snr[0] + (ds->snr[1] - ds->snr[0]) * sn_rng_uniform(key, 3);
        /* speech level from the active parts only (P.56); a segment that falls
         * in a pause borrows the whole file's level */
        double lev = sn_active_level(clean, N, s->rate);
        if (lev <= -99.0) lev = cf->level_db;
        double pn = 0;
        for (int64_t i = 0; i < N; i++) pn += (double)noisy[i] * noisy[i];
        pn /= (double)N;
        double k = pn > 1e-20 ? sqrt(db_to_pow(lev) / (pn * db_to_pow(snr))) : 0.0;
        for (int64_t i = 0; i < N; i++) noisy[i] = (float)((double)clean[i] + k * (double)noisy[i]);
    }

    double g = pow(10.0, (ds->gain[0] + (ds->gain[1] - ds->gain[0]) * sn_rng_uniform(key, 4)) / 20.0);
    float peak = 0;
    for (int64_t i = 0; i < N; i++) {
        float a = fabsf(noisy[i]), b = fabsf(clean[i]);
        if (a > peak) peak = a;
        if (b > peak) peak = b;
    }
    if (peak * g > 0.99) g = 0.99 / peak; /* scale down instead of clipping */
    float gf = (float)g;
    for (int64_t i = 0; i < N; i++) {
        noisy[i] *= gf;
        clean[i] *= gf;
    }
    return SN_OK;
}

/* ---- opening -------------------------------------------------------------- */

typedef struct builder {
    sn_store *s;
    int64_t cap;
} builder;

static sn_status add_paths(builder *b, const sn_pathlist *pl, int64_t **idx) {
    *idx = malloc((size_t)(pl->n ? pl->n : 1) * sizeof **idx);
    if (!*idx) return sn_error(SN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < pl->n; i++) {
        int64_t k = store_add(b->s, pl->v[i], &b->cap);
        if (k < 0) return sn_error(SN_ERR_NOMEM, "out of memory");
        (*idx)[i] = k;
    }
    return SN_OK;
}

/* The pairing key: path below the root, without the extension. */
static const char *pair_key(const char *path, size_t root_len, size_t *klen) {
    const char *k = path + root_len;
    while (*k == '/') k++;
    const char *dot = strrchr(k, '.');
    *klen = dot ? (size_t)(dot - k) : strlen(k);
    return k;
}

static int keycmp(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na < nb ? -1 : na > nb);
}

static _Thread_local int cmp_key_root_len; /* qsort has no context argument */
static int cmp_by_key(const void *x, const void *y) {
    size_t na, nb;
    const char *a = pair_key(*(char *const *)x, (size_t)cmp_key_root_len, &na);
    const char *b = pair_key(*(char *const *)y, (size_t)cmp_key_root_len, &nb);
    return keycmp(a, na, b, nb);
}

/* Matches clean and noisy files by relative path (extension ignored); the
 * error lists the names found on one side only. */
static sn_status match_pairs(const char *clean_dir, const char *noisy_dir, sn_pathlist *c, sn_pathlist *n,
                             int64_t **ci, int64_t **ni, int64_t *np) {
    size_t rc = strlen(clean_dir), rn = strlen(noisy_dir);
    /* both lists are sorted by full path; sort by key to be sure extensions
     * do not reorder names */
    cmp_key_root_len = (int)rc;
    qsort(c->v, (size_t)c->n, sizeof *c->v, cmp_by_key);
    cmp_key_root_len = (int)rn;
    qsort(n->v, (size_t)n->n, sizeof *n->v, cmp_by_key);
    *ci = malloc((size_t)(c->n + 1) * sizeof **ci);
    *ni = malloc((size_t)(c->n + 1) * sizeof **ni);
    if (!*ci || !*ni) return sn_error(SN_ERR_NOMEM, "out of memory");
    char only_c[1024] = "", only_n[1024] = "";
    int64_t nc = 0, nn = 0, m = 0;
    int64_t i = 0, j = 0;
    while (i < c->n || j < n->n) {
        size_t la = 0, lb = 0;
        const char *a = i < c->n ? pair_key(c->v[i], rc, &la) : NULL;
        const char *b = j < n->n ? pair_key(n->v[j], rn, &lb) : NULL;
        int cmp = !a ? 1 : !b ? -1 : keycmp(a, la, b, lb);
        if (cmp == 0) {
            (*ci)[m] = i++;
            (*ni)[m] = j++;
            m++;
        } else if (cmp < 0) {
            if (nc++ < 8) snprintf(only_c + strlen(only_c), sizeof only_c - strlen(only_c), "%s'%.*s'", nc > 1 ? ", " : "", (int)la, a);
            i++;
        } else {
            if (nn++ < 8) snprintf(only_n + strlen(only_n), sizeof only_n - strlen(only_n), "%s'%.*s'", nn > 1 ? ", " : "", (int)lb, b);
            j++;
        }
    }
    *np = m;
    if (nc || nn) {
        char more_c[64] = "", more_n[64] = "";
        if (nc > 8) snprintf(more_c, sizeof more_c, " and %lld more", (long long)(nc - 8));
        if (nn > 8) snprintf(more_n, sizeof more_n, " and %lld more", (long long)(nn - 8));
        return sn_error(SN_ERR_IO,
                        "unmatched pairs between data.clean_dir '%s' and data.noisy_dir '%s' (files are paired by name, extension ignored): "
                        "%lld only in clean: %s%s%s; %lld only in noisy: %s%s%s; rename or remove them",
                        clean_dir, noisy_dir, (long long)nc, nc ? only_c : "-", more_c, "", (long long)nn, nn ? only_n : "-", more_n, "");
    }
    return SN_OK;
}

static sn_dataset *ds_new(const sn_data_config *cfg, sn_store *s, int mode, int fixed) {
    sn_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->store = s;
    s->refs++;
    d->mode = mode;
    d->fixed = fixed;
    d->samples = (int64_t)llround(cfg->segment_seconds * cfg->sample_rate);
    d->snr[0] = cfg->snr_db[0];
    d->snr[1] = cfg->snr_db[1];
    d->gain[0] = cfg->gain_db[0];
    d->gain[1] = cfg->gain_db[1];
    d->seed = fixed ? cfg->valid_seed : cfg->seed;
    return d;
}

/* Appends usable items, skipping silent clean files with a warning. */
static sn_status ds_add_items(sn_dataset *d, const int64_t *a, const int64_t *b, int64_t n) {
    sn_item *t = realloc(d->items, (size_t)(d->n + n + 1) * sizeof *t);
    if (!t) return sn_error(SN_ERR_NOMEM, "out of memory");
    d->items = t;
    for (int64_t i = 0; i < n; i++) {
        const sn_file *cf = &d->store->f[a[i]];
        if (cf->level_db <= -99.0) {
            sn_log(SN_LOG_WARN, "skipping silent clean file '%s' (no active speech; the SNR would be undefined)", cf->path);
            continue;
        }
        if (b && b[i] >= 0 && d->mode == MODE_MIX && d->store->f[b[i]].power <= 0) {
            sn_log(SN_LOG_WARN, "skipping row with silent noise file '%s'", d->store->f[b[i]].path);
            continue;
        }
        d->items[d->n].a = a[i];
        d->items[d->n].b = b ? b[i] : -1;
        d->n++;
    }
    return SN_OK;
}

static sn_status ds_set_noise(sn_dataset *d, const int64_t *idx, int64_t n, const char *dir) {
    d->noise = malloc((size_t)(n + 1) * sizeof *d->noise);
    if (!d->noise) return sn_error(SN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (d->store->f[idx[i]].power <= 0) {
            sn_log(SN_LOG_WARN, "skipping silent noise file '%s'", d->store->f[idx[i]].path);
            continue;
        }
        d->noise[d->nnoise++] = idx[i];
    }
    if (d->nnoise == 0)
        return sn_error(SN_ERR_IO, "every noise file in data.noise_dir '%s' is silent; add noise recordings", dir);
    return SN_OK;
}

/* Splits n indices into train / held-out by a seeded hash rank (stable for a
 * given valid_seed, independent of the training seed). */
static int64_t holdout(const int64_t *idx, int64_t n, double frac, uint64_t seed, int64_t *tr, int64_t *va, int64_t *ntr) {
    int64_t k = (int64_t)llround(frac * (double)n);
    if (frac > 0 && k < 1) k = 1;
    if (k > n - 1) k = n - 1;
    if (k < 0) k = 0;
    /* rank = number of elements with a smaller hash: O(n^2) is too slow for big
     * sets, so sort pairs instead */
    typedef struct { uint64_t h; int64_t i; } hp;
    hp *v = malloc((size_t)(n + 1) * sizeof *v);
    if (!v) return -1;
    for (int64_t i = 0; i < n; i++) v[i] = (hp){sn_hash64(seed ^ sn_hash64((uint64_t)i)), i};
    /* insertion-free: simple shell sort on h */
    for (int64_t gap = n / 2; gap > 0; gap /= 2)
        for (int64_t i = gap; i < n; i++)
            for (int64_t j = i; j >= gap && v[j - gap].h > v[j].h; j -= gap) {
                hp t = v[j]; v[j] = v[j - gap]; v[j - gap] = t;
            }
    char *isva = calloc((size_t)n + 1, 1);
    if (!isva) { free(v); return -1; }
    for (int64_t i = 0; i < k; i++) isva[v[i].i] = 1;
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isva[i]) va[b++] = idx[i];
        else tr[a++] = idx[i];
    }
    free(isva);
    free(v);
    *ntr = a;
    return b;
}

#include <sys/stat.h>
/* qsort has no context argument; the list is sorted on the opening thread */
static _Thread_local const char **g_sort_paths;
static int cmp_ref(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    int c = strcmp(g_sort_paths[a], g_sort_paths[b]);
    return c ? c : (a > b) - (a < b);
}

static int dir_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

sn_status sn_dataset_open(const sn_data_config *cfg, sn_dataset **train, sn_dataset **valid) {
    if (!cfg || !train) return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_open: null argument");
    *train = NULL;
    if (valid) *valid = NULL;
    if (cfg->sample_rate < 1000 || cfg->sample_rate > 384000)
        return sn_error(SN_ERR_CONFIG, "data.sample_rate %d is out of range; use e.g. 16000", cfg->sample_rate);
    if (!(cfg->segment_seconds > 0) || cfg->segment_seconds * cfg->sample_rate < SN_NFFT)
        return sn_error(SN_ERR_CONFIG, "data.segment_seconds %g is too short; it must hold at least one STFT frame (320 samples)", cfg->segment_seconds);
    if (!(cfg->snr_db[0] <= cfg->snr_db[1]) || !isfinite(cfg->snr_db[0]) || !isfinite(cfg->snr_db[1]))
        return sn_error(SN_ERR_CONFIG, "data.snr_db [%g, %g] is not a range low <= high", cfg->snr_db[0], cfg->snr_db[1]);
    if (!(cfg->gain_db[0] <= cfg->gain_db[1]) || !isfinite(cfg->gain_db[0]) || !isfinite(cfg->gain_db[1]))
        return sn_error(SN_ERR_CONFIG, "data.gain_db [%g, %g] is not a range low <= high", cfg->gain_db[0], cfg->gain_db[1]);
    if (!(cfg->valid_fraction >= 0 && cfg->valid_fraction < 1))
        return sn_error(SN_ERR_CONFIG, "data.valid_fraction %g must be in [0, 1)", cfg->valid_fraction);
    int want_valid = valid && ((cfg->valid_dir && *cfg->valid_dir) || cfg->valid_fraction > 0);

    sn_store *s = calloc(1, sizeof *s);
    if (!s) return sn_error(SN_ERR_NOMEM, "out of memory");
    s->rate = cfg->sample_rate;
    s->refs = 1;
    builder b = {s, 0};
    sn_pathlist pc = {0}, pn = {0}, vc = {0}, vn = {0};
    sn_listfile lf = {0};
    int64_t *ic = NULL, *in = NULL, *ivc = NULL, *ivn = NULL, *pa = NULL, *pb = NULL, *tra = NULL, *trb = NULL, *vaa = NULL, *vab = NULL;
    int64_t nic = 0, nin = 0, nvc = 0, nvn = 0;
    sn_dataset *tr = NULL, *va = NULL;
    sn_status st = SN_OK;
    int mode;
    const char *noise_dir = cfg->noise_dir;

    if (cfg->list_file && *cfg->list_file) {
        if ((st = sn_listfile_load(cfg->list_file, &lf)) != SN_OK) goto done;
        mode = lf.kind == SN_LIST_NOISE ? MODE_MIX : MODE_PAIRED;
        /* every file must exist; the error names the row */
        pa = malloc((size_t)lf.n * sizeof *pa);
        pb = malloc((size_t)lf.n * sizeof *pb);
        if (!pa || !pb) { st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
        for (int64_t r = 0; r < lf.n; r++) {
            for (int c = 0; c < 2; c++) {
                const char *p = c ? lf.second[r] : lf.first[r];
                if (access(p, R_OK) != 0) {
                    st = sn_error(SN_ERR_IO, "%s, row %lld: %s file '%s' does not exist or is unreadable; fix the path (relative paths are resolved against the list file's folder)",
                                  cfg->list_file, (long long)lf.line[r], c == 0 ? "clean" : mode == MODE_MIX ? "noise" : "noisy", p);
                    goto done;
                }
            }
        }
        /* dedup (noise files are often reused): sort row references by path */
        int64_t nref = 2 * lf.n;
        const char **refp = malloc((size_t)nref * sizeof *refp);
        int64_t *refi = malloc((size_t)nref * sizeof *refi);
        if (!refp || !refi) { free(refp); free(refi); st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
        for (int64_t r = 0; r < lf.n; r++) {
            refp[2 * r] = lf.first[r];
            refp[2 * r + 1] = lf.second[r];
        }
        for (int64_t r = 0; r < nref; r++) refi[r] = r;
        g_sort_paths = refp;
        qsort(refi, (size_t)nref, sizeof *refi, cmp_ref);
        int64_t cur = -1;
        for (int64_t k = 0; k < nref; k++) {
            int64_t r = refi[k];
            if (k == 0 || strcmp(refp[refi[k - 1]], refp[r]) != 0) cur = store_add(s, refp[r], &b.cap);
            if (cur < 0) { st = sn_error(SN_ERR_NOMEM, "out of memory"); break; }
            if (r & 1) pb[r / 2] = cur; else pa[r / 2] = cur;
        }
        free(refp);
        free(refi);
        if (st != SN_OK) goto done;
        nic = lf.n;
    } else if (cfg->clean_dir && cfg->noisy_dir && *cfg->noisy_dir) {
        mode = MODE_PAIRED;
        if ((st = sn_scan_audio(cfg->clean_dir, "data.clean_dir", &pc)) != SN_OK) goto done;
        if ((st = sn_scan_audio(cfg->noisy_dir, "data.noisy_dir", &pn)) != SN_OK) goto done;
        int64_t *mi = NULL, *mj = NULL;
        st = match_pairs(cfg->clean_dir, cfg->noisy_dir, &pc, &pn, &mi, &mj, &nic);
        if (st == SN_OK) {
            pa = malloc((size_t)(nic + 1) * sizeof *pa);
            pb = malloc((size_t)(nic + 1) * sizeof *pb);
            if (!pa || !pb) st = sn_error(SN_ERR_NOMEM, "out of memory");
            for (int64_t k = 0; st == SN_OK && k < nic; k++) {
                pa[k] = store_add(s, pc.v[mi[k]], &b.cap);
                pb[k] = store_add(s, pn.v[mj[k]], &b.cap);
                if (pa[k] < 0 || pb[k] < 0) st = sn_error(SN_ERR_NOMEM, "out of memory");
            }
        }
        free(mi);
        free(mj);
        if (st != SN_OK) goto done;
    } else {
        mode = MODE_MIX;
        if (!cfg->clean_dir || !*cfg->clean_dir) {
            st = sn_error(SN_ERR_CONFIG, "no training data: set data.clean_dir with data.noise_dir (mixing) or data.noisy_dir (pairs), or data.list_file");
            goto done;
        }
        if ((st = sn_scan_audio(cfg->clean_dir, "data.clean_dir", &pc)) != SN_OK) goto done;
        if ((st = sn_scan_audio(noise_dir, "data.noise_dir", &pn)) != SN_OK) goto done;
        if ((st = add_paths(&b, &pc, &pa)) != SN_OK) goto done;
        nic = pc.n;
    }
    if (mode == MODE_MIX && pn.n == 0 && !(lf.n)) { st = sn_error(SN_ERR_INTERNAL, "no noise files"); goto done; }
    if (pn.n && mode == MODE_MIX && (st = add_paths(&b, &pn, &in)) != SN_OK) goto done;
    nin = mode == MODE_MIX ? pn.n : 0;

    /* validation from a folder */
    int valid_paired = 0;
    if (want_valid && cfg->valid_dir && *cfg->valid_dir) {
        char vcd[4096], vnd[4096];
        snprintf(vcd, sizeof vcd, "%s/clean", cfg->valid_dir);
        snprintf(vnd, sizeof vnd, "%s/noisy", cfg->valid_dir);
        if (dir_exists(vnd)) {
            valid_paired = 1;
            sn_pathlist x = {0}, y = {0};
            if ((st = sn_scan_audio(vcd, "data.valid_dir clean/", &x)) != SN_OK) goto done;
            if ((st = sn_scan_audio(vnd, "data.valid_dir noisy/", &y)) != SN_OK) { sn_pathlist_free(&x); goto done; }
            int64_t *mi = NULL, *mj = NULL;
            st = match_pairs(vcd, vnd, &x, &y, &mi, &mj, &nvc);
            if (st == SN_OK) {
                ivc = malloc((size_t)(nvc + 1) * sizeof *ivc);
                ivn = malloc((size_t)(nvc + 1) * sizeof *ivn);
                if (!ivc || !ivn) st = sn_error(SN_ERR_NOMEM, "out of memory");
                for (int64_t k = 0; st == SN_OK && k < nvc; k++) {
                    ivc[k] = store_add(s, x.v[mi[k]], &b.cap);
                    ivn[k] = store_add(s, y.v[mj[k]], &b.cap);
                    if (ivc[k] < 0 || ivn[k] < 0) st = sn_error(SN_ERR_NOMEM, "out of memory");
                }
            }
            free(mi);
            free(mj);
            sn_pathlist_free(&x);
            sn_pathlist_free(&y);
            if (st != SN_OK) goto done;
            nvn = nvc;
        } else {
            if (mode != MODE_MIX || nin == 0) {
                st = sn_error(SN_ERR_CONFIG, "data.valid_dir '%s' holds clean files only, which are mixed with data.noise_dir; give data.noise_dir, or put clean/ and noisy/ subfolders in data.valid_dir",
                              cfg->valid_dir);
                goto done;
            }
            const char *d = dir_exists(vcd) ? vcd : cfg->valid_dir;
            if ((st = sn_scan_audio(d, "data.valid_dir", &vc)) != SN_OK) goto done;
            if ((st = add_paths(&b, &vc, &ivc)) != SN_OK) goto done;
            nvc = vc.n;
        }
    }

    if ((st = store_load(s, cfg->cache_mb)) != SN_OK) goto done;

    /* split and build */
    tra = malloc((size_t)(nic + 1) * sizeof *tra);
    trb = malloc((size_t)(nic + 1) * sizeof *trb);
    vaa = malloc((size_t)(nic + 1) * sizeof *vaa);
    vab = malloc((size_t)(nic + 1) * sizeof *vab);
    if (!tra || !trb || !vaa || !vab) { st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
    int64_t ntr = nic, nva = 0;
    int has_b = mode == MODE_PAIRED || pb != NULL;
    if (want_valid && !(cfg->valid_dir && *cfg->valid_dir) && cfg->valid_fraction > 0) {
        if (nic < 2) {
            st = sn_error(SN_ERR_CONFIG, "data.valid_fraction %g needs at least 2 clean files to hold some out; there is %lld", cfg->valid_fraction, (long long)nic);
            goto done;
        }
        /* hold out item slots: split an index vector, then map */
        int64_t *ids = malloc((size_t)nic * sizeof *ids), *t1 = malloc((size_t)nic * sizeof *t1), *t2 = malloc((size_t)nic * sizeof *t2);
        if (!ids || !t1 || !t2) { free(ids); free(t1); free(t2); st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
        for (int64_t i = 0; i < nic; i++) ids[i] = i;
        nva = holdout(ids, nic, cfg->valid_fraction, cfg->valid_seed, t1, t2, &ntr);
        for (int64_t i = 0; i < ntr; i++) { tra[i] = pa[t1[i]]; trb[i] = has_b ? pb[t1[i]] : -1; }
        for (int64_t i = 0; i < nva; i++) { vaa[i] = pa[t2[i]]; vab[i] = has_b ? pb[t2[i]] : -1; }
        free(ids); free(t1); free(t2);
    } else {
        for (int64_t i = 0; i < nic; i++) { tra[i] = pa[i]; trb[i] = has_b ? pb[i] : -1; }
    }

    if (!(tr = ds_new(cfg, s, mode, 0))) { st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = ds_add_items(tr, tra, trb, ntr)) != SN_OK) goto done;
    if (mode == MODE_MIX && nin && (st = ds_set_noise(tr, in, nin, noise_dir)) != SN_OK) goto done;
    if (tr->n == 0) {
        st = sn_error(SN_ERR_IO, "no usable training files: every clean file in %s '%s' is silent",
                      cfg->list_file && *cfg->list_file ? "data.list_file" : "data.clean_dir",
                      cfg->list_file && *cfg->list_file ? cfg->list_file : cfg->clean_dir);
        goto done;
    }
    if (want_valid) {
        int vmode = (cfg->valid_dir && *cfg->valid_dir) ? (valid_paired ? MODE_PAIRED : MODE_MIX) : mode;
        if (!(va = ds_new(cfg, s, vmode, 1))) { st = sn_error(SN_ERR_NOMEM, "out of memory"); goto done; }
        if (cfg->valid_dir && *cfg->valid_dir) st = ds_add_items(va, ivc, valid_paired ? ivn : NULL, nvc);
        else st = ds_add_items(va, vaa, has_b ? vab : NULL, nva);
        if (st != SN_OK) goto done;
        if (vmode == MODE_MIX && nin && (st = ds_set_noise(va, in, nin, noise_dir)) != SN_OK) goto done;
        if (va->n == 0) { st = sn_error(SN_ERR_IO, "no usable validation files (all silent)"); goto done; }
    }
    (void)nvn;

done:
    sn_pathlist_free(&pc);
    sn_pathlist_free(&pn);
    sn_pathlist_free(&vc);
    sn_pathlist_free(&vn);
    sn_listfile_free(&lf);
    free(ic); free(in); free(ivc); free(ivn); free(pa); free(pb);
    free(tra); free(trb); free(vaa); free(vab);
    store_unref(s);
    if (st != SN_OK) {
        sn_dataset_free(tr);
        sn_dataset_free(va);
        return st;
    }
    *train = tr;
    if (valid) *valid = va;
    return SN_OK;
}
