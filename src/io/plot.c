/* SVG loss curves. See include/sinter/plot.h. */
#define _POSIX_C_SOURCE 200809L
#include "sinter/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sinter/json.h" /* sn_json_buf as a text buffer */

static const char *k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

static void put_xml(sn_json_buf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': sn_json_buf_puts(b, "&lt;"); break;
        case '>': sn_json_buf_puts(b, "&gt;"); break;
        case '&': sn_json_buf_puts(b, "&amp;"); break;
        case '"': sn_json_buf_puts(b, "&quot;"); break;
        default:
            /* XML 1.0 forbids most control characters even when escaped. */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') sn_json_buf_puts(b, " ");
            else sn_json_buf_put(b, s, 1);
        }
    }
}

/* 1, 2 or 5 times a power of ten, near raw. */
static double nice_step(double raw) {
    if (!(raw > 0) || !isfinite(raw)) return 1;
    double p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static int usable(double y, int log_y) { return isfinite(y) && (!log_y || y > 0); }

typedef struct axis {
    double lo, hi; /* in plot units (log10 for a log axis) */
} axis;

static double map(double v, axis a, double p0, double p1) { return p0 + (v - a.lo) / (a.hi - a.lo) * (p1 - p0); }

static void fmt_tick(char *s, size_t n, double v) {
    if (fabs(v) < 1e-12) v = 0;
    snprintf(s, n, "%g", v);
}

static sn_status write_atomic(const char *path, const char *data, size_t len) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) return sn_error(SN_ERR_NOMEM, "plot: out of memory");
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    const char *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto fail;
    what = "write";
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            goto fail;
        }
        off += (size_t)w;
    }
    what = "fsync";
    if (fsync(fd) != 0) goto fail;
    what = "close";
    {
        int r = close(fd);
        fd = -1;
        if (r != 0) goto fail;
    }
    what = "rename";
    if (rename(tmp, path) != 0) goto fail;
    free(tmp);
    return SN_OK;
fail: {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    sn_status st = sn_error(SN_ERR_IO,
                            "cannot write plot '%s': %s of '%s' failed: %s; any existing plot is unchanged. Check that "
                            "the directory exists and is writable",
                            path, what, tmp, strerror(e));
    free(tmp);
    return st;
}
}

