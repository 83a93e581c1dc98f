/*
 * fuzz_st.h — what the safetensors targets check on the weights of a directory: it opens, or
 * fails with a message; every tensor opened is found again by name and lies inside its file
 * (its bytes are read, so a pointer past the mapping faults).
 */
#ifndef MOGE_FUZZ_ST_H
#define MOGE_FUZZ_ST_H

#include "tests/fuzz/fuzz_util.h"

#include "runtime/safetensors.h"

static inline void fuzz_st_open(const char *dir) {
    st_table t;
    char err[512];
    if (st_open_dir(&t, dir, err, sizeof err) != MOGE_OK) {
        FUZZ_ASSERT(err[0] != '\0');
        return;
    }
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
}

#endif
