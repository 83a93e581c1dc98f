/*
 * fuzz_util.h — what the fuzz targets of tests/fuzz/ share. Each target is one file
 * fuzz_<name>.c defining LLVMFuzzerTestOneInput (libFuzzer's entry point); `make fuzz` links it
 * with libFuzzer (clang, -fsanitize=fuzzer,address,undefined), and tests/test_fuzz_replay.c
 * includes every target under its own name and replays the committed corpus with the normal build.
 *
 * The loaders read paths, so a target writes its input to files in a private temporary directory
 * (made once per process under $TMPDIR, removed at exit). Inputs that stand for several files
 * (a model directory) are split at FUZZ_SEP: part 0 is the first file, part 1 the next, ...
 * Targets keep no state between inputs except what they load once at start (the committed
 * tokenizers); every input must end with everything it allocated freed, so LeakSanitizer finds leaks.
 */
#ifndef MOGE_FUZZ_UTIL_H
#define MOGE_FUZZ_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The separator between the files of one input (also in tests/fuzz/moge.dict). */
#define FUZZ_SEP "\n#moge-fuzz-file#\n"
#define FUZZ_MAX_PARTS 4

static char fuzz_dir_path[256];

static inline int fuzz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}
static inline void fuzz_dir_remove(void) {
    if (fuzz_dir_path[0]) nftw(fuzz_dir_path, fuzz_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* The directory fuzz_dir()/sub of one target (made on first use; the private temporary
 * directory of this process is made on the first call and removed at exit). */
static inline const char *fuzz_dir(const char *sub, char *path) {
    if (!fuzz_dir_path[0]) {
        const char *tmp = getenv("TMPDIR");
        if ((size_t)snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/moge-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp") >=
                sizeof fuzz_dir_path ||
            !mkdtemp(fuzz_dir_path)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    if (snprintf(path, 600, "%s/%s", fuzz_dir_path, sub) >= 600) abort();
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        perror(path);
        abort();
    }
    return path;
}

/* Writes data to the file `name` of target directory `sub` (replacing it); its path goes to
 * path (600 bytes). */
static inline void fuzz_write(const char *sub, const char *name, const uint8_t *data, size_t n, char *path) {
    char dir[600];
    if (snprintf(path, 600, "%s/%s", fuzz_dir(sub, dir), name) >= 600) abort();
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* Removes the file `name` of target directory `sub` when present. */
static inline void fuzz_unlink(const char *sub, const char *name) {
    char dir[600], p[700];
    if (snprintf(p, sizeof p, "%s/%s", fuzz_dir(sub, dir), name) >= (int)sizeof p) abort();
    unlink(p);
}

/* Splits data at FUZZ_SEP into at most FUZZ_MAX_PARTS parts (the last keeps any further
 * separators); returns the count (>= 1). */
static inline int fuzz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len) {
    const size_t sl = sizeof FUZZ_SEP - 1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; k < FUZZ_MAX_PARTS - 1 && i + sl <= n; i++)
        if (memcmp(data + i, FUZZ_SEP, sl) == 0) {
            part[k] = data + start, len[k] = i - start, k++;
            start = i + sl;
            i = start - 1;
        }
    part[k] = data + start, len[k] = n - start;
    return k + 1;
}

/* A NUL-terminated copy of data (malloc'd; the caller frees). */
static inline char *fuzz_strdup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* A broken promise of the library: report it and abort, so the fuzzer keeps the input. */
#define FUZZ_ASSERT(cond)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
