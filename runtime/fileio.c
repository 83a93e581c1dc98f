/* fileio.c — small file helpers shared by the loaders. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/errors.h"
#include "runtime/fileio.h"

moge_status read_whole_file(const char *path, char **out, size_t *len, char *err, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, used = 0;
    for (;;) {
        if (used + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
        }
        size_t got = fread(buf + used, 1, cap - used - 1, f);
        used += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return set_err(err, n, MOGE_ERR_IO, "%s: read error", path); }
    buf[used] = 0;
    *out = buf;
    *len = used;
    return MOGE_OK;
}
