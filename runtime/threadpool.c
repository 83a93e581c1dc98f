/*
 * threadpool.c — persistent fork-join pool over pthreads (see threadpool.h).
 *
 * A forward runs hundreds of short parallel ops (a matmul of a small model takes microseconds),
 * so handing work over must cost less than a sleep and a wake-up per op: workers spin on the run
 * counter for a while after their last task (SPIN_ROUNDS pauses, tens of microseconds) before they
 * sleep on the condition variable, and the caller spins the same way for the workers to finish.
 * A pool left idle (between generations, while another pool runs) costs nothing after that.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include "runtime/threadpool.h"

#define SPIN_ROUNDS 4096

struct threadpool {
    int n_threads;
    pthread_t *threads;
    struct worker_arg { struct threadpool *pool; int index; } *args; /* (n_threads) a worker's start */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ulong generation; /* bumped by each run (under mu) */
    atomic_int n_busy;       /* workers still inside the current run */
    atomic_int stop;
    int n_sleeping;          /* workers waiting on `wake` (under mu) */
    int caller_sleeping;     /* the caller waits on `done` (under mu) */
    threadpool_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next;
};

static _Thread_local int thread_index; /* 0 in every thread but a pool's workers */

int threadpool_thread(void) { return thread_index; }

static void work(threadpool *p) {
    for (int t; (t = atomic_fetch_add(&p->next, 1)) < p->n_tasks;) p->fn(p->arg, t);
}

static void *worker(void *arg) {
    threadpool *p = ((struct worker_arg *)arg)->pool;
    thread_index = ((struct worker_arg *)arg)->index;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->generation) == seen && !atomic_load(&p->stop); i++) cpu_relax();
        if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->generation);
        work(p);
        if (atomic_fetch_sub(&p->n_busy, 1) == 1) { /* the last one out: wake the caller if it sleeps */
            pthread_mutex_lock(&p->mu);
            if (p->caller_sleeping) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

threadpool *threadpool_new(int n_threads) {
    threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)p->n_threads, sizeof *p->threads);
    p->args = calloc((size_t)p->n_threads, sizeof *p->args);
    if (!p->threads || !p->args) {
        p->n_threads = 1; /* no worker started */
        threadpool_free(p);
        return NULL;
    }
    for (int i = 1; i < p->n_threads; i++) {
        p->args[i] = (struct worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker, &p->args[i]) != 0) {
            p->n_threads = i; /* free() joins the ones that started */
            threadpool_free(p);
            return NULL;
        }
    }
    return p;
}

void threadpool_free(threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; p->threads && i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p->args);
    free(p);
}

int threadpool_size(const threadpool *p) { return p ? p->n_threads : 1; }

void threadpool_run(threadpool *p, int n_tasks, threadpool_fn fn, void *arg) {
    if (!p || p->n_threads == 1 || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->n_busy, p->n_threads - 1);
    pthread_mutex_lock(&p->mu); /* a worker going to sleep checks the counter under mu: no lost wake-up */
    atomic_fetch_add(&p->generation, 1);
    if (p->n_sleeping > 0) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->n_busy) > 0; i++) cpu_relax();
    if (atomic_load(&p->n_busy) > 0) {
        pthread_mutex_lock(&p->mu);
        p->caller_sleeping = 1;
        while (atomic_load(&p->n_busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        p->caller_sleeping = 0;
        pthread_mutex_unlock(&p->mu);
    }
}
