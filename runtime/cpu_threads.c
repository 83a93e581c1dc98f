/*
 * cpu_threads.c — how many threads a model uses when it is not told (moge_cpu_default_threads).
 *
 * The default was every online CPU. That oversubscribes wherever the process may use fewer: under
 * `taskset -c 0-3` or a container's cpuset on a 64-CPU host every op handed work to 64 threads
 * that spin between ops on 4 CPUs, and a container's CPU quota (`docker --cpus 2`) does the same;
 * and on a processor with two hardware threads per core the second thread of a core adds no
 * memory bandwidth to a decode while it takes issue slots and cache from the first (llama.cpp
 * defaults to the physical cores too). So the default is the CPUs of the process's affinity mask
 * counted once per physical core (topology/thread_siblings_list names the CPUs that share one),
 * at most the cgroup's CPU quota (v2 cpu.max; v1 cpu.cfs_quota_us / cpu.cfs_period_us; rounded
 * up), at least 1. A file that cannot be read leaves its rule out: a CPU without topology counts
 * as a core of its own, a group without a readable quota has none.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moge.h"
#include "runtime/cpu_threads.h"

/* The first line of root + path, without its line end, into buf; false when it cannot be read. */
static bool read_line(const char *root, const char *path, char *buf, size_t size) {
    char full[2048];
    snprintf(full, sizeof full, "%s%s", root, path);
    FILE *f = fopen(full, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\r\n")] = 0;
    return ok;
}

/* CPUs a quota of `quota` per `period` microseconds amounts to, rounded up (0: no quota). */
static int quota_cpus(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    long long n = (quota + period - 1) / period;
    return n > 1 << 20 ? 1 << 20 : (int)n;
}

/* The process's cgroup CPU quota in CPUs, or 0 for none (or none that can be read). cgroup v1
 * (a hierarchy whose controllers include cpu) first, as a hybrid system keeps the cpu controller
 * there; else v2 (the "0::" line). */
static int cgroup_cpu_quota(const char *root) {
    char full[1024], line[1024], v1[1024] = "", v2[1024] = "";
    bool has_v1 = false, has_v2 = false;
    snprintf(full, sizeof full, "%s/proc/self/cgroup", root);
    FILE *f = fopen(full, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) { /* hierarchy-ID:controller-list:path */
        line[strcspn(line, "\r\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = 0;
        const char *ctrl = c1 + 1, *path = c2 + 1;
        char list[256];
        snprintf(list, sizeof list, ",%s,", ctrl);
        if (!strcmp(line, "0") && !ctrl[0]) has_v2 = true, snprintf(v2, sizeof v2, "%s", path);
        else if (strstr(list, ",cpu,")) has_v1 = true, snprintf(v1, sizeof v1, "%s", path);
    }
    fclose(f);
    char a[128], b[128], p[1200];
    if (has_v1) {
        static const char *const mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
        for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s/cpu.cfs_quota_us", mounts[i], v1);
            if (!read_line(root, p, a, sizeof a)) continue;
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s/cpu.cfs_period_us", mounts[i], v1);
            if (!read_line(root, p, b, sizeof b)) continue;
            return quota_cpus(atoll(a), atoll(b));
        }
    }
    if (has_v2) { /* "max 100000" or "150000 100000" */
        snprintf(p, sizeof p, "/sys/fs/cgroup%s/cpu.max", v2);
        if (read_line(root, p, a, sizeof a) && strncmp(a, "max", 3) != 0) {
            long long quota = 0, period = 0;
            if (sscanf(a, "%lld %lld", &quota, &period) == 2) return quota_cpus(quota, period);
        }
    }
    return 0;
}

int cpu_threads_default_at(const char *root, const int *allowed, int n_allowed) {
    /* distinct cores: the sibling lists of the allowed CPUs, each counted once */
    char(*seen)[64] = n_allowed > 0 ? calloc((size_t)n_allowed, sizeof *seen) : NULL;
    int cores = 0;
    for (int i = 0; i < n_allowed; i++) {
        char path[128], sib[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", allowed[i]);
        if (!seen || !read_line(root, path, sib, sizeof sib)) { /* unknown: a core of its own */
            cores++;
            continue;
        }
        bool dup = false;
        for (int j = 0; j < cores && !dup; j++) dup = !strcmp(seen[j], sib);
        if (!dup) snprintf(seen[cores++], sizeof seen[0], "%s", sib);
    }
    free(seen);
    int quota = cgroup_cpu_quota(root);
    if (quota > 0 && quota < cores) cores = quota;
    return cores > 0 ? cores : 1;
}

/* The CPUs this process may run on, into allowed (CPU_SETSIZE entries): its affinity mask, or every
 * online CPU where there is none; their count. */
static int allowed_cpus(int *allowed) {
    int n = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &set)) allowed[n++] = i;
    if (n == 0) { /* no mask: every online CPU */
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long i = 0; i < online && i < CPU_SETSIZE; i++) allowed[n++] = (int)i;
    }
    return n;
}

int32_t moge_cpu_usable(void) {
    int allowed[CPU_SETSIZE];
    int n = allowed_cpus(allowed);
    return n > 0 ? n : 1;
}

int32_t moge_cpu_default_threads(void) {
    int allowed[CPU_SETSIZE];
    int n = allowed_cpus(allowed);
    return cpu_threads_default_at("", allowed, n);
}
