/* `sinter bench [--device D] [--json] [--quick]`: the operations that matter for
 * the prototype (matmul, conv2d, an LSTM layer forward+backward, the full
 * training step) timed on the CPU and on every other device found, each a
 * graph planned per device with the public API, with GFLOP/s and the speedup
 * over the CPU: "is my GPU used, and how much faster is it". */
#include "cli.h"
#include "sinter/config.h"
#include "sinter/json.h"
#include "sinter/nn.h"
#include "sinter/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter bench [--device D] [--json] [--quick] [--config CONF] [--threads N]\n"
            "\n"
            "Times, on the CPU and on every other device found:\n"
            "  matmul     1024x1024x1024, and 4x1024x4096 (the LSTM's gate projection)\n"
            "  conv2d     the prototype's encoder layer 2: [4,32,401,39] -> [4,64,400,19], kernel (2,3)\n"
            "  lstm       one LSTM layer, batch 4, 400 frames, 1024 -> 1024, forward + backward\n"
            "  train step the full training step (forward, MSE, backward, Adam) of the config's model\n"
            "             (conf/prototype.yaml when it exists, else the built-in defaults), batch 4, 400 frames\n"
            "Each row gives the median time, GFLOP/s (multiply-adds of matmuls, convolutions and\n"
            "recurrences counted as 2 FLOP) and the speedup over the CPU.\n"
            "\n"
            "options:\n"
            "  --device D      only this device (auto, cpu, cuda:N); the CPU always runs as the baseline\n"
            "  --quick         smaller sizes and fewer repetitions (a few seconds)\n"
            "  --json          one JSON object: {\"version\", \"quick\", \"results\": [{device, bench, ms, gflop,\n"
            "                  gflops, speedup}...]}\n"
            "  --config CONF   the model of the train-step row\n"
            "  --threads N     CPU threads (default: all cores)\n"
            "  -h, --help      this text\n"
            "\n" SN_EXIT_CODES_HELP);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- FLOP count of a graph: matmuls, convolutions, recurrences, attention ---- */

static double numel(const sn_tensor *t) { return (double)sn_nelem(t); }

static double node_flop(const sn_tensor *t) {
    const sn_tensor *const *s = (const sn_tensor *const *)t->src;
    switch (t->op) {
    case SN_OP_MATMUL: {
        const sn_tensor *a = s[0];
        double K = t->ip[0] ? (double)a->shape[a->ndim - 2] : (double)a->shape[a->ndim - 1];
        return 2.0 * numel(t) * K;
    }
    case SN_OP_LINEAR: return 2.0 * numel(t) * (double)s[0]->shape[s[0]->ndim - 1];
    case SN_OP_CONV2D: /* out [N,K,Ho,Wo], w [K,C,kh,kw] */
        return 2.0 * numel(t) * (double)(s[1]->shape[1] * s[1]->shape[2] * s[1]->shape[3]);
    case SN_OP_CONV2D_BWD_DATA: /* (dy, w) */
    case SN_OP_CONV2D_BWD_W:    /* (dy, x) -> dw [K,C,kh,kw] */ {
        const sn_tensor *w = t->op == SN_OP_CONV2D_BWD_DATA ? s[1] : t;
        return 2.0 * numel(s[0]) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
    }
    case SN_OP_CONVT2D: /* x [N,C,H,W], w [C,K,kh,kw] */
        return 2.0 * numel(s[0]) * (double)(s[1]->shape[1] * s[1]->shape[2] * s[1]->shape[3]);
    case SN_OP_CONVT2D_BWD_DATA: /* (dy, w) -> dx [N,C,H,W] */
        return 2.0 * numel(t) * (double)(s[1]->shape[1] * s[1]->shape[2] * s[1]->shape[3]);
    case SN_OP_CONVT2D_BWD_W: /* (dy, x) -> dw [C,K,kh,kw] */
        return 2.0 * numel(s[1]) * (double)(t->shape[1] * t->shape[2] * t->shape[3]);
    case SN_OP_LSTM:
    case SN_OP_GRU:
    case SN_OP_LSTM_BWD:
    case SN_OP_GRU_BWD: {
        bool bwd = t->op == SN_OP_LSTM_BWD || t->op == SN_OP_GRU_BWD;
        const sn_tensor *x = bwd ? s[1] : s[0];
        int w0 = bwd ? 3 : 1;
        double f = 0, BT = (double)(x->shape[0] * x->shape[1]);
        for (int l = 0; l < t->ip[0]; l++) f += 2.0 * BT * (numel(s[w0 + 4 * l]) + numel(s[w0 + 4 * l + 1]));
        return bwd ? 2.0 * f : f; /* backward: the input and the weight gradients */
    }
    case SN_OP_ATTENTION:
    case SN_OP_ATTENTION_BWD: {
        const sn_tensor *x = t->op == SN_OP_ATTENTION ? s[0] : s[1];
        double B = (double)x->shape[0], T = (double)x->shape[1], E = (double)x->shape[2];
        double f = 2.0 * B * T * 4.0 * E * E + 2.0 * 2.0 * B * T * T * E;
        return t->op == SN_OP_ATTENTION ? f : 2.0 * f;
    }
    default: return 0;
    }
}

