/* The communicator API over its implementations, the group of one (no launcher),
 * the launcher detection and the watchdog. */
#include "dist/dist_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- launcher environment ---- */

static int env_int(const char *name) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : 0;
}

int sn_dist_env_size(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        int n = env_int(vars[i]);
        if (n > 0) return n;
    }
    return 1;
}

static bool launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") ||
           getenv("SLURM_STEP_NUM_TASKS");
}

/* ---- common ---- */

static sn_status coll_allreduce(void *user, const void *src, void *dst, size_t n, bool f64, void *stream) {
    sn_comm *c = user;
    return c->i->allreduce(c, src, dst, n, f64, SN_REDUCE_SUM, stream);
}

void sn_comm_setup(sn_comm *c, const sn_comm_i *i, int rank, int size, int local_rank, int local_size, bool device,
                   void *impl) {
    c->i = i;
    c->rank = rank;
    c->size = size;
    c->local_rank = local_rank;
    c->local_size = local_size;
    c->device = device;
    c->impl = impl;
    c->coll.allreduce = coll_allreduce;
    c->coll.user = c;
    c->coll.world = size;
    c->coll.device = device;
}

int sn_comm_rank(const sn_comm *c) { return c ? c->rank : 0; }
int sn_comm_size(const sn_comm *c) { return c ? c->size : 1; }
int sn_comm_local_rank(const sn_comm *c) { return c ? c->local_rank : 0; }
int sn_comm_local_size(const sn_comm *c) { return c ? c->local_size : 1; }
const char *sn_comm_name(const sn_comm *c) { return c ? c->i->name : "none"; }

sn_status sn_comm_allreduce(sn_comm *c, const float *src, float *dst, size_t n, sn_reduce_op op, void *stream) {
    if (!c || (!src && n) || (!dst && n)) return sn_error(SN_ERR_INVALID_ARG, "sn_comm_allreduce: null argument");
    if (op < SN_REDUCE_SUM || op > SN_REDUCE_MAX)
        return sn_error(SN_ERR_INVALID_ARG, "sn_comm_allreduce: unknown reduction %d", (int)op);
    return c->i->allreduce(c, src, dst, n, false, op, stream);
}

sn_status sn_comm_bcast(sn_comm *c, void *buf, size_t bytes, int root, void *stream) {
    if (!c || (!buf && bytes)) return sn_error(SN_ERR_INVALID_ARG, "sn_comm_bcast: null argument");
    if (root < 0 || root >= c->size)
        return sn_error(SN_ERR_INVALID_ARG, "sn_comm_bcast: root %d outside 0..%d", root, c->size - 1);
    return c->i->bcast(c, buf, bytes, root, stream);
}

sn_status sn_comm_barrier(sn_comm *c) {
    if (!c) return sn_error(SN_ERR_INVALID_ARG, "sn_comm_barrier: null comm");
    return c->i->barrier(c);
}

void sn_comm_abort(sn_comm *c, int code, const char *msg) {
    if (msg) fprintf(stderr, "sinter: rank %d of %d: %s\n", sn_comm_rank(c), sn_comm_size(c), msg);
    fflush(stderr);
    fflush(stdout);
    if (c) c->i->abort(c, code);
    _exit(code);
}

void sn_comm_free(sn_comm *c) {
    if (c) c->i->free(c);
}

sn_status sn_comm_attach(sn_comm *c, sn_backend *b) {
    if (!b) return sn_error(SN_ERR_INVALID_ARG, "sn_comm_attach: backend is NULL");
    if (!c) {
        b->coll = NULL;
        return SN_OK;
    }
    if (c->device == b->is_host)
        return sn_error(SN_ERR_INVALID_ARG, "sn_comm_attach: a %s communicator (%s buffers) cannot serve the %s "
                        "backend", c->i->name, c->device ? "device" : "host", sn_backend_name(b));
    b->coll = &c->coll;
    return SN_OK;
}

/* ---- the group of one ---- */

static sn_status local_allreduce(sn_comm *c, const void *src, void *dst, size_t n, bool f64, sn_reduce_op op,
                                 void *stream) {
    if (src != dst) memmove(dst, src, n * (f64 ? sizeof(double) : sizeof(float)));
    return SN_OK;
}
static sn_status local_bcast(sn_comm *c, void *buf, size_t bytes, int root, void *stream) { return SN_OK; }
static sn_status local_barrier(sn_comm *c) { return SN_OK; }
static void local_abort(sn_comm *c, int code) { _exit(code); }
static void local_free(sn_comm *c) { free(c); }

static const sn_comm_i local_iface = {"local", local_allreduce, local_bcast, local_barrier, local_abort, local_free};

