/*
 * fuzz_tok.h — the checks the tokenizer targets run on a loaded tokenizer: encode (ids in the
 * vocabulary, the count stable when asked twice, MOGE_ERR_BUFFER when the buffer is one short),
 * decode (moge_detokenize against the stream pushed id by id, which moge.h says agree).
 */
#ifndef MOGE_FUZZ_TOK_H
#define MOGE_FUZZ_TOK_H

#include "tests/fuzz/fuzz_util.h"

#include "moge.h"

/* Decodes ids at once and through the stream; both must succeed alike and give the same text. */
static inline void fuzz_tok_decode(const moge_tokenizer *tok, const int32_t *ids, size_t n) {
    size_t need = 0;
    moge_status st = moge_detokenize(tok, ids, n, NULL, 0, &need);
    char *once = NULL;
    if (st == MOGE_ERR_BUFFER || st == MOGE_OK) {
        once = malloc(need + 1);
        if (!once) abort();
        size_t got = 0;
        st = moge_detokenize(tok, ids, n, once, need + 1, &got);
        FUZZ_ASSERT(st == MOGE_OK && got == need && once[got] == '\0');
    }
    moge_detok_stream *s = NULL;
    if (moge_detok_stream_new(tok, &s) != MOGE_OK) abort();
    char *streamed = malloc(1);
    size_t slen = 0;
    moge_status sst = MOGE_OK;
    if (!streamed) abort();
    for (size_t i = 0; i <= n && sst == MOGE_OK; i++) {
        size_t cap = moge_detok_stream_max_bytes(s) + 1, got = 0;
        char *chunk = malloc(cap);
        if (!chunk) abort();
        sst = i < n ? moge_detok_stream_push(s, ids[i], chunk, cap, &got) : moge_detok_stream_flush(s, chunk, cap, &got);
        FUZZ_ASSERT(sst != MOGE_ERR_BUFFER); /* max_bytes() + 1 always suffices */
        if (sst == MOGE_OK) {
            FUZZ_ASSERT(got < cap && chunk[got] == '\0');
            char *grown = realloc(streamed, slen + got + 1);
            if (!grown) abort();
            streamed = grown;
            memcpy(streamed + slen, chunk, got);
            slen += got;
        }
        free(chunk);
    }
    moge_detok_stream_free(s);
    FUZZ_ASSERT((st == MOGE_OK) == (sst == MOGE_OK));
    if (st == MOGE_OK) FUZZ_ASSERT(slen == need && memcmp(streamed, once, need) == 0);
    free(streamed);
    free(once);
}

/* Encodes text, checks the ids, and decodes them. */
static inline void fuzz_tok_roundtrip(const moge_tokenizer *tok, const uint8_t *text, size_t len, bool add_special) {
    size_t n = 0;
    int32_t one;
    moge_status st = moge_tokenize(tok, (const char *)text, len, add_special, &one, 1, &n);
    if (st != MOGE_OK && st != MOGE_ERR_BUFFER) return; /* e.g. a pattern too complex for this text */
    FUZZ_ASSERT(st == (n > 1 ? MOGE_ERR_BUFFER : MOGE_OK));
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) abort();
    size_t n2 = 0;
    st = moge_tokenize(tok, (const char *)text, len, add_special, ids, n + 1, &n2);
    FUZZ_ASSERT(st == MOGE_OK && n2 == n);
    int32_t nv = moge_tokenizer_n_vocab(tok);
    for (size_t i = 0; i < n; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < nv);
    if (n > 0) {
        size_t n3 = 0;
        FUZZ_ASSERT(moge_tokenize(tok, (const char *)text, len, add_special, ids, n - 1, &n3) == MOGE_ERR_BUFFER && n3 == n);
    }
    fuzz_tok_decode(tok, ids, n);
    free(ids);
}

#endif
