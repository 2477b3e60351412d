/* Python reference checks: tests that compare sinter with a Python package (tensorboard,
 * pystoi, safetensors, torch) run the interpreter of the project's .venv, which
 * scripts/install.sh makes from tests/requirements.txt (CMake's SINTER_PYTHON names it).
 * A check that cannot run fails the test, saying why; it is skipped only on request and
 * then says so, and the program exits 77 (ctest reports it as skipped, not passed). */
#ifndef SN_PYREF_H
#define SN_PYREF_H

/* The interpreter, quoted for a shell command, when it imports `modules` ("pystoi, numpy").
 * Otherwise fails the current cmocka test with the reason and the fix; with
 * SINTER_SKIP_PY_REFS=1 in the environment it prints a SKIPPED line and returns NULL. */
const char *sn_pyref(const char *modules);

/* The same for packages install.sh adds only on request (torch: optin_var SINTER_PY_TORCH):
 * without them it prints a SKIPPED line saying how to opt in and returns NULL, unless
 * optin_var is set, when the test fails. */
const char *sn_pyref_optin(const char *modules, const char *optin_var);

/* What main returns: rc, or 77 when rc is 0 and a reference check was skipped. */
int sn_pyref_exit(int rc);

#endif
