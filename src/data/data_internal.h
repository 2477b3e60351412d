/* Private helpers of src/data. */
#ifndef SN_DATA_INTERNAL_H
#define SN_DATA_INTERNAL_H
#include <stdint.h>

#include "sinter/data.h"

typedef struct sn_pathlist {
    char **v;
    int64_t n, cap;
} sn_pathlist;

/* Audio files under dir (recursive, sorted). `what` names the setting in errors. */
sn_status sn_scan_audio(const char *dir, const char *what, sn_pathlist *out);
void sn_pathlist_free(sn_pathlist *pl);

/* Monotonic clock, seconds. */
double sn_data_now(void);
#endif
