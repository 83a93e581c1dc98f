/* filemap.h — a whole file mapped read-only (the weights of safetensors and GGUF files). */
#ifndef MOGE_FILEMAP_H
#define MOGE_FILEMAP_H

#include <stddef.h>
#include "moge.h"

typedef struct {
    void *data;  /* the mapping (NULL for an empty file) */
    size_t size; /* bytes */
} file_map;

/* Maps path read-only and private. Only a regular file is mapped (file_open_regular: a FIFO,
 * device or directory is refused, and the open cannot block), and only one of at least min_size
 * bytes: a shorter one is MOGE_ERR_FORMAT "PATH: N bytes, too short for WHAT" (what: "a GGUF
 * file"). An empty file (min_size 0) gives data NULL and size 0. Errors name the path; *m is then
 * empty. */
moge_status file_map_open(file_map *m, const char *path, size_t min_size, const char *what, char *err, size_t err_size);

/* Unmaps m (empty or already closed: nothing) and empties it. */
void file_map_close(file_map *m);

#endif
