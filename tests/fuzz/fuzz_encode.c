/*
 * fuzz_encode.c — arbitrary bytes through every committed tokenizer (fuzz_committed.h): byte 0
 * picks the tokenizer (low bits) and add_special (bit 2); the rest is the text. Ids stay in the
 * vocabulary, decoding them works, and the stream agrees with one-shot decoding.
 */
#include "tests/fuzz/fuzz_committed.h"
#include "tests/fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const moge_tokenizer *tok = fuzz_committed(data[0] & 3);
    fuzz_tok_roundtrip(tok, data + 1, size - 1, (data[0] & 4) != 0);
    return 0;
}
