/* The trainer: device, data, model, step graph; the epoch/step loop with LR
 * schedule, logging (progress line, train.log, metrics.csv, TensorBoard,
 * SVG curve), validation, best/last checkpoints, resume, clean stop, NaN stop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "sinter/events.h"
#include "sinter/plot.h"
#include "sinter/safetensors.h"
#include "train_internal.h"
#include "dist_train.h"

typedef struct curve { int64_t *x; double *y; int n, cap; } curve;

typedef struct trainer {
    const sn_config *cfg;
    const sn_train_opts *o;
    char dir[SN_RUN_DIR_MAX];
    char last[SN_RUN_DIR_MAX + 32], best[SN_RUN_DIR_MAX + 32];
    int log_fd, csv_fd;      /* train.log, metrics.csv (appended whole lines; -1: not open) */
    FILE *early;             /* log lines before train.log exists (a new run's dir comes after setup) */
    char *early_buf;
    size_t early_len;
    int lock_fd;             /* holds the run directory's lock (-1: none) */
    int created;             /* this call made the run directory: removed if start-up fails */
    int wfail, ckpt_failed;  /* the first failed write of the run stops it (werr says which) */
    char werr[1536];
    int tty, progress_shown;
    sn_events *ev;
    sn_backend *b, *fb;
    sn_dataset *train, *valid;
    sn_loader *loader;
    sn_model *m;
    sn_step *step;
    sn_infer *infer;
    sn_ckpt_state st;
    int64_t spe, total;
    curve tl, vl;            /* train loss (log points), valid loss */
    int64_t last_valid_step;
    double t_start;          /* this session */
    int64_t step_start;
    double win_loss, win_ms; /* log window sums */
    int win_n;
    double ema_ms;
    bool prefetched; /* the next step's batch is already queued on the device */
    double last_progress;
    char last_good[SN_RUN_DIR_MAX + 64];
    int dump_n;
    /* data parallel: the group; rank 0 alone writes the run directory and prints */
    sn_dist_run dist;
    sn_config dcfg;          /* cfg with this process's device */
    sn_train_opts ropts;     /* opts, quiet on ranks other than 0 */
} trainer;

/* rank 0 writes the run directory, logs and checkpoints; the others only train */
static int writer(const trainer *T) { return T->dist.rank == 0; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- output: stdout (unless quiet) and train.log ---- */

static void clear_progress(trainer *T) {
    if (T->progress_shown) {
        fputs("\r\033[K", stdout);
        T->progress_shown = 0;
    }
}

/* ---- checked writes: the first failure stops the run (exit code 3) ---- */

/* Free space on the file system of path, as text ("1.2 GiB free"). */
static void free_space(const char *path, char *buf, size_t n) {
    char dir[SN_RUN_DIR_MAX + 64];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    struct statvfs v;
    if (statvfs(slash ? (dir[0] ? dir : "/") : ".", &v) != 0) {
        snprintf(buf, n, "free space unknown");
        return;
    }
    double b = (double)v.f_bavail * (double)v.f_frsize;
    if (b >= 1 << 30) snprintf(buf, n, "%.1f GiB free on its file system", b / (1 << 30));
    else snprintf(buf, n, "%.1f MiB free on its file system", b / (1 << 20));
}

/* Records the run's first failed write, msg naming the file (the loop stops at the end of the step). */
static void write_failed(trainer *T, const char *path, const char *msg) {
    if (T->wfail) return;
    T->wfail = 1;
    char fs[96];
    free_space(path, fs, sizeof fs);
    snprintf(T->werr, sizeof T->werr, "%s (%s)", msg, fs);
}

static void events_checked(trainer *T, sn_status st) {
    if (st != SN_OK) write_failed(T, sn_events_path(T->ev), sn_last_error());
}

/* Appends text to a run file whole or not at all: a failed write (disk full)
 * is cut back to where it began, so no torn line remains. */
static void put_text(trainer *T, int fd, const char *name, const char *text, size_t n) {
    if (T->wfail) return; /* stopping: keep the files as they are */
    off_t at = lseek(fd, 0, SEEK_END);
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const char *why = w < 0 ? strerror(errno) : "no progress";
            if (at >= 0 && ftruncate(fd, at) != 0) { /* the stop message names the file anyway */ }
            char path[SN_RUN_DIR_MAX + 64], msg[SN_RUN_DIR_MAX + 160];
            snprintf(path, sizeof path, "%s/%s", T->dir, name);
            snprintf(msg, sizeof msg, "cannot write '%s': %s", path, why);
            write_failed(T, path, msg);
            return;
        }
        done += (size_t)w;
    }
}

