/* The CPU thread pool: sn_pool_for covers every index once, a region's barrier keeps
 * its threads in step, and SN_POOL_PIN=region holds each region thread on its own CPU
 * for the region only. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sn_test.h"
#include "backends/cpu/cpu.h"

static void mark(void *arg, int64_t b, int64_t e, int tid) {
    atomic_int *hits = arg;
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&hits[i], 1);
}

static void test_for_covers(void **st) {
    sn_pool *p = sn_pool_new(3);
    assert_non_null(p);
    enum { N = 1037 };
    atomic_int *hits = calloc(N, sizeof *hits);
    for (int grain = 1; grain <= 600; grain *= 7) {
        memset(hits, 0, N * sizeof *hits);
        sn_pool_for(p, N, grain, mark, hits);
        for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&hits[i]), 1);
    }
    free(hits);
    sn_pool_free(p);
}

enum { STEPS = 200, MAXT = 8 };
typedef struct {
    atomic_int arrived[STEPS];
    atomic_int bad;
    int cpu[MAXT];       /* the one CPU a thread was held on, -1: not held to one */
    int count_after[MAXT];
} region_state;

static void region_body(void *arg, int tid, int nth, sn_barrier *bar) {
    region_state *s = arg;
    cpu_set_t set;
    s->cpu[tid] = -1;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) s->cpu[tid] = c;
    for (int t = 0; t < STEPS; t++) {
        atomic_fetch_add(&s->arrived[t], 1);
        sn_barrier_wait(bar);
        /* everyone has arrived at step t, nobody yet at step t + 1 past the barrier */
        if (atomic_load(&s->arrived[t]) != nth) atomic_fetch_add(&s->bad, 1);
    }
}

static void after_body(void *arg, int64_t b, int64_t e, int tid) {
    region_state *s = arg;
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0) s->count_after[tid] = CPU_COUNT(&set);
}

static void run_region(const char *pin, int nth, region_state *s) {
    if (pin) setenv("SN_POOL_PIN", pin, 1);
    else unsetenv("SN_POOL_PIN");
    sn_pool *p = sn_pool_new(nth);
    assert_non_null(p);
    memset(s, 0, sizeof *s);
    sn_pool_region(p, region_body, s);
    assert_int_equal(atomic_load(&s->bad), 0);
    for (int t = 0; t < STEPS; t++) assert_int_equal(atomic_load(&s->arrived[t]), nth);
    sn_pool_for(p, nth, 1, after_body, s);
    sn_pool_free(p);
    unsetenv("SN_POOL_PIN");
}

static int allowed_cpus(cpu_set_t *all) {
    assert_int_equal(sched_getaffinity(0, sizeof *all, all), 0);
    return CPU_COUNT(all);
}

static void test_region_barrier(void **st) {
    cpu_set_t all;
    int ncpu = allowed_cpus(&all);
    region_state *s = malloc(sizeof *s);
    run_region(NULL, 3, s); /* unpinned: the threads keep the process's CPUs */
    for (int t = 0; t < 3; t++)
        if (ncpu > 1) assert_int_equal(s->cpu[t], -1);
    free(s);
}

static void test_region_pin(void **st) {
    cpu_set_t all;
    int ncpu = allowed_cpus(&all), nth = ncpu < 4 ? ncpu : 4;
    if (nth < 2) skip();
    region_state *s = malloc(sizeof *s);
    run_region("region", nth, s);
    /* each thread on its own allowed CPU during the region, its whole set back after */
    for (int t = 0; t < nth; t++) {
        assert_true(s->cpu[t] >= 0 && CPU_ISSET(s->cpu[t], &all));
        for (int u = 0; u < t; u++) assert_int_not_equal(s->cpu[t], s->cpu[u]);
        assert_int_equal(s->count_after[t], ncpu);
    }
    /* more threads than CPUs: not pinned (no two threads held on one CPU) */
    if (ncpu + 1 <= MAXT) {
        run_region("region", ncpu + 1, s);
        for (int t = 0; t <= ncpu; t++) assert_int_equal(s->cpu[t], -1);
    }
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_covers),
        cmocka_unit_test(test_region_barrier),
        cmocka_unit_test(test_region_pin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
