/* `sinter <subcommand> ...`: dispatch, --help, --version, `help <cmd>`, and a
 * suggestion for a mistyped subcommand. Each subcommand lives in its own file
 * and returns its exit code (cli.h). */
#include "cli.h"
#include "sinter/audio.h"
#include "sinter/data.h"
#include "sinter/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand cmds[] = {
    {"devices", sn_cmd_devices, "list the CPU and every GPU found, and which one device=auto picks"},
    {"train", sn_cmd_train, "train a model from a YAML config (key.sub=value overrides)"},
    {"enhance", sn_cmd_enhance, "enhance noisy audio files with a trained checkpoint"},
    {"model", sn_cmd_model, "summarise a config's model: layers, output shapes, parameters, step memory"},
    {"eval", sn_cmd_eval, "score a checkpoint on the validation set (SNR, SI-SDR, STOI, ESTOI)"},
    {"bench", sn_cmd_bench, "CPU vs every GPU: matmul, conv, LSTM, full training step"},
    {"data", sn_cmd_data, "make the demo corpus (sinter data demo --out DIR)"},
    {"metrics", sn_cmd_metrics, "SNR, SI-SDR, STOI, ESTOI of an estimate against a reference"},
};
#define NCMDS ((int)(sizeof cmds / sizeof cmds[0]))

static void usage(FILE *f) {
    fprintf(f,
            "sinter %s: a deep-learning training engine in C (CPU, CUDA, Vulkan)\n"
            "\n"
            "usage: sinter <command> [options]\n"
            "       sinter help <command>     (or: sinter <command> --help)\n"
            "       sinter --version\n"
            "\n"
            "commands:\n",
            SN_VERSION);
    for (int i = 0; i < NCMDS; i++) fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f,
            "\n"
            "examples:\n"
            "  sinter devices\n"
            "  sinter data demo --out data/demo\n"
            "  sinter train conf/prototype.yaml train.batch_size=8 device=cuda:0\n"
            "  sinter enhance --ckpt runs/<run>/best.safetensors noisy.wav -o clean.wav\n"
            "  sinter metrics clean.wav enhanced.wav\n"
            "  sinter bench --quick\n"
            "\n" SN_EXIT_CODES_HELP);
}

/* Levenshtein distance of two short strings (subcommand names). */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static const subcommand *find_cmd(const char *name) {
    for (int i = 0; i < NCMDS; i++)
        if (!strcmp(cmds[i].name, name)) return &cmds[i];
    return NULL;
}

/* The nearest subcommand, or one that starts with what was typed; NULL if none is close. */
static const char *suggest(const char *name) {
    const char *best = NULL;
    int bd = 99;
    for (int i = 0; i < NCMDS; i++) {
        int d = edit_distance(name, cmds[i].name);
        if (strlen(name) >= 2 && !strncmp(cmds[i].name, name, strlen(name))) d = 0;
        if (d < bd) bd = d, best = cmds[i].name;
    }
    int limit = strlen(name) <= 4 ? 2 : 3;
    return bd <= limit ? best : NULL;
}

static int unknown(const char *name) {
    const char *s = suggest(name);
    if (s)
        fprintf(stderr, "sinter: unknown command '%s'; did you mean '%s'? (sinter --help lists them)\n", name, s);
    else
        fprintf(stderr, "sinter: unknown command '%s' (sinter --help lists the commands)\n", name);
    return SN_EXIT_USAGE;
}

static int run(const subcommand *c, int argc, char **argv) { return c->fn(argc, argv); }

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        usage(stdout);
        return SN_EXIT_OK;
    }
    if (!strcmp(a, "-V") || !strcmp(a, "--version") || !strcmp(a, "version")) {
        printf("sinter %s\n", SN_VERSION);
        return SN_EXIT_OK;
    }
    if (!strcmp(a, "help")) {
        if (argc < 3) {
            usage(stdout);
            return SN_EXIT_OK;
        }
        const subcommand *c = find_cmd(argv[2]);
        if (!c) return unknown(argv[2]);
        char *hargv[3] = {argv[2], "--help", NULL};
        return run(c, 2, hargv);
    }
    if (a[0] == '-') {
        fprintf(stderr, "sinter: unknown option '%s'; options go after the command (sinter --help)\n", a);
        return SN_EXIT_USAGE;
    }
    const subcommand *c = find_cmd(a);
    if (!c) return unknown(a);
    return run(c, argc - 1, argv + 1);
}