static void put_line(trainer *T, int fd, const char *name, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put_line(trainer *T, int fd, const char *name, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || fd < 0) return;
    put_text(T, fd, name, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void tlog(trainer *T, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tlog(trainer *T, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!T->o->quiet) {
        clear_progress(T);
        fputs(buf, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    time_t t = time(NULL);
    struct tm tm;
    char ts[32], line[4200];
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    int n = snprintf(line, sizeof line, "[%s] %s\n", ts, buf);
    if (n < 0) return;
    if (n >= (int)sizeof line) n = (int)sizeof line - 1, line[n - 1] = '\n';
    if (T->log_fd >= 0) put_text(T, T->log_fd, "train.log", line, (size_t)n);
    else if (T->early) fwrite(line, 1, (size_t)n, T->early);
}

static void log_hook(int level, const char *msg, void *user) {
    trainer *T = user;
    tlog(T, "%s: %s", level == SN_LOG_ERROR ? "error" : level == SN_LOG_WARN ? "warning" : "info", msg);
}

static void fmt_bytes(double b, char *buf, size_t n) {
    if (b >= 1 << 30) snprintf(buf, n, "%.2f GiB", b / (1 << 30));
    else snprintf(buf, n, "%.1f MiB", b / (1 << 20));
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static double data_wait_share(trainer *T) {
    sn_loader_stats ls;
    sn_loader_get_stats(T->loader, &ls);
    double el = now_s() - T->t_start;
    return el > 0 ? ls.wait_total_s / el : 0;
}

static size_t device_bytes(trainer *T) {
    return sn_step_peak(T->step) + sn_ctx_persistent_bytes(T->m->ctx);
}

/* The status line: on a terminal redrawn in place, else a plain line per log_every. */
static void progress(trainer *T, double loss, double lr, int force_line) {
    double remain = (double)(T->total - T->st.step) * T->ema_ms / 1000.0;
    char mem[32], eta[32];
    fmt_bytes((double)device_bytes(T), mem, sizeof mem);
    fmt_time(remain, eta, sizeof eta);
    int B = T->cfg->train.batch_size * (T->dist.world > 0 ? T->dist.world : 1); /* the global batch */
    double sps = T->ema_ms > 0 ? B * 1000.0 / T->ema_ms : 0;
    int64_t ep_total = T->spe > 0 ? (T->total + T->spe - 1) / T->spe : 0;
    char line[512];
    snprintf(line, sizeof line,
             "epoch %" PRId64 "/%" PRId64 " step %" PRId64 "/%" PRId64 " loss %.5f lr %.3g %.1f ms/step %.1f samples/s "
             "mem %s data %.0f%% ETA %s",
             T->st.epoch_step ? T->st.epoch + 1 : T->st.epoch, ep_total, T->st.step, T->total, loss,
             lr, T->ema_ms, sps, mem, 100.0 * data_wait_share(T), eta);
    if (force_line) {
        if (T->tty) {
            /* on a terminal the progress line is enough; the log file gets the line */
            if (T->log_fd >= 0) put_line(T, T->log_fd, "train.log", "%s\n", line);
        } else {
            tlog(T, "%s", line);
        }
    }
    if (T->tty && !T->o->quiet) {
        double t = now_s();
        if (force_line || t - T->last_progress > 0.1 || T->st.step == T->total) {
            fprintf(stdout, "\r\033[K%s", line);
            fflush(stdout);
            T->progress_shown = 1;
            T->last_progress = t;
        }
    }
}

/* ---- run directory ---- */

static sn_status mkdir_p(const char *path) {
    char p[SN_RUN_DIR_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0755) && errno != EEXIST)
            return sn_error(SN_ERR_IO, "cannot create directory '%s': %s", p, strerror(errno));
        *q = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST)
        return sn_error(SN_ERR_IO, "cannot create directory '%s': %s", p, strerror(errno));
    return SN_OK;
}

/* The process training in dir (its PID), or 0 when none holds the lock. */
static long lock_holder(const char *dir) {
    char p[SN_RUN_DIR_MAX + 16];
    snprintf(p, sizeof p, "%s/.lock", dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    long pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        char buf[32] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid <= 0) pid = -1; /* locked, PID not yet written */
    }
    close(fd);
    return pid;
}

static sn_status in_use(const char *dir, long pid) {
    char who[48] = "another process";
    if (pid > 0) snprintf(who, sizeof who, "process %ld", pid);
    return sn_error(SN_ERR_IO, "run directory '%s' is in use: %s is training in it. Wait for it to finish (or stop "
                    "it), or start a new run with another name=...", dir, who);
}

/* An advisory lock on <run>/.lock (with this PID inside) for as long as this
 * process trains there. flock dies with the process: kill -9 leaves none. */
static sn_status lock_run(trainer *T) {
    char p[SN_RUN_DIR_MAX + 16];
    snprintf(p, sizeof p, "%s/.lock", T->dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sn_error(SN_ERR_IO, "cannot create '%s': %s; check the run directory's permissions", p,
                                strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) return in_use(T->dir, lock_holder(T->dir));
        return sn_error(SN_ERR_IO, "cannot lock '%s': %s", p, strerror(e));
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n) {
        /* the lock holds without the PID; a second process then says "another process" */
    }
    T->lock_fd = fd;
    return SN_OK;
}

static sn_status exists_error(const char *dir) {
    long pid = lock_holder(dir);
    if (pid) return in_use(dir, pid);
    return sn_error(SN_ERR_CONFIG, "run directory '%s' already exists; sinter does not overwrite a run: continue it "
                    "with --resume %s, or start a new one (another name=..., or wait a second)", dir, dir);
}

/* The new run's directory name (out_dir/name-YYYYmmdd-HHMMSS or --run-dir); it
 * is made only after everything that can be checked was (create_run_dir). */
static sn_status plan_run_dir(trainer *T) {
    const sn_config *c = T->cfg;
    if (T->o->run_dir) {
        if (strlen(T->o->run_dir) >= sizeof T->dir - 64)
            return sn_error(SN_ERR_CONFIG, "run directory '%.80s...' is too long", T->o->run_dir);
        snprintf(T->dir, sizeof T->dir, "%s", T->o->run_dir);
    } else {
        char ts[32];
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
        snprintf(T->dir, sizeof T->dir, "%.800s/%.100s-%s", c->out_dir[0] ? c->out_dir : "runs", c->name[0] ? c->name : "crn",
                 ts);
    }
    struct stat sb;
    if (stat(T->dir, &sb) == 0) return exists_error(T->dir);
    return SN_OK;
}

static sn_status create_run_dir(trainer *T) {
    char parent[SN_RUN_DIR_MAX];
    snprintf(parent, sizeof parent, "%s", T->dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        sn_status s = mkdir_p(parent);
        if (s != SN_OK) return s;
    }
    if (mkdir(T->dir, 0755) != 0) {
        if (errno == EEXIST) return exists_error(T->dir);
        return sn_error(SN_ERR_IO, "cannot create run directory '%s': %s; check out_dir and its permissions", T->dir,
                        strerror(errno));
    }
    T->created = 1;
    return lock_run(T);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    if (remove(path) != 0) { /* best effort: go on with the rest */ }
    return 0;
}

/* Start-up failed after this call made the run directory: it holds only what
 * this call wrote, and a retry should not find it ("already exists"). */
static void remove_run_dir(trainer *T) {
    if (!T->created) return;
    if (T->lock_fd >= 0) close(T->lock_fd), T->lock_fd = -1;
    nftw(T->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    T->created = 0;
}

/* A temporary file an atomic write leaves when killed: "x.safetensors.tmp.PID",
 * "loss.svg.tmp.PID", "samples/x.wav.tmpPID.N". */
static int is_stale_tmp(const char *name) {
    const char *t = strstr(name, ".tmp");
    return t && t != name && (t[4] == '.' || (t[4] >= '0' && t[4] <= '9'));
}

/* On resume (the lock held, so no live process writes them): removes the
 * temporary files of writes that a killed process never finished. */
static int remove_stale_tmp(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[SN_RUN_DIR_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (depth == 0 && !strcmp(e->d_name, "samples")) n += remove_stale_tmp(p, 1);
        else if (is_stale_tmp(e->d_name) && unlink(p) == 0) n++;
    }
    closedir(d);
    return n;
}

static sn_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return sn_error(SN_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? sn_error(SN_ERR_IO, "cannot write '%s': %s", path, strerror(errno)) : SN_OK;
}

static void curve_add(curve *c, int64_t x, double y) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 256;
        int64_t *nx = realloc(c->x, (size_t)cap * sizeof *nx);
        if (nx) c->x = nx;
        double *ny = realloc(c->y, (size_t)cap * sizeof *ny);
        if (ny) c->y = ny;
        if (!nx || !ny) return;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n] = y;
    c->n++;
}

static const char *k_csv_header =
    "step,epoch,loss,lr,ms_per_step,samples_per_s,valid_loss,valid_sisdr,valid_sisdri,valid_stoi,valid_estoi\n";

/* On resume: keep the metrics.csv rows up to the checkpoint's step (a run
 * killed after its last checkpoint logged steps that will be redone) and
 * rebuild the curves from them. */
static sn_status reopen_csv(trainer *T, const char *path) {
    FILE *f = fopen(path, "r");
    char *keep = NULL;
    size_t klen = 0;
    FILE *mem = open_memstream(&keep, &klen);
    if (!mem) { if (f) fclose(f); return sn_error(SN_ERR_NOMEM, "out of memory reading metrics.csv"); }
    fputs(k_csv_header, mem);
    if (f) {
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "step,", 5)) continue;
            char *p = line;
            int64_t step = strtoll(p, &p, 10);
            if (step > T->st.step) continue;
            fputs(line, mem);
            /* fields: step,epoch,loss,lr,ms,sps,vloss,... */
            char *fld[12] = {0};
            int nf = 0;
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s", line);
            char *save = NULL;
            char *s = tmp;
            for (int k = 0; k < 11; k++) {
                char *e = strchr(s, ',');
                fld[nf++] = s;
                if (!e) break;
                *e = 0;
                s = e + 1;
            }
            (void)save;
            if (nf > 2 && *fld[2] && *fld[2] != '\n') curve_add(&T->tl, step, strtod(fld[2], NULL));
            if (nf > 6 && *fld[6] && *fld[6] != '\n') {
                curve_add(&T->vl, step, strtod(fld[6], NULL));
                T->last_valid_step = step;
            }
        }
        fclose(f);
    }
    fclose(mem);
    sn_status s = write_text(path, keep ? keep : k_csv_header);
    free(keep);
    if (s != SN_OK) return s;
    T->csv_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (T->csv_fd < 0) return sn_error(SN_ERR_IO, "cannot append to '%s': %s", path, strerror(errno));
    return SN_OK;
}

