/* Data-parallel training across processes: one process per device, started by a
 * launcher (`mpirun -np N sinter train ...`, Slurm's srun), gradients averaged by the
 * standard libraries: MPI between CPU processes (host buffers) and to bootstrap NCCL,
 * NCCL between NVIDIA GPUs (device buffers). No transport of sinter's own.
 *
 * A process started without a launcher is a group of one: rank 0 of 1, and no MPI
 * call at all (MPI_Init only when the environment says a launcher started it:
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, SLURM_STEP_NUM_TASKS).
 *
 * Faults: every collective of a group of more than one runs under a watchdog. A
 * process that waits longer than SINTER_DIST_TIMEOUT seconds (default 300) in one
 * collective or step, or whose NCCL communicator reports an error, prints what it
 * waited for and which rank it is, aborts the communicator and exits with status 4;
 * the launcher then ends the others (Open MPI ends the job when a rank exits
 * non-zero or dies). */
#ifndef SINTER_DIST_H
#define SINTER_DIST_H

#include "sinter/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_comm sn_comm;

typedef enum sn_reduce_op { SN_REDUCE_SUM = 0, SN_REDUCE_AVG, SN_REDUCE_MAX } sn_reduce_op;

/* The communicator interface: one table per implementation (local, MPI, NCCL). */
typedef struct sn_comm_i {
    const char *name;
    /* n elements (f32, or f64 when f64) of src reduced over the group into dst (src ==
     * dst allowed); device buffers ordered on `stream` (a cudaStream_t) for NCCL, host
     * buffers (stream ignored) otherwise */
    sn_status (*allreduce)(sn_comm *c, const void *src, void *dst, size_t n, bool f64, sn_reduce_op op,
                           void *stream);
    sn_status (*bcast)(sn_comm *c, void *buf, size_t bytes, int root, void *stream);
    sn_status (*barrier)(sn_comm *c);
    /* ends every process of the group (as soon as the launcher can); does not return */
    void (*abort)(sn_comm *c, int code);
    void (*free)(sn_comm *c);
} sn_comm_i;

struct sn_comm {
    const sn_comm_i *i;
    int rank, size;             /* in the group */
    int local_rank, local_size; /* among the group's processes on this host */
    bool device;                /* buffers are GPU memory (NCCL) */
    void *impl;
    sn_collective coll;         /* what sn_comm_attach gives a backend */
};

/* Joins the group the launcher started (MPI), or makes a group of one. With more
 * than one process and no MPI built in, an error says how to rebuild. The first call
 * initialises MPI; sn_comm_free of that comm finalises it. */
sn_status sn_dist_init(sn_comm **out);
/* Whether this sinter was built with MPI / NCCL support. */
bool sn_dist_have_mpi(void);
bool sn_dist_have_nccl(void);
/* A launcher's process count from the environment (1 without one): known before MPI_Init. */
int sn_dist_env_size(void);

/* An NCCL communicator over the same processes as `host` (its unique id broadcast
 * through host), on CUDA device `cuda_device`. SN_ERR_UNSUPPORTED when built without NCCL. */
sn_status sn_comm_nccl_new(sn_comm *host, int cuda_device, sn_comm **out);

int sn_comm_rank(const sn_comm *c);
int sn_comm_size(const sn_comm *c);
int sn_comm_local_rank(const sn_comm *c);
int sn_comm_local_size(const sn_comm *c);
const char *sn_comm_name(const sn_comm *c);

/* f32 all-reduce (SN_REDUCE_AVG: the sum divided by the group size) */
sn_status sn_comm_allreduce(sn_comm *c, const float *src, float *dst, size_t n, sn_reduce_op op, void *stream);
sn_status sn_comm_bcast(sn_comm *c, void *buf, size_t bytes, int root, void *stream);
sn_status sn_comm_barrier(sn_comm *c);
/* Prints msg (when not NULL) with the rank and ends the whole group with exit status code. */
void sn_comm_abort(sn_comm *c, int code, const char *msg);
void sn_comm_free(sn_comm *c);

/* Attaches c's collective (sums, for the step's ALLREDUCE buckets and synchronised
 * BatchNorm) to backend b: a device comm to a GPU backend, a host comm to the CPU.
 * NULL detaches. The comm must outlive the attachment. */
sn_status sn_comm_attach(sn_comm *c, sn_backend *b);

/* Watchdog around a wait that involves the other processes (a step whose device
 * collectives the host waits for): `what` names it in the timeout message. Nested
 * calls keep the outermost. Collectives of sn_comm watch themselves. */
void sn_dist_watch_begin(const char *what);
void sn_dist_watch_end(void);
/* The watchdog's timeout in seconds (SINTER_DIST_TIMEOUT, default 300). */
double sn_dist_timeout(void);

#ifdef __cplusplus
}
#endif
#endif
