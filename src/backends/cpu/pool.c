/* A fixed pthread pool for data-parallel loops. The LSTM calls sn_pool_for a few
 * thousand times per training step, so a futex wake per call (tens of µs on a VM)
 * would dominate: workers spin on an atomic job generation for a bounded time
 * (SN_POOL_SPIN_US, default 100 µs) before sleeping on a condition variable, and the
 * caller spins on the pending count the same way. Chunk c always runs on thread c,
 * so each thread sees the same slice of a weight across timesteps (it stays in L2).
 *
 * Sleep protocol (no lost wake-ups): a worker going to sleep increments `sleepers`
 * and re-checks `gen` under the mutex; the caller bumps `gen` and then reads
 * `sleepers` (both seq_cst), and broadcasts under the mutex when it is non-zero.
 * The caller's wait for `pending` mirrors this with `waiting`. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setaffinity_np */
#endif
#include "backends/cpu/cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

struct sn_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Alignas(64) atomic_uint_fast64_t gen; /* job generation */
    _Alignas(64) atomic_int pending;       /* workers still in the current job */
    _Alignas(64) atomic_int sleepers;      /* workers asleep (or about to be) on `go` */
    atomic_int waiting;                    /* the caller asleep (or about to be) on `done` */
    atomic_bool quit;
    /* current job, written before gen is bumped */
    sn_pool_fn fn;
    void *arg;
    int64_t total, chunks;
    double spin_ns;
    /* SN_POOL_PIN=region: thread t of a region runs on CPU cpus[t] of the allowed set */
    int *cpus;
    int region_n; /* SN_POOL_REGION_THREADS: most threads of a region (0: all) */
};

typedef struct { sn_pool *p; int tid; } worker_arg;

/* vmath.h's cap on the vector ISA level */
int sn_vm_cap = 2;

/* set in worker threads: a nested sn_pool_for runs inline instead of deadlocking */
static _Thread_local bool tl_in_pool;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void run_chunk(sn_pool *p, int64_t c) {
    int64_t per = (p->total + p->chunks - 1) / p->chunks;
    int64_t b = c * per, e = b + per;
    if (e > p->total) e = p->total;
    if (b < e) p->fn(p->arg, b, e, (int)c);
}

/* spins until *v != old or the spin budget is spent; true when it changed */
static bool spin_gen(sn_pool *p, uint64_t old) {
    if (atomic_load_explicit(&p->gen, memory_order_acquire) != old) return true;
    double t0 = now_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            cpu_relax();
            if (atomic_load_explicit(&p->gen, memory_order_acquire) != old) return true;
        }
        if (now_ns() - t0 > p->spin_ns) return false;
    }
}

static bool spin_done(sn_pool *p) {
    if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return true;
    double t0 = now_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            cpu_relax();
            if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return true;
        }
        if (now_ns() - t0 > p->spin_ns) return false;
    }
}

static void *worker(void *a) {
    worker_arg *wa = a;
    sn_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    tl_in_pool = true;
#ifdef __linux__
    /* SN_POOL_PIN=1: worker tid stays on the tid-th allowed CPU, so its slice of a
     * weight stays in that core's L2 (the caller is left alone: BLAS threads it
     * starts later inherit its affinity) */
    const char *pin = getenv("SN_POOL_PIN");
    if (pin && *pin == '1') {
        cpu_set_t all, one;
        if (sched_getaffinity(0, sizeof all, &all) == 0) {
            int k = 0;
            for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
                if (CPU_ISSET(cpu, &all) && k++ == tid) {
                    CPU_ZERO(&one);
                    CPU_SET(cpu, &one);
                    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
                    break;
                }
        }
    }
#endif
    uint64_t seen = 0;
    for (;;) {
        if (!spin_gen(p, seen)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->go, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (tid < p->chunks) run_chunk(p, tid);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* SN_POOL_PIN=region: the CPUs a region's threads are held on (thread t on the t-th
 * CPU this process may use), or NULL: not asked for, not Linux, or fewer allowed CPUs
 * than threads */
static int *region_cpus(int n) {
#ifdef __linux__
    const char *e = getenv("SN_POOL_PIN");
    if (!e || strcmp(e, "region") != 0 || n < 2) return NULL;
    cpu_set_t all;
    if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < n) return NULL;
    int *cpus = malloc((size_t)n * sizeof *cpus);
    if (!cpus) return NULL;
    for (int cpu = 0, k = 0; cpu < CPU_SETSIZE && k < n; cpu++)
        if (CPU_ISSET(cpu, &all)) cpus[k++] = cpu;
    return cpus;
#else
    (void)n;
    return NULL;
#endif
}

sn_pool *sn_pool_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    sn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads;
    const char *e = getenv("SN_POOL_SPIN_US");
    p->spin_ns = (e && *e ? atof(e) : 100.0) * 1e3;
    e = getenv("SN_POOL_REGION_THREADS"); /* an A/B switch: regions on fewer threads than the pool */
    p->region_n = e && atoi(e) > 0 ? atoi(e) : 0;
    e = getenv("SN_CPU_VM_LEVEL");
    if (e && *e >= '0' && *e <= '2') sn_vm_cap = *e - '0';
    p->cpus = region_cpus(nthreads);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->waiting, 0);
    atomic_init(&p->quit, false);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        wa->p = p;
        wa->tid = i;
        if (!wa || pthread_create(&p->th[i], NULL, worker, wa) != 0) {
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
    atomic_store(&p->quit, true);
    atomic_fetch_add(&p->gen, 1); /* releases spinners too */
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p->cpus);
    free(p);
}

