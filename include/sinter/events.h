/* TensorBoard event files (events.out.tfevents.<time>.<host>): scalars and
 * audio. TFRecord framing, Event/Summary protobufs encoded by hand. Every
 * record reaches the kernel before the call returns, so a killed run loses
 * nothing already written. Calls on one writer are serialised by a mutex. */
#ifndef SINTER_EVENTS_H
#define SINTER_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_events sn_events;

/* Creates dir (and parents) if needed and a new event file in it, starting
 * with the file_version record "brain.Event:2". */
sn_status sn_events_open(const char *dir, sn_events **out);
/* SessionLog START at step: a run resumed from its checkpoint at step S
 * writes it at S+1, and TensorBoard then discards the events at steps >= S+1
 * written before (steps the killed run did past its checkpoint, redone now). */
sn_status sn_events_session_start(sn_events *ev, int64_t step);
/* Summary.Value{tag, simple_value} at step. */
sn_status sn_events_scalar(sn_events *ev, const char *tag, int64_t step, double value);
/* Summary.Value{tag, audio}: x (mono, [-1, 1], clipped) as a 16-bit PCM WAV. */
sn_status sn_events_audio(sn_events *ev, const char *tag, int64_t step, const float *x, int64_t n, int sample_rate);
/* Path of the event file. */
const char *sn_events_path(const sn_events *ev);
void sn_events_close(sn_events *ev);

/* Helpers, public for tests and other writers. */
uint32_t sn_crc32c(const void *data, size_t n);
/* TFRecord's masked CRC: rotate right 15, add 0xa282ead8. */
uint32_t sn_crc32c_masked(const void *data, size_t n);
/* A mono 16-bit PCM WAV file in memory (malloc'd; free()). */
sn_status sn_wav16_encode(const float *x, int64_t n, int sample_rate, unsigned char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
