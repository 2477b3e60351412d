/* Reading the PyTorch golden files (the .safetensors files in tests/golden) and comparing with them:
 * shared by the golden tests of the CRN and of the described models. */
#ifndef SN_GOLDEN_H
#define SN_GOLDEN_H

#include <stdint.h>

#include "sinter/safetensors.h"
#include "sinter/tensor.h"

/* max_i |a_i - ref_i| / max(max_i |ref_i|, floor): the worst absolute error relative to
 * the reference's largest magnitude (NaN gives NaN, which fails every bound). */
double sn_golden_err(const float *a, const float *ref, int64_t n, double floor);
/* tensor `name` of the golden file as f32 (malloc'd; fails the test when absent) */
float *sn_golden_read(const sn_safetensors *f, const char *name, int64_t *n);
/* a tensor's values on the host (malloc'd) */
float *sn_golden_host(const sn_tensor *t);
/* an integer metadata entry (fails the test when absent) */
int sn_golden_meta_int(const sn_safetensors *f, const char *key);

#endif