static sn_status open_outputs(trainer *T, int resume) {
    char path[SN_RUN_DIR_MAX + 64];
    snprintf(path, sizeof path, "%s/train.log", T->dir);
    T->log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (T->log_fd < 0) return sn_error(SN_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    /* what was logged before the file existed (device, data, model) */
    if (T->early) {
        fclose(T->early);
        T->early = NULL;
        if (T->early_len) put_text(T, T->log_fd, "train.log", T->early_buf, T->early_len);
        free(T->early_buf);
        T->early_buf = NULL;
        if (T->wfail) return sn_error(SN_ERR_IO, "%s", T->werr);
    }
    snprintf(T->last, sizeof T->last, "%s/last.safetensors", T->dir);
    snprintf(T->best, sizeof T->best, "%s/best.safetensors", T->dir);
    sn_status s = SN_OK;
    if (!resume) {
        char *yaml = NULL;
        s = sn_config_to_yaml(T->cfg, &yaml);
        snprintf(path, sizeof path, "%s/config.yaml", T->dir);
        if (s == SN_OK) s = write_text(path, yaml);
        if (s == SN_OK && T->dist.world > 1) s = sn_dist_note_config(&T->dist, path, T->cfg->train.batch_size);
        free(yaml);
        if (s != SN_OK) return s;
    }
    snprintf(path, sizeof path, "%s/metrics.csv", T->dir);
    s = reopen_csv(T, path);
    if (s == SN_OK) s = sn_events_open(T->dir, &T->ev);
    /* TensorBoard drops what the earlier process logged past the checkpoint (redone now) */
    if (s == SN_OK && resume) s = sn_events_session_start(T->ev, T->st.step + 1);
    return s;
}

static void plot(trainer *T) {
    char path[SN_RUN_DIR_MAX + 32];
    snprintf(path, sizeof path, "%s/loss.svg", T->dir);
    char title[256];
    snprintf(title, sizeof title, "%s: loss", T->cfg->name);
    if (!T->wfail && sn_plot_loss_svg(path, title, T->tl.x, T->tl.y, T->tl.n, T->vl.x, T->vl.y, T->vl.n, 1) != SN_OK)
        write_failed(T, path, sn_last_error());
}

/* ---- checkpoints ---- */

/* BatchNorm counters: PyTorch increments them once per training forward. */
static void set_counters(trainer *T) {
    float v = (float)T->st.step;
    for (int i = 0; i < T->m->n; i++) {
        const char *nm = T->m->t[i]->name;
        size_t L = strlen(nm);
        if (L > 20 && !strcmp(nm + L - 20, ".num_batches_tracked")) sn_tensor_set(T->m->t[i], &v, 1);
    }
}

static sn_status save(trainer *T, const char *path, const char *what) {
    set_counters(T);
    sn_status s = sn_ckpt_save(T->m, T->step, &T->st, T->cfg, path);
    if (s != SN_OK) {
        /* the message says the previous file at path is unchanged */
        write_failed(T, path, sn_last_error());
        T->ckpt_failed = 1;
        return s;
    }
    if (!strcmp(what, "last")) snprintf(T->last_good, sizeof T->last_good, "%s (step %" PRId64 ")", path, T->st.step);
    return SN_OK;
}

/* The first failed write ends the run: a last attempt at the checkpoint alone
 * (unless that is what failed), then the error naming the file. */
static sn_status write_stop(trainer *T) {
    char ck[SN_RUN_DIR_MAX * 2 + 200];
    if (T->ckpt_failed) {
        snprintf(ck, sizeof ck, "the checkpoints written before are intact");
    } else {
        set_counters(T);
        if (sn_ckpt_save(T->m, T->step, &T->st, T->cfg, T->last) == SN_OK)
            snprintf(ck, sizeof ck, "checkpoint of step %" PRId64 " written to '%s'", T->st.step, T->last);
        else
            snprintf(ck, sizeof ck, "the checkpoint could not be written either; '%s' from before is intact", T->last);
    }
    return sn_error(SN_ERR_IO, "%s. Training stopped at step %" PRId64 "; %s. Free some space, then continue with: "
                    "sinter train --resume %s", T->werr, T->st.step, ck, T->dir);
}

/* ---- validation ---- */

typedef struct audio_cb { trainer *T; int max; } audio_cb;

static int send_audio(int64_t i, const float *noisy, const float *enh, const float *clean, int64_t n, int sr, void *u) {
    audio_cb *a = u;
    if (i >= a->max) return 1;
    char tag[64];
    int64_t step = a->T->st.step;
    snprintf(tag, sizeof tag, "valid/%" PRId64 "/enhanced", i);
    events_checked(a->T, sn_events_audio(a->T->ev, tag, step, enh, n, sr));
    snprintf(tag, sizeof tag, "valid/%" PRId64 "/noisy", i);
    events_checked(a->T, sn_events_audio(a->T->ev, tag, step, noisy, n, sr));
    snprintf(tag, sizeof tag, "valid/%" PRId64 "/clean", i);
    events_checked(a->T, sn_events_audio(a->T->ev, tag, step, clean, n, sr));
    /* the same files as WAV in samples/ (the enhanced one is the latest validation's) */
    char p[SN_RUN_DIR_MAX + 64];
    const char *kind[3] = {"noisy", "clean", "enhanced"};
    const float *x[3] = {noisy, clean, enh};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/samples/%s_%" PRId64 ".wav", a->T->dir, kind[k], i);
        if (!a->T->wfail && sn_audio_write(p, x[k], n, 1, sr, 0) != SN_OK) write_failed(a->T, p, sn_last_error());
    }
    return i + 1 >= a->max || a->T->wfail;
}

