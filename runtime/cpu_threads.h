/*
 * cpu_threads.h — the default number of threads (moge_cpu_default_threads): one per physical core
 * among the CPUs this process may run on, at most its cgroup's CPU quota.
 */
#ifndef MOGE_CPU_THREADS_H
#define MOGE_CPU_THREADS_H

#include <stdbool.h>

/* The same count from the files under `root` ("" for this system: root + "/sys/devices/system/cpu",
 * root + "/proc/self/cgroup", root + "/sys/fs/cgroup"), for the CPUs allowed[0..n_allowed-1] (the
 * process's affinity mask). Tests pass a directory tree of their own. */
int cpu_threads_default_at(const char *root, const int *allowed, int n_allowed);

#endif
