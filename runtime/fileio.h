/* fileio.h — small file helpers shared by the loaders. */
#ifndef MOGE_FILEIO_H
#define MOGE_FILEIO_H

#include <stddef.h>
#include "moge.h"

/* Reads a whole file into a NUL-terminated malloc'd buffer (*out, length *len without the NUL).
 * Errors name the path. */
moge_status read_whole_file(const char *path, char **out, size_t *len, char *err, size_t err_size);

#endif
