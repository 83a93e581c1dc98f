/*
 * fuzz_model.h — what the model-file targets (quant_file, gguf_model) do with what they wrote: load
 * it as moge_model_load does for `moge run -m PATH` (one thread) and, when it loads, run two tokens
 * through a small context. Every failure must come with a message and leave nothing allocated.
 */
#ifndef MOGE_FUZZ_MODEL_H
#define MOGE_FUZZ_MODEL_H

#include "tests/fuzz/fuzz_util.h"

#include "moge.h"

static inline void fuzz_model_load_run(const char *path) {
    char err[512];
    moge_model_params mp = moge_model_default_params();
    mp.n_threads = 1;
    moge_model *m = NULL;
    if (moge_model_load(path, &mp, &m, err, sizeof err) != MOGE_OK) {
        FUZZ_ASSERT(m == NULL && err[0] != '\0');
        return;
    }
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = 4, cp.n_batch = 2;
    moge_context *ctx = NULL;
    if (moge_context_new(m, &cp, &ctx, err, sizeof err) == MOGE_OK) {
        int32_t tokens[2] = {0, 1};
        moge_batch b = {.n = 2, .tokens = tokens};
        const float *logits = NULL;
        if (moge_forward(ctx, &b, &logits) == MOGE_OK) FUZZ_ASSERT(logits != NULL);
        moge_context_free(ctx);
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    moge_model_free(m);
}

#endif
