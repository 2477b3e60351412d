/* safetensors files (https://github.com/huggingface/safetensors): read,
 * validate, write atomically. Layout: u64 little-endian header length N, N
 * bytes of JSON header {"name": {"dtype", "shape", "data_offsets": [b, e]},
 * "__metadata__": {str: str}}, then the data region, which tensors must cover
 * exactly (no gaps, no overlaps). No external dependency (sinter_core). */
#ifndef SINTER_SAFETENSORS_H
#define SINTER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_ST_MAX_DIMS 8
/* Headers larger than this are rejected as corrupt (the Python package uses the same bound). */
#define SN_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct sn_st_tensor {
    const char *name;
    char dtype[8]; /* "F32","F16","BF16","F64","I64","I32","I16","I8","U8","BOOL"
                      (also read: "U16","U32","U64","F8_E4M3","F8_E5M2") */
    int ndim;
    int64_t shape[SN_ST_MAX_DIMS];
    uint64_t offset, nbytes; /* offset relative to the start of the data region */
} sn_st_tensor;

typedef struct sn_safetensors sn_safetensors;

/* Reads and validates the whole file. */
sn_status sn_st_open(const char *path, sn_safetensors **out);
/* Copies buf; label names it in errors (e.g. the file name). */
sn_status sn_st_parse(const void *buf, size_t len, const char *label, sn_safetensors **out);
int sn_st_count(const sn_safetensors *f);
/* In file order (by data offset; ties keep header order). NULL if out of range. */
const sn_st_tensor *sn_st_get(const sn_safetensors *f, int i);
const sn_st_tensor *sn_st_find(const sn_safetensors *f, const char *name);
/* Raw little-endian bytes of t; 64-byte aligned. */
const void *sn_st_data(const sn_safetensors *f, const sn_st_tensor *t);
/* Element count of t (product of the shape; 1 for a scalar). */
uint64_t sn_st_numel(const sn_st_tensor *t);
/* Bytes per element of a dtype name, 0 if unknown. */
size_t sn_st_dtype_size(const char *dtype);
/* Converts F32/F64/F16/BF16/I64/I32/I16/I8/U8/BOOL to float32 (or float64);
 * errors if the tensor is missing or its element count differs from n (the
 * message names the tensor, its shape and the expected count). */
sn_status sn_st_read_f32(const sn_safetensors *f, const char *name, float *dst, size_t n);
sn_status sn_st_read_f64(const sn_safetensors *f, const char *name, double *dst, size_t n);
/* __metadata__ string value, or NULL. */
const char *sn_st_meta(const sn_safetensors *f, const char *key);
int sn_st_meta_count(const sn_safetensors *f);
const char *sn_st_meta_key(const sn_safetensors *f, int i);
/* The label/path given at open/parse. */
const char *sn_st_label(const sn_safetensors *f);
void sn_st_close(sn_safetensors *f);

typedef struct sn_st_writer sn_st_writer;
sn_st_writer *sn_st_writer_new(void);
/* data is copied; dtype as above; F32 data given as float*, I64 as int64_t*,
 * F16/BF16 as uint16_t bit patterns, BOOL as one byte per element. Errors on
 * an empty, duplicate or reserved ("__metadata__") name, an unknown dtype, or
 * a negative dimension. */
sn_status sn_st_add(sn_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                    const void *data);
/* Like sn_st_add but keeps a pointer instead of copying: data must stay valid
 * and unchanged until sn_st_save returns (avoids doubling memory for big
 * checkpoints). */
sn_status sn_st_add_ref(sn_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                        const void *data);
/* Sets (or replaces) a metadata entry. */
sn_status sn_st_set_meta(sn_st_writer *w, const char *key, const char *value);
/* Atomic: writes path.tmp.<pid>, fsync, rename over path, fsync the directory.
 * On any failure (full disk, unwritable dir) the old file at path is
 * untouched, the temp file removed, and the error says so. The header is
 * padded with spaces so the data region starts 8-byte aligned, like the
 * Python writer. */
sn_status sn_st_save(sn_st_writer *w, const char *path);
/* Serializes to memory (malloc'd; free with free()). */
sn_status sn_st_serialize(sn_st_writer *w, void **out, size_t *out_len);
void sn_st_writer_free(sn_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