static sn_status validate(trainer *T, sn_train_result *res) {
    if (!T->infer) return SN_OK;
    double t0 = now_s();
    audio_cb a = {T, T->cfg->train.audio_samples};
    sn_eval_result r;
    char sd[SN_RUN_DIR_MAX + 16];
    snprintf(sd, sizeof sd, "%s/samples", T->dir);
    if (a.max > 0 && mkdir(sd, 0755) != 0 && errno != EEXIST) {
        char msg[SN_RUN_DIR_MAX + 160];
        snprintf(msg, sizeof msg, "cannot create '%s': %s", sd, strerror(errno));
        write_failed(T, sd, msg);
        a.max = 0;
    }
    sn_status s = sn_evaluate_with(T->infer, T->valid, 1, &r, a.max > 0 ? send_audio : NULL, &a);
    if (s != SN_OK) return sn_error_prefix(s, "validation at step %" PRId64, T->st.step);
    T->last_valid_step = T->st.step;
    res->valid = r;
    res->has_valid = 1;
    int64_t step = T->st.step;
    events_checked(T, sn_events_scalar(T->ev, "valid/loss", step, r.loss));
    events_checked(T, sn_events_scalar(T->ev, "valid/si_sdr", step, r.sisdr));
    events_checked(T, sn_events_scalar(T->ev, "valid/si_sdr_improvement", step, r.sisdri));
    events_checked(T, sn_events_scalar(T->ev, "valid/stoi", step, r.stoi));
    events_checked(T, sn_events_scalar(T->ev, "valid/estoi", step, r.estoi));
    put_line(T, T->csv_fd, "metrics.csv", "%" PRId64 ",%" PRId64 ",,,,,%.9g,%.4f,%.4f,%.4f,%.4f\n", step, T->st.epoch,
             r.loss, r.sisdr, r.sisdri, r.stoi, r.estoi);
    curve_add(&T->vl, step, r.loss);
    plot(T);
    int better = r.loss < T->st.best_valid_loss;
    tlog(T, "valid step %" PRId64 ": loss %.5f  SI-SDR %.2f dB (input %.2f, improvement %+.2f dB)  STOI %.3f (input "
         "%.3f)  ESTOI %.3f  [%" PRId64 " items, %.1f s]%s",
         step, r.loss, r.sisdr, r.sisdr_in, r.sisdri, r.stoi, r.stoi_in, r.estoi, r.items, now_s() - t0,
         better ? "  new best" : "");
    if (better) {
        T->st.best_valid_loss = r.loss;
        res->best_valid_loss = r.loss;
        save(T, T->best, "best"); /* a failure stops the run at the end of this step */
    }
    return SN_OK;
}

