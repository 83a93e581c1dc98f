/*
 * test_model.h — loading a model and making a context in the tests that drive the library
 * (a failure is a failed check naming the directory, and NULL). Include after harness.h.
 */
#ifndef MOGE_TEST_MODEL_H
#define MOGE_TEST_MODEL_H

#include "moge.h"

static inline moge_model *test_load_params(const char *dir, const moge_model_params *p) {
    char err[512];
    moge_model *m = NULL;
    moge_status st = moge_model_load(dir, p, &m, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s: %s", dir, err);
    return m;
}

static inline moge_model *test_load(const char *dir, moge_backend backend, int n_threads) {
    moge_model_params p = moge_model_default_params();
    p.backend = backend;
    p.n_threads = n_threads;
    return test_load_params(dir, &p);
}

/* A context of n_ctx slots taking up to 64 rows per forward. */
static inline moge_context *test_new_ctx(moge_model *m, int n_ctx) {
    char err[512];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = 64;
    moge_context *c = NULL;
    moge_status st = moge_context_new(m, &p, &c, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    return c;
}

#endif
