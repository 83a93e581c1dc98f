/*
 * harness.h — a tiny test harness. Each test program registers cases with TEST_CASE and calls
 * RUN_TESTS from main(); every case prints "PASS name" or "FAIL name" (the runner tests/run.sh
 * counts these) and the program exits non-zero when any case failed. CHECK prints the failing
 * expression with file:line and marks the current case failed without aborting it.
 */
#ifndef MOGE_TEST_HARNESS_H
#define MOGE_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_case_failed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stdout, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            harness_case_failed = 1;                                                     \
        }                                                                                \
    } while (0)

#define CHECKF(cond, ...)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stdout, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stdout, __VA_ARGS__);                                                \
            fputc('\n', stdout);                                                         \
            harness_case_failed = 1;                                                     \
        }                                                                                \
    } while (0)

typedef void (*harness_fn)(void);
typedef struct { const char *name; harness_fn fn; } harness_case;

/* Runs the cases in order, each line "PASS name" (or "PASS name [tag]" when tag is not NULL);
 * returns the process exit status. */
static inline int harness_run_tagged(const harness_case *cases, int n, const char *tag) {
    int n_failed = 0;
    for (int i = 0; i < n; i++) {
        harness_case_failed = 0;
        cases[i].fn();
        printf("%s %s%s%s%s\n", harness_case_failed ? "FAIL" : "PASS", cases[i].name, tag ? " [" : "", tag ? tag : "", tag ? "]" : "");
        fflush(stdout);
        n_failed += harness_case_failed;
    }
    return n_failed ? 1 : 0;
}
static inline int harness_run(const harness_case *cases, int n) { return harness_run_tagged(cases, n, NULL); }

#define RUN_TESTS(...)                                                               \
    do {                                                                             \
        static const harness_case cases_[] = {__VA_ARGS__};                          \
        return harness_run(cases_, (int)(sizeof cases_ / sizeof cases_[0]));         \
    } while (0)
#define T(fn) {#fn, fn}

#endif
