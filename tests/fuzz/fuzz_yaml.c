/* libFuzzer target: the YAML config loader on arbitrary text must never
 * crash or leak; a config that loads must dump to YAML that loads back to
 * the same config, and overrides built from the input must not crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    sn_config c;
    sn_config_defaults(&c);
    /* Each line is also tried as an override ("key=value"). */
    if (size < 512) {
        char *line = strdup(text), *save = NULL;
        for (char *l = strtok_r(line, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) sn_config_override(&c, l);
        free(line);
        sn_config_validate(&c);
    }
    if (sn_config_from_yaml_string(text, "fuzz.yaml", &c) == SN_OK) {
        char *y1 = NULL, *y2 = NULL;
        sn_config d;
        if (sn_config_to_yaml(&c, &y1) != SN_OK) abort();
        if (sn_config_from_yaml_string(y1, "dump", &d) != SN_OK) abort();
        if (sn_config_to_yaml(&d, &y2) != SN_OK || strcmp(y1, y2) != 0) abort();
        free(y1);
        free(y2);
    }
    free(text);
    return 0;
}
