/* libFuzzer target: the layer-list parser (model.layers / model.file) on
 * arbitrary text must never crash or leak; a description that parses must dump
 * to YAML that parses back to the same dump. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    sn_model_desc *d = malloc(sizeof *d), *e = malloc(sizeof *e);
    if (!text || !d || !e) {
        free(text), free(d), free(e);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = 0;
    sn_model_desc_init(d);
    if (sn_model_desc_parse(text, "fuzz.yaml", d) == SN_OK) {
        char *y1 = NULL, *y2 = NULL;
        if (sn_model_desc_to_yaml(d, &y1) != SN_OK) abort();
        sn_model_desc_init(e);
        if (sn_model_desc_parse(y1, "dump", e) != SN_OK) abort();
        if (sn_model_desc_to_yaml(e, &y2) != SN_OK || strcmp(y1, y2) != 0) abort();
        if (d->n != e->n) abort();
        free(y1);
        free(y2);
    }
    free(text), free(d), free(e);
    return 0;
}
