/*
 * fuzz_chat.c — chat templates (tokenizer/chat_template.c): byte 0 picks the family, byte 1 the
 * flags (add_generation_prompt, a bos text, an eos text); the rest, split at NUL bytes, is the
 * bos and eos texts when flagged, then role, content pairs. The whole input is also classified
 * as a template. A render that succeeds is a string holding every content (where the family keeps them as given).
 */
#include "tests/fuzz/fuzz_util.h"

#include "moge.h"

#define FUZZ_CHAT_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *all = fuzz_strdup(data, size);
    moge_chat_family fam = moge_chat_detect(all);
    FUZZ_ASSERT(fam >= MOGE_CHAT_NONE && fam <= MOGE_CHAT_PLAIN);
    FUZZ_ASSERT(moge_chat_family_name(fam) != NULL);
    free(all);
    if (size < 2) return 0;
    moge_chat_family family = (moge_chat_family)(data[0] % (MOGE_CHAT_PLAIN + 2)); /* one past the last too */
    bool add_gen = data[1] & 1;
    char *text = fuzz_strdup(data + 2, size - 2);
    /* the NUL-separated fields */
    const char *field[2 * FUZZ_CHAT_MAX + 2];
    size_t nf = 0;
    for (char *p = text; nf < sizeof field / sizeof field[0];) {
        field[nf++] = p;
        char *z = memchr(p, '\0', (size_t)(text + size - 2 - p));
        if (!z) break;
        p = z + 1;
    }
    size_t k = 0;
    const char *bos = (data[1] & 2) && k < nf ? field[k++] : NULL;
    const char *eos = (data[1] & 4) && k < nf ? field[k++] : NULL;
    moge_chat_message msgs[FUZZ_CHAT_MAX];
    size_t n = 0;
    for (; k + 1 < nf && n < FUZZ_CHAT_MAX; k += 2) msgs[n].role = field[k], msgs[n].content = field[k + 1], n++;
    char *out = NULL, err[256];
    moge_status st = moge_chat_render(family, msgs, n, add_gen, bos, eos, &out, err, sizeof err);
    if (st == MOGE_OK) {
        FUZZ_ASSERT(out != NULL);
        /* (Llama-3 trims the contents, [INST] drops a system message without a user turn) */
        if (family == MOGE_CHAT_CHATML || family == MOGE_CHAT_PANGU || family == MOGE_CHAT_PLAIN)
            for (size_t i = 0; i < n; i++) FUZZ_ASSERT(strstr(out, msgs[i].content) != NULL);
        free(out);
    } else {
        FUZZ_ASSERT(out == NULL && err[0] != '\0');
    }
    free(text);
    return 0;
}
