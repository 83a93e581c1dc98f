/*
 * fuzz_tokenizer_load.c — tokenizer.json and tokenizer_config.json (tokenizer/): the input is
 * tokenizer.json, then optionally tokenizer_config.json after FUZZ_SEP. What loads must encode
 * and decode a few fixed texts (its normalizer, pre-tokenizer, model, post-processor and
 * decoder run), every id it returns must be in its vocabulary, and the stream must agree with
 * one-shot decoding.
 */
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, part, len);
    char path[600], cfg[600];
    fuzz_write("tokenizer_load", "tokenizer.json", part[0], len[0], path);
    if (n > 1) fuzz_write("tokenizer_load", "tokenizer_config.json", part[1], len[1], cfg);
    else fuzz_unlink("tokenizer_load", "tokenizer_config.json");
    moge_tokenizer *tok = NULL;
    char err[512];
    if (moge_tokenizer_load(path, &tok, err, sizeof err) != MOGE_OK) {
        FUZZ_ASSERT(tok == NULL && err[0] != '\0');
        return 0;
    }
    static const char *const texts[] = {"Hello world! 123 <s> \xe6\x9d\xb1\xe4\xba\xac caf\xc3\xa9  \t\n", "a", "",
                                        "\xf0\x9f\x98\x80\xff\xfe x.y,z"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        fuzz_tok_roundtrip(tok, (const uint8_t *)texts[i], strlen(texts[i]), i % 2 == 0);
    }
    /* every id, decoded one at a time through the stream and at once */
    int32_t nv = moge_tokenizer_n_vocab(tok);
    int32_t ids[64];
    size_t k = 0;
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        ids[k++] = id;
        if (k == 64) fuzz_tok_decode(tok, ids, k), k = 0;
    }
    fuzz_tok_decode(tok, ids, k);
    const char *tmpl = moge_tokenizer_chat_template(tok);
    FUZZ_ASSERT(moge_chat_detect(tmpl) == moge_tokenizer_chat_family(tok));
    moge_tokenizer_free(tok);
    return 0;
}
