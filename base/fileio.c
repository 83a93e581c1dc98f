/* fileio.c — small file helpers shared by the loaders. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/fileio.h"

moge_status file_open_regular(const char *path, int *fd_out, struct stat *sb, char *err, size_t n) {
    *fd_out = -1;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        const char *what = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" :
                           S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : S_ISSOCK(st.st_mode) ? "a socket" : "special";
        return set_err(err, n, MOGE_ERR_IO, "%s: not a regular file (it is %s)", path, what);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (sb) *sb = st;
    *fd_out = fd;
    return MOGE_OK;
}

moge_status read_whole_file(const char *path, char **out, size_t *len, char *err, size_t n) {
    int fd;
    struct stat sb;
    moge_status st = file_open_regular(path, &fd, &sb, err, n);
    if (st != MOGE_OK) return st;
    if (sb.st_size > FILE_READ_MAX) {
        close(fd);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: %lld bytes, larger than the %d MiB a JSON file of a model may have", path,
                       (long long)sb.st_size, (int)(FILE_READ_MAX >> 20));
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(e));
    }
    char *buf = NULL;
    size_t cap = 0, used = 0;
    for (;;) {
        if (used > FILE_READ_MAX) { /* it grew while being read */
            free(buf);
            fclose(f);
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: larger than the %d MiB a JSON file of a model may have", path,
                           (int)(FILE_READ_MAX >> 20));
        }
        if (used + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : (size_t)sb.st_size + 4096 + 1; /* one read for a file that keeps its size */
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

void file_read_line(const char *path, char *out, size_t cap) {
    int fd;
    out[0] = 0;
    if (cap == 0 || file_open_regular(path, &fd, NULL, NULL, 0) != MOGE_OK) return;
    ssize_t k = read(fd, out, cap - 1);
    close(fd);
    out[k > 0 ? k : 0] = 0;
    out[strcspn(out, "\r\n")] = 0;
}

moge_status file_make_dirs(const char *path, char *err, size_t n) {
    char buf[4096];
    int k = snprintf(buf, sizeof buf, "%s", path);
    if (k < 0 || (size_t)k >= sizeof buf) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return set_err(err, n, MOGE_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(buf, &st) != 0) return set_err(err, n, MOGE_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return set_err(err, n, MOGE_ERR_IO, "cannot create directory %s: a file is in the way", buf);
    return MOGE_OK;
}

moge_status file_cache_root(const char *given, char *out, size_t cap, char *err, size_t n) {
    const char *env = getenv("MOGE_CACHE");
    const char *home = getenv("HOME");
    int k;
    if (given && *given) k = snprintf(out, cap, "%s", given);
    else if (env && *env) k = snprintf(out, cap, "%s", env);
    else if (home && *home) k = snprintf(out, cap, "%s/.cache/moge", home);
    else return set_err(err, n, MOGE_ERR_ARG, "HOME is not set: set MOGE_CACHE to a cache directory");
    if (k < 0 || (size_t)k >= cap) return set_err(err, n, MOGE_ERR_ARG, "cache directory path too long");
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/') out[--len] = 0;
    return MOGE_OK;
}
