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

/* The ids a generation emitted (up to 512). */
typedef struct { int32_t ids[512]; int n; } test_ids;

static inline bool test_collect(int32_t tok, void *user) {
    test_ids *c = user;
    if (c->n < 512) c->ids[c->n++] = tok;
    return true;
}

/* Generates from an empty cache of ctx into out (stats may be NULL). */
static inline moge_status test_generate(moge_context *ctx, const int32_t *prompt, int n_prompt, const moge_generate_params *gp,
                                        test_ids *out, moge_stats *st) {
    moge_kv_truncate(ctx, 0);
    out->n = 0;
    return moge_generate(ctx, prompt, n_prompt, gp, test_collect, out, st);
}

#endif