sn_status sn_plot_svg(const char *path, const char *title, const sn_plot_series *series, int nseries,
                      const sn_plot_opts *opts) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_plot_svg: path is NULL");
    if (nseries < 0 || (nseries && !series)) return sn_error(SN_ERR_INVALID_ARG, "sn_plot_svg: bad series");
    sn_plot_opts o = {0};
    if (opts) o = *opts;
    if (!o.xlabel) o.xlabel = "step";
    if (!o.ylabel) o.ylabel = "loss";
    if (o.width < 200) o.width = 800;
    if (o.height < 150) o.height = 500;
    for (int s = 0; s < nseries; s++)
        if (series[s].n < 0 || (series[s].n && (!series[s].x || !series[s].y)))
            return sn_error(SN_ERR_INVALID_ARG, "sn_plot_svg: series %d has n=%d but no data", s, series[s].n);

    /* Data ranges over usable points only. */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++) {
            double y = series[s].y[i];
            if (!usable(y, o.log_y)) continue;
            double x = (double)series[s].x[i];
            double yy = o.log_y ? log10(y) : y;
            if (x < xmin) xmin = x;
            if (x > xmax) xmax = x;
            if (yy < ymin) ymin = yy;
            if (yy > ymax) ymax = yy;
        }
    int empty = !(xmin <= xmax);
    if (empty) {
        xmin = 0; xmax = 1; ymin = 0; ymax = 1;
    }
    /* Widen a zero-width range by an amount that survives rounding at any magnitude. */
    if (xmax - xmin < 1e-12 * (fabs(xmax) + 1)) {
        double d = fmax(1.0, fabs(xmax) * 1e-6);
        xmin -= d;
        xmax += d;
    }
    if (ymax - ymin < 1e-12 * (fabs(ymax) + 1)) {
        double d = o.log_y ? 0.5 : (fabs(ymax) > 0 ? fabs(ymax) * 0.1 : 1);
        ymin -= d;
        ymax += d;
    }
    axis ax = {xmin, xmax};
    /* y: a little headroom, then round out to ticks. */
    double ystep = o.log_y ? (ymax - ymin > 3 ? ceil((ymax - ymin) / 6) : 1) : nice_step((ymax - ymin) / 5);
    axis ay = {floor(ymin / ystep) * ystep, ceil(ymax / ystep) * ystep};
    if (o.log_y && ay.hi - ay.lo < 1) ay.hi = ay.lo + 1;

    double L = 80, R = o.width - 20, T = 45, B = o.height - 55;
    sn_json_buf b = {0};
    sn_json_buf_printf(&b,
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                       "font-family=\"sans-serif\" font-size=\"12\">\n",
                       o.width, o.height, o.width, o.height);
    sn_json_buf_printf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", o.width, o.height);
    sn_json_buf_printf(&b, "<text x=\"%.1f\" y=\"25\" text-anchor=\"middle\" font-size=\"16\">", (L + R) / 2);
    put_xml(&b, title ? title : "");
    sn_json_buf_puts(&b, "</text>\n");

    /* grid + ticks */
    sn_json_buf_puts(&b, "<g class=\"grid\" stroke=\"#ddd\" stroke-width=\"1\">\n");
    double xstep = nice_step((ax.hi - ax.lo) / 6);
    char lab[64];
    sn_json_buf xt = {0}, yt = {0};
    /* Ticks by index: with huge step numbers v += step may not advance. */
    double x0 = ceil(ax.lo / xstep) * xstep;
    for (int k = 0; k < 40; k++) {
        double v = x0 + k * xstep;
        if (v > ax.hi + xstep * 1e-9) break;
        double px = map(v, ax, L, R);
        sn_json_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px, T, px, B);
        fmt_tick(lab, sizeof lab, v);
        sn_json_buf_printf(&xt, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, B + 16, lab);
    }
    for (int k = 0; k < 40; k++) {
        double v = ay.lo + k * ystep;
        if (v > ay.hi + ystep * 1e-9) break;
        double py = map(v, ay, B, T);
        sn_json_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L, py, R, py);
        fmt_tick(lab, sizeof lab, o.log_y ? pow(10, v) : v);
        sn_json_buf_printf(&yt, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, py + 4, lab);
    }
    sn_json_buf_puts(&b, "</g>\n<g class=\"ticks\">\n");
    if (xt.len) sn_json_buf_put(&b, xt.data, xt.len);
    if (yt.len) sn_json_buf_put(&b, yt.data, yt.len);
    sn_json_buf_puts(&b, "</g>\n");
    if (xt.oom || yt.oom) b.oom = 1;
    sn_json_buf_free(&xt);
    sn_json_buf_free(&yt);

    /* axes and labels */
    sn_json_buf_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n",
                       L, T, R - L, B - T);
    sn_json_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (L + R) / 2, B + 40);
    put_xml(&b, o.xlabel);
    sn_json_buf_printf(&b, "</text>\n<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
                       (T + B) / 2, (T + B) / 2);
    put_xml(&b, o.ylabel);
    if (o.log_y) sn_json_buf_puts(&b, " (log scale)");
    sn_json_buf_puts(&b, "</text>\n");
    if (empty)
        sn_json_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888\">no data yet</text>\n",
                           (L + R) / 2, (T + B) / 2);

    /* series */
    for (int s = 0; s < nseries; s++) {
        const sn_plot_series *ps = &series[s];
        const char *col = ps->color ? ps->color : k_colors[s % 6];
        if (ps->markers) {
            sn_json_buf_printf(&b, "<g class=\"series\" fill=\"%s\">\n", col);
            for (int i = 0; i < ps->n; i++) {
                if (!usable(ps->y[i], o.log_y)) continue;
                double yy = o.log_y ? log10(ps->y[i]) : ps->y[i];
                sn_json_buf_printf(&b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\"/>\n", map((double)ps->x[i], ax, L, R),
                                   map(yy, ay, B, T));
            }
            sn_json_buf_puts(&b, "</g>\n");
        } else {
            sn_json_buf_printf(&b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                               col);
            int first = 1;
            for (int i = 0; i < ps->n; i++) {
                if (!usable(ps->y[i], o.log_y)) continue;
                double yy = o.log_y ? log10(ps->y[i]) : ps->y[i];
                sn_json_buf_printf(&b, "%s%.2f,%.2f", first ? "" : " ", map((double)ps->x[i], ax, L, R),
                                   map(yy, ay, B, T));
                first = 0;
            }
            sn_json_buf_puts(&b, "\"/>\n");
        }
        /* legend entry */
        double ly = T + 14 + 18 * s;
        if (ps->markers)
            sn_json_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", R - 140, ly - 4, col);
        else
            sn_json_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                               R - 150, ly - 4, R - 130, ly - 4, col);
        sn_json_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", R - 122, ly);
        put_xml(&b, ps->label ? ps->label : "");
        sn_json_buf_puts(&b, "</text>\n");
    }
    sn_json_buf_puts(&b, "</svg>\n");
    if (b.oom) {
        sn_json_buf_free(&b);
        return sn_error(SN_ERR_NOMEM, "plot '%s': out of memory", path);
    }
    sn_status st = write_atomic(path, b.data, b.len);
    sn_json_buf_free(&b);
    return st;
}

sn_status sn_plot_loss_svg(const char *path, const char *title, const int64_t *train_steps, const double *train_loss,
                           int nt, const int64_t *valid_steps, const double *valid_loss, int nv, int log_y) {
    sn_plot_series s[2] = {
        {"train loss", train_steps, train_loss, nt, 0, NULL},
        {"validation loss", valid_steps, valid_loss, nv, 1, NULL},
    };
    sn_plot_opts o = {"step", "loss", log_y, 0, 0};
    return sn_plot_svg(path, title, s, (valid_steps && valid_loss && nv > 0) ? 2 : 1, &o);
}
