/* filemap.c — a whole file mapped read-only. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/fileio.h"
#include "base/filemap.h"

moge_status file_map_open(file_map *m, const char *path, size_t min_size, const char *what, char *err, size_t n) {
    m->data = NULL;
    m->size = 0;
    int fd;
    struct stat sb;
    moge_status st = file_open_regular(path, &fd, &sb, err, n);
    if (st != MOGE_OK) return st;
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return set_err(err, n, MOGE_ERR_IO, "%s: %lld bytes, too large to map", path, (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    if (size < min_size) {
        close(fd);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: %zu bytes, too short for %s", path, size, what);
    }
    if (size == 0) { /* mmap refuses a length of 0 */
        close(fd);
        return MOGE_OK;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return set_err(err, n, MOGE_ERR_IO, "%s: mmap: %s", path, strerror(e));
    m->data = map;
    m->size = size;
    return MOGE_OK;
}

void file_map_close(file_map *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}
