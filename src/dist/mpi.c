/* The MPI communicator (host buffers): Open MPI or any MPI the build found. Errors
 * come back as codes (MPI_ERRORS_RETURN) and become sn_status messages; every call
 * runs under the watchdog, so a peer that died or hangs ends this process too. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SN_HAVE_MPI
#include <mpi.h>

bool sn_dist_have_mpi(void) { return true; }

typedef struct mpi_impl {
    MPI_Comm comm;
    bool finalize; /* this comm initialised MPI */
} mpi_impl;

static sn_status mpi_err(int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return sn_error(SN_ERR_DEVICE, "%s failed: %s (another process of the job may have died; see its messages)",
                    what, s);
}

#define MPI_CALL(call, what)                         \
    do {                                             \
        sn_dist_watch_begin(what);                   \
        int rc_ = (call);                            \
        sn_dist_watch_end();                         \
        if (rc_ != MPI_SUCCESS) return mpi_err(rc_, what); \
    } while (0)

/* MPI counts are int: big buffers go in pieces */
#define MPI_CHUNK ((size_t)1 << 28)

static MPI_Op mpi_op(sn_reduce_op op) { return op == SN_REDUCE_MAX ? MPI_MAX : MPI_SUM; }

static sn_status m_allreduce(sn_comm *c, const void *src, void *dst, size_t n, bool f64, sn_reduce_op op,
                             void *stream) {
    mpi_impl *m = c->impl;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    for (size_t o = 0; o < n; o += MPI_CHUNK) {
        size_t k = n - o < MPI_CHUNK ? n - o : MPI_CHUNK;
        char *d = (char *)dst + o * es;
        const char *s = (const char *)src + o * es;
        MPI_CALL(MPI_Allreduce(s == d ? MPI_IN_PLACE : s, d, (int)k, f64 ? MPI_DOUBLE : MPI_FLOAT, mpi_op(op), m->comm),
                 "MPI_Allreduce");
    }
    if (op == SN_REDUCE_AVG) {
        if (f64)
            for (size_t i = 0; i < n; i++) ((double *)dst)[i] /= c->size;
        else
            for (size_t i = 0; i < n; i++) ((float *)dst)[i] /= (float)c->size;
    }
    return SN_OK;
}

static sn_status m_bcast(sn_comm *c, void *buf, size_t bytes, int root, void *stream) {
    mpi_impl *m = c->impl;
    for (size_t o = 0; o < bytes; o += MPI_CHUNK) {
        size_t k = bytes - o < MPI_CHUNK ? bytes - o : MPI_CHUNK;
        MPI_CALL(MPI_Bcast((char *)buf + o, (int)k, MPI_BYTE, root, m->comm), "MPI_Bcast");
    }
    return SN_OK;
}

static sn_status m_barrier(sn_comm *c) {
    MPI_CALL(MPI_Barrier(((mpi_impl *)c->impl)->comm), "MPI_Barrier");
    return SN_OK;
}

static void m_abort(sn_comm *c, int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

static void m_free(sn_comm *c) {
    mpi_impl *m = c->impl;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        MPI_Comm_free(&m->comm);
        if (m->finalize) MPI_Finalize();
    }
    free(m);
    free(c);
}

static const sn_comm_i mpi_iface = {"mpi", m_allreduce, m_bcast, m_barrier, m_abort, m_free};

sn_status sn_comm_mpi_new(sn_comm **out) {
    *out = NULL;
    int init = 0, rc;
    MPI_Initialized(&init);
    bool mine = false;
    if (!init) {
        int provided = 0;
        /* the watchdog thread makes no MPI call: FUNNELED is enough */
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_err(rc, "MPI_Init_thread (joining the processes mpirun/srun started)");
        mine = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    sn_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return sn_error(SN_ERR_NOMEM, "sn_dist_init: out of memory");
    }
    m->finalize = mine;
    int rank = 0, size = 1, lrank = 0, lsize = 1;
    MPI_Comm local;
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(m->comm, &rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(m->comm, &size);
    /* the processes sharing this host's memory: the local rank picks the GPU */
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
    if (rc == MPI_SUCCESS) {
        MPI_Comm_rank(local, &lrank);
        MPI_Comm_size(local, &lsize);
        MPI_Comm_free(&local);
    }
    if (rc != MPI_SUCCESS) {
        sn_status st = mpi_err(rc, "setting up the MPI communicator");
        free(m);
        free(c);
        return st;
    }
    sn_comm_setup(c, &mpi_iface, rank, size, lrank, lsize, false, m);
    sn_dist_watchdog_start(rank, size);
    *out = c;
    return SN_OK;
}

#else

bool sn_dist_have_mpi(void) { return false; }

sn_status sn_comm_mpi_new(sn_comm **out) {
    *out = NULL;
    return sn_error(SN_ERR_UNSUPPORTED, "this sinter was built without MPI (install libopenmpi-dev and rebuild)");
}

#endif
