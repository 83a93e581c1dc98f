/*
 * fuzz_detok.c — the streaming detokenizer on arbitrary id sequences of every committed
 * tokenizer: byte 0 picks the tokenizer, then each 3 bytes are one id (little-endian, modulo
 * n_vocab + 8, minus 4: a few ids outside the vocabulary on both sides). Runs of byte tokens,
 * partial UTF-8, special tokens: pushed one by one with a buffer of max_bytes() + 1, the text
 * must equal moge_detokenize's, and an id outside the vocabulary fails both alike.
 */
#include "tests/fuzz/fuzz_committed.h"
#include "tests/fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const moge_tokenizer *tok = fuzz_committed(data[0]);
    int64_t span = (int64_t)moge_tokenizer_n_vocab(tok) + 8;
    size_t n = (size - 1) / 3;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) abort();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = data + 1 + 3 * i;
        ids[i] = (int32_t)((int64_t)(b[0] | b[1] << 8 | b[2] << 16) % span - 4);
    }
    fuzz_tok_decode(tok, ids, n);
    free(ids);
    return 0;
}
