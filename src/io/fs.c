/* Filesystem helpers (fs.h). */
#include "io/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

sn_status sn_mkdirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) return sn_error(SN_ERR_NOMEM, "out of host memory");
    sn_status st = SN_OK;
    for (char *s = p + 1; st == SN_OK; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            st = sn_error(SN_ERR_IO, "cannot create output folder '%s': %s", p, strerror(errno));
        *s = c;
        if (!c) break;
    }
    free(p);
    return st;
}
