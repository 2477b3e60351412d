/* Loads reference arrays written by the gen_*.py scripts beside this file:
 * records of "<name> <count>\n" followed by count little-endian float32. */
#ifndef SN_TEST_REFDATA_H
#define SN_TEST_REFDATA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[64];
    long count;
    float *v;
} ref_array;

typedef struct {
    ref_array a[32];
    int n;
} ref_file;

static int ref_load(const char *path, ref_file *rf) {
    memset(rf, 0, sizeof *rf);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    while (rf->n < 32) {
        ref_array *r = &rf->a[rf->n];
        if (fscanf(f, "%63s %ld", r->name, &r->count) != 2) break;
        if (fgetc(f) != '\n' || r->count < 0) break;
        r->v = malloc((size_t)(r->count ? r->count : 1) * sizeof(float));
        if (fread(r->v, sizeof(float), (size_t)r->count, f) != (size_t)r->count) {
            free(r->v);
            break;
        }
        rf->n++;
    }
    fclose(f);
    return rf->n > 0 ? 0 : -1;
}

static const ref_array *ref_get(const ref_file *rf, const char *name) {
    for (int i = 0; i < rf->n; i++)
        if (!strcmp(rf->a[i].name, name)) return &rf->a[i];
    return NULL;
}

static void ref_free(ref_file *rf) {
    for (int i = 0; i < rf->n; i++) free(rf->a[i].v);
    rf->n = 0;
}

#endif
