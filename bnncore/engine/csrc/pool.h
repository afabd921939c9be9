/*
 * A small thread pool for data-parallel loops: pool_run(n, fn, ctx, threads)
 * calls fn(ctx, i, slot) for every i < n, on the calling thread and up to
 * threads - 1 workers, and returns when all calls are done.
 *
 * Items are claimed from an atomic counter, so the caller never waits for a
 * worker that has not started: under CPU contention (other processes on the
 * same cores) a late worker simply finds no work left, where a fork-join
 * barrier would stall until it is scheduled. Workers spin briefly after a job
 * (back-to-back layers find them awake), then sleep on a condition variable.
 * After fork() the child starts with no workers (pthread_atfork).
 */
#ifndef BNN_POOL_H
#define BNN_POOL_H

#include <stdint.h>

typedef void (*pool_fn)(void *ctx, int64_t item, int slot);

/* Runs fn(ctx, i, slot) for i in [0, n); slot < threads identifies the
 * participant (0 is the caller) for per-thread scratch buffers. */
void pool_run(int64_t n, pool_fn fn, void *ctx, int threads);

/* Number of worker threads started so far. */
int pool_workers(void);

/* Tuning (negative: unchanged): how long workers spin after a job before
 * sleeping, and after how many jobs in a row that threads did not speed up
 * the pool runs jobs on the caller alone for a while (0: never). */
void pool_configure(int64_t spin_ns, int strike_limit);

/* The current tuning. */
void pool_settings(int64_t *spin_ns, int *strike_limit);

#endif
