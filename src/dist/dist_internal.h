/* Private to src/dist: the implementations' constructors and the watchdog's registry. */
#ifndef SN_DIST_INTERNAL_H
#define SN_DIST_INTERNAL_H

#include "sinter/dist.h"

/* fills the common fields of a new comm (and its collective for sn_comm_attach) */
void sn_comm_setup(sn_comm *c, const sn_comm_i *i, int rank, int size, int local_rank, int local_size, bool device,
                   void *impl);

/* MPI (mpi.c): joins the launcher's group. Without MPI built in: SN_ERR_UNSUPPORTED. */
sn_status sn_comm_mpi_new(sn_comm **out);

/* The watchdog thread (comm.c) runs while a group of more than one exists. A device
 * comm registers a poll (returns a message when its communicator failed, else NULL)
 * and an abort (unblocks the device before the process exits). */
typedef const char *(*sn_dist_poll_fn)(void *arg);
typedef void (*sn_dist_abort_fn)(void *arg);
void sn_dist_watchdog_start(int rank, int size);
void sn_dist_watchdog_register(sn_dist_poll_fn poll, sn_dist_abort_fn abort_fn, void *arg);
void sn_dist_watchdog_unregister(void *arg);
/* prints "sinter: rank R of N: msg" on stderr, aborts the registered device comms and
 * ends the process with status 4 (a device/communication error) */
void sn_dist_fatal(const char *msg) __attribute__((noreturn));

#endif
