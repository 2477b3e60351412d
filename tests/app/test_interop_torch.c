/* sinter -> PyTorch: a sinter checkpoint (after a few training steps) loads
 * into tests/app/test_interop_torch.py's CRN with load_state_dict(strict=True)
 * and gives sinter's inference output. torch is opt-in (large): without it in .venv
 * the test says so and exits 77; with SINTER_PY_TORCH=1 it must run (sn_pyref.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_util.h"
#include "sinter/backend.h"
#include "sinter/safetensors.h"
#include "sn_pyref.h"
#include "sn_test.h"

static void test_sinter_to_torch(void **state) {
    (void)state;
    const char *py = sn_pyref_optin("torch, numpy", "SINTER_PY_TORCH");
    if (!py) skip();
    sn_config c;
    sn_config_defaults(&c);
    c.model.hidden = 48;
    int ch[5] = {4, 8, 8, 8, 16};
    memcpy(c.model.channels, ch, sizeof ch);
    sn_backend *b = sn_cpu_backend_new(0);
    sn_crn_config cc;
    sn_optim_config oc;
    SN_ASSERT_OK(sn_crn_config_from(&c, &cc));
    SN_ASSERT_OK(sn_optim_config_from(&c, &oc));
    sn_model *m;
    sn_step *s;
    SN_ASSERT_OK(sn_crn_new(&cc, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 9));
    const int B = 2, T = 15, n = B * T * 161;
    SN_ASSERT_OK(sn_step_new(m, b, b, B, T, &oc, &s));
    uint64_t seed = 11;
    float *x = sn_test_rand_new(n, &seed, 0, 2), *y = sn_test_rand_new(n, &seed, 0, 1), *out = malloc(n * sizeof *out);
    float loss;
    for (int i = 0; i < 3; i++) SN_ASSERT_OK(sn_step_run(s, x, y, 1e-2f, &loss)); /* moves weights + BN stats */
    char ck[400], io[400];
    app_path(ck, sizeof ck, "interop.safetensors");
    app_path(io, sizeof io, "interop_io.safetensors");
    sn_ckpt_state st = {.step = 3};
    SN_ASSERT_OK(sn_ckpt_save(m, s, &st, &c, ck));
    sn_infer *f;
    SN_ASSERT_OK(sn_infer_new(m, b, b, B, T, &f));
    SN_ASSERT_OK(sn_infer_run(f, x, out));
    sn_st_writer *w = sn_st_writer_new();
    int64_t sh[4] = {B, 1, T, 161};
    SN_ASSERT_OK(sn_st_add(w, "input", "F32", 4, sh, x));
    SN_ASSERT_OK(sn_st_add(w, "output", "F32", 4, sh, out));
    SN_ASSERT_OK(sn_st_save(w, io));
    sn_st_writer_free(w);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/app/test_interop_torch.py' check '%s' '%s'", py, SN_SOURCE_DIR, ck, io);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
    free(x);
    free(y);
    free(out);
    sn_infer_free(f);
    sn_step_free(s);
    sn_model_free(m);
    sn_backend_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sinter_to_torch)};
    return sn_pyref_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
