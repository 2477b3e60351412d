/* Private to the CLI: the subcommands and the exit-code convention they share.
 * Every subcommand gets argv[0] = its own name and returns an exit code. */
#ifndef SINTER_CLI_H
#define SINTER_CLI_H

#include "sinter/status.h"

#ifndef SN_VERSION
#define SN_VERSION "0.0.0"
#endif

/* Exit codes of every subcommand (README.md, "Exit codes"). */
enum {
    SN_EXIT_OK = 0,
    SN_EXIT_NUMERIC = 1,     /* training stopped by NaN/Inf */
    SN_EXIT_USAGE = 2,       /* bad arguments, config error */
    SN_EXIT_INPUT = 3,       /* missing/unreadable/corrupt input, unwritable output */
    SN_EXIT_DEVICE = 4,      /* no such device, out of (device) memory */
    SN_EXIT_INTERRUPTED = 130,
};

/* Maps a library status to the exit code above. */
static inline int sn_cli_exit_code(sn_status s) {
    switch (s) {
    case SN_OK: return SN_EXIT_OK;
    case SN_ERR_NUMERIC: return SN_EXIT_NUMERIC;
    case SN_ERR_INVALID_ARG:
    case SN_ERR_CONFIG: return SN_EXIT_USAGE;
    case SN_ERR_NOMEM:
    case SN_ERR_DEVICE: return SN_EXIT_DEVICE;
    default: return SN_EXIT_INPUT;
    }
}

int sn_cmd_devices(int argc, char **argv);
int sn_cmd_enhance(int argc, char **argv);
int sn_cmd_bench(int argc, char **argv);
int sn_cmd_train(int argc, char **argv);
int sn_cmd_eval(int argc, char **argv);
int sn_cmd_metrics(int argc, char **argv);
int sn_cmd_data(int argc, char **argv);
int sn_cmd_model(int argc, char **argv);

#endif
