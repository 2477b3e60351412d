/* `sinter model CONF.yaml [key=value ...]`: a summary of the config's model, as
 * Keras' model.summary() or torchinfo print one: each layer with its output shape
 * for the configured batch and segment and its parameter count, the totals, and
 * the memory a training step would take on the chosen device (planned, not run). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sinter/audio.h"
#include "sinter/backend.h"
#include "sinter/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter model CONF.yaml [key.sub=value ...] [--threads N]\n"
            "       sinter model MODEL.yaml [key.sub=value ...]   (a model file, e.g. conf/models/crn.yaml)\n"
            "\n"
            "Prints the model of CONF without training: each layer, its output shape for\n"
            "train.batch_size and data.segment_seconds, its parameters, the totals, and the\n"
            "memory one training step needs on the chosen device (device=...), as the\n"
            "planner lays it out: parameters + optimizer state, and the working arena.\n"
            "A model file (layers: ... at the top, as conf/models/*.yaml) reads as its model.* keys.\n"
            "\n"
            "  key.sub=value   override a config key (train.batch_size=8 device=cpu ...)\n"
            "  --threads N     CPU threads (default: all cores)\n"
            "  -h, --help      this text\n"
            "\n"
            SN_EXIT_CODES_HELP);
}

static void thousands(long long v, char *b, size_t n) {
    char t[32];
    snprintf(t, sizeof t, "%lld", v < 0 ? -v : v);
    size_t L = strlen(t), o = 0;
    if (v < 0 && o + 1 < n) b[o++] = '-';
    for (size_t i = 0; i < L && o + 2 < n; i++) {
        if (i && (L - i) % 3 == 0) b[o++] = ',';
        b[o++] = t[i];
    }
    b[o] = 0;
}

static const char *shape_txt(int nd, const int64_t *s, char *b, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(b + o, n - o, "[");
    for (int d = 0; d < nd && o < n; d++) o += (size_t)snprintf(b + o, n - o, "%s%lld", d ? ", " : "", (long long)s[d]);
    if (o < n) snprintf(b + o, n - o, "]");
    return b;
}

static void mib(double bytes, char *b, size_t n) {
    if (bytes >= 1024.0 * 1048576.0) snprintf(b, n, "%.2f GiB", bytes / (1024.0 * 1048576.0));
    else snprintf(b, n, "%.1f MiB", bytes / 1048576.0);
}

int sn_cmd_model(int argc, char **argv) {
    const char *conf = NULL;
    int threads = 0;
    const char **over = calloc((size_t)argc + 1, sizeof *over);
    int nover = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(over); return SN_EXIT_OK; }
        if (!strcmp(a, "--threads")) {
            char *end;
            long v = i + 1 < argc ? (errno = 0, strtol(argv[i + 1], &end, 10)) : -1;
            if (i + 1 >= argc || *end || errno || v < 0 || v > 4096) {
                fprintf(stderr, "sinter model: --threads expects a non-negative integer\n");
                free(over);
                return SN_EXIT_USAGE;
            }
            threads = (int)v;
            i++;
        } else if (sn_cli_positional("model", a, &conf, over, &nover, NULL) != SN_EXIT_OK) {
            free(over);
            return SN_EXIT_USAGE;
        }
    }
    if (!conf) {
        fprintf(stderr, "sinter model: a config (or model file) is required\n");
        usage(stderr);
        free(over);
        return SN_EXIT_USAGE;
    }
    sn_config *cfg = malloc(sizeof *cfg);
    if (!cfg) { free(over); fprintf(stderr, "sinter model: out of memory\n"); return SN_EXIT_DEVICE; }
    /* a model file (layers: at the top) loads as its model.* keys */
    int rc = sn_cli_config("model", conf, over, nover, 1, cfg);
    free(over);
    if (rc != SN_EXIT_OK) {
        free(cfg);
        return rc;
    }
    int B = cfg->train.batch_size;
    int64_t samples = (int64_t)(cfg->data.segment_seconds * cfg->data.sample_rate + 0.5);
    int T = (int)sn_stft_frames(samples);
    if (T < 1) {
        fprintf(stderr, "sinter model: data.segment_seconds = %g gives no STFT frame; use at least 0.02 s\n",
                cfg->data.segment_seconds);
        free(cfg);
        return SN_EXIT_USAGE;
    }
    sn_backend *b = NULL, *cpu = NULL;
    sn_model *m = NULL;
    sn_layer_info *info = NULL;
    rc = SN_EXIT_OK;
    sn_status s = sn_backend_open(cfg->device[0] ? cfg->device : "auto", threads, &b);
    if (s == SN_OK) cpu = b->is_host ? b : sn_cpu_backend_new(threads);
    if (s == SN_OK) s = sn_model_from_config(cfg, b, &m);
    if (s != SN_OK) goto fail;

    char t1[64], t2[64], t3[64], desc[256];
    const sn_model_desc *d = sn_model_get_desc(m);
    printf("Model: %s%s%s\n", sn_model_describe(m, desc, sizeof desc), cfg->model.file[0] ? ", from " : "",
           cfg->model.file);
    int64_t in_shape[4] = {B, 1, T, 161};
    printf("Input: %s (train.batch_size %d, data.segment_seconds %g = %d frames)\n",
           shape_txt(4, in_shape, t1, sizeof t1), B, cfg->data.segment_seconds, T);
    int64_t buffers = 0;
    if (d) {
        info = calloc((size_t)d->n, sizeof *info);
        if (!info) { s = sn_error(SN_ERR_NOMEM, "out of host memory"); goto fail; }
        s = sn_graph_model_summary(m, B, T, info);
        if (s != SN_OK) goto fail;
        const char *rule = "-------------------------------------------------------------------------------------------";
        printf("%s\n%4s  %-34s %-22s %12s  %s\n%s\n", rule, "#", "Layer (type)", "Output shape", "Param #", "Inputs",
               rule);
        for (int i = 0; i < d->n; i++) {
            char lt[160];
            snprintf(lt, sizeof lt, "%s (%s)", info[i].label, info[i].type);
            thousands(info[i].params, t2, sizeof t2);
            printf("%4d  %-34s %-22s %12s  %s\n", i, lt, shape_txt(info[i].ndim, info[i].shape, t1, sizeof t1), t2,
                   info[i].from);
            buffers += info[i].buffers;
        }
        printf("%s\n", rule);
        printf("Output: %s%s%s\n", cfg->model.output_activation[0] && strcmp(cfg->model.output_activation, "none")
                                       ? cfg->model.output_activation : "the last layer",
               d->mask ? " x input (a mask)" : " (the magnitude)", "");
    } else {
        printf("(the built-in CRN has no per-layer view; conf/models/crn.yaml describes it layer by layer)\n");
        for (int i = 0; i < m->n; i++)
            if (!m->trainable[i]) buffers += sn_nelem(m->t[i]);
    }
    thousands(m->nparams, t1, sizeof t1);
    thousands(buffers, t2, sizeof t2);
    printf("Total params: %s (%s)\nNon-trainable state (BatchNorm running statistics): %s\n", t1,
           (mib((double)m->nparams * 4, t3, sizeof t3), t3), t2);
    printf("Loss: %s on the magnitude\n", sn_loss_name(m->loss));

    sn_optim_config oc;
    s = sn_optim_config_from(cfg, &oc);
    size_t arena = 0, persist = 0;
    if (s == SN_OK) s = sn_step_plan_memory(m, b, cpu, B, T, &oc, &arena, &persist);
    if (s != SN_OK) goto fail;
    sn_device_info di;
    memset(&di, 0, sizeof di);
    if (b->i->info) b->i->info(b, &di);
    printf("\nPlanned memory of one training step on %s (%s, batch %d, %d frames):\n", sn_backend_name(b),
           di.name[0] ? di.name : "?", B, T);
    mib((double)persist, t1, sizeof t1);
    printf("  persistent (parameters, %s state, inputs%s): %s\n", cfg->train.optimizer, cfg->train.grad_clip > 0 ? ", gradients for clipping" : "", t1);
    mib((double)arena, t2, sizeof t2);
    printf("  working arena (peak of the step's transient tensors): %s\n", t2);
    mib((double)(arena + persist), t3, sizeof t3);
    printf("  total: %s", t3);
    if (di.mem_free) {
        mib((double)di.mem_free, t1, sizeof t1);
        printf(" of %s free%s", t1, arena + persist > di.mem_free ? ": it does NOT fit (lower train.batch_size or "
                                                                   "data.segment_seconds)" : "");
    }
    printf("\n");
    goto done;
fail:
    fprintf(stderr, "sinter model: %s\n", sn_last_error());
    rc = sn_cli_exit_code(s);
done:
    free(info);
    sn_model_free(m);
    if (cpu && cpu != b) sn_backend_free(cpu);
    if (b) sn_backend_free(b);
    free(cfg);
    return rc;
}
