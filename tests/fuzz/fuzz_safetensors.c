/*
 * fuzz_safetensors.c — one model.safetensors (runtime/safetensors.c): the header's length, JSON,
 * dtypes, shapes and data offsets. Every tensor handed out must lie inside the file (its bytes
 * are read, so a pointer past the mapping faults) and be found again by name.
 */
#include "tests/fuzz/fuzz_st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], dir[600];
    fuzz_write("safetensors", "model.safetensors", data, size, path);
    fuzz_st_open(fuzz_dir("safetensors", dir));
    return 0;
}
