/*
 * fuzz_safetensors.c — one model.safetensors (runtime/safetensors.c): the header's length, JSON,
 * dtypes, shapes and data offsets. Every tensor handed out must lie inside the file (its bytes
 * are read, so a pointer past the mapping faults) and be found again by name.
 */
#include "tests/fuzz/fuzz_util.h"

#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], dir[600];
    fuzz_write("safetensors", "model.safetensors", data, size, path);
    st_table t;
    char err[512];
    if (st_open_dir(&t, fuzz_dir("safetensors", dir), err, sizeof err) == MOGE_OK) {
        unsigned sum = 0;
        for (int i = 0; i < t.n_entries; i++) {
            const st_entry *e = &t.entries[i];
            FUZZ_ASSERT(st_find(&t, e->name) == e);
            FUZZ_ASSERT(e->file >= 0 && e->file < t.n_files);
            FUZZ_ASSERT(e->nbytes <= t.files[e->file].size);
            for (size_t b = 0; b < e->nbytes; b++) sum += ((const unsigned char *)e->data)[b];
        }
        st_close(&t);
        (void)sum;
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    return 0;
}
