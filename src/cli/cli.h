/* Private to the CLI: the subcommands and the exit-code convention they share.
 * Every subcommand gets argv[0] = its own name and returns an exit code. */
#ifndef SINTER_CLI_H
#define SINTER_CLI_H

#include "sinter/config.h"
#include "sinter/status.h"

#ifndef SN_VERSION
#define SN_VERSION "0.0.0"
#endif

/* Exit codes of every subcommand: the one table (README.md "Exit codes",
 * `sinter --help` and each subcommand's --help print SN_EXIT_CODES_HELP). */
enum {
    SN_EXIT_OK = 0,
    SN_EXIT_NUMERIC = 1,     /* train only: the loss became NaN/Inf */
    SN_EXIT_USAGE = 2,       /* bad arguments, config error */
    SN_EXIT_INPUT = 3,       /* missing/unreadable/corrupt input (NaN/Inf in it too), unwritable output, full
                                disk, run directory in use */
    SN_EXIT_DEVICE = 4,      /* no such device, out of (device) memory */
    SN_EXIT_INTERRUPTED = 130,
};

#define SN_EXIT_CODES_HELP                                                                                   \
    "exit codes (the same for every command):\n"                                                              \
    "  0    ok\n"                                                                                              \
    "  1    training stopped: the loss became NaN/Inf (train)\n"                                               \
    "  2    usage or config error: bad option, unknown key, bad value\n"                                       \
    "  3    input/file error: a missing, unreadable or corrupt file (NaN/Inf samples or weights\n"             \
    "       included), a wrong checkpoint, an unwritable output or full disk, a run in use\n"                  \
    "  4    device error: no such device, out of memory\n"                                                     \
    "  130  interrupted (Ctrl-C / SIGINT; train writes a checkpoint first)\n"

/* Maps a library status to the exit code above. NaN/Inf is bad input (3)
 * everywhere; only train's diverging loss is 1 (sn_train_result.diverged). */
static inline int sn_cli_exit_code(sn_status s) {
    switch (s) {
    case SN_OK: return SN_EXIT_OK;
    case SN_ERR_INVALID_ARG:
    case SN_ERR_CONFIG: return SN_EXIT_USAGE;
    case SN_ERR_NOMEM:
    case SN_ERR_DEVICE: return SN_EXIT_DEVICE;
    default: return SN_EXIT_INPUT;
    }
}

/* A command-line word of a command taking [CONF] [key=value ...] that is not one of its
 * options: an override goes to over[(*nover)++] (room for argc), the first other word to
 * *conf. Prints why and returns SN_EXIT_USAGE for an unknown option or a second CONF
 * (hint, when not NULL, follows that message), else SN_EXIT_OK. */
int sn_cli_positional(const char *cmd, const char *a, const char **conf, const char **over, int *nover,
                      const char *hint);
/* The command's config: CONF (the defaults when NULL) with the key=value overrides, then
 * the cross-key checks when validate. Prints "sinter CMD: why" and returns the exit code
 * when that fails (a missing or unreadable file: 3; a bad key or value: 2), else 0. */
int sn_cli_config(const char *cmd, const char *conf, const char *const *over, int nover, int validate,
                  sn_config *cfg);

int sn_cmd_devices(int argc, char **argv);
int sn_cmd_enhance(int argc, char **argv);
int sn_cmd_bench(int argc, char **argv);
int sn_cmd_train(int argc, char **argv);
int sn_cmd_eval(int argc, char **argv);
int sn_cmd_metrics(int argc, char **argv);
int sn_cmd_data(int argc, char **argv);
int sn_cmd_model(int argc, char **argv);

#endif
