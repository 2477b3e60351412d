/* Validation / evaluation: inference graph over a dataset, resynthesis with
 * the noisy phase, metrics averaged over items. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

void sn_data_config_from(const sn_config *cfg, sn_data_config *dc) {
    sn_data_config_default(dc);
    dc->clean_dir = cfg->data.clean_dir[0] ? cfg->data.clean_dir : NULL;
    dc->noise_dir = cfg->data.noise_dir[0] ? cfg->data.noise_dir : NULL;
    dc->noisy_dir = cfg->data.noisy_dir[0] ? cfg->data.noisy_dir : NULL;
    dc->list_file = cfg->data.list_file[0] ? cfg->data.list_file : NULL;
    dc->valid_dir = cfg->data.valid_dir[0] ? cfg->data.valid_dir : NULL;
    dc->valid_fraction = cfg->data.valid_fraction;
    dc->sample_rate = cfg->data.sample_rate;
    dc->segment_seconds = cfg->data.segment_seconds;
    dc->snr_db[0] = cfg->data.snr_db[0];
    dc->snr_db[1] = cfg->data.snr_db[1];
    dc->gain_db[0] = cfg->data.gain_db[0];
    dc->gain_db[1] = cfg->data.gain_db[1];
    dc->cache_mb = (double)cfg->data.cache_mb;
    dc->seed = (uint64_t)cfg->seed;
}

sn_status sn_open_device(const sn_config *cfg, int cpu_threads, sn_backend **b, sn_backend **fallback) {
    *b = NULL;
    *fallback = NULL;
    sn_status s = sn_backend_open(cfg->device[0] ? cfg->device : "auto", cpu_threads, b);
    if (s != SN_OK) return s;
    sn_device_info info;
    sn_backend_info(*b, &info);
    int mp = cfg->train.mixed_precision;
    /* a GPU says in its info what it has; the CPU backend's set_precision names the CPU
     * features it lacks (AVX512-BF16, AMX-BF16) itself */
    bool lacks = mp == SN_MP_BF16 ? !info.bf16 : mp == SN_MP_F16 ? !info.f16 : mp && !info.bf16 && !info.f16;
    if (lacks && !(*b)->is_host) {
        const char *want = mp == SN_MP_BF16 ? "bf16" : mp == SN_MP_F16 ? "f16" : "bf16/f16";
        s = sn_error(SN_ERR_DEVICE, "train.mixed_precision is %s, but device '%s' (%s %s) has no fast %s "
                     "arithmetic: set train.mixed_precision=%s, or pick a GPU that has it (sinter devices)",
                     sn_mixed_precision_name(mp), cfg->device, info.kind, info.name, want,
                     mp == SN_MP_BF16 && info.f16 ? "f16 (it has f16) or false" : "false");
        sn_backend_free(*b);
        *b = NULL;
        return s;
    }
    bool mp_on = mp != SN_MP_OFF;
    sn_precision prec = {.tf32 = cfg->train.tf32,
                         .bf16 = mp == SN_MP_BF16 || (mp == SN_MP_AUTO && (info.bf16 || (*b)->is_host)),
                         .f16 = mp == SN_MP_F16 || (mp == SN_MP_AUTO && !info.bf16 && info.f16 && !(*b)->is_host)};
    s = sn_backend_set_precision(*b, &prec);
    if (s != SN_OK && !mp_on) { /* TF32 is a hint: devices without it compute in f32 */
        sn_log(SN_LOG_WARN, "train.tf32 ignored: %s", sn_last_error());
        s = SN_OK;
    }
    if (s != SN_OK) {
        sn_backend_free(*b);
        *b = NULL;
        /* the device lacks it: a device error, as for a GPU above (exit code SN_EXIT_DEVICE) */
        return sn_error_prefix(s == SN_ERR_UNSUPPORTED ? SN_ERR_DEVICE : s, "train.mixed_precision=%s on device '%s'",
                               sn_mixed_precision_name(mp), cfg->device);
    }
    if (!(*b)->is_host) {
        *fallback = sn_cpu_backend_new(cpu_threads);
        if (!*fallback) {
            sn_backend_free(*b);
            *b = NULL;
            return sn_error(SN_ERR_NOMEM, "cannot create the CPU fallback backend");
        }
    }
    return SN_OK;
}

static void free_batch(sn_batch *b) {
    free(b->noisy_mag);
    free(b->clean_mag);
    free(b->noisy_phase);
    free(b->noisy);
    free(b->clean);
}

static sn_status alloc_batch(sn_batch *b, int B, int T, int64_t N) {
    memset(b, 0, sizeof *b);
    size_t m = (size_t)B * T * SN_NBINS;
    b->noisy_mag = malloc(m * sizeof(float));
    b->clean_mag = malloc(m * sizeof(float));
    b->noisy_phase = malloc(m * sizeof(float));
    b->noisy = malloc((size_t)B * N * sizeof(float));
    b->clean = malloc((size_t)B * N * sizeof(float));
    if (!b->noisy_mag || !b->clean_mag || !b->noisy_phase || !b->noisy || !b->clean) {
        free_batch(b);
        return sn_error(SN_ERR_NOMEM, "evaluation: out of host memory for a batch");
    }
    return SN_OK;
}

