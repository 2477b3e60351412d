/* The NCCL communicator (CUDA device buffers), bootstrapped through the host (MPI)
 * communicator: rank 0's ncclUniqueId is broadcast, then every rank joins. Its
 * collectives are queued on the stream they are given (so a CUDA graph captures
 * them). The watchdog polls ncclCommGetAsyncError and aborts the communicator on an
 * error or a timeout, so a peer that died never leaves a GPU spinning forever. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef SN_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

bool sn_dist_have_nccl(void) { return true; }

typedef struct nccl_impl {
    ncclComm_t comm;
    sn_comm *host;
    int device;
    char msg[256];
} nccl_impl;

static sn_status nccl_err(ncclResult_t r, const char *what) {
    return sn_error(SN_ERR_DEVICE, "%s failed: %s (%s)", what, ncclGetErrorString(r),
                    r == ncclSystemError || r == ncclRemoteError ? "a peer process or the network failed"
                                                                 : "see NCCL_DEBUG=WARN for details");
}

#define NCCL_CALL(call, what)                                        \
    do {                                                             \
        ncclResult_t r_ = (call);                                    \
        if (r_ != ncclSuccess) return nccl_err(r_, what);            \
    } while (0)

static ncclRedOp_t nccl_op(sn_reduce_op op) {
    return op == SN_REDUCE_MAX ? ncclMax : op == SN_REDUCE_AVG ? ncclAvg : ncclSum;
}

static sn_status n_allreduce(sn_comm *c, const void *src, void *dst, size_t n, bool f64, sn_reduce_op op,
                             void *stream) {
    nccl_impl *x = c->impl;
    NCCL_CALL(ncclAllReduce(src, dst, n, f64 ? ncclFloat64 : ncclFloat32, nccl_op(op), x->comm, (cudaStream_t)stream),
              "ncclAllReduce");
    return SN_OK;
}

static sn_status n_bcast(sn_comm *c, void *buf, size_t bytes, int root, void *stream) {
    nccl_impl *x = c->impl;
    NCCL_CALL(ncclBroadcast(buf, buf, bytes, ncclUint8, root, x->comm, (cudaStream_t)stream), "ncclBroadcast");
    return SN_OK;
}

static sn_status n_barrier(sn_comm *c) { return sn_comm_barrier(((nccl_impl *)c->impl)->host); }

static void n_abort_comm(void *arg) {
    nccl_impl *x = arg;
    ncclCommAbort(x->comm);
}

static void n_abort(sn_comm *c, int code) {
    nccl_impl *x = c->impl;
    sn_dist_watchdog_unregister(x);
    ncclCommAbort(x->comm);
    sn_comm_abort(x->host, code, NULL);
}

static const char *n_poll(void *arg) {
    nccl_impl *x = arg;
    ncclResult_t a = ncclSuccess;
    if (ncclCommGetAsyncError(x->comm, &a) != ncclSuccess) return NULL;
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21400
    if (a == ncclInProgress) return NULL;
#endif
    if (a == ncclSuccess) return NULL;
    snprintf(x->msg, sizeof x->msg, "NCCL communicator on cuda:%d failed: %s (a peer process died or the link "
             "failed); stopping the job", x->device, ncclGetErrorString(a));
    return x->msg;
}

static void n_free(sn_comm *c) {
    nccl_impl *x = c->impl;
    sn_dist_watchdog_unregister(x);
    ncclCommDestroy(x->comm);
    free(x);
    free(c);
}

static const sn_comm_i nccl_iface = {"nccl", n_allreduce, n_bcast, n_barrier, n_abort, n_free};

sn_status sn_comm_nccl_new(sn_comm *host, int cuda_device, sn_comm **out) {
    if (!host || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_comm_nccl_new: host comm and out are required");
    *out = NULL;
    cudaError_t ce = cudaSetDevice(cuda_device);
    if (ce != cudaSuccess)
        return sn_error(SN_ERR_DEVICE, "NCCL setup: cudaSetDevice(%d): %s", cuda_device, cudaGetErrorString(ce));
    ncclUniqueId id;
    if (host->rank == 0) NCCL_CALL(ncclGetUniqueId(&id), "ncclGetUniqueId");
    sn_status st = sn_comm_bcast(host, &id, sizeof id, 0, NULL);
    if (st != SN_OK) return sn_error_prefix(st, "NCCL setup (broadcasting the unique id)");
    sn_comm *c = calloc(1, sizeof *c);
    nccl_impl *x = calloc(1, sizeof *x);
    if (!c || !x) {
        free(c);
        free(x);
        return sn_error(SN_ERR_NOMEM, "NCCL setup: out of memory");
    }
    x->host = host;
    x->device = cuda_device;
    sn_dist_watch_begin("ncclCommInitRank (every rank joins the NCCL communicator)");
    ncclResult_t r = ncclCommInitRank(&x->comm, host->size, id, host->rank);
    sn_dist_watch_end();
    if (r != ncclSuccess) {
        free(c);
        free(x);
        return nccl_err(r, "ncclCommInitRank");
    }
    sn_comm_setup(c, &nccl_iface, host->rank, host->size, host->local_rank, host->local_size, true, x);
    sn_dist_watchdog_register(n_poll, n_abort_comm, x);
    *out = c;
    return SN_OK;
}

#else

bool sn_dist_have_nccl(void) { return false; }

sn_status sn_comm_nccl_new(sn_comm *host, int cuda_device, sn_comm **out) {
    if (out) *out = NULL;
    return sn_error(SN_ERR_UNSUPPORTED, "this sinter was built without NCCL: GPU processes reduce their gradients "
                    "through MPI on the host instead (slower); build with the CUDA toolkit's NCCL for GPU-to-GPU "
                    "all-reduce");
}

#endif
