/* Python reference checks through the project's .venv (see sn_pyref.h). */
#define _POSIX_C_SOURCE 200809L
#include "sn_pyref.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SN_PYTHON
#define SN_PYTHON "python3"
#endif

static int g_skipped;
static char g_quoted[1024];

static int env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* Empty `why` when SN_PYTHON imports modules; else what went wrong (the last line
 * Python printed, e.g. "ModuleNotFoundError: No module named 'pystoi'"). */
static void probe(const char *modules, char *why, size_t size) {
    why[0] = 0;
    if (access(SN_PYTHON, X_OK) != 0) {
        snprintf(why, size, "%s does not exist", SN_PYTHON);
        return;
    }
    char cmd[1400], line[512] = "", last[512] = "";
    snprintf(cmd, sizeof cmd, "%s -c 'import %s' 2>&1", g_quoted, modules);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, size, "cannot run %s", SN_PYTHON);
        return;
    }
    while (fgets(line, sizeof line, p))
        if (line[0] != '\n') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    if (rc == 0) return;
    last[strcspn(last, "\n")] = 0;
    snprintf(why, size, "%s cannot import %s (%s)", SN_PYTHON, modules, last[0] ? last : "no message");
}

static const char *check(const char *modules, const char *optin_var) {
    if (strchr(SN_PYTHON, '\'')) fail_msg("SINTER_PYTHON %s has a quote in its path", SN_PYTHON);
    snprintf(g_quoted, sizeof g_quoted, "'%s'", SN_PYTHON);
    char why[900];
    probe(modules, why, sizeof why);
    if (!why[0]) return g_quoted;
    if (!optin_var) {
        if (!env_on("SINTER_SKIP_PY_REFS"))
            fail_msg("the check against Python's %s cannot run: %s. Run scripts/install.sh (it makes .venv "
                     "from tests/requirements.txt), or set SINTER_SKIP_PY_REFS=1 to skip the Python "
                     "reference checks",
                     modules, why);
        printf("SKIPPED (SINTER_SKIP_PY_REFS is set): the check against Python's %s: %s\n", modules, why);
    } else {
        if (env_on(optin_var))
            fail_msg("%s is set but the check against Python's %s cannot run: %s. Run %s=1 scripts/install.sh",
                     optin_var, modules, why);
        printf("SKIPPED (opt-in): the check against Python's %s: %s. To run it: %s=1 scripts/install.sh, "
               "then run the tests with %s=1\n",
               modules, why, optin_var, optin_var);
    }
    fflush(stdout);
    g_skipped = 1;
    return NULL;
}

const char *sn_pyref(const char *modules) { return check(modules, NULL); }

const char *sn_pyref_optin(const char *modules, const char *optin_var) { return check(modules, optin_var); }

int sn_pyref_exit(int rc) { return rc == 0 && g_skipped ? 77 : rc; }
