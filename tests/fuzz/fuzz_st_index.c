/*
 * fuzz_st_index.c — a sharded model (runtime/safetensors.c): model.safetensors.index.json and
 * its two shards, the three parts of the input split at FUZZ_SEP (a missing part is no file).
 * Names are unique across shards and every tensor lies inside its shard.
 */
#include "tests/fuzz/fuzz_st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors"};
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, part, len);
    char path[600], dir[600];
    for (int i = 0; i < 3; i++) {
        if (i < n) fuzz_write("st_index", names[i], part[i], len[i], path);
        else fuzz_unlink("st_index", names[i]);
    }
    fuzz_st_open(fuzz_dir("st_index", dir));
    return 0;
}
