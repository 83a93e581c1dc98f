/* fileio.h — small file helpers shared by the loaders. */
#ifndef MOGE_FILEIO_H
#define MOGE_FILEIO_H

#include <stddef.h>
#include "moge.h"

struct stat;

/* Opens path read-only (close-on-exec) into *fd, refusing anything but a regular file: a FIFO,
 * device, socket or directory is an error naming the path (opened non-blocking first, so a FIFO
 * without a writer cannot hang the open). *sb (when not NULL) gets its fstat. */
moge_status file_open_regular(const char *path, int *fd, struct stat *sb, char *err, size_t err_size);

/* The largest file read_whole_file reads: the JSON files of a model (config.json, tokenizer.json,
 * the shard index) are a few MiB at most (a 262k-token tokenizer.json is 33 MiB). */
#define FILE_READ_MAX ((long long)256 << 20)

/* Reads a whole regular file (file_open_regular) into a NUL-terminated malloc'd buffer (*out, length *len without the NUL).
 * A file larger than FILE_READ_MAX is refused before anything is read (MOGE_ERR_FORMAT naming
 * the path and the limit). Errors name the path. */
moge_status read_whole_file(const char *path, char **out, size_t *len, char *err, size_t err_size);

/* The first line of a small regular file (file_open_regular: a FIFO in its place cannot block)
 * into out (cap bytes, at most cap - 1 read, the line end dropped); "" when it cannot be read. */
void file_read_line(const char *path, char *out, size_t cap);

/* mkdir -p: path and every missing parent (mode 0755). Errors name the directory that could not
 * be made (a file in the way included). */
moge_status file_make_dirs(const char *path, char *err, size_t err_size);

/* The cache root: `given` when not NULL or empty, else $MOGE_CACHE, else $HOME/.cache/moge
 * (trailing slashes dropped) into out (cap bytes). MOGE_ERR_ARG when HOME is unset too or the
 * path does not fit. */
moge_status file_cache_root(const char *given, char *out, size_t cap, char *err, size_t err_size);

#endif
