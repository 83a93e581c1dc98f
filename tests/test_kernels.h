/*
 * test_kernels.h — running kernel-level test cases once per cpu kernel variant (backend.h:
 * runtime/cpu/ compiled per instruction set) that this processor runs.
 */
#ifndef MOGE_TEST_KERNELS_H
#define MOGE_TEST_KERNELS_H

#include <stdio.h>

#include "harness.h"
#include "runtime/backend.h"

/* The cpu kernel variant the kernel-level cases run; harness_run_per_kernels sets it, and leaves
 * it at the variant a model load picks by default (backend_cpu_best). */
static const backend_ops *cpu;

/* Runs the cases once per cpu kernel variant this processor runs, each line tagged with the
 * variant ("PASS test_matmul [avx2]"); names the variants it cannot run (they are built, and their
 * scalar twin, the "scalar" variant, is checked here). Returns the exit status. */
static inline int harness_run_per_kernels(const harness_case *cases, int n) {
    int rc = 0;
    for (int v = 0; v < backend_cpu_variant_count(); v++) {
        cpu = backend_cpu_variant(v);
        if (!backend_cpu_runs(cpu)) {
            printf("  (%s kernels: built, not runnable on this processor)\n", cpu->variant);
            continue;
        }
        rc |= harness_run_tagged(cases, n, cpu->variant);
    }
    cpu = backend_cpu_best();
    return rc;
}

#define RUN_TESTS_PER_KERNELS(...)                                                     \
    do {                                                                               \
        static const harness_case cases_[] = {__VA_ARGS__};                            \
        return harness_run_per_kernels(cases_, (int)(sizeof cases_ / sizeof cases_[0])); \
    } while (0)

#endif
