/* Config -> model/optimizer settings, and the learning-rate schedules
 * (computed on the host, passed to sn_step_run each step). */
#include "sinter/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sn_status sn_crn_config_from(const sn_config *cfg, sn_crn_config *out) {
    if (!cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_crn_config_from: config and out are required");
    sn_crn_config_default(out);
    if (cfg->model.name[0] && strcmp(cfg->model.name, "crn"))
        return sn_error(SN_ERR_CONFIG, "model.name '%s' is not a built-in model; use model.name=crn (or graph with "
                        "model.layers)",
                        cfg->model.name);
    if (!strcmp(cfg->model.rnn, "lstm") || !cfg->model.rnn[0]) out->rnn = SN_RNN_LSTM;
    else if (!strcmp(cfg->model.rnn, "gru")) out->rnn = SN_RNN_GRU;
    else if (!strcmp(cfg->model.rnn, "attention")) out->rnn = SN_RNN_ATTENTION;
    else return sn_error(SN_ERR_CONFIG, "model.rnn '%s' is unknown; use lstm, gru or attention", cfg->model.rnn);
    out->hidden = cfg->model.hidden;
    out->layers = cfg->model.layers;
    for (int i = 0; i < 5; i++) out->channels[i] = cfg->model.channels[i];
    out->freq_bins = 161;
    return SN_OK;
}

sn_status sn_model_from_config(const sn_config *cfg, sn_backend *b, sn_model **out) {
    if (!cfg || !b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_from_config: config, backend and out are required");
    *out = NULL;
    sn_loss_kind loss = SN_LOSS_MSE;
    if (!strcmp(cfg->model.loss, "l1")) loss = SN_LOSS_L1;
    else if (cfg->model.loss[0] && strcmp(cfg->model.loss, "mse"))
        return sn_error(SN_ERR_CONFIG, "model.loss '%s' is unknown; use mse or l1", cfg->model.loss);
    sn_status s;
    if (!strcmp(cfg->model.name, "graph")) {
        static const struct { const char *name; sn_act act; } acts[] = {
            {"none", SN_ACT_NONE}, {"", SN_ACT_NONE}, {"relu", SN_ACT_RELU}, {"sigmoid", SN_ACT_SIGMOID},
            {"softplus", SN_ACT_SOFTPLUS}, {"tanh", SN_ACT_TANH}, {"elu", SN_ACT_ELU}};
        sn_model_desc *d = malloc(sizeof *d);
        if (!d) return sn_error(SN_ERR_NOMEM, "out of host memory");
        *d = cfg->model.graph;
        d->freq_bins = 161;
        d->mask = !strcmp(cfg->model.output, "mask");
        if (!d->mask && cfg->model.output[0] && strcmp(cfg->model.output, "mapping")) {
            free(d);
            return sn_error(SN_ERR_CONFIG, "model.output '%s' is unknown; use mapping or mask", cfg->model.output);
        }
        int k = 0, n = (int)(sizeof acts / sizeof acts[0]);
        while (k < n && strcmp(acts[k].name, cfg->model.output_activation)) k++;
        if (k == n) {
            free(d);
            return sn_error(SN_ERR_CONFIG, "model.output_activation '%s' is unknown; use none, relu, sigmoid, softplus, "
                            "tanh or elu", cfg->model.output_activation);
        }
        d->output_act = acts[k].act;
        s = sn_graph_model_new(d, b, out);
        free(d);
    } else {
        sn_crn_config cc;
        s = sn_crn_config_from(cfg, &cc);
        if (s == SN_OK) s = sn_crn_new(&cc, b, out);
    }
    if (s == SN_OK) (*out)->loss = loss;
    return s;
}

sn_status sn_optim_config_from(const sn_config *cfg, sn_optim_config *o) {
    if (!cfg || !o) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_config_from: config and out are required");
    sn_optim_config_default(o);
    const char *k = cfg->train.optimizer;
    if (!k[0] || !strcmp(k, "adam")) o->kind = SN_OPTIM_ADAM;
    else if (!strcmp(k, "adamw")) o->kind = SN_OPTIM_ADAMW;
    else if (!strcmp(k, "sgd")) o->kind = SN_OPTIM_SGD;
    else return sn_error(SN_ERR_CONFIG, "train.optimizer '%s' is unknown; use adam, adamw or sgd", k);
    o->lr = (float)cfg->train.lr;
    o->beta1 = (float)cfg->train.betas[0];
    o->beta2 = (float)cfg->train.betas[1];
    o->eps = (float)cfg->train.eps;
    o->weight_decay = (float)cfg->train.weight_decay;
    o->momentum = (float)cfg->train.momentum;
    o->grad_clip = (float)cfg->train.grad_clip;
    return SN_OK;
}

double sn_lr_at(const sn_config *cfg, int64_t step, int64_t total) {
    if (!cfg) return 0.0;
    double lr = cfg->train.lr;
    int64_t warm = cfg->train.warmup_steps > 0 ? cfg->train.warmup_steps : 0;
    if (step < 0) step = 0;
    if (warm > 0 && step < warm) return lr * (double)(step + 1) / (double)warm;
    const char *s = cfg->train.schedule;
    if (!strcmp(s, "cosine")) {
        int64_t span = total - warm;
        if (span <= 0) return lr;
        double p = (double)(step - warm) / (double)span;
        if (p > 1) p = 1;
        return lr * 0.5 * (1.0 + cos(M_PI * p));
    }
    if (!strcmp(s, "step")) {
        int64_t every = cfg->train.step_size > 0 ? cfg->train.step_size : 1;
        return lr * pow(cfg->train.gamma, (double)(step / every));
    }
    return lr;
}