static double graph_flop(const sn_graph *g) {
    double f = 0;
    for (int i = 0; i < g->n; i++) f += node_flop(g->nodes[i]);
    return f;
}

/* ---- one benchmark: a graph built in its own context, planned on one device ---- */

typedef struct result {
    char device[40];
    char bench[96];
    double ms, gflop, gflops, speedup; /* speedup 0: no CPU baseline */
    int ok;
    char err[512];
} result;

typedef struct rcfg {
    int quick;
    double min_time;       /* seconds of timed runs per row (at least one run) */
    int max_reps;
    const sn_config *cfg;  /* the train-step model */
    int threads;
} rcfg;

static void fill_random(float *v, int64_t n, uint64_t *seed, float scale) {
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = scale * ((float)(*seed >> 40) / 16777216.0f * 2.0f - 1.0f);
    }
}

/* Random values in every leaf with memory (inputs, weights). */
static sn_status fill_leaves(sn_ctx *ctx) {
    uint64_t seed = 1;
    for (int i = 0; i < sn_ctx_count(ctx); i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (t->op != SN_OP_NONE || !(t->flags & SN_FLAG_PERSIST) || !t->data) continue;
        int64_t n = sn_nelem(t);
        float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v) return sn_error(SN_ERR_NOMEM, "bench: out of host memory");
        fill_random(v, n, &seed, 0.05f);
        sn_status st = sn_tensor_set(t, v, n);
        free(v);
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Warm-up, then runs until min_time has passed (max_reps at most); the median. */
typedef sn_status (*run_fn)(void *arg);
static sn_status time_runs(const rcfg *rc, run_fn fn, void *arg, double *ms) {
    sn_status st = fn(arg);
    double t[64];
    int n = 0;
    double start = now_s();
    while (st == SN_OK && n < rc->max_reps && n < 64 && (n == 0 || now_s() - start < rc->min_time)) {
        double t0 = now_s();
        st = fn(arg);
        t[n++] = (now_s() - t0) * 1e3;
    }
    if (st != SN_OK) return st;
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    *ms = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return SN_OK;
}

static sn_status plan_run(void *p) { return sn_plan_run((sn_plan *)p); }

typedef enum { B_MATMUL_SQ, B_MATMUL_LSTM, B_CONV, B_LSTM, B_STEP, B_COUNT } bench_id;

/* Builds the graph of benchmark id into ctx/g; name gets the row label. */
static sn_status build(bench_id id, const rcfg *rc, sn_ctx *ctx, sn_graph *g, char *name, size_t nn) {
    const uint32_t in = SN_FLAG_PERSIST | SN_FLAG_INPUT;
    int q = rc->quick;
    sn_tensor *out = NULL;
    if (id == B_MATMUL_SQ) {
        int64_t n = q ? 256 : 1024;
        snprintf(name, nn, "matmul %lldx%lldx%lld", (long long)n, (long long)n, (long long)n);
        out = sn_matmul(ctx, sn_new_2d(ctx, n, n, in, "a"), sn_new_2d(ctx, n, n, in, "b"), false, false);
    } else if (id == B_MATMUL_LSTM) {
        int64_t H = q ? 256 : 1024;
        snprintf(name, nn, "matmul 4x%lldx%lld (lstm gates)", (long long)H, (long long)(4 * H));
        out = sn_matmul(ctx, sn_new_2d(ctx, 4, H, in, "x"), sn_new_2d(ctx, 4 * H, H, in, "w"), false, true);
    } else if (id == B_CONV) {
        int64_t B = q ? 1 : 4, T = q ? 50 : 400;
        snprintf(name, nn, "conv2d enc.2 [%lld,32,%lld,39]->[%lld,64,%lld,19]", (long long)B, (long long)(T + 1),
                 (long long)B, (long long)T);
        sn_tensor *x = sn_new_4d(ctx, B, 32, T + 1, 39, in, "x");
        sn_tensor *w = sn_new_4d(ctx, 64, 32, 2, 3, in, "w"), *b = sn_new_1d(ctx, 64, in, "b");
        out = sn_conv2d(ctx, x, w, b, 1, 2, 0, 0);
    } else if (id == B_LSTM) {
        int64_t B = q ? 2 : 4, T = q ? 20 : 400, H = q ? 256 : 1024;
        snprintf(name, nn, "lstm B%lld T%lld %lld->%lld fwd+bwd", (long long)B, (long long)T, (long long)H,
                 (long long)H);
        const uint32_t pf = SN_FLAG_PARAM | SN_FLAG_PERSIST;
        int64_t xs[3] = {B, T, H};
        sn_tensor *x = sn_new_tensor(ctx, SN_F32, 3, xs, pf, "x"); /* a param: dx is computed, as in training */
        sn_tensor *w[4] = {sn_new_2d(ctx, 4 * H, H, pf, "w_ih"), sn_new_2d(ctx, 4 * H, H, pf, "w_hh"),
                           sn_new_1d(ctx, 4 * H, pf, "b_ih"), sn_new_1d(ctx, 4 * H, pf, "b_hh")};
        sn_tensor *loss = sn_mean(ctx, sn_lstm(ctx, x, 1, (int)H, w));
        if (!loss) return SN_ERR_SHAPE;
        sn_status st = sn_graph_add(g, loss);
        if (st == SN_OK) st = sn_backward(g, loss);
        if (st != SN_OK) return st;
        for (int i = 0; i < 4; i++)
            if (w[i]->grad) w[i]->grad->flags |= SN_FLAG_OUTPUT;
        if (x->grad) x->grad->flags |= SN_FLAG_OUTPUT;
        loss->flags |= SN_FLAG_OUTPUT;
        for (int i = 0; i < 4; i++)
            if (w[i]->grad && (st = sn_graph_add(g, w[i]->grad)) != SN_OK) return st;
        if (x->grad) st = sn_graph_add(g, x->grad);
        return st;
    }
    if (!out) return SN_ERR_SHAPE;
    out->flags |= SN_FLAG_OUTPUT;
    return sn_graph_add(g, out);
}

static void set_err(result *r, sn_status st) {
    r->ok = 0;
    snprintf(r->err, sizeof r->err, "%s", *sn_last_error() ? sn_last_error() : sn_status_name(st));
}

static void bench_graph(bench_id id, const rcfg *rc, sn_backend *b, sn_backend *cpu, result *r) {
    sn_ctx *ctx = sn_ctx_new();
    sn_graph *g = ctx ? sn_graph_new(ctx) : NULL;
    sn_plan *plan = NULL;
    sn_clear_error();
    sn_status st = g ? build(id, rc, ctx, g, r->bench, sizeof r->bench) : SN_ERR_NOMEM;
    if (st == SN_OK) st = sn_ctx_alloc_persistent(ctx, b);
    if (st == SN_OK) st = fill_leaves(ctx);
    sn_plan_opts po = {.backend = b, .fallback = cpu};
    if (st == SN_OK) st = sn_plan_new(g, &po, &plan);
    if (st == SN_OK) st = time_runs(rc, plan_run, plan, &r->ms);
    if (st == SN_OK) {
        r->ok = 1;
        r->gflop = graph_flop(g) * 1e-9;
    } else {
        set_err(r, st);
    }
    sn_plan_free(plan);
    sn_graph_free(g);
    sn_ctx_free(ctx);
}

typedef struct step_arg {
    sn_step *s;
    const float *x, *y;
} step_arg;

static sn_status step_run(void *p) {
    step_arg *a = p;
    float loss;
    return sn_step_run(a->s, a->x, a->y, 1e-4f, &loss);
}

static void bench_step(const rcfg *rc, sn_backend *b, sn_backend *cpu, result *r) {
    int B = rc->quick ? 1 : 4, T = rc->quick ? 25 : 400;
    sn_optim_config oc;
    sn_model *m = NULL;
    sn_step *s = NULL;
    float *x = NULL, *y = NULL;
    sn_clear_error();
    sn_status st = sn_optim_config_from(rc->cfg, &oc);
    if (!strcmp(rc->cfg->model.name, "graph"))
        snprintf(r->bench, sizeof r->bench, "train step graph/%d layers B%d T%d", rc->cfg->model.graph.n, B, T);
    else
        snprintf(r->bench, sizeof r->bench, "train step crn/%.15s h%d B%d T%d", rc->cfg->model.rnn, rc->cfg->model.hidden,
                 B, T);
    if (st == SN_OK) st = sn_model_from_config(rc->cfg, b, &m);
    if (st == SN_OK) st = sn_model_init(m, 0);
    if (st == SN_OK) st = sn_step_new(m, b, cpu, B, T, &oc, &s);
    int64_t n = (int64_t)B * T * 161;
    if (st == SN_OK) {
        x = malloc((size_t)n * sizeof *x);
        y = malloc((size_t)n * sizeof *y);
        if (!x || !y) st = sn_error(SN_ERR_NOMEM, "bench: out of host memory");
    }
    if (st == SN_OK) {
        uint64_t seed = 7;
        fill_random(x, n, &seed, 1.0f);
        for (int64_t i = 0; i < n; i++) x[i] = fabsf(x[i]), y[i] = 0.5f * x[i];
        step_arg a = {s, x, y};
        st = time_runs(rc, step_run, &a, &r->ms);
    }
    if (st == SN_OK) {
        r->ok = 1;
        r->gflop = graph_flop(s->g) * 1e-9;
    } else {
        set_err(r, st);
    }
    free(x), free(y);
    sn_step_free(s);
    sn_model_free(m);
}

/* ---- the command ------------------------------------------------------------- */

static void print_header(void) {
    printf("%-10s %-44s %10s %9s %10s %8s\n", "device", "benchmark", "time ms", "GFLOP", "GFLOP/s", "vs cpu");
}

static void print_table(const result *r, int n) {
    for (int i = 0; i < n; i++) {
        if (!r[i].ok) {
            printf("%-10s %-44s failed: %s\n", r[i].device, r[i].bench, r[i].err);
            continue;
        }
        printf("%-10s %-44s %10.3f %9.3f %10.1f", r[i].device, r[i].bench, r[i].ms, r[i].gflop, r[i].gflops);
        if (r[i].speedup > 0) printf(" %7.2fx\n", r[i].speedup);
        else printf(" %8s\n", "-");
    }
}

static void print_json(const result *r, int n, int quick) {
    sn_json_buf b = {0};
    sn_json_buf_puts(&b, "{\n  \"version\": ");
    sn_json_buf_string(&b, SN_VERSION, strlen(SN_VERSION));
    sn_json_buf_printf(&b, ",\n  \"quick\": %s,\n  \"results\": [", quick ? "true" : "false");
    for (int i = 0; i < n; i++) {
        sn_json_buf_puts(&b, i ? ",\n    {\"device\": " : "\n    {\"device\": ");
        sn_json_buf_string(&b, r[i].device, strlen(r[i].device));
        sn_json_buf_puts(&b, ", \"bench\": ");
        sn_json_buf_string(&b, r[i].bench, strlen(r[i].bench));
        sn_json_buf_printf(&b, ", \"ok\": %s", r[i].ok ? "true" : "false");
        if (r[i].ok) {
            sn_json_buf_puts(&b, ", \"ms\": ");
            sn_json_buf_number(&b, r[i].ms);
            sn_json_buf_puts(&b, ", \"gflop\": ");
            sn_json_buf_number(&b, r[i].gflop);
            sn_json_buf_puts(&b, ", \"gflops\": ");
            sn_json_buf_number(&b, r[i].gflops);
            sn_json_buf_puts(&b, ", \"speedup\": ");
            if (r[i].speedup > 0) sn_json_buf_number(&b, r[i].speedup);
            else sn_json_buf_puts(&b, "null");
        } else {
            sn_json_buf_puts(&b, ", \"error\": ");
            sn_json_buf_string(&b, r[i].err, strlen(r[i].err));
        }
        sn_json_buf_puts(&b, "}");
    }
    sn_json_buf_puts(&b, "\n  ]\n}\n");
    if (!b.oom) fputs(b.data, stdout);
    sn_json_buf_free(&b);
}

/* Device specs to run: the CPU, then the one asked for or every other device found. */
static int device_list(const char *only, char specs[][40], int max) {
    int n = 0;
    snprintf(specs[n++], 40, "cpu");
    int count = sn_device_count();
    for (int i = 1; i < count && n < max; i++) {
        sn_device_info d;
        if (sn_device_get(i, &d) != SN_OK) continue;
        char s[40];
        sn_device_spec(&d, s, sizeof s);
        if (only && strcmp(only, "auto") && strcmp(only, s) && strcmp(only, d.kind)) continue;
        if (only && !strcmp(only, "auto") && i != sn_device_auto()) continue;
        if (only && !strcmp(only, d.kind) && n > 1) continue;  /* "cuda" = cuda:0 */
        snprintf(specs[n++], 40, "%s", s);
    }
    return n;
}

int sn_cmd_bench(int argc, char **argv) {
    const char *only = NULL, *conf = NULL;
    int json = 0, quick = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return SN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--device") || !strcmp(a, "--config") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sinter bench: %s needs a value (see sinter bench --help)\n", a);
                return SN_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--device")) only = v;
            else if (!strcmp(a, "--config")) conf = v;
            else {
                char *end;
                long t = strtol(v, &end, 10);
                if (!*v || *end || t < 0 || t > 4096) {
                    fprintf(stderr, "sinter bench: --threads expects a number 0..4096, got '%s'\n", v);
                    return SN_EXIT_USAGE;
                }
                threads = (int)t;
            }
        } else {
            fprintf(stderr, "sinter bench: unknown argument '%s' (see sinter bench --help)\n", a);
            return SN_EXIT_USAGE;
        }
    }
    sn_config cfg;
    sn_config_defaults(&cfg);
    if (!conf && access("conf/prototype.yaml", R_OK) == 0) conf = "conf/prototype.yaml";
    if (conf) {
        sn_status st = sn_config_load(conf, &cfg);
        if (st != SN_OK) {
            fprintf(stderr, "sinter bench: %s\n", sn_last_error());
            return st == SN_ERR_IO ? SN_EXIT_INPUT : SN_EXIT_USAGE;
        }
    }
    /* an explicit device must exist: a clear error, not an empty table */
    if (only && strcmp(only, "cpu") && strcmp(only, "auto")) {
        sn_backend *b = NULL;
        sn_status st = sn_backend_open(only, threads, &b);
        if (st != SN_OK) {
            fprintf(stderr, "sinter bench: %s\n", sn_last_error());
            return SN_EXIT_DEVICE;
        }
        sn_backend_free(b);
    }
    char specs[16][40];
    int nd = device_list(only && strcmp(only, "cpu") ? only : NULL, specs, 16);
    if (only && !strcmp(only, "cpu")) nd = 1;
    rcfg rc = {quick, quick ? 0.05 : 1.0, quick ? 3 : 20, &cfg, threads};
    result *res = calloc((size_t)nd * B_COUNT, sizeof *res);
    if (!res) return SN_EXIT_DEVICE;
    sn_backend *cpu = sn_cpu_backend_new(threads);
    int nr = 0, any_fail = 0;
    if (!json)
        printf("sinter %s bench%s: median of runs after a warm-up; GFLOP/s counts matmul, conv and recurrence "
               "multiply-adds\n",
               SN_VERSION, quick ? " --quick" : "");
    if (!json) print_header();
    for (int d = 0; d < nd; d++) {
        sn_backend *b = NULL;
        sn_status st = d == 0 ? SN_OK : sn_backend_open(specs[d], threads, &b);
        if (d == 0) b = cpu;
        for (int k = 0; k < B_COUNT; k++) {
            result *r = &res[nr++];
            snprintf(r->device, sizeof r->device, "%.39s", specs[d]);
            if (st != SN_OK) {
                snprintf(r->bench, sizeof r->bench, "(device)");
                set_err(r, st);
                break;
            }
            if (k == B_STEP) bench_step(&rc, b, cpu, r);
            else bench_graph((bench_id)k, &rc, b, cpu, r);
            if (r->ok) {
                r->gflops = r->ms > 0 ? r->gflop / (r->ms * 1e-3) : 0;
                if (d > 0 && res[k].ok && r->ms > 0) r->speedup = res[k].ms / r->ms;
                else if (d == 0) r->speedup = 1.0;
            } else {
                any_fail = 1;
            }
            if (!json) {
                print_table(r, 1);
                fflush(stdout);
            }
        }
        if (d > 0) sn_backend_free(b);
    }
    if (json) print_json(res, nr, quick);
    else if (nd == 1)
        printf("only the CPU was benchmarked: no other device found or asked for (see sinter devices)\n");
    free(res);
    sn_backend_free(cpu);
    return any_fail ? SN_EXIT_DEVICE : SN_EXIT_OK;
}
