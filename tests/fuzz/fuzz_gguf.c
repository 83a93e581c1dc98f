/*
 * fuzz_gguf.c — a GGUF file (runtime/gguf.c), parsed from memory with gguf_parse: every tensor
 * handed out lies inside the buffer (its bytes are read) and is found again by name, every
 * metadata pair by key. Seeds: GGUF fixtures of tests/test_gguf.c (tests/fuzz/corpus/gguf/).
 */
#include "tests/fuzz/fuzz_util.h"

#include "runtime/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* a buffer of exactly size bytes, for ASan */
    if (!copy) abort();
    if (size) memcpy(copy, data, size);
    gguf_file g;
    char err[512];
    if (gguf_parse(&g, copy, size, "fuzz.gguf", err, sizeof err) == MOGE_OK) {
        unsigned sum = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const gguf_tensor *t = &g.tensors[i];
            FUZZ_ASSERT(gguf_find_tensor(&g, t->name) == t);
            FUZZ_ASSERT(t->nbytes <= size && (const uint8_t *)t->data >= copy &&
                        (const uint8_t *)t->data + t->nbytes <= copy + size);
            for (uint64_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
            (void)gguf_type_name(t->type);
        }
        for (uint64_t i = 0; i < g.n_kv; i++) {
            const gguf_kv *kv = &g.kv[i];
            int64_t v;
            double d;
            bool bo;
            gguf_str s;
            (void)gguf_kv_int(kv, &v), (void)gguf_kv_float(kv, &d), (void)gguf_kv_bool(kv, &bo), (void)gguf_kv_string(kv, &s);
            (void)gguf_vtype_name(kv->type);
        }
        gguf_close(&g);
        (void)sum;
    } else {
        FUZZ_ASSERT(err[0] != '\0');
        gguf_close(&g);
    }
    free(copy);
    return 0;
}