int sn_pool_size(const sn_pool *p) { return p ? p->n : 1; }

void sn_pool_for(sn_pool *p, int64_t n, int64_t grain, sn_pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = n / grain;
    if (!p || p->n == 1 || chunks < 2 || tl_in_pool) {
        fn(arg, 0, n, 0);
        return;
    }
    if (chunks > p->n) chunks = p->n;
    p->fn = fn;
    p->arg = arg;
    p->total = n;
    p->chunks = chunks;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the job, orders before the sleepers read */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    tl_in_pool = true;
    run_chunk(p, 0);
    tl_in_pool = false;
    if (!spin_done(p)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->waiting, 1);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ------------------------------------------------------------ regions */

struct sn_barrier {
    _Alignas(64) atomic_int count;  /* threads arrived in the current phase */
    _Alignas(64) atomic_uint phase; /* bumped by the last arrival */
    int n;
    double spin_ns;
};

void sn_barrier_wait(sn_barrier *bar) {
    if (bar->n <= 1) return;
    unsigned ph = atomic_load_explicit(&bar->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&bar->count, 1, memory_order_acq_rel) == bar->n - 1) {
        atomic_store_explicit(&bar->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&bar->phase, 1, memory_order_release);
        return;
    }
    /* spin, then yield: on an oversubscribed machine a spinning waiter must not hold
     * the core the last arrival needs */
    double t0 = 0;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&bar->phase, memory_order_acquire) != ph) return;
            cpu_relax();
        }
        double t = now_ns();
        if (t0 == 0) t0 = t;
        else if (t - t0 > bar->spin_ns) sched_yield();
    }
}

typedef struct {
    sn_region_fn fn;
    void *arg;
    sn_barrier bar;
    const int *cpus;
} region_job;

/* A region's threads each keep a fixed share of the work (the LSTM's slice of w_hh in
 * its core's L2) for every step: with SN_POOL_PIN=region each is held on its own CPU
 * for the region and let go after, so the BLAS's threads between regions are not
 * crowded by pinned ones. */
static void region_chunk(void *arg, int64_t b, int64_t e, int tid) {
    region_job *r = arg;
#ifdef __linux__
    cpu_set_t old, one;
    bool pinned = false;
    if (r->cpus && pthread_getaffinity_np(pthread_self(), sizeof old, &old) == 0) {
        CPU_ZERO(&one);
        CPU_SET(r->cpus[tid], &one);
        pinned = pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
    }
#endif
    for (int64_t t = b; t < e; t++) r->fn(r->arg, (int)t, r->bar.n, &r->bar);
#ifdef __linux__
    if (pinned) pthread_setaffinity_np(pthread_self(), sizeof old, &old);
#endif
}

void sn_pool_region(sn_pool *p, sn_region_fn fn, void *arg) {
    region_job r = {fn, arg, {0}, NULL};
    int n = (!p || tl_in_pool) ? 1 : p->n;
    if (p && p->region_n > 0 && n > p->region_n) n = p->region_n;
    if (p && n > 1) r.cpus = p->cpus;
    atomic_init(&r.bar.count, 0);
    atomic_init(&r.bar.phase, 0);
    r.bar.n = n;
    r.bar.spin_ns = p ? (p->spin_ns > 20e3 ? p->spin_ns : 20e3) : 0;
    if (n == 1) {
        fn(arg, 0, 1, &r.bar);
        return;
    }
    sn_pool_for(p, n, 1, region_chunk, &r); /* chunk c runs on thread c: one per thread */
}
