/*
 * threadpool.h — a persistent fork-join pool: threadpool_run() hands n_tasks numbered tasks to
 * the pool's threads (the caller works too) and returns when all are done. Created once per
 * context; run() never allocates.
 */
#ifndef MOGE_THREADPOOL_H
#define MOGE_THREADPOOL_H

typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *arg, int task);

/* A pool of n_threads threads in all (n_threads - 1 workers plus the caller); NULL on failure. */
threadpool *threadpool_new(int n_threads);
void threadpool_free(threadpool *pool);
int threadpool_size(const threadpool *pool);
/* Runs fn(arg, t) for t = 0..n_tasks-1, spread over the threads; returns when every task ended.
 * pool may be NULL (then everything runs on the caller). Not reentrant. */
void threadpool_run(threadpool *pool, int n_tasks, threadpool_fn fn, void *arg);
/* Inside a task: the index of the thread running it, 0..threadpool_size - 1 (0: the caller of
 * threadpool_run, or no pool), so a task can use per-thread scratch. */
int threadpool_thread(void);

#endif
