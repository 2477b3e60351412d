/* `sinter enhance --ckpt CKPT [--config CONF] [key=value ...] IN... -o OUT`:
 * the arguments, which output each input goes to, and the printing. The
 * enhancement itself (read, resample, chunked streaming inference, write) is
 * sn_enhance_file in src/train/enhance.c. */
#include "cli.h"
#include "sinter/audio.h"
#include "sinter/config.h"
#include "sinter/train.h"
#include "io/fs.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_OVERRIDES 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter enhance --ckpt CKPT [--config CONF] [key=value ...] IN... -o OUT\n"
            "                      [--device D] [--chunk-seconds S] [--threads N] [--quiet]\n"
            "\n"
            "Enhances noisy speech with a trained model. IN are audio files (.wav .flac .ogg)\n"
            "or folders (searched recursively). With one input file OUT is the output file;\n"
            "otherwise OUT is a folder and each input keeps its name (and, for a folder\n"
            "input, its path below that folder).\n"
            "Any sample rate and channel count is read: the audio is mixed down to mono and\n"
            "resampled to 16 kHz for the model, then resampled back and written at the input's\n"
            "rate and in its format (a float WAV stays float, 24-bit stays 24-bit).\n"
            "\n"
            "options:\n"
            "  --ckpt CKPT         checkpoint (.safetensors). A sinter checkpoint carries its config\n"
            "                      (--config and overrides are then not used); a plain PyTorch\n"
            "                      state_dict (no metadata) needs --config and/or key=value\n"
            "  --config CONF       YAML config giving the model (model.rnn, model.hidden, ...)\n"
            "  key=value           config overrides, e.g. model.rnn=gru model.hidden=512\n"
            "  -o, --out OUT       output file (one input file) or folder\n"
            "  --device D          auto (default), cpu, cuda, cuda:N\n"
            "  --chunk-seconds S   process long files in chunks of S seconds with the model state\n"
            "                      carried: constant model memory, output equal to whole-file\n"
            "                      processing (to 1e-5). Default 10; 0 = whole file at once.\n"
            "                      The attention model (model.rnn=attention) has no exact chunked\n"
            "                      form without a KV cache: its files are always processed whole.\n"
            "  --threads N         CPU threads (default: all cores)\n"
            "  -q, --quiet         print only errors and the summary\n"
            "  -h, --help          this text\n"
            "\n"
            "Prints the real-time factor: processing time / audio duration (< 1 is faster\n"
            "than real time).\n"
            "\n" SN_EXIT_CODES_HELP);
}

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the file list ---------------------------------------------------------- */

typedef struct job {
    char *in, *out;
    int arg; /* the input argument it came from */
} job;

typedef struct joblist {
    job *v;
    int n, cap;
} joblist;

static int push_job(joblist *L, const char *in, const char *out) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 16;
        job *v = realloc(L->v, (size_t)cap * sizeof *v);
        if (!v) return 0;
        L->v = v, L->cap = cap;
    }
    L->v[L->n].in = strdup(in);
    L->v[L->n].out = strdup(out);
    if (!L->v[L->n].in || !L->v[L->n].out) return 0;
    L->n++;
    return 1;
}

static void free_jobs(joblist *L) {
    for (int i = 0; i < L->n; i++) free(L->v[i].in), free(L->v[i].out);
    free(L->v);
}

