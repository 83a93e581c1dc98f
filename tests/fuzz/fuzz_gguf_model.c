/*
 * fuzz_gguf_model.c — a GGUF file as `moge run -m FILE.gguf` reads it: moge_model_load (the
 * metadata as config.json, runtime/model_gguf.c; the tensors converted or kept as blocks) and
 * moge_tokenizer_load (tokenizer.ggml.* as tokenizer.json, tokenizer/gguf_vocab.c: merges made from
 * the scores, byte-level pre-tokenizers by name, special tokens, the chat template). The fuzz_gguf
 * target stops at the reader; this one goes on to what a model file downloaded from anywhere
 * reaches. A model that loads runs two tokens through a context; a tokenizer that loads encodes and
 * decodes fixed texts with the checks of fuzz_tok.h (ids in the vocabulary, the stream agreeing
 * with one-shot decoding). Seeds (tools/fuzz_seeds.py): GGUF fixtures of tests/test_gguf.c, and
 * one of them with a byte-level BPE (gpt2) tokenizer in its metadata.
 */
#include "tests/fuzz/fuzz_model.h"
#include "tests/fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], err[512];
    fuzz_write("gguf_model", "model.gguf", data, size, path);

    fuzz_model_load_run(path);

    moge_tokenizer *tok = NULL;
    if (moge_tokenizer_load(path, &tok, err, sizeof err) != MOGE_OK) {
        FUZZ_ASSERT(tok == NULL && err[0] != '\0');
        return 0;
    }
    static const char *const texts[] = {"Hello world! 123 <s> \xe6\x9d\xb1\xe4\xba\xac caf\xc3\xa9  \t\n", "a",
                                        "\xf0\x9f\x98\x80\xff\xfe x.y,z"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        fuzz_tok_roundtrip(tok, (const uint8_t *)texts[i], strlen(texts[i]), i % 2 == 0);
    moge_tokenizer_free(tok);
    return 0;
}
