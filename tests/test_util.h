/*
 * test_util.h — helpers shared by the tests: the normalised error used to compare float outputs;
 * for the tests that drive programs, read a file whole, run a shell command, run the `moge`
 * binary under test ($MOGE_BIN, set by tests/run.sh; default build/moge).
 */
#ifndef MOGE_TEST_UTIL_H
#define MOGE_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Normalised error ||a - b|| / ||b|| (the absolute norm when b is all zeros). */
static inline double nerr(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The file's bytes as a NUL-terminated malloc'd string; "" when it cannot be read. */
static inline char *slurp_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    return s;
}

/* Runs cmd with /bin/sh; returns its exit status, or -1 when it did not exit normally. */
static inline int shell(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Runs `$MOGE_BIN args` with stdin from /dev/null, stdout to out and stderr to err. */
static inline int moge_cmd(const char *args, const char *out, const char *err) {
    char cmd[4096];
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", bin, args, out, err);
    return shell(cmd);
}

/* Reads a .ref file (tests/test_reference_models.c: "MOGEREF1", int32 n, int32 V, int32
 * tokens[n], float32 logits[n][V]) into malloc'd *tok and *logits; false (nothing allocated) when
 * it cannot be read or is malformed. */
static inline bool test_read_ref(const char *path, int32_t *n, int32_t *V, int32_t **tok, float **logits) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[8];
    bool ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "MOGEREF1", 8) && fread(n, 4, 1, f) == 1 && fread(V, 4, 1, f) == 1 && *n > 0 &&
              *n < 4096 && *V > 0 && *V < 1000000;
    *tok = ok ? malloc((size_t)*n * sizeof **tok) : NULL;
    *logits = ok ? malloc((size_t)*n * (size_t)*V * sizeof **logits) : NULL;
    ok = ok && *tok && *logits && fread(*tok, 4, (size_t)*n, f) == (size_t)*n && fread(*logits, 4, (size_t)*n * *V, f) == (size_t)*n * *V;
    fclose(f);
    if (!ok) {
        free(*tok);
        free(*logits);
        *tok = NULL;
        *logits = NULL;
    }
    return ok;
}

#ifdef CHECKF /* with harness.h included first */
/* `moge args` must exit with rc and say `needle` on stderr (bad-input cases). */
static inline void expect_moge_error(const char *args, int rc, const char *needle, const char *out, const char *err_path) {
    int got = moge_cmd(args, out, err_path);
    char *err = slurp_text(err_path);
    CHECKF(got == rc, "moge %s: exit %d, expected %d (%s)", args, got, rc, err);
    CHECKF(strstr(err, needle) != NULL, "moge %s: stderr does not mention \"%s\": %s", args, needle, err);
    free(err);
}
#endif

#endif
