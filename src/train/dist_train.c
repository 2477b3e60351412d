/* The trainer's data-parallel parts (dist_train.h). */
#include "dist_train.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CUDA devices present (0 without CUDA support or driver) */
static int cuda_devices(void) {
    int n = 0, k = sn_device_count();
    for (int i = 0; i < k; i++) {
        sn_device_info info;
        if (sn_device_get(i, &info) == SN_OK && !strcmp(info.kind, "cuda")) n++;
    }
    return n;
}

sn_status sn_dist_run_begin(sn_dist_run *d, const sn_config *cfg, int cpu_threads) {
    memset(d, 0, sizeof *d);
    sn_status s = sn_dist_init(&d->comm);
    if (s != SN_OK) return s;
    d->rank = sn_comm_rank(d->comm);
    d->world = sn_comm_size(d->comm);
    d->local_rank = sn_comm_local_rank(d->comm);
    d->local_size = sn_comm_local_size(d->comm);
    const char *dev = cfg->device[0] ? cfg->device : "auto";
    snprintf(d->device, sizeof d->device, "%s", dev);
    d->cpu_threads = cpu_threads;
    if (d->world == 1) return SN_OK;
    int ngpu = (!strcmp(dev, "cuda") || !strcmp(dev, "auto")) ? cuda_devices() : 0;
    if (ngpu > 0) {
        if (d->local_size > ngpu)
            sn_log(SN_LOG_WARN, "%d processes on this host share %d CUDA GPUs (several per GPU: slow); start one "
                   "process per GPU", d->local_size, ngpu);
        snprintf(d->device, sizeof d->device, "cuda:%d", d->local_rank % ngpu);
    } else if (!strcmp(dev, "auto")) {
        snprintf(d->device, sizeof d->device, "cpu");
    }
    if (!strncmp(d->device, "cpu", 3) && cpu_threads <= 0) {
        /* the processes of a host share its cores */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int t = (int)((cores > 0 ? cores : 1) / d->local_size);
        d->cpu_threads = t > 0 ? t : 1;
    }
    return SN_OK;
}

void sn_dist_run_end(sn_dist_run *d) {
    sn_comm_free(d->dcomm);
    sn_comm_free(d->comm);
    memset(d, 0, sizeof *d);
}

sn_status sn_dist_agree_dir(sn_dist_run *d, sn_status st0, char *dir, size_t n) {
    if (d->world == 1) return st0;
    struct { int st; char msg[1024]; char dir[SN_RUN_DIR_MAX]; } m;
    memset(&m, 0, sizeof m);
    if (d->rank == 0) {
        m.st = (int)st0;
        if (st0 != SN_OK) snprintf(m.msg, sizeof m.msg, "%s", sn_last_error());
        snprintf(m.dir, sizeof m.dir, "%s", dir);
    }
    sn_status s = sn_comm_bcast(d->comm, &m, sizeof m, 0, NULL);
    if (s != SN_OK) return sn_error_prefix(s, "agreeing on the run directory");
    if (d->rank != 0) {
        if (m.st != SN_OK) return sn_error((sn_status)m.st, "rank 0: %s", m.msg);
        snprintf(dir, n, "%s", m.dir);
    }
    return (sn_status)m.st;
}

sn_status sn_dist_attach(sn_dist_run *d, sn_backend *b, sn_backend *fallback) {
    if (d->world == 1) return SN_OK;
    sn_status s = SN_OK;
    if (b->is_host) return sn_comm_attach(d->comm, b);
    if (fallback) s = sn_comm_attach(d->comm, fallback);
    if (s != SN_OK) return s;
    int dev = -1;
    if (!strncmp(d->device, "cuda", 4)) dev = d->device[4] == ':' ? atoi(d->device + 5) : 0;
    if (dev >= 0 && sn_dist_have_nccl()) {
        s = sn_comm_nccl_new(d->comm, dev, &d->dcomm);
        if (s == SN_OK) s = sn_comm_attach(d->dcomm, b);
        return s;
    }
    sn_log(SN_LOG_WARN, "no NCCL for %s: gradients are all-reduced through MPI on the host (copies each step)",
           d->device);
    return SN_OK;
}

sn_status sn_dist_bcast_model(sn_dist_run *d, sn_model *m) {
    if (d->world == 1) return SN_OK;
    int64_t total = 0;
    for (int i = 0; i < m->n; i++) total += sn_nelem(m->t[i]);
    float *buf = malloc((size_t)total * sizeof *buf);
    if (!buf) return sn_error(SN_ERR_NOMEM, "broadcasting the model: out of host memory");
    sn_status s = SN_OK;
    int64_t o = 0;
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        if (d->rank == 0) s = sn_tensor_get(m->t[i], buf + o, sn_nelem(m->t[i]));
        o += sn_nelem(m->t[i]);
    }
    if (s == SN_OK) s = sn_comm_bcast(d->comm, buf, (size_t)total * sizeof *buf, 0, NULL);
    o = 0;
    for (int i = 0; i < m->n && s == SN_OK; i++) {
        if (d->rank != 0) s = sn_tensor_set(m->t[i], buf + o, sn_nelem(m->t[i]));
        o += sn_nelem(m->t[i]);
    }
    free(buf);
    return s != SN_OK ? sn_error_prefix(s, "broadcasting the model from rank 0") : SN_OK;
}

sn_status sn_dist_step_agree(sn_dist_run *d, float *loss, int *stop) {
    if (d->world == 1) return SN_OK;
    float v[2] = {*loss, *stop ? 1.0f : 0.0f};
    sn_status s = sn_comm_allreduce(d->comm, v, v, 2, SN_REDUCE_SUM, NULL);
    if (s != SN_OK) return s;
    *loss = v[0] / (float)d->world;
    *stop = v[1] > 0.0f;
    return SN_OK;
}

void sn_dist_describe(const sn_dist_run *d, int batch, char *buf, size_t n) {
    snprintf(buf, n, "%d process%s (%s%s), per-device batch %d, global batch %d", d->world, d->world == 1 ? "" : "es",
             sn_comm_name(d->comm), d->dcomm ? " + nccl" : "", batch, batch * d->world);
}

sn_status sn_dist_note_config(const sn_dist_run *d, const char *path, int batch) {
    FILE *f = fopen(path, "a");
    if (!f) return sn_error(SN_ERR_IO, "cannot append to '%s'", path);
    fprintf(f,
            "\n# Data parallel (written by sinter train; comments, not read back):\n"
            "# dist.world_size: %d\n"
            "# dist.global_batch: %d   # train.batch_size %d per process\n"
            "# dist.collectives: %s%s\n",
            d->world, batch * d->world, batch, sn_comm_name(d->comm), d->dcomm ? " + nccl" : "");
    return fclose(f) == 0 ? SN_OK : sn_error(SN_ERR_IO, "cannot write '%s'", path);
}

void sn_dist_test_fault(const sn_dist_run *d, int64_t step) {
    const char *e = getenv("SINTER_DIST_FAULT");
    if (!e || !*e || d->world == 1) return;
    char kind[8] = "";
    int r = -1;
    long long s = -1;
    if (sscanf(e, "%7[a-z]:%d:%lld", kind, &r, &s) != 3 || r != d->rank || s != step) return;
    if (!strcmp(kind, "kill")) raise(SIGKILL);
    if (!strcmp(kind, "hang"))
        for (;;) pause();
}
