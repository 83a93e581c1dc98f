/*
 * fuzz_committed.h — the committed tokenizers the encode and decode targets run on, loaded once
 * per process (paths from the repository root, where make runs the targets): the models' shared
 * SentencePiece-style byte-fallback vocabulary (models/stories260K, the same tokenizer.json as
 * the other models/), and the byte-level BPE of Mistral and Qwen3 (tests/fixtures/tokenizers).
 */
#ifndef MOGE_FUZZ_COMMITTED_H
#define MOGE_FUZZ_COMMITTED_H

#include "tests/fuzz/fuzz_util.h"

#include "moge.h"

#define FUZZ_N_TOK 3
static const char *const fuzz_tok_paths[FUZZ_N_TOK] = {"models/stories260K", "tests/fixtures/tokenizers/mistral",
                                                       "tests/fixtures/tokenizers/qwen3"};
static moge_tokenizer *fuzz_toks[FUZZ_N_TOK];

static inline void fuzz_toks_free(void) {
    for (int i = 0; i < FUZZ_N_TOK; i++) moge_tokenizer_free(fuzz_toks[i]), fuzz_toks[i] = NULL;
}

/* The committed tokenizer i (mod FUZZ_N_TOK); aborts when one does not load. */
static inline const moge_tokenizer *fuzz_committed(unsigned i) {
    i %= FUZZ_N_TOK;
    if (!fuzz_toks[i]) {
        char err[512];
        if (moge_tokenizer_load(fuzz_tok_paths[i], &fuzz_toks[i], err, sizeof err) != MOGE_OK) {
            fprintf(stderr, "fuzz: %s (run from the repository root)\n", err);
            abort();
        }
        static bool registered;
        if (!registered) atexit(fuzz_toks_free), registered = true;
    }
    return fuzz_toks[i];
}

#endif