/* ---- batch dump (parity checks against PyTorch) ---- */

static void dump_batch(trainer *T, const sn_batch *bt, float lr, int64_t step) {
    if (!T->o->dump_batches) return;
    char path[SN_RUN_DIR_MAX + 64];
    snprintf(path, sizeof path, "%s/batch_%06" PRId64 ".safetensors", T->o->dump_batches, step);
    sn_st_writer *w = sn_st_writer_new();
    int64_t sh[4] = {bt->batch, 1, bt->frames, bt->bins};
    sn_st_add_ref(w, "noisy_mag", "F32", 4, sh, bt->noisy_mag);
    sn_st_add_ref(w, "clean_mag", "F32", 4, sh, bt->clean_mag);
    char v[32];
    snprintf(v, sizeof v, "%.9g", lr);
    sn_st_set_meta(w, "lr", v);
    if (sn_st_save(w, path) != SN_OK) tlog(T, "warning: batch dump: %s", sn_last_error());
    sn_st_writer_free(w);
}

static void dump_valid(trainer *T) {
    if (!T->o->dump_batches || !T->valid) return;
    char path[SN_RUN_DIR_MAX + 64];
    snprintf(path, sizeof path, "%s/init.safetensors", T->o->dump_batches);
    save(T, path, "initial");
    int64_t n = sn_dataset_len(T->valid), N = sn_dataset_samples(T->valid);
    float *nz = malloc((size_t)(n * N) * sizeof *nz), *cl = malloc((size_t)(n * N) * sizeof *cl);
    for (int64_t i = 0; nz && cl && i < n; i++) sn_dataset_get(T->valid, 0, i, nz + i * N, cl + i * N);
    sn_st_writer *w = sn_st_writer_new();
    int64_t sh[2] = {n, N};
    if (nz && cl) {
        sn_st_add_ref(w, "noisy", "F32", 2, sh, nz);
        sn_st_add_ref(w, "clean", "F32", 2, sh, cl);
        snprintf(path, sizeof path, "%s/valid.safetensors", T->o->dump_batches);
        sn_st_save(w, path);
    }
    sn_st_writer_free(w);
    free(nz);
    free(cl);
}

/* ---- setup ---- */

