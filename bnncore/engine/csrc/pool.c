#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 63
static int64_t g_spin_ns = 50000; /* workers keep spinning this long after a job */

typedef struct {
    pool_fn fn;
    void *ctx;
    int64_t n;
    int max_slots;
    atomic_llong next;
    atomic_llong done;
    int slots;        /* participants that joined (under the mutex) */
    atomic_int refs;  /* workers still inside the job */
} job_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_left = PTHREAD_COND_INITIALIZER;
static job_t *g_job = NULL;
static atomic_ullong g_generation = 0;
static int g_workers = 0;
static int g_atfork = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t work(job_t *job, int slot) {
    int64_t count = 0;
    for (;;) {
        const int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n) break;
        job->fn(job->ctx, i, slot);
        atomic_fetch_add(&job->done, 1);
        count++;
    }
    return count;
}

/* Jobs left to run on the caller alone: set when threads did not pay off
 * STRIKES jobs in a row (on a machine whose other cores are busy, a worker is
 * scheduled late or preempted in the middle of an item, and the caller waits
 * for it). A few late jobs do not count: right after another library's
 * threads ran (TensorFlow's spin for a while), a worker may start late once.
 * After SOLO_JOBS jobs the pool tries threads again. */
#define SOLO_JOBS 32
static int g_strike_limit = 8; /* 0: never fall back to the caller alone */
static atomic_int g_solo = 0;
static atomic_int g_strikes = 0;

static void *worker_main(void *arg) {
    (void)arg;
    unsigned long long seen = atomic_load(&g_generation);
    for (;;) {
        /* Spin a little for the next job, then sleep. */
        const int64_t until = now_ns() + g_spin_ns;
        int k = 0;
        while (atomic_load(&g_generation) == seen) {
            CPU_RELAX();
            if (++k % 256 == 0 && now_ns() > until) break;
        }
        pthread_mutex_lock(&g_mu);
        while (atomic_load(&g_generation) == seen) pthread_cond_wait(&g_wake, &g_mu);
        seen = atomic_load(&g_generation);
        job_t *job = g_job;
        int slot = -1;
        if (job && job->slots < job->max_slots) {
            slot = job->slots++;
            atomic_fetch_add(&job->refs, 1);
        }
        pthread_mutex_unlock(&g_mu);
        if (slot < 0) continue;
        work(job, slot);
        pthread_mutex_lock(&g_mu);
        if (atomic_fetch_sub(&job->refs, 1) == 1) pthread_cond_signal(&g_left);
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static void after_fork_in_child(void) {
    /* Worker threads do not survive fork(): start over with none. */
    pthread_mutex_init(&g_mu, NULL);
    pthread_cond_init(&g_wake, NULL);
    pthread_cond_init(&g_left, NULL);
    g_job = NULL;
    g_workers = 0;
}

static void ensure_workers(int wanted) {
    if (wanted > MAX_WORKERS) wanted = MAX_WORKERS;
    if (!g_atfork) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        g_atfork = 1;
    }
    while (g_workers < wanted) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&tid, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* run with the workers we have */
        g_workers++;
    }
}

int pool_workers(void) { return g_workers; }

void pool_settings(int64_t *spin_ns, int *strike_limit) {
    *spin_ns = g_spin_ns;
    *strike_limit = g_strike_limit;
}

void pool_configure(int64_t spin_ns, int strike_limit) {
    if (spin_ns >= 0) g_spin_ns = spin_ns;
    if (strike_limit >= 0) {
        g_strike_limit = strike_limit;
        atomic_store(&g_strikes, 0);
        atomic_store(&g_solo, 0);
    }
}

void pool_run(int64_t n, pool_fn fn, void *ctx, int threads) {
    if (n <= 0) return;
    if (threads > 1 && n > 1 && atomic_load(&g_solo) > 0) {
        atomic_fetch_sub(&g_solo, 1);
        threads = 1;
    }
    if (threads <= 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    job_t job;
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.max_slots = threads;
    atomic_init(&job.next, 0);
    atomic_init(&job.done, 0);
    job.slots = 1; /* slot 0: this thread */
    atomic_init(&job.refs, 0);

    pthread_mutex_lock(&g_mu);
    ensure_workers(threads - 1);
    g_job = &job;
    atomic_fetch_add(&g_generation, 1);
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_mu);

    const int64_t start = now_ns();
    const int64_t mine = work(&job, 0);
    const int64_t main_done = now_ns();

    /* Close the job to late workers, then wait for the ones inside it. (Another
     * caller may have published its own job meanwhile: leave that one open.) */
    pthread_mutex_lock(&g_mu);
    if (g_job == &job) g_job = NULL;
    pthread_mutex_unlock(&g_mu);
    int k = 0;
    while (atomic_load(&job.refs) > 0 || atomic_load(&job.done) < n) {
        CPU_RELAX();
        if (++k % 1024 == 0) {
            pthread_mutex_lock(&g_mu);
            if (atomic_load(&job.refs) > 0) pthread_cond_wait(&g_left, &g_mu);
            pthread_mutex_unlock(&g_mu);
            if (atomic_load(&job.done) < n) sched_yield();
        }
    }
    /* Did the workers help? Compare with the caller's own pace on its items. */
    const int64_t total = now_ns() - start;
    if (mine > 0) {
        const double alone = (double)(main_done - start) / (double)mine * (double)n;
        if ((double)total <= alone) {
            atomic_store(&g_strikes, 0);
        } else if (g_strike_limit > 0 &&
                   atomic_fetch_add(&g_strikes, 1) + 1 >= g_strike_limit) {
            atomic_store(&g_strikes, 0);
            atomic_store(&g_solo, SOLO_JOBS);
        }
    }
}
