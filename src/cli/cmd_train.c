/* `sinter train CONF [key=value ...] [--resume RUN_DIR] [--max-steps N]` */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "sinter/train.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    g_stop = 1;
    /* a second signal ends the process the usual way */
    signal(sig, SIG_DFL);
    static const char msg[] = "\nsinter: stopping after this step and writing a checkpoint (again to abort)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter train CONF.yaml [key.sub=value ...] [options]\n"
            "       sinter train --resume RUN_DIR [key.sub=value ...] [options]\n"
            "\n"
            "Trains the model of CONF into a new run directory out_dir/<name>-YYYYmmdd-HHMMSS/\n"
            "(config.yaml, train.log, metrics.csv, TensorBoard events, loss.svg,\n"
            "last.safetensors, best.safetensors). Ctrl-C (SIGINT) or SIGTERM writes a\n"
            "checkpoint and stops; --resume continues exactly where it stopped.\n"
            "\n"
            "  key.sub=value     override a config key (e.g. train.batch_size=8 device=cuda:0)\n"
            "  --resume RUN_DIR  continue a run from RUN_DIR/last.safetensors; the config is\n"
            "                    RUN_DIR/config.yaml (CONF may be left out) plus overrides\n"
            "  --max-steps N     stop after N optimizer steps in all (overrides train.max_steps)\n"
            "  --threads N       CPU threads (default: all cores, shared by the processes of a\n"
            "                    host under mpirun)\n"
            "  --quiet           print nothing but errors (train.log is still written)\n"
            "  -h, --help        this text\n"
            "\n"
            "Several processes (data parallel, one per GPU or CPU share):\n"
            "  mpirun -np N sinter train CONF.yaml ...   train.batch_size is per process; each\n"
            "                    process trains on cuda:<local rank> (device=cuda or auto with GPUs)\n"
            "                    or the CPU; rank 0 writes the run directory (README: Several GPUs)\n"
            "\n"
            "\n" SN_EXIT_CODES_HELP);
}

static int parse_i64(const char *opt, const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0) {
        fprintf(stderr, "sinter train: %s expects a non-negative integer, got '%s'\n", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

int sn_cmd_train(int argc, char **argv) {
    const char *conf = NULL, *resume = NULL;
    const char **over = calloc((size_t)argc + 1, sizeof *over);
    int nover = 0;
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.dump_batches = getenv("SINTER_DUMP_BATCHES");
    if (o.dump_batches && !*o.dump_batches) o.dump_batches = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        long long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(over); return SN_EXIT_OK; }
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) o.quiet = 1;
        else if (!strcmp(a, "--resume") || !strcmp(a, "--max-steps") || !strcmp(a, "--threads") ||
                 !strcmp(a, "--dump-batches") || !strcmp(a, "--nan-at-step") || !strcmp(a, "--run-dir")) {
            if (!has) { fprintf(stderr, "sinter train: %s needs a value (see sinter train --help)\n", a); free(over); return SN_EXIT_USAGE; }
            const char *val = argv[++i];
            if (!strcmp(a, "--resume")) resume = val;
            else if (!strcmp(a, "--dump-batches")) o.dump_batches = val;
            else if (!strcmp(a, "--run-dir")) o.run_dir = val;
            else {
                if (!parse_i64(a, val, &v)) { free(over); return SN_EXIT_USAGE; }
                if (!strcmp(a, "--max-steps")) o.max_steps = v;
                else if (!strcmp(a, "--threads")) o.cpu_threads = (int)v;
                else o.nan_at_step = (int)v;
            }
        } else if (sn_cli_positional("train", a, &conf, over, &nover,
                                     " (one CONF file; overrides look like key.sub=value)") != SN_EXIT_OK) {
            free(over);
            return SN_EXIT_USAGE;
        }
    }
    char rconf[1200];
    if (!conf && resume) {
        /* say what is wrong with the run directory, not with the config.yaml it lacks */
        struct stat sb;
        snprintf(rconf, sizeof rconf, "%s/config.yaml", resume);
        if (stat(resume, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "sinter train: --resume '%s': no such run directory%s\n", resume,
                    stat(resume, &sb) == 0 ? " (it is a file; give the folder a run wrote, e.g. runs/<run>)" : "");
            free(over);
            return SN_EXIT_INPUT;
        }
        if (stat(rconf, &sb) != 0) {
            fprintf(stderr, "sinter train: --resume '%s' is not a sinter run directory: it has no config.yaml "
                    "(give the folder a run wrote, e.g. runs/<run>, or give CONF.yaml too)\n", resume);
            free(over);
            return SN_EXIT_INPUT;
        }
        conf = rconf;
    }
    if (!conf) {
        usage(stderr);
        free(over);
        return SN_EXIT_USAGE;
    }
    sn_config cfg;
    int rc = sn_cli_config("train", conf, over, nover, 1, &cfg);
    free(over);
    if (rc != SN_EXIT_OK) return rc;
    if (o.dump_batches) {
        mkdir(o.dump_batches, 0755);
    }
    o.resume_dir = resume;
    g_stop = 0;
    o.stop = &g_stop;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sn_train_result r;
    sn_status s = sn_train(&cfg, &o, &r);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (s != SN_OK) {
        if (r.world > 1) fprintf(stderr, "sinter train: rank %d of %d: %s\n", r.rank, r.world, sn_last_error());
        else fprintf(stderr, "sinter train: %s\n", sn_last_error());
        return r.diverged ? SN_EXIT_NUMERIC : sn_cli_exit_code(s);
    }
    if (r.interrupted) return SN_EXIT_INTERRUPTED;
    if (!o.quiet && r.rank == 0) { /* data parallel: rank 0 speaks for all */
        printf("run directory: %s\n", r.run_dir);
        if (r.has_valid)
            printf("validation: loss %.5f, SI-SDR %.2f dB (improvement %+.2f dB), STOI %.3f\n", r.valid.loss,
                   r.valid.sisdr, r.valid.sisdri, r.valid.stoi);
        printf("checkpoints: %s/last.safetensors, %s/best.safetensors; curve: %s/loss.svg\n", r.run_dir, r.run_dir,
               r.run_dir);
    }
    return SN_EXIT_OK;
}
