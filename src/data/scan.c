/* Recursive audio-file scan with a sorted, reproducible order. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data_internal.h"

static int is_audio_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return strcasecmp(dot, ".wav") == 0 || strcasecmp(dot, ".flac") == 0 || strcasecmp(dot, ".ogg") == 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static sn_status push(sn_pathlist *pl, const char *s) {
    if (pl->n == pl->cap) {
        int64_t nc = pl->cap ? pl->cap * 2 : 64;
        char **t = realloc(pl->v, (size_t)nc * sizeof *t);
        if (!t) return sn_error(SN_ERR_NOMEM, "out of memory while scanning folders");
        pl->v = t;
        pl->cap = nc;
    }
    if (!(pl->v[pl->n] = strdup(s))) return sn_error(SN_ERR_NOMEM, "out of memory while scanning folders");
    pl->n++;
    return SN_OK;
}

void sn_pathlist_free(sn_pathlist *pl) {
    for (int64_t i = 0; i < pl->n; i++) free(pl->v[i]);
    free(pl->v);
    memset(pl, 0, sizeof *pl);
}

static sn_status walk(const char *dir, int depth, sn_pathlist *out, int64_t *others) {
    if (depth > 64) return SN_OK; /* symlink loops */
    DIR *d = opendir(dir);
    if (!d) return sn_error(SN_ERR_IO, "cannot read folder '%s': %s", dir, strerror(errno));
    struct dirent *e;
    sn_status st = SN_OK;
    while (st == SN_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) { st = sn_error(SN_ERR_NOMEM, "out of memory"); break; }
        snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) st = walk(p, depth + 1, out, others);
            else if (S_ISREG(sb.st_mode)) {
                if (is_audio_name(e->d_name)) st = push(out, p);
                else (*others)++;
            }
        } else {
            struct stat lb;
            if (lstat(p, &lb) == 0 && S_ISLNK(lb.st_mode))
                sn_log(SN_LOG_WARN, "skipping '%s': a broken link (its target does not exist)", p);
        }
        free(p);
    }
    closedir(d);
    return st;
}

sn_status sn_scan_audio(const char *dir, const char *what, sn_pathlist *out) {
    memset(out, 0, sizeof *out);
    if (!dir || !*dir) return sn_error(SN_ERR_CONFIG, "%s is not set; give a folder of audio files", what);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return sn_error(SN_ERR_IO, "%s '%s' does not exist (%s); check the path or make the demo corpus with 'sinter data demo --out DIR'",
                        what, dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return sn_error(SN_ERR_IO, "%s '%s' is not a folder", what, dir);
    int64_t others = 0;
    sn_status st = walk(dir, 0, out, &others);
    if (st != SN_OK) { sn_pathlist_free(out); return st; }
    if (out->n == 0) {
        sn_pathlist_free(out);
        if (others == 0) return sn_error(SN_ERR_IO, "%s '%s' is empty; put .wav/.flac/.ogg files in it (subfolders are searched)", what, dir);
        return sn_error(SN_ERR_IO, "%s '%s' has %lld files but no audio; expected .wav, .flac or .ogg files (subfolders are searched)",
                        what, dir, (long long)others);
    }
    qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return SN_OK;
}