sn_status sn_evaluate_with(sn_infer *f, sn_dataset *ds, int metrics, sn_eval_result *out, sn_eval_item_fn cb,
                           void *user) {
    memset(out, 0, sizeof *out);
    const int B = f->batch;
    const int64_t N = sn_dataset_samples(ds);
    const int T = (int)sn_stft_frames(N);
    const int sr = sn_dataset_sample_rate(ds);
    if (T != f->frames)
        return sn_error(SN_ERR_SHAPE, "evaluation: items have %d frames, the inference graph %d", T, f->frames);
    sn_loader_config lc;
    sn_loader_config_default(&lc);
    lc.batch_size = B;
    lc.num_workers = 0;
    lc.drop_last = 0;
    sn_loader *l = NULL;
    sn_stft *stft = NULL;
    sn_batch b;
    memset(&b, 0, sizeof b);
    size_t nm = (size_t)B * T * SN_NBINS;
    float *est = malloc(nm * sizeof *est);
    float *y = malloc((size_t)B * N * sizeof *y);
    sn_status s = est && y ? SN_OK : sn_error(SN_ERR_NOMEM, "evaluation: out of host memory");
    if (s == SN_OK) s = sn_loader_new(ds, &lc, &l);
    if (s == SN_OK) s = sn_stft_new(&stft);
    if (s == SN_OK) s = alloc_batch(&b, B, T, N);
    int want_cb = cb != NULL;
    double loss_sum = 0;
    bool l1 = f->m->loss == SN_LOSS_L1;
    int64_t nbatches = sn_loader_steps(l);
    for (int64_t k = 0; s == SN_OK && k < nbatches; k++) {
        s = sn_loader_build(l, 0, k, &b);
        if (s == SN_OK) s = sn_infer_run(f, b.noisy_mag, est);
        if (s == SN_OK) s = sn_istft_mag_phase_batch(stft, est, b.noisy_phase, B, T, y, N);
        if (s != SN_OK) break;
        for (int j = 0; j < b.n_valid; j++) {
            const float *e = est + (size_t)j * T * SN_NBINS, *c = b.clean_mag + (size_t)j * T * SN_NBINS;
            double se = 0;
            for (size_t q = 0; q < (size_t)T * SN_NBINS; q++) {
                double d = (double)e[q] - c[q];
                se += l1 ? fabs(d) : d * d; /* the loss the model trains on */
            }
            loss_sum += se / ((double)T * SN_NBINS);
            /* Metrics over the samples that two frames cover: in the first and
             * last hop only one window overlaps and the iSTFT divides by w^2 -> 0,
             * which blows up any phase/magnitude inconsistency (clicks). */
            const int64_t off = SN_HOP, M = (int64_t)SN_HOP * (T - 1);
            const float *cw = b.clean + j * N + off, *nw = b.noisy + j * N + off, *yw = y + j * N + off;
            double sdr = sn_si_sdr(cw, yw, M), sdr_in = sn_si_sdr(cw, nw, M);
            if (!isfinite(sdr)) sdr = -100;
            out->sisdr += sdr;
            out->sisdr_in += sdr_in;
            if (metrics) {
                double v;
                out->snr += sn_snr(cw, yw, M);
                out->snr_in += sn_snr(cw, nw, M);
                if ((s = sn_stoi(cw, yw, M, sr, 0, &v)) != SN_OK) break;
                out->stoi += v;
                if ((s = sn_stoi(cw, nw, M, sr, 0, &v)) != SN_OK) break;
                out->stoi_in += v;
                if ((s = sn_stoi(cw, yw, M, sr, 1, &v)) != SN_OK) break;
                out->estoi += v;
                if ((s = sn_stoi(cw, nw, M, sr, 1, &v)) != SN_OK) break;
                out->estoi_in += v;
            }
            if (want_cb) { /* audio to listen to: no clicks at the ends (audio.h) */
                sn_istft_fade_edges(stft, y + j * N, N, T);
                if (cb(out->items, b.noisy + j * N, y + j * N, b.clean + j * N, N, sr, user)) want_cb = 0;
            }
            out->items++;
        }
    }
    if (s == SN_OK && out->items == 0) s = sn_error(SN_ERR_CONFIG, "evaluation: the validation set is empty");
    if (s == SN_OK) {
        double n = (double)out->items;
        out->loss = loss_sum / n;
        out->snr /= n;
        out->snr_in /= n;
        out->sisdr /= n;
        out->sisdr_in /= n;
        out->sisdri = out->sisdr - out->sisdr_in;
        out->stoi /= n;
        out->stoi_in /= n;
        out->estoi /= n;
        out->estoi_in /= n;
    }
    free_batch(&b);
    free(est);
    free(y);
    sn_stft_free(stft);
    sn_loader_free(l);
    return s;
}

sn_status sn_evaluate(sn_model *m, sn_backend *b, sn_dataset *ds, int batch, int metrics, sn_eval_result *out) {
    if (!m || !b || !ds || !out || batch < 1)
        return sn_error(SN_ERR_INVALID_ARG, "sn_evaluate: model, backend, dataset, result and batch >= 1 are required");
    int T = (int)sn_stft_frames(sn_dataset_samples(ds));
    sn_backend *fb = b->is_host ? NULL : sn_cpu_backend_new(0);
    sn_infer *f = NULL;
    sn_status s = sn_infer_new(m, b, fb ? fb : b, batch, T, &f);
    if (s == SN_OK) s = sn_evaluate_with(f, ds, metrics, out, NULL, NULL);
    sn_infer_free(f);
    if (fb) sn_backend_free(fb);
    return s;
}
