/* Your own model in C: a small network built with the public API (model_desc.h),
 * summarised, and trained by the same trainer as `sinter train` — checkpoints,
 * validation, TensorBoard events and `sinter enhance --ckpt` included, since the
 * run's config carries the layer list.
 *
 *   build/custom_model DATA_DIR [RUN_DIR] [--steps N]
 *
 * DATA_DIR holds clean/, noise/ and valid/ (as `sinter data demo --out DATA_DIR`
 * makes them). The network: a causal conv front end over 2 frames, a GRU over
 * time, and a per-bin sigmoid mask, the PyTorch module
 *
 *   class Net(nn.Module):
 *       def __init__(self):
 *           super().__init__()
 *           self.conv = nn.Conv2d(1, 8, (2, 5), stride=(1, 4), padding=(0, 2))
 *           self.gru = nn.GRU(8 * 41, 64, batch_first=True)
 *           self.out = nn.Linear(64, 161)
 *       def forward(self, x):                          # x: [B, 1, T, 161]
 *           h = F.relu(self.conv(F.pad(x, (0, 0, 1, 0))))           # [B, 8, T, 41]
 *           h = h.permute(0, 2, 1, 3).flatten(2)                    # [B, T, 328]
 *           h, _ = self.gru(h)
 *           return torch.sigmoid(self.out(h)).unsqueeze(1) * x      # a mask
 *
 * whose state_dict (conv.weight, gru.weight_ih_l0, out.bias, ...) loads into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/backend.h"
#include "sinter/config.h"
#include "sinter/nn.h"
#include "sinter/train.h"

static sn_status describe(sn_model_desc *d) {
    sn_model_desc_init(d);
    sn_layer_desc *l;
    /* one zero frame before the start of time: the conv sees only the past */
    if (!(l = sn_model_desc_add(d, SN_LAYER_ZEROPAD2D, NULL))) return SN_ERR_CONFIG;
    l->nlist = 4;
    l->list[0] = 0, l->list[1] = 0, l->list[2] = 1, l->list[3] = 0; /* left, right, top, bottom */
    if (!(l = sn_model_desc_add(d, SN_LAYER_CONV2D, "conv"))) return SN_ERR_CONFIG;
    l->in = 1, l->out = 8;
    l->kernel[0] = 2, l->kernel[1] = 5;
    l->stride[0] = 1, l->stride[1] = 4;
    l->padding[0] = 0, l->padding[1] = 2;                         /* 161 -> 41 bins */
    if (!sn_model_desc_add(d, SN_LAYER_RELU, NULL)) return SN_ERR_CONFIG;
    if (!(l = sn_model_desc_add(d, SN_LAYER_PERMUTE, NULL))) return SN_ERR_CONFIG;
    l->nlist = 4;
    l->list[0] = 0, l->list[1] = 2, l->list[2] = 1, l->list[3] = 3;
    if (!(l = sn_model_desc_add(d, SN_LAYER_FLATTEN, NULL))) return SN_ERR_CONFIG;
    l->dim = 2;                                                   /* start_dim */
    if (!(l = sn_model_desc_add(d, SN_LAYER_GRU, "gru"))) return SN_ERR_CONFIG;
    l->in = 8 * 41, l->out = 64;
    if (!(l = sn_model_desc_add(d, SN_LAYER_LINEAR, "out"))) return SN_ERR_CONFIG;
    l->in = 64, l->out = 161;
    if (!(l = sn_model_desc_add(d, SN_LAYER_UNFLATTEN, NULL))) return SN_ERR_CONFIG;
    l->dim = 1, l->nlist = 2, l->list[0] = 1, l->list[1] = -1;   /* [B, T, 161] -> [B, 1, T, 161] */
    d->output_act = SN_ACT_SIGMOID;
    d->mask = true;
    return SN_OK;
}

/* the Keras-style table of `sinter model`, from the same calls */
static sn_status summary(const sn_model_desc *d, int batch, int frames) {
    sn_backend *cpu = sn_cpu_backend_new(1);
    sn_model *m = NULL;
    sn_status s = sn_graph_model_new(d, cpu, &m);
    sn_layer_info *info = calloc((size_t)d->n, sizeof *info);
    if (s == SN_OK) s = info ? sn_graph_model_summary(m, batch, frames, info) : SN_ERR_NOMEM;
    for (int i = 0; s == SN_OK && i < d->n; i++) {
        char shape[96] = "[";
        for (int k = 0; k < info[i].ndim; k++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? "," : "", (long long)info[i].shape[k]);
        strcat(shape, "]");
        printf("  %2d %-8s %-10s %-18s %8lld params\n", i, info[i].label, info[i].type, shape, (long long)info[i].params);
    }
    if (s == SN_OK) printf("  %lld parameters in all\n", (long long)m->nparams);
    free(info);
    sn_model_free(m);
    sn_backend_free(cpu);
    return s;
}

int main(int argc, char **argv) {
    const char *data = NULL, *run = NULL;
    long steps = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = strtol(argv[++i], NULL, 10);
        else if (!data) data = argv[i];
        else if (!run) run = argv[i];
    }
    if (!data || steps < 1) {
        fprintf(stderr, "usage: %s DATA_DIR [RUN_DIR] [--steps N]   (DATA_DIR from `sinter data demo --out DIR`)\n",
                argv[0]);
        return 2;
    }
    sn_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return 4;
    sn_config_defaults(cfg);
    snprintf(cfg->data.clean_dir, sizeof cfg->data.clean_dir, "%s/clean", data);
    snprintf(cfg->data.noise_dir, sizeof cfg->data.noise_dir, "%s/noise", data);
    snprintf(cfg->data.valid_dir, sizeof cfg->data.valid_dir, "%s/valid", data);
    strcpy(cfg->name, "custom");
    strcpy(cfg->device, "cpu");
    cfg->data.segment_seconds = 1.0;
    cfg->train.batch_size = 8;
    cfg->train.lr = 3e-3;
    cfg->train.log_every = 10;
    cfg->train.valid_every = steps;
    cfg->train.ckpt_every = steps;
    /* the model: a layer list in the config, as model.layers in YAML */
    strcpy(cfg->model.name, "graph");
    strcpy(cfg->model.output, "mask");
    strcpy(cfg->model.output_activation, "sigmoid");
    strcpy(cfg->model.loss, "mse");
    sn_status s = describe(&cfg->model.graph);
    if (s == SN_OK) s = sn_config_validate(cfg);
    if (s == SN_OK) {
        printf("model (batch %d, 1 s = 99 frames):\n", cfg->train.batch_size);
        s = summary(&cfg->model.graph, cfg->train.batch_size, 99);
    }
    sn_train_opts o;
    sn_train_opts_default(&o);
    o.max_steps = steps;
    o.run_dir = run;
    sn_train_result r;
    if (s == SN_OK) s = sn_train(cfg, &o, &r);
    free(cfg);
    if (s != SN_OK) {
        fprintf(stderr, "custom_model: %s\n", sn_last_error());
        return s == SN_ERR_CONFIG ? 2 : 3;
    }
    printf("trained %lld steps: loss %.4f -> %.4f; validation SI-SDR %.2f dB (noisy %.2f dB)\n"
           "run directory: %s (sinter enhance --ckpt %s/best.safetensors noisy.wav -o clean.wav)\n",
           (long long)r.steps, r.first_loss, r.last_loss, r.valid.sisdr, r.valid.sisdr_in, r.run_dir, r.run_dir);
    return 0;
}