sn_status sn_dist_init(sn_comm **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_dist_init: out is NULL");
    *out = NULL;
    if (launched()) {
        if (sn_dist_have_mpi()) return sn_comm_mpi_new(out);
        if (sn_dist_env_size() > 1)
            return sn_error(SN_ERR_UNSUPPORTED, "%d processes were launched (mpirun/srun), but this sinter was built "
                            "without MPI, so they cannot train together: install Open MPI (Debian: libopenmpi-dev "
                            "openmpi-bin) and rebuild, or run one process", sn_dist_env_size());
    }
    sn_comm *c = calloc(1, sizeof *c);
    if (!c) return sn_error(SN_ERR_NOMEM, "sn_dist_init: out of memory");
    sn_comm_setup(c, &local_iface, 0, 1, 0, 1, false, NULL);
    *out = c;
    return SN_OK;
}

/* ---- watchdog ---- */

#define WD_MAX 4
static struct {
    pthread_mutex_t mu;
    bool started;
    int rank, size;
    double timeout;
    atomic_llong busy_since_ms; /* 0: nothing waited for */
    atomic_int depth;
    _Atomic(const char *) what;
    struct { sn_dist_poll_fn poll; sn_dist_abort_fn abort_fn; void *arg; } reg[WD_MAX];
    int nreg;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sn_dist_timeout(void) {
    const char *e = getenv("SINTER_DIST_TIMEOUT");
    double t = e && *e ? atof(e) : 300.0;
    return t > 0 ? t : 300.0;
}

void sn_dist_watch_begin(const char *what) {
    if (atomic_fetch_add(&wd.depth, 1) == 0) {
        atomic_store(&wd.what, what);
        atomic_store(&wd.busy_since_ms, now_ms());
    }
}

void sn_dist_watch_end(void) {
    if (atomic_fetch_sub(&wd.depth, 1) == 1) atomic_store(&wd.busy_since_ms, 0);
}

void sn_dist_fatal(const char *msg) {
    fprintf(stderr, "sinter: rank %d of %d: %s\n", wd.rank, wd.size, msg);
    fflush(stderr);
    fflush(stdout);
    /* no lock: the main thread may hold it, and the process ends anyway */
    for (int i = 0; i < wd.nreg; i++)
        if (wd.reg[i].abort_fn) wd.reg[i].abort_fn(wd.reg[i].arg);
    _exit(4); /* SN_EXIT_DEVICE; the launcher ends the other ranks */
}

static void *watchdog(void *arg) {
    for (;;) {
        usleep(100 * 1000);
        pthread_mutex_lock(&wd.mu);
        const char *bad = NULL;
        for (int i = 0; i < wd.nreg && !bad; i++)
            if (wd.reg[i].poll) bad = wd.reg[i].poll(wd.reg[i].arg);
        pthread_mutex_unlock(&wd.mu);
        if (bad) sn_dist_fatal(bad);
        long long t0 = atomic_load(&wd.busy_since_ms);
        if (t0 && (now_ms() - t0) / 1000.0 > wd.timeout) {
            char msg[512];
            const char *what = atomic_load(&wd.what);
            snprintf(msg, sizeof msg, "no progress for %.0f s in %s: another process died or hangs (or is much slower, "
                     "e.g. validating); stopping the job. Raise SINTER_DIST_TIMEOUT (now %g s) if it only is slow",
                     (now_ms() - t0) / 1000.0, what ? what : "a collective", wd.timeout);
            sn_dist_fatal(msg);
        }
    }
    return NULL;
}

void sn_dist_watchdog_start(int rank, int size) {
    pthread_mutex_lock(&wd.mu);
    wd.rank = rank;
    wd.size = size;
    wd.timeout = sn_dist_timeout();
    if (!wd.started && size > 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        wd.started = pthread_create(&th, &at, watchdog, NULL) == 0;
        pthread_attr_destroy(&at);
    }
    pthread_mutex_unlock(&wd.mu);
}

void sn_dist_watchdog_register(sn_dist_poll_fn poll, sn_dist_abort_fn abort_fn, void *arg) {
    pthread_mutex_lock(&wd.mu);
    if (wd.nreg < WD_MAX) {
        wd.reg[wd.nreg].poll = poll;
        wd.reg[wd.nreg].abort_fn = abort_fn;
        wd.reg[wd.nreg].arg = arg;
        wd.nreg++;
    }
    pthread_mutex_unlock(&wd.mu);
}

void sn_dist_watchdog_unregister(void *arg) {
    pthread_mutex_lock(&wd.mu);
    for (int i = 0; i < wd.nreg; i++)
        if (wd.reg[i].arg == arg) {
            wd.reg[i] = wd.reg[--wd.nreg];
            break;
        }
    pthread_mutex_unlock(&wd.mu);
}
