/* Filesystem helpers shared above the io layer (train, data, cli). */
#ifndef SN_IO_FS_H
#define SN_IO_FS_H

#include "sinter/status.h"

/* mkdir -p: creates dir and the folders above it that are missing (mode 0777 less the
 * umask); SN_ERR_IO naming the folder that could not be made. */
sn_status sn_mkdirs(const char *dir);

#endif
