/* SVG line plots (loss curves): series of (step, value) drawn as a polyline
 * or as point markers, axes with tick labels, optional log-scale y, legend.
 * The file is written atomically (temp file, fsync, rename). */
#ifndef SINTER_PLOT_H
#define SINTER_PLOT_H

#include <stdint.h>

#include "sinter/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_plot_series {
    const char *label;    /* legend text, e.g. "train loss" */
    const int64_t *x;     /* steps */
    const double *y;      /* values; non-finite points (and <= 0 on a log axis) are skipped */
    int n;
    int markers;          /* 0: polyline, 1: circles (e.g. validation points) */
    const char *color;    /* SVG color, NULL = a default per series */
} sn_plot_series;

typedef struct sn_plot_opts {
    const char *xlabel;   /* default "step" */
    const char *ylabel;   /* default "loss" */
    int log_y;            /* logarithmic y axis */
    int width, height;    /* pixels, default 800 x 500 */
} sn_plot_opts;

/* opts may be NULL for the defaults. */
sn_status sn_plot_svg(const char *path, const char *title, const sn_plot_series *series, int nseries,
                      const sn_plot_opts *opts);

/* The common case: train loss as a line, validation loss as points (valid
 * may be NULL / nv 0). */
sn_status sn_plot_loss_svg(const char *path, const char *title, const int64_t *train_steps, const double *train_loss,
                           int nt, const int64_t *valid_steps, const double *valid_loss, int nv, int log_y);

#ifdef __cplusplus
}
#endif
#endif
