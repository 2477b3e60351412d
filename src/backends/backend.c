/* Backend-neutral helpers over the function table. */
#include "sinter/backend.h"

#include <string.h>

void sn_backend_free(sn_backend *b) {
    if (b) b->i->free(b);
}

const char *sn_backend_name(sn_backend *b) { return b ? b->i->name(b) : "none"; }

sn_status sn_backend_info(sn_backend *b, sn_device_info *out) {
    if (!b || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_backend_info: NULL argument");
    memset(out, 0, sizeof *out);
    out->utilization = -1;
    return b->i->info ? b->i->info(b, out) : SN_OK;
}

size_t sn_backend_workspace(sn_backend *b) { return b && b->i->workspace_bytes ? b->i->workspace_bytes(b) : 0; }

sn_status sn_backend_set_precision(sn_backend *b, const sn_precision *p) {
    if (!b || !p) return sn_error(SN_ERR_INVALID_ARG, "sn_backend_set_precision: NULL argument");
    if (b->i->set_precision) return b->i->set_precision(b, p);
    if (!p->tf32 && !p->bf16 && !p->f16) return SN_OK;
    return sn_error(SN_ERR_UNSUPPORTED, "the %s backend computes in f32 only", sn_backend_name(b));
}

void sn_backend_set_profile(sn_backend *b, int level) {
    if (b && b->i->set_profile) b->i->set_profile(b, level);
}

bool sn_backend_rnn_fuses_layers(sn_backend *b, bool lstm, int64_t batch, int64_t hidden, int layers) {
    return b && b->i->rnn_fuses_layers && b->i->rnn_fuses_layers(b, lstm, batch, hidden, layers);
}
