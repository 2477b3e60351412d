/* A fixed pthread pool for data-parallel loops: workers sleep on a condition
 * variable between jobs; the calling thread takes chunk 0 itself. */
#include "backends/cpu/cpu.h"

#include <pthread.h>
#include <stdlib.h>

struct sn_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;          /* job generation */
    int pending;
    bool quit;
    /* current job */
    sn_pool_fn fn;
    void *arg;
    int64_t total, chunks;
};

typedef struct { sn_pool *p; int tid; } worker_arg;

static void run_chunk(sn_pool *p, int64_t c) {
    int64_t per = (p->total + p->chunks - 1) / p->chunks;
    int64_t b = c * per, e = b + per;
    if (e > p->total) e = p->total;
    if (b < e) p->fn(p->arg, b, e, (int)c);
}

static void *worker(void *a) {
    worker_arg *wa = a;
    sn_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        int64_t chunks = p->chunks;
        pthread_mutex_unlock(&p->mu);
        if (tid < chunks) run_chunk(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sn_pool *sn_pool_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    sn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        wa->p = p;
        wa->tid = i;
        if (pthread_create(&p->th[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i;  /* run with what we got */
            break;
        }
    }
    return p;
}

void sn_pool_free(sn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int sn_pool_size(const sn_pool *p) { return p ? p->n : 1; }

void sn_pool_for(sn_pool *p, int64_t n, int64_t grain, sn_pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = n / grain;
    if (!p || p->n == 1 || chunks < 2) {
        fn(arg, 0, n, 0);
        return;
    }
    if (chunks > p->n) chunks = p->n;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->total = n;
    p->chunks = chunks;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_chunk(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
