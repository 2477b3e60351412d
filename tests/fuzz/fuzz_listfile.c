/* libFuzzer target: the list-file (CSV) parser must never crash, leak or read
 * out of bounds, whatever the bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sinter/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sn_listfile lf;
    if (sn_listfile_parse((const char *)data, size, "/base", "fuzz.csv", &lf) == SN_OK) {
        /* a successful parse must be self-consistent */
        if (lf.n <= 0 || (lf.kind != SN_LIST_NOISE && lf.kind != SN_LIST_NOISY)) __builtin_trap();
        for (int64_t i = 0; i < lf.n; i++)
            if (!lf.first[i][0] || !lf.second[i][0] || lf.line[i] < 2) __builtin_trap();
        sn_listfile_free(&lf);
    }
    return 0;
}
