/* Data-parallel training in the trainer (src/train/dist_train.c): the process group,
 * the device each process trains on, the agreed run directory, the parameter
 * broadcast and the per-step agreement on the loss and on stopping. */
#ifndef SN_TRAIN_DIST_TRAIN_H
#define SN_TRAIN_DIST_TRAIN_H

#include "sinter/dist.h"
#include "sinter/train.h"

typedef struct sn_dist_run {
    sn_comm *comm;      /* host: MPI, or the group of one */
    sn_comm *dcomm;     /* NCCL on this process's GPU (NULL: host collectives only) */
    int rank, world, local_rank, local_size;
    char device[32];    /* the device this process trains on (a config device string) */
    int cpu_threads;    /* the CPU threads it uses (the host's cores shared by its local processes) */
} sn_dist_run;

/* Joins the group (a group of one without a launcher) and picks this process's device:
 * device=cuda or auto on a host with CUDA GPUs -> cuda:<local rank>; else as given.
 * CPU threads (0 = the cores) are divided among the processes of this host. */
sn_status sn_dist_run_begin(sn_dist_run *d, const sn_config *cfg, int cpu_threads);
void sn_dist_run_end(sn_dist_run *d);
/* Rank 0's outcome (st0 and its message) and run directory (dir) to every process:
 * returns st0 on all of them, so a failure on rank 0 stops every rank. */
sn_status sn_dist_agree_dir(sn_dist_run *d, sn_status st0, char *dir, size_t n);
/* Attaches the collectives: NCCL to a CUDA backend when built in, MPI to the CPU backend
 * (b, or the fallback of a GPU backend, which then reduces there). No-op for one process. */
sn_status sn_dist_attach(sn_dist_run *d, sn_backend *b, sn_backend *fallback);
/* Every tensor of the model (parameters and BatchNorm statistics) from rank 0. */
sn_status sn_dist_bcast_model(sn_dist_run *d, sn_model *m);
/* After a step: the loss averaged over the processes (the loss of the global batch) and
 * stop = whether any process was asked to stop (all stop at the same step). */
sn_status sn_dist_step_agree(sn_dist_run *d, float *loss, int *stop);
/* Appends the data-parallel facts (world size, global batch, collectives) to the run's
 * config.yaml as comments (config loading ignores them). */
sn_status sn_dist_note_config(const sn_dist_run *d, const char *path, int batch);
/* Fault injection for the tests: SINTER_DIST_FAULT=kill:R:S (rank R dies by SIGKILL) or
 * hang:R:S (rank R stops making progress) before its step S (1-based). */
void sn_dist_test_fault(const sn_dist_run *d, int64_t step);
/* "2 processes (mpi + nccl), per-device batch 4, global batch 8" */
void sn_dist_describe(const sn_dist_run *d, int batch, char *buf, size_t n);

#endif
