/* ALLREDUCE on CUDA: the bucket is packed on the compute stream (so the planner may
 * reuse the gradients' memory at once), then reduced on a second stream, the
 * collective stream, through the attached device collective (NCCL) while the
 * compute stream runs the rest of the backward pass; a node that reads the bucket
 * waits for its event first. Event record/wait pairs are captured into the step's
 * CUDA graph as a fork and a join, so replays overlap the same way. Every
 * collective of the communicator, synchronised BatchNorm's too, is issued on the
 * collective stream, in graph order on every process. */
#include "backends/cuda/cuda_common.h"

#include <stdio.h>

__global__ void k_coll_scale(float *x, int64_t n, float s) {
    SN_GRID_LOOP(i, n) x[i] *= s;
}

static sn_status coll_init(sn_cuda *c) {
    if (c->comm_stream) return SN_OK;
    if (c->capturing)
        return sn_error(SN_ERR_INTERNAL, "CUDA collective: first use during graph capture (the eager run sets it up)");
    CU_TRY(cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking), "collective (cudaStreamCreate)");
    CU_TRY(cudaEventCreateWithFlags(&c->coll_ready, cudaEventDisableTiming), "collective (cudaEventCreate)");
    for (int i = 0; i < SN_CU_COLL_EVENTS; i++)
        CU_TRY(cudaEventCreateWithFlags(&c->coll_ev[i], cudaEventDisableTiming), "collective (cudaEventCreate)");
    return SN_OK;
}

void sn_cu_coll_destroy(sn_cuda *c) {
    if (!c->comm_stream) return;
    cudaStreamSynchronize(c->comm_stream);
    for (int i = 0; i < SN_CU_COLL_EVENTS; i++)
        if (c->coll_ev[i]) cudaEventDestroy(c->coll_ev[i]);
    if (c->coll_ready) cudaEventDestroy(c->coll_ready);
    cudaStreamDestroy(c->comm_stream);
    c->comm_stream = NULL;
}

/* the collective stream starts after everything queued on the compute stream so far */
static sn_status fork_to_comm(sn_cuda *c) {
    CU_TRY(cudaEventRecord(c->coll_ready, c->stream), "collective (cudaEventRecord)");
    CU_TRY(cudaStreamWaitEvent(c->comm_stream, c->coll_ready, 0), "collective (cudaStreamWaitEvent)");
    return SN_OK;
}

sn_status sn_cu_coll_join(sn_cuda *c) {
    for (int i = 0; i < c->coll_npending; i++)
        CU_TRY(cudaStreamWaitEvent(c->stream, c->coll_ev[c->coll_pending[i].ev], 0), "collective (join)");
    c->coll_npending = 0;
    return SN_OK;
}

sn_status sn_cu_coll_wait_srcs(sn_cuda *c, const sn_tensor *node) {
    for (int k = 0; k < node->nsrc; k++) {
        const sn_tensor *r = node->src[k];
        if (!r) continue;
        while (r->view_src) r = r->view_src;
        for (int i = 0; i < c->coll_npending; i++) {
            if (c->coll_pending[i].t != r) continue;
            CU_TRY(cudaStreamWaitEvent(c->stream, c->coll_ev[c->coll_pending[i].ev], 0), "collective (wait)");
            c->coll_pending[i] = c->coll_pending[--c->coll_npending];
            break;
        }
    }
    return SN_OK;
}

sn_status sn_cu_coll_sum(sn_cuda *c, float *buf, size_t n) {
    if (!c->coll) return sn_error(SN_ERR_UNSUPPORTED, "synchronised batchnorm2d: no device collective attached");
    SN_TRY(coll_init(c));
    SN_TRY(fork_to_comm(c));
    SN_TRY(c->coll->allreduce(c->coll->user, buf, buf, n, false, (void *)c->comm_stream));
    CU_TRY(cudaEventRecord(c->coll_ready, c->comm_stream), "collective (cudaEventRecord)");
    CU_TRY(cudaStreamWaitEvent(c->stream, c->coll_ready, 0), "collective (cudaStreamWaitEvent)");
    return SN_OK;
}

sn_status sn_cu_collective(sn_cuda *c, sn_tensor *node) {
    if (node->op != SN_OP_ALLREDUCE)
        return sn_error(SN_ERR_INTERNAL, "CUDA collective: unexpected op %s", sn_op_name(node->op));
    if (!c->coll)
        return sn_error(SN_ERR_UNSUPPORTED, "allreduce: no device collective is attached to %s (data-parallel runs "
                        "attach NCCL: src/dist)", c->name);
    SN_TRY(coll_init(c));
    if (c->coll_npending == SN_CU_COLL_EVENTS) SN_TRY(sn_cu_coll_join(c));
    float *out = sn_cu_f(node);
    int64_t total = sn_cu_nel(node);
    for (int i = 0; i < node->nsrc; i++) {
        int64_t o = sn_allreduce_offset(node, i), n = sn_cu_nel(node->src[i]);
        if (out + o != sn_cu_f(node->src[i]))
            CU_TRY(cudaMemcpyAsync(out + o, sn_cu_f(node->src[i]), (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice,
                                   c->stream), "allreduce (pack)");
        int64_t end = i + 1 < node->nsrc ? sn_allreduce_offset(node, i + 1) : total;
        if (end > o + n)
            CU_TRY(cudaMemsetAsync(out + o + n, 0, (size_t)(end - o - n) * sizeof(float), c->stream),
                   "allreduce (alignment gaps)");
    }
    SN_TRY(fork_to_comm(c));
    SN_TRY(c->coll->allreduce(c->coll->user, out, out, (size_t)total, false, (void *)c->comm_stream));
    if (node->fp[0] != 1.0f) {
        k_coll_scale<<<sn_cu_blocks(c, total), SN_CU_THREADS, 0, c->comm_stream>>>(out, total, node->fp[0]);
        CU_LAUNCHED("allreduce (mean)");
    }
    int ev = c->coll_next_ev;
    c->coll_next_ev = (c->coll_next_ev + 1) % SN_CU_COLL_EVENTS;
    CU_TRY(cudaEventRecord(c->coll_ev[ev], c->comm_stream), "allreduce (cudaEventRecord)");
    c->coll_pending[c->coll_npending].t = node;
    c->coll_pending[c->coll_npending].ev = ev;
    c->coll_npending++;
    return SN_OK;
}