static sn_status setup(trainer *T, int resume) {
    const sn_config *c = T->cfg;
    T->dcfg = *c;
    snprintf(T->dcfg.device, sizeof T->dcfg.device, "%s", T->dist.device);
    sn_status s = sn_open_device(&T->dcfg, T->dist.cpu_threads, &T->b, &T->fb);
    if (s != SN_OK) return s;
    sn_device_info info;
    sn_backend_info(T->b, &info);
    tlog(T, "device: %s (%s)%s", T->dcfg.device, info.name[0] ? info.name : sn_backend_name(T->b),
         T->b->is_host ? "" : ", CPU fallback for unsupported ops");
    if ((s = sn_dist_attach(&T->dist, T->b, T->fb)) != SN_OK) return s;
    if (T->dist.world > 1) {
        char dd[256];
        sn_dist_describe(&T->dist, c->train.batch_size, dd, sizeof dd);
        tlog(T, "data parallel: %s", dd);
    }

    sn_data_config dc;
    sn_data_config_from(c, &dc);
    s = sn_dataset_open(&dc, &T->train, &T->valid);
    if (s != SN_OK) return sn_error_prefix(s, "opening the training data");
    sn_loader_config lc;
    sn_loader_config_default(&lc);
    lc.batch_size = c->train.batch_size;
    lc.num_workers = c->train.num_workers;
    lc.drop_last = 1;
    lc.shard_rank = T->dist.rank; /* each process its own part of every global batch */
    lc.shard_count = T->dist.world;
    if (sn_dataset_len(T->train) < c->train.batch_size)
        return sn_error(SN_ERR_CONFIG, "the training set has %" PRId64 " items, fewer than train.batch_size = %d: add "
                        "data or lower train.batch_size", sn_dataset_len(T->train), c->train.batch_size);
    s = sn_loader_new(T->train, &lc, &T->loader);
    if (s != SN_OK) return s;
    T->spe = sn_loader_steps(T->loader);
    if (c->train.steps_per_epoch > 0 && c->train.steps_per_epoch < T->spe) T->spe = c->train.steps_per_epoch;
    if (resume && T->st.epoch_step >= T->spe)
        return sn_error(SN_ERR_FORMAT, "resuming '%s': its checkpoint has sinter.epoch_step = %" PRId64 " but an epoch "
                        "has %" PRId64 " steps now: the data, train.batch_size or train.steps_per_epoch changed since "
                        "(or the file was edited); resume with the run's settings", T->dir, T->st.epoch_step, T->spe);
    int64_t max_steps = T->o->max_steps > 0 ? T->o->max_steps : c->train.max_steps;
    T->total = max_steps > 0 ? max_steps : (int64_t)c->train.epochs * T->spe;

    sn_optim_config oc;
    s = sn_optim_config_from(c, &oc);
    if (s == SN_OK) s = sn_model_from_config(c, T->b, &T->m);
    if (s != SN_OK) return s;
    if (resume) {
        s = sn_ckpt_load_weights(T->last, T->m);
        if (s == SN_OK) s = sn_ckpt_read_state(T->last, &T->st);
        if (s != SN_OK) return sn_error_prefix(s, "resuming '%s'", T->dir);
        if (T->st.world_size != T->dist.world)
            return sn_error(SN_ERR_CONFIG, "--resume '%s': the run was trained by %d process%s and this is %d: the data "
                            "order and the global batch would change; resume with %s", T->dir, T->st.world_size,
                            T->st.world_size == 1 ? "" : "es", T->dist.world,
                            T->st.world_size == 1 ? "one process (no mpirun)" : "mpirun -np <that number>");
    } else {
        s = sn_model_init(T->m, (uint64_t)c->seed);
        T->st.seed = (uint64_t)c->seed;
        T->st.best_valid_loss = INFINITY;
        if (s != SN_OK) return s;
    }
    T->st.world_size = T->dist.world;
    if ((s = sn_dist_bcast_model(&T->dist, T->m)) != SN_OK) return s; /* every process starts from rank 0's model */
    int64_t N = sn_dataset_samples(T->train);
    int frames = (int)sn_stft_frames(N);
    s = sn_step_new(T->m, T->b, T->fb, c->train.batch_size, frames, &oc, &T->step);
    if (s == SN_ERR_NOMEM)
        sn_error_suffix(s, "lower train.batch_size or data.segment_seconds, or turn on train.mixed_precision");
    if (s != SN_OK) return sn_error_prefix(s, "building the training step (batch %d, %d frames)", c->train.batch_size,
                                           frames);
    if (resume) {
        s = sn_ckpt_load_optim(T->last, T->step);
        if (s != SN_OK) return s;
    }
    if (T->valid && writer(T)) { /* validation runs on rank 0 alone */
        int vt = (int)sn_stft_frames(sn_dataset_samples(T->valid));
        s = sn_infer_new(T->m, T->b, T->fb, c->train.batch_size, vt, &T->infer);
        if (s == SN_ERR_NOMEM) sn_error_suffix(s, "lower train.batch_size, or validate on shorter files");
        if (s != SN_OK) return sn_error_prefix(s, "building the validation graph");
    }
    char mem[32];
    fmt_bytes((double)device_bytes(T), mem, sizeof mem);
    char desc[256];
    tlog(T, "model: %s, %" PRId64 " parameters", sn_model_describe(T->m, desc, sizeof desc), T->m->nparams);
    tlog(T, "data: %" PRId64 " training items, %" PRId64 " validation items, %.2f s segments (%d frames), %" PRId64
         " steps/epoch of batch %d", sn_dataset_len(T->train), T->valid ? sn_dataset_len(T->valid) : 0,
         c->data.segment_seconds, frames, T->spe, c->train.batch_size);
    tlog(T, "memory on the device: %s (step arena %.1f MiB + persistent %.1f MiB)", mem,
         sn_step_peak(T->step) / 1048576.0, sn_ctx_persistent_bytes(T->m->ctx) / 1048576.0);
    const char *fbr = sn_plan_fallback_report(T->step->plan);
    if (sn_plan_fallback_count(T->step->plan) > 0 && fbr) tlog(T, "ops run on the CPU fallback: %s", fbr);
    return SN_OK;
}

static void teardown(trainer *T) {
    sn_infer_free(T->infer);
    sn_step_free(T->step);
    sn_loader_free(T->loader);
    sn_model_free(T->m);
    sn_dataset_free(T->train);
    sn_dataset_free(T->valid);
    if (T->fb) sn_backend_free(T->fb);
    if (T->b) sn_backend_free(T->b);
    if (T->ev) sn_events_close(T->ev);
    if (T->csv_fd >= 0) close(T->csv_fd);
    if (T->log_fd >= 0) close(T->log_fd);
    if (T->early) fclose(T->early);
    free(T->early_buf);
    if (T->lock_fd >= 0) close(T->lock_fd); /* releases the run directory */
    free(T->tl.x);
    free(T->tl.y);
    free(T->vl.x);
    free(T->vl.y);
}

void sn_train_opts_default(sn_train_opts *o) { memset(o, 0, sizeof *o); }

/* ---- the loop ---- */

/* The loader's next batch, queued on the device for training step `step` (0-based). */
static sn_status queue_batch(trainer *T, int64_t step) {
    sn_batch *bt = NULL;
    sn_status s = sn_loader_next(T->loader, &bt);
    if (s != SN_OK) return s;
    if (!bt)
        return sn_error(SN_ERR_INTERNAL, "loader ended epoch %" PRId64 " early at batch %" PRId64, T->st.epoch,
                        T->st.epoch_step + (step - T->st.step));
    if (writer(T)) dump_batch(T, bt, (float)sn_lr_at(T->cfg, step, T->total), step);
    s = sn_step_prefetch(T->step, bt->noisy_mag, bt->clean_mag);
    sn_loader_release(T->loader, bt);
    return s != SN_OK ? sn_error_prefix(s, "uploading the batch of step %" PRId64, step + 1) : s;
}

