/* Helpers the subcommands share (declared in cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int sn_cli_positional(const char *cmd, const char *a, const char **conf, const char **over, int *nover,
                      const char *hint) {
    if (a[0] == '-' && a[1]) {
        fprintf(stderr, "sinter %s: unknown option '%s' (see sinter %s --help)\n", cmd, a, cmd);
        return SN_EXIT_USAGE;
    }
    if (strchr(a, '=')) over[(*nover)++] = a;
    else if (!*conf) *conf = a;
    else {
        fprintf(stderr, "sinter %s: unexpected argument '%s'%s\n", cmd, a, hint ? hint : "");
        return SN_EXIT_USAGE;
    }
    return SN_EXIT_OK;
}

int sn_cli_config(const char *cmd, const char *conf, const char *const *over, int nover, int validate,
                  sn_config *cfg) {
    sn_status s = SN_OK;
    if (conf) s = sn_config_load(conf, cfg); /* the defaults, then the file */
    else sn_config_defaults(cfg);
    for (int i = 0; i < nover && s == SN_OK; i++) s = sn_config_override(cfg, over[i]);
    if (s == SN_OK && validate) s = sn_config_validate(cfg);
    if (s == SN_OK) return SN_EXIT_OK;
    fprintf(stderr, "sinter %s: %s\n", cmd, sn_last_error());
    /* a missing or unreadable config file is a file error; a bad key or value a usage error */
    return s == SN_ERR_IO ? SN_EXIT_INPUT : SN_EXIT_USAGE;
}
