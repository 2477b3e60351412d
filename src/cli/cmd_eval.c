/* `sinter eval --ckpt CKPT [CONF] [key=value ...] [--json]`: metrics of a
 * checkpoint over the validation set (data.valid_dir or the held-out part). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sinter/backend.h"
#include "sinter/data.h"
#include "sinter/json.h"
#include "sinter/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter eval --ckpt CKPT.safetensors [CONF.yaml] [key.sub=value ...] [--json]\n"
            "\n"
            "Scores a checkpoint on the validation set (data.valid_dir, or the held-out\n"
            "data.valid_fraction of the training data): SNR, SI-SDR, SI-SDR improvement,\n"
            "STOI and ESTOI of the enhanced audio (estimated magnitude + noisy phase),\n"
            "next to the same metrics of the noisy input.\n"
            "The model comes from the config inside the checkpoint; a plain PyTorch\n"
            "state_dict (no sinter metadata) takes it from CONF and the overrides. The\n"
            "data comes from CONF + overrides, else from the checkpoint's config.\n"
            "\n"
            "  --ckpt FILE     checkpoint (.safetensors)\n"
            "  --json          print one JSON object instead of the table\n"
            "  --batch N       items per inference batch (default: train.batch_size)\n"
            "  --threads N     CPU threads (default: all cores)\n"
            "  -h, --help      this text\n"
            "\n" SN_EXIT_CODES_HELP);
}

static void table(const char *ckpt, const sn_eval_result *r) {
    printf("checkpoint: %s\n", ckpt);
    printf("items: %lld   loss (the model's, on magnitudes): %.6f\n\n", (long long)r->items, r->loss);
    printf("%-10s %10s %10s %12s\n", "metric", "noisy", "enhanced", "improvement");
    printf("%-10s %10.2f %10.2f %+12.2f\n", "SNR dB", r->snr_in, r->snr, r->snr - r->snr_in);
    printf("%-10s %10.2f %10.2f %+12.2f\n", "SI-SDR dB", r->sisdr_in, r->sisdr, r->sisdri);
    printf("%-10s %10.3f %10.3f %+12.3f\n", "STOI", r->stoi_in, r->stoi, r->stoi - r->stoi_in);
    printf("%-10s %10.3f %10.3f %+12.3f\n", "ESTOI", r->estoi_in, r->estoi, r->estoi - r->estoi_in);
}

static void json(const char *ckpt, const sn_eval_result *r) {
    sn_json_buf b = {0};
    sn_json_buf_puts(&b, "{\"checkpoint\": ");
    sn_json_buf_string(&b, ckpt, strlen(ckpt));
    sn_json_buf_printf(&b, ", \"items\": %lld, \"loss\": ", (long long)r->items);
    sn_json_buf_number(&b, r->loss);
    const char *names[5] = {"snr", "si_sdr", "stoi", "estoi", NULL};
    double in[4] = {r->snr_in, r->sisdr_in, r->stoi_in, r->estoi_in};
    double out[4] = {r->snr, r->sisdr, r->stoi, r->estoi};
    for (int i = 0; i < 4; i++) {
        sn_json_buf_printf(&b, ", \"%s\": {\"noisy\": ", names[i]);
        sn_json_buf_number(&b, in[i]);
        sn_json_buf_puts(&b, ", \"enhanced\": ");
        sn_json_buf_number(&b, out[i]);
        sn_json_buf_puts(&b, "}");
    }
    sn_json_buf_puts(&b, ", \"si_sdri\": ");
    sn_json_buf_number(&b, r->sisdri);
    sn_json_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    sn_json_buf_free(&b);
}

int sn_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *conf = NULL;
    int as_json = 0, threads = 0, batch = 0;
    const char **over = calloc((size_t)argc + 1, sizeof *over);
    int nover = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(over); return SN_EXIT_OK; }
        else if (!strcmp(a, "--json")) as_json = 1;
        else if (!strcmp(a, "--ckpt") || !strcmp(a, "--threads") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) { fprintf(stderr, "sinter eval: %s needs a value (see sinter eval --help)\n", a); free(over); return SN_EXIT_USAGE; }
            const char *v = argv[++i];
            if (!strcmp(a, "--ckpt")) ckpt = v;
            else {
                char *end;
                errno = 0;
                long n = strtol(v, &end, 10);
                if (!*v || *end || errno || n < (a[2] == 'b' ? 1 : 0) || n > 100000) {
                    fprintf(stderr, "sinter eval: %s expects a positive integer, got '%s'\n", a, v);
                    free(over);
                    return SN_EXIT_USAGE;
                }
                if (a[2] == 'b') batch = (int)n;
                else threads = (int)n;
            }
        } else if (sn_cli_positional("eval", a, &conf, over, &nover, NULL) != SN_EXIT_OK) {
            free(over);
            return SN_EXIT_USAGE;
        }
    }
    if (!ckpt) {
        fprintf(stderr, "sinter eval: --ckpt CKPT is required\n");
        usage(stderr);
        free(over);
        return SN_EXIT_USAGE;
    }
    /* config for the data (and the model of a plain state_dict) */
    sn_config cfg;
    int rc = sn_cli_config("eval", conf, over, nover, 0, &cfg);
    free(over);
    if (rc != SN_EXIT_OK) return rc;
    sn_status s;
    sn_backend *b = NULL;
    sn_model *m = NULL;
    sn_dataset *tr = NULL, *va = NULL;
    sn_config ck;
    s = sn_backend_open(cfg.device[0] ? cfg.device : "auto", threads, &b);
    /* a device spec that names no device here is a device error (as in enhance and train) */
    if (s == SN_ERR_CONFIG) s = sn_error_prefix(SN_ERR_DEVICE, "opening the device");
    if (s == SN_OK) s = sn_ckpt_load(ckpt, &cfg, b, &ck, &m, NULL);
    if (s == SN_OK && !conf) cfg = ck; /* data settings from the checkpoint's run */
    if (s == SN_OK) {
        sn_data_config dc;
        sn_data_config_default(&dc);
        dc.clean_dir = cfg.data.clean_dir[0] ? cfg.data.clean_dir : NULL;
        dc.noise_dir = cfg.data.noise_dir[0] ? cfg.data.noise_dir : NULL;
        dc.noisy_dir = cfg.data.noisy_dir[0] ? cfg.data.noisy_dir : NULL;
        dc.list_file = cfg.data.list_file[0] ? cfg.data.list_file : NULL;
        dc.valid_dir = cfg.data.valid_dir[0] ? cfg.data.valid_dir : NULL;
        dc.valid_fraction = cfg.data.valid_fraction;
        dc.sample_rate = cfg.data.sample_rate;
        dc.segment_seconds = cfg.data.segment_seconds;
        dc.snr_db[0] = cfg.data.snr_db[0];
        dc.snr_db[1] = cfg.data.snr_db[1];
        dc.gain_db[0] = cfg.data.gain_db[0];
        dc.gain_db[1] = cfg.data.gain_db[1];
        dc.cache_mb = (double)cfg.data.cache_mb;
        dc.seed = (uint64_t)cfg.seed;
        s = sn_dataset_open(&dc, &tr, &va);
        if (s == SN_OK && !va)
            s = sn_error(SN_ERR_CONFIG, "no validation set: set data.valid_dir, or data.valid_fraction > 0");
    }
    sn_eval_result r;
    if (s == SN_OK) s = sn_evaluate(m, b, va, batch ? batch : cfg.train.batch_size, 1, &r);
    if (s == SN_OK) {
        if (as_json) json(ckpt, &r);
        else table(ckpt, &r);
    } else {
        fprintf(stderr, "sinter eval: %s\n", sn_last_error());
    }
    sn_model_free(m);
    sn_dataset_free(tr);
    sn_dataset_free(va);
    if (b) sn_backend_free(b);
    return sn_cli_exit_code(s);
}