static sn_status run_loop(trainer *T, sn_train_result *res) {
    const sn_config *c = T->cfg;
    int need_start = 1;
    sn_status s = SN_OK;
    int64_t log_every = c->train.log_every > 0 ? c->train.log_every : 50;
    if (T->st.step == 0 && T->o->dump_batches && writer(T)) dump_valid(T);
    if (T->st.step >= T->total) tlog(T, "nothing to do: step %" PRId64 " >= %" PRId64 " steps", T->st.step, T->total);
    while (T->st.step < T->total) {
        if (need_start) {
            if ((s = sn_loader_start_epoch(T->loader, (uint64_t)T->st.epoch)) != SN_OK) return s;
            for (int64_t k = 0; k < T->st.epoch_step; k++) { /* resume mid-epoch: same batches as before */
                sn_batch *bt = NULL;
                if ((s = sn_loader_next(T->loader, &bt)) != SN_OK) return s;
                if (bt) sn_loader_release(T->loader, bt);
            }
            need_start = 0;
        }
        double lr = sn_lr_at(c, T->st.step, T->total);
        float loss = 0;
        if (!T->prefetched && (s = queue_batch(T, T->st.step)) != SN_OK) return s;
        T->prefetched = false;
        double t0 = now_s();
        sn_dist_test_fault(&T->dist, T->st.step + 1);
        if (T->dist.world > 1) sn_dist_watch_begin("a training step (its gradient all-reduce with the other processes)");
        s = sn_step_launch(T->step, (float)lr);
        if (s != SN_OK) return sn_error_prefix(s, "training step %" PRId64, T->st.step + 1);
        /* the next batch of this epoch uploads while the device runs this step */
        sn_status sq = SN_OK;
        if (T->st.epoch_step + 1 < T->spe && T->st.step + 1 < T->total && !(T->o->stop && *T->o->stop)) {
            sq = queue_batch(T, T->st.step + 1);
            T->prefetched = sq == SN_OK;
        }
        s = sn_step_finish(T->step, &loss);
        if (T->dist.world > 1) sn_dist_watch_end();
        double ms = (now_s() - t0) * 1000.0;
        if (s != SN_OK) return sn_error_prefix(s, "training step %" PRId64, T->st.step + 1);
        if (sq != SN_OK) return sq;
        /* data parallel: the global batch's loss, and a stop any process was asked for */
        int stop = T->o->stop && *T->o->stop;
        if ((s = sn_dist_step_agree(&T->dist, &loss, &stop)) != SN_OK)
            return sn_error_prefix(s, "training step %" PRId64, T->st.step + 1);
        T->st.step++;
        T->st.epoch_step++;
        if (T->o->nan_at_step > 0 && T->st.step == T->o->nan_at_step) loss = NAN;
        if (!isfinite(loss)) {
            tlog(T, "loss is %s at step %" PRId64 " (epoch %" PRId64 ", lr %.3g)", isnan(loss) ? "NaN" : "Inf", T->st.step,
                 T->st.epoch, lr);
            res->diverged = 1;
            return sn_error(SN_ERR_NUMERIC, "training stopped: the loss became %s at step %" PRId64 " (lr %.3g). Last "
                            "good checkpoint: %s. Lower train.lr, set train.grad_clip (e.g. 5), or check the data; "
                            "resume from the checkpoint with --resume %s",
                            isnan(loss) ? "NaN" : "Inf", T->st.step, lr,
                            T->last_good[0] ? T->last_good : "none (no checkpoint written yet)", T->dir);
        }
        T->ema_ms = T->ema_ms > 0 ? 0.9 * T->ema_ms + 0.1 * ms : ms;
        T->win_loss += loss;
        T->win_ms += ms;
        T->win_n++;
        if (res->first_loss == 0 && T->st.step - T->step_start <= log_every && T->win_n == 1) res->first_loss = loss;
        int epoch_end = T->st.epoch_step >= T->spe;
        if (epoch_end) {
            T->st.epoch++;
            T->st.epoch_step = 0;
            need_start = 1;
            res->epochs_done++;
        }
        int last_step = T->st.step == T->total;
        if (!writer(T)) { /* ranks other than 0 write nothing */
            T->win_loss = T->win_ms = 0;
            T->win_n = 0;
            if (stop) {
                res->interrupted = 1;
                return SN_OK;
            }
            continue;
        }
        if (T->st.step % log_every == 0 || last_step || stop) {
            double ml = T->win_loss / T->win_n, mms = T->win_ms / T->win_n;
            int B = c->train.batch_size * T->dist.world; /* the global batch */
            put_line(T, T->csv_fd, "metrics.csv", "%" PRId64 ",%" PRId64 ",%.9g,%.6g,%.3f,%.2f,,,,,\n", T->st.step,
                     T->st.epoch, ml, lr, mms, B * 1000.0 / mms);
            events_checked(T, sn_events_scalar(T->ev, "train/loss", T->st.step, ml));
            events_checked(T, sn_events_scalar(T->ev, "train/lr", T->st.step, lr));
            events_checked(T, sn_events_scalar(T->ev, "train/ms_per_step", T->st.step, mms));
            events_checked(T, sn_events_scalar(T->ev, "train/data_wait_share", T->st.step, data_wait_share(T)));
            curve_add(&T->tl, T->st.step, ml);
            res->last_loss = ml;
            progress(T, ml, lr, 1);
            T->win_loss = T->win_ms = 0;
            T->win_n = 0;
        } else {
            progress(T, loss, lr, 0);
        }
        int do_valid = c->train.valid_every > 0 ? T->st.step % c->train.valid_every == 0 : epoch_end;
        if (last_step && T->last_valid_step != T->st.step) do_valid = 1;
        if (do_valid && (s = validate(T, res)) != SN_OK) return s;
        int do_ckpt = c->train.ckpt_every > 0 ? T->st.step % c->train.ckpt_every == 0 : epoch_end;
        if (do_ckpt || last_step || stop) save(T, T->last, "last");
        if (T->wfail) return write_stop(T);
        if (stop) {
            tlog(T, "stopped at step %" PRId64 " (epoch %" PRId64 "); checkpoint %s; continue with: sinter train --resume %s",
                 T->st.step, T->st.epoch, T->last, T->dir);
            res->interrupted = 1;
            return SN_OK;
        }
    }
    if (T->tl.n && writer(T)) plot(T);
    return T->wfail ? write_stop(T) : SN_OK;
}