static int is_audio_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".wav") || !strcasecmp(dot, ".flac") || !strcasecmp(dot, ".ogg"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (k && s[k - 1] != '/') s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

/* Adds every audio file below dir (sorted, recursively); out mirrors the tree. */
static sn_status scan_dir(const char *dir, const char *out, joblist *L, int depth) {
    if (depth > 64) return sn_error(SN_ERR_IO, "'%s': folders nested deeper than 64 (a link loop?)", dir);
    DIR *d = opendir(dir);
    if (!d) return sn_error(SN_ERR_IO, "cannot read folder '%s': %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    sn_status st = SN_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **v = realloc(names, (size_t)cap * sizeof *v);
            if (!v) { st = sn_error(SN_ERR_NOMEM, "out of host memory listing '%s'", dir); break; }
            names = v;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (st == SN_OK && n > 0) qsort(names, (size_t)n, sizeof *names, cmp_str); /* an empty folder: names is NULL */
    for (int i = 0; i < n && st == SN_OK; i++) {
        char *p = join(dir, names[i]), *o = join(out, names[i]);
        struct stat sb;
        if (!p || !o) st = sn_error(SN_ERR_NOMEM, "out of host memory");
        else if (stat(p, &sb) != 0) {
            /* vanished, or a link to nothing: skipped, but not in silence */
            struct stat lb;
            if (lstat(p, &lb) == 0 && S_ISLNK(lb.st_mode))
                sn_log(SN_LOG_WARN, "enhance: skipping '%s': a broken link (its target does not exist)", p);
        }
        else if (S_ISDIR(sb.st_mode)) st = scan_dir(p, o, L, depth + 1);
        else if (S_ISREG(sb.st_mode) && is_audio_name(names[i]) && !push_job(L, p, o))
            st = sn_error(SN_ERR_NOMEM, "out of host memory");
        free(p), free(o);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Inputs -> (input, output) pairs; OUT is a file for one input file, else a folder. */
static sn_status make_jobs(char **inputs, int nin, const char *out, joblist *L, int *out_is_dir) {
    struct stat sb;
    for (int i = 0; i < nin; i++)
        if (stat(inputs[i], &sb) != 0)
            return sn_error(SN_ERR_IO, "input '%s' not found: %s", inputs[i], strerror(errno));
    *out_is_dir = !(nin == 1 && stat(inputs[0], &sb) == 0 && !S_ISDIR(sb.st_mode));
    if (!*out_is_dir) {
        if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            char *o = join(out, base_name(inputs[0]));
            int ok = o && push_job(L, inputs[0], o);
            free(o);
            *out_is_dir = 1;
            return ok ? SN_OK : sn_error(SN_ERR_NOMEM, "out of host memory");
        }
        return push_job(L, inputs[0], out) ? SN_OK : sn_error(SN_ERR_NOMEM, "out of host memory");
    }
    for (int i = 0; i < nin; i++) {
        stat(inputs[i], &sb);
        sn_status st;
        int first = L->n;
        if (S_ISDIR(sb.st_mode)) {
            int before = L->n;
            st = scan_dir(inputs[i], out, L, 0);
            if (st == SN_OK && L->n == before)
                sn_log(SN_LOG_WARN, "enhance: no .wav/.flac/.ogg files in folder '%s'", inputs[i]);
        } else {
            char *o = join(out, base_name(inputs[i]));
            st = o && push_job(L, inputs[i], o) ? SN_OK : sn_error(SN_ERR_NOMEM, "out of host memory");
            free(o);
        }
        for (int j = first; j < L->n; j++) L->v[j].arg = i;
        if (st != SN_OK) return st;
    }
    if (L->n == 0) return sn_error(SN_ERR_IO, "no audio files (.wav .flac .ogg) found in the inputs");
    return SN_OK;
}

static const joblist *g_sort_jobs;
static int cmp_job_out(const void *a, const void *b) {
    return strcmp(g_sort_jobs->v[*(const int *)a].out, g_sort_jobs->v[*(const int *)b].out);
}

/* Two jobs that write the same output (*a < *b), or 0 when every output is its own. */
static int find_clash(const joblist *L, int *a, int *b) {
    int *idx = malloc((size_t)(L->n ? L->n : 1) * sizeof *idx);
    if (!idx) return 0;
    for (int j = 0; j < L->n; j++) idx[j] = j;
    g_sort_jobs = L;
    qsort(idx, (size_t)L->n, sizeof *idx, cmp_job_out);
    int found = 0;
    for (int j = 1; j < L->n && !found; j++)
        if (!strcmp(L->v[idx[j - 1]].out, L->v[idx[j]].out)) {
            found = 1;
            *a = idx[j - 1] < idx[j] ? idx[j - 1] : idx[j];
            *b = idx[j - 1] < idx[j] ? idx[j] : idx[j - 1];
        }
    free(idx);
    return found;
}

/* Inputs whose outputs clash (p1/s.wav and p2/s.wav into one folder) keep
 * their own folders below OUT: each output goes to OUT/<its input's folder
 * relative to the folder all inputs share>/<name>, as a folder input's tree
 * is mirrored. *common gets that shared folder (the caller frees it). */
static sn_status mirror_inputs(char **inputs, int nin, const char *out, joblist *L, char **common) {
    char **anchor = calloc((size_t)nin, sizeof *anchor);
    sn_status st = anchor ? SN_OK : sn_error(SN_ERR_NOMEM, "out of host memory");
    size_t cl = 0;
    for (int i = 0; i < nin && st == SN_OK; i++) {
        struct stat sb;
        anchor[i] = realpath(inputs[i], NULL);
        if (!anchor[i]) {
            st = sn_error(SN_ERR_IO, "input '%s': %s", inputs[i], strerror(errno));
            break;
        }
        if (stat(anchor[i], &sb) == 0 && !S_ISDIR(sb.st_mode)) {
            char *slash = strrchr(anchor[i], '/');
            slash[slash == anchor[i]] = 0; /* "/s.wav" -> "/" */
        }
        /* the longest prefix of whole path components shared with the anchors so far */
        size_t n = strlen(anchor[i]);
        if (i == 0) cl = n;
        size_t k = 0;
        while (k < cl && k < n && anchor[0][k] == anchor[i][k]) k++;
        if (!((k == cl || anchor[0][k] == '/') && (k == n || anchor[i][k] == '/')))
            while (k > 0 && anchor[0][k] != '/') k--;
        cl = k;
    }
    size_t base = strlen(out) + (out[0] && out[strlen(out) - 1] != '/');
    for (int j = 0; j < L->n && st == SN_OK; j++) {
        const char *a = anchor[L->v[j].arg] + cl;
        while (*a == '/') a++;
        char *dir = *a ? join(out, a) : strdup(out), *o = dir ? join(dir, L->v[j].out + base) : NULL;
        free(dir);
        if (!o) st = sn_error(SN_ERR_NOMEM, "out of host memory");
        else free(L->v[j].out), L->v[j].out = o;
    }
    if (st == SN_OK) {
        *common = malloc(cl + 2);
        if (*common) snprintf(*common, cl + 2, "%.*s", (int)(cl ? cl : 1), cl ? anchor[0] : "/");
    }
    for (int i = 0; anchor && i < nin; i++) free(anchor[i]);
    free(anchor);
    return st;
}

/* ---- the command ------------------------------------------------------------- */

static int parse_double(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) {
        fprintf(stderr, "sinter enhance: %s expects a number, got '%s'\n", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* key.sub=value, unless a file of that name exists */
static int is_override(const char *a) {
    const char *eq = strchr(a, '=');
    struct stat sb;
    if (!eq || eq == a || stat(a, &sb) == 0) return 0;
    for (const char *p = a; p < eq; p++)
        if (!(*p == '.' || *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

static int fail(sn_status st, const char *what) {
    fprintf(stderr, "sinter enhance: %s%s\n", what ? what : "", sn_last_error());
    return sn_cli_exit_code(st);
}

int sn_cmd_enhance(int argc, char **argv) {
    const char *ckpt = NULL, *conf = NULL, *out = NULL, *device = "auto";
    double chunk_s = 10.0, threads = 0;
    int quiet = 0, nin = 0, nov = 0;
    char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    const char *ov[MAX_OVERRIDES];
    if (!inputs) return fail(sn_error(SN_ERR_NOMEM, "out of host memory"), NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(inputs);
            return SN_EXIT_OK;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--ckpt") || !strcmp(a, "--config") || !strcmp(a, "-o") || !strcmp(a, "--out") ||
                   !strcmp(a, "--device") || !strcmp(a, "--chunk-seconds") || !strcmp(a, "--threads")) {
            if (!has) {
                fprintf(stderr, "sinter enhance: %s needs a value (see sinter enhance --help)\n", a);
                free(inputs);
                return SN_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--ckpt")) ckpt = v;
            else if (!strcmp(a, "--config")) conf = v;
            else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--device")) device = v;
            else if (!parse_double(a, v, !strcmp(a, "--threads") ? &threads : &chunk_s)) {
                free(inputs);
                return SN_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sinter enhance: unknown option '%s' (see sinter enhance --help)\n", a);
            free(inputs);
            return SN_EXIT_USAGE;
        } else if (is_override(a)) {
            if (nov == MAX_OVERRIDES) {
                fprintf(stderr, "sinter enhance: more than %d overrides\n", MAX_OVERRIDES);
                free(inputs);
                return SN_EXIT_USAGE;
            }
            ov[nov++] = a;
        } else {
            inputs[nin++] = argv[i];
        }
    }
    const char *missing = !ckpt ? "--ckpt CKPT" : !nin ? "an input file or folder" : !out ? "-o OUT" : NULL;
    if (missing) {
        fprintf(stderr, "sinter enhance: %s is required\n\n", missing);
        usage(stderr);
        free(inputs);
        return SN_EXIT_USAGE;
    }
    if (chunk_s < 0 || chunk_s > 3600 || threads < 0 || threads > 4096) {
        fprintf(stderr, "sinter enhance: --chunk-seconds must be in 0..3600 and --threads in 0..4096\n");
        free(inputs);
        return SN_EXIT_USAGE;
    }

    /* config: defaults, the file, the overrides (used when the checkpoint has none) */
    sn_config cfg;
    int rc = sn_cli_config("enhance", conf, ov, nov, 0, &cfg);
    if (rc != SN_EXIT_OK) {
        free(inputs);
        return rc;
    }
    struct stat sb;
    int ck = stat(ckpt, &sb);
    if (ck != 0 || S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "sinter enhance: checkpoint '%s' %s (give the .safetensors file a run wrote, e.g. "
                "runs/<run>/best.safetensors)\n", ckpt, ck != 0 ? "not found" : "is a folder");
        free(inputs);
        return SN_EXIT_INPUT;
    }
    joblist jobs = {0};
    int out_is_dir = 0;
    sn_status st = make_jobs(inputs, nin, out, &jobs, &out_is_dir);
    if (st != SN_OK) {
        free(inputs);
        free_jobs(&jobs);
        return fail(st, NULL);
    }
    /* never two inputs into one output: mirror their folders, or refuse before writing anything */
    int ca, cb;
    if (out_is_dir && find_clash(&jobs, &ca, &cb)) {
        char *common = NULL;
        st = mirror_inputs(inputs, nin, out, &jobs, &common);
        if (st != SN_OK) {
            free(inputs);
            free_jobs(&jobs);
            return fail(st, NULL);
        }
        if (!quiet)
            printf("note: inputs share file names: each output keeps its input's folder below '%s' (relative "
                   "to %s)\n", out, common ? common : "/");
        free(common);
    }
    if (find_clash(&jobs, &ca, &cb)) {
        fprintf(stderr, "sinter enhance: inputs '%s' and '%s' would both be written to '%s' (the same file given "
                "twice?); give each input once\n", jobs.v[ca].in, jobs.v[cb].in, jobs.v[ca].out);
        free(inputs);
        free_jobs(&jobs);
        return SN_EXIT_USAGE;
    }
    free(inputs);
    for (int j = 0; j < jobs.n; j++) {
        struct stat si, so;
        if (stat(jobs.v[j].out, &so) == 0 && stat(jobs.v[j].in, &si) == 0 && si.st_ino == so.st_ino &&
            si.st_dev == so.st_dev) {
            fprintf(stderr, "sinter enhance: output '%s' is the input file; choose another -o\n", jobs.v[j].out);
            free_jobs(&jobs);
            return SN_EXIT_USAGE;
        }
    }
    if (out_is_dir) {
        st = sn_mkdirs(out);
        if (st == SN_OK && access(out, W_OK) != 0)
            st = sn_error(SN_ERR_IO, "output folder '%s' is not writable: %s", out, strerror(errno));
        if (st != SN_OK) {
            free_jobs(&jobs);
            return fail(st, NULL);
        }
    }

    /* chunks no longer than the longest file needs */
    sn_enhance_opts eo;
    sn_enhance_opts_default(&eo);
    eo.device = device;
    eo.cpu_threads = (int)threads;
    eo.chunk_seconds = chunk_s;
    eo.stop = &g_stop;
    for (int j = 0; j < jobs.n; j++) {
        int rate = 0;
        int64_t frames = 0;
        if (sn_audio_info(jobs.v[j].in, &rate, &frames, NULL, NULL) == SN_OK && rate > 0 &&
            (double)frames / rate > eo.longest_seconds)
            eo.longest_seconds = (double)frames / rate;
    }
    if (eo.longest_seconds <= 0) eo.longest_seconds = 1e-3;
    sn_enhancer *e = NULL;
    rc = SN_EXIT_OK;
    /* no --config and no overrides: a plain state_dict is an error that says what to give */
    st = sn_enhancer_open(ckpt, conf || nov ? &cfg : NULL, &eo, &e);
    if (st != SN_OK) {
        free_jobs(&jobs);
        return fail(st, NULL);
    }
    const sn_model *m = sn_enhancer_model(e);
    int Tc = sn_enhancer_chunk_frames(e);
    char desc[400];
    if (!quiet && chunk_s > 0 && !Tc) printf("note: %s: processing whole files\n", sn_enhancer_whole_reason(e));
    if (!quiet)
        printf("model %s (%s, %lld parameters) on %s; %s\n", sn_enhancer_config(e)->name,
               sn_model_describe(m, desc, sizeof desc), (long long)m->nparams,
               sn_backend_name(sn_enhancer_backend(e)), Tc ? "chunked" : "whole files");
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    double t_start = now_s(), audio_total = 0;
    int done_files = 0, failed = 0;
    for (int j = 0; j < jobs.n && !g_stop; j++) {
        double t0 = now_s(), dur = 0;
        st = sn_enhance_file(e, jobs.v[j].in, jobs.v[j].out, &dur);
        double dt = now_s() - t0;
        if (g_stop) break;
        if (st != SN_OK) {
            fprintf(stderr, "sinter enhance: %s\n", sn_last_error());
            int c = sn_cli_exit_code(st);
            if (c > rc) rc = c;
            failed++;
            /* a device failure will fail every file: stop */
            if (c == SN_EXIT_DEVICE) break;
            continue;
        }
        audio_total += dur;
        done_files++;
        if (!quiet)
            printf("%s -> %s  %.2f s of audio in %.3f s (RTF %.4f)\n", jobs.v[j].in, jobs.v[j].out, dur, dt,
                   dur > 0 ? dt / dur : 0.0);
    }
    sigaction(SIGINT, &old, NULL);
    double elapsed = now_s() - t_start;
    if (g_stop) {
        fprintf(stderr, "sinter enhance: interrupted after %d of %d files\n", done_files, jobs.n);
        rc = SN_EXIT_INTERRUPTED;
    } else {
        printf("enhanced %d file%s (%.2f s of audio) in %.3f s on %s: real-time factor %.4f\n", done_files,
               done_files == 1 ? "" : "s", audio_total, elapsed, sn_backend_name(sn_enhancer_backend(e)),
               audio_total > 0 ? elapsed / audio_total : 0.0);
        if (failed) fprintf(stderr, "sinter enhance: %d file%s failed\n", failed, failed == 1 ? "" : "s");
    }
    sn_enhancer_free(e);
    free_jobs(&jobs);
    return rc;
}
