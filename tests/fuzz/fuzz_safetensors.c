/* libFuzzer target: sn_st_parse on arbitrary bytes must never crash, leak or
 * read out of bounds; what parses must read back and re-serialize to a file
 * that parses again with the same tensors. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sn_safetensors *f = NULL;
    if (sn_st_parse(data, size, "fuzz", &f) != SN_OK) return 0;
    sn_st_writer *w = sn_st_writer_new();
    int n = sn_st_count(f), rt = 1;
    for (int i = 0; i < n; i++) {
        const sn_st_tensor *t = sn_st_get(f, i);
        if (sn_st_find(f, t->name) != t) abort();
        uint64_t numel = sn_st_numel(t);
        if (numel <= 4096) {
            float buf[4096];
            sn_st_read_f32(f, t->name, buf, (size_t)numel);
        }
        /* The writer refuses empty names, which the reader tolerates. */
        if (sn_st_add_ref(w, t->name, t->dtype, t->ndim, t->shape, sn_st_data(f, t)) != SN_OK) {
            if (t->name[0]) abort();
            rt = 0;
        }
    }
    for (int i = 0; i < sn_st_meta_count(f); i++) {
        const char *k = sn_st_meta_key(f, i);
        if (sn_st_set_meta(w, k, sn_st_meta(f, k)) != SN_OK) abort();
    }
    void *out;
    size_t len;
    if (rt && sn_st_serialize(w, &out, &len) == SN_OK) {
        sn_safetensors *g = NULL;
        if (sn_st_parse(out, len, "fuzz-rt", &g) != SN_OK || sn_st_count(g) != n) abort();
        for (int i = 0; i < n; i++) {
            const sn_st_tensor *a = sn_st_get(f, i), *b = sn_st_find(g, a->name);
            if (!b || b->nbytes != a->nbytes || memcmp(sn_st_data(f, a), sn_st_data(g, b), (size_t)a->nbytes)) abort();
        }
        sn_st_close(g);
        free(out);
    }
    sn_st_writer_free(w);
    sn_st_close(f);
    return 0;
}