sn_status sn_train(const sn_config *cfg, const sn_train_opts *opts, sn_train_result *result) {
    if (!cfg) return sn_error(SN_ERR_INVALID_ARG, "sn_train: config is required");
    sn_train_opts dflt;
    sn_train_opts_default(&dflt);
    if (!opts) opts = &dflt;
    sn_train_result rdummy;
    sn_train_result *res = result ? result : &rdummy;
    memset(res, 0, sizeof *res);
    res->best_valid_loss = INFINITY;
    sn_status s = sn_config_validate(cfg);
    if (s != SN_OK) return s;
    trainer *T = calloc(1, sizeof *T);
    if (!T) return sn_error(SN_ERR_NOMEM, "sn_train: out of memory");
    T->cfg = cfg;
    T->o = opts;
    s = sn_dist_run_begin(&T->dist, cfg, opts->cpu_threads);
    if (s != SN_OK) {
        free(T);
        return s;
    }
    if (!writer(T)) { /* only rank 0 prints */
        T->ropts = *opts;
        T->ropts.quiet = 1;
        T->o = opts = &T->ropts;
    }
    T->tty = !opts->quiet && isatty(STDOUT_FILENO);
    T->last_valid_step = -1;
    T->log_fd = T->csv_fd = T->lock_fd = -1;
    T->early = open_memstream(&T->early_buf, &T->early_len);
    int resume = opts->resume_dir != NULL;
    if (resume) {
        snprintf(T->dir, sizeof T->dir, "%s", opts->resume_dir);
        size_t L = strlen(T->dir);
        while (L > 1 && T->dir[L - 1] == '/') T->dir[--L] = 0;
        struct stat sb;
        char p[SN_RUN_DIR_MAX + 32];
        snprintf(p, sizeof p, "%s/last.safetensors", T->dir);
        if (stat(T->dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            s = sn_error(SN_ERR_IO, "--resume '%s': no such run directory", T->dir);
        /* before anything of the run is read or written: one process per run */
        if (s == SN_OK && writer(T)) s = lock_run(T); /* rank 0 alone writes the run */
        if (s == SN_OK && stat(p, &sb) != 0)
            s = sn_error(SN_ERR_IO, "--resume '%s': it has no last.safetensors (the run stopped before its first "
                         "checkpoint); start a new run instead", T->dir);
    } else {
        if (writer(T)) s = plan_run_dir(T);
        s = sn_dist_agree_dir(&T->dist, s, T->dir, sizeof T->dir); /* rank 0's name (and outcome) for all */
    }
    if (s == SN_OK) {
        snprintf(res->run_dir, sizeof res->run_dir, "%s", T->dir);
        snprintf(T->last, sizeof T->last, "%s/last.safetensors", T->dir);
        snprintf(T->best, sizeof T->best, "%s/best.safetensors", T->dir);
        if (resume) {
            s = sn_ckpt_read_state(T->last, &T->st);
            if (s != SN_OK) s = sn_error_prefix(s, "resuming '%s'", T->dir);
        }
    }
    if (s == SN_OK) sn_set_log(log_hook, T, SN_LOG_WARN);
    if (s == SN_OK) {
        tlog(T, "%s run %s", resume ? "resuming" : "starting", T->dir);
        if (resume && writer(T)) {
            int n = remove_stale_tmp(T->dir, 0);
            if (n) tlog(T, "removed %d temporary file%s left by an interrupted write", n, n == 1 ? "" : "s");
        }
        /* device, data, model and memory are checked before a new run's directory exists */
        s = setup(T, resume);
        if (s == SN_OK && !resume && writer(T)) s = create_run_dir(T);
        if (s == SN_OK && writer(T)) s = open_outputs(T, resume);
        if (s != SN_OK && writer(T)) remove_run_dir(T);
        if (s == SN_OK && resume)
            tlog(T, "resumed at step %" PRId64 " (epoch %" PRId64 ", batch %" PRId64 " of it)", T->st.step, T->st.epoch,
                 T->st.epoch_step);
    }
    if (s == SN_OK) {
        if (resume) snprintf(T->last_good, sizeof T->last_good, "%s (step %" PRId64 ")", T->last, T->st.step);
        T->t_start = now_s();
        T->step_start = T->st.step;
        s = run_loop(T, res);
        res->seconds = now_s() - T->t_start;
        res->steps = T->st.step;
        if (s == SN_OK && !res->interrupted)
            tlog(T, "done: %" PRId64 " steps in %.1f s; loss %.5f -> %.5f; best validation loss %.5f; run directory %s",
                 T->st.step - T->step_start, res->seconds, res->first_loss, res->last_loss, T->st.best_valid_loss,
                 T->dir);
    }
    res->best_valid_loss = T->st.best_valid_loss;
    res->rank = T->dist.rank;
    res->world = T->dist.world;
    if (s != SN_OK && T->log_fd >= 0) { /* the caller prints it; the log keeps it too (whole, or not at all) */
        int wf = T->wfail;
        T->wfail = 0;
        put_line(T, T->log_fd, "train.log", "error: %s\n", sn_last_error());
        T->wfail = wf;
    }
    clear_progress(T);
    sn_set_log(NULL, NULL, SN_LOG_WARN);
    teardown(T);
    sn_dist_run_end(&T->dist);
    free(T);
    return s;
}
