/* Host memory for op graphs that the benchmarks run node by node (host backends). */
#ifndef SN_BENCH_GRAPH_H
#define SN_BENCH_GRAPH_H

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* memory for every op node from `first` on; views point into their source */
static inline int bench_alloc_nodes(sn_ctx *ctx, int first) {
    for (int i = first; i < sn_ctx_count(ctx); i++) {
        sn_tensor *t = sn_ctx_tensor(ctx, i);
        if (t->op == SN_OP_NONE) continue;
        if (t->view_src) {
            t->data = (char *)t->view_src->data + t->view_offs;
            continue;
        }
        if (posix_memalign(&t->data, 256, sn_alloc_bytes(t)) != 0) return -1;
        memset(t->data, 0, sn_alloc_bytes(t));
    }
    return 0;
}

#endif
