/*
 * test_fuzz_replay.c — replays the committed fuzzing corpus with the normal build (and under
 * ASan/UBSan in make asan): every fuzz target of tests/fuzz/ is included here under its own
 * name and run over each file of tests/fuzz/corpus/<target>/ (the minimized corpus of the
 * campaigns) and tests/fuzz/regressions/<target>/ (every input that once crashed, hung or
 * blew up a target). One PASS / FAIL line per target. A target aborts on a broken promise of
 * the library; the input being replayed is then named on stdout before the process dies.
 */
#define LLVMFuzzerTestOneInput fuzz_safetensors
#include "tests/fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_st_index
#include "tests/fuzz/fuzz_st_index.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_config
#include "tests/fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_load
#include "tests/fuzz/fuzz_tokenizer_load.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_encode
#include "tests/fuzz/fuzz_encode.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_detok
#include "tests/fuzz/fuzz_detok.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_chat
#include "tests/fuzz/fuzz_chat.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_quant_file
#include "tests/fuzz/fuzz_quant_file.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_gguf
#include "tests/fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_gguf_model
#include "tests/fuzz/fuzz_gguf_model.c"
#undef LLVMFuzzerTestOneInput

#include <dirent.h>
#include <signal.h>

typedef int (*fuzz_fn)(const uint8_t *, size_t);
static const struct {
    const char *name;
    fuzz_fn fn;
} targets[] = {
    {"safetensors", fuzz_safetensors}, {"st_index", fuzz_st_index}, {"config", fuzz_config},
    {"tokenizer_load", fuzz_tokenizer_load}, {"encode", fuzz_encode}, {"detok", fuzz_detok},
    {"chat", fuzz_chat}, {"quant_file", fuzz_quant_file}, {"gguf", fuzz_gguf},
    {"gguf_model", fuzz_gguf_model},
};

static char replaying[700]; /* the input being run, for the signal handler */

static void on_fatal(int sig) {
    static const char msg[] = "FAIL fuzz replay: crashed on ";
    ssize_t r = write(1, msg, sizeof msg - 1);
    r = write(1, replaying, strlen(replaying));
    r = write(1, "\n", 1);
    (void)r;
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs fn over every file of dir (in name order); returns the count, -1 when a file cannot be read. */
static int replay_dir(const char *dir, fuzz_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **g = realloc(names, cap * sizeof *names);
            if (!g) abort();
            names = g;
        }
        if (!(names[n++] = strdup(e->d_name))) abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(replaying, sizeof replaying, "%s/%s", dir, names[i]);
        FILE *f = fopen(replaying, "rb");
        uint8_t *buf = NULL;
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)len + 1);
            if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) len = -1;
        }
        if (f) fclose(f);
        if (len < 0) {
            printf("  cannot read %s\n", replaying);
            count = -1;
        } else {
            fn(buf, (size_t)len); /* a copy of exactly len bytes, as libFuzzer passes it */
            if (count >= 0) count++;
        }
        free(buf);
        free(names[i]);
    }
    free(names);
    return count;
}

int main(void) {
    static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_fatal);
    int failed = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        char dir[300];
        snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", targets[t].name);
        int c = replay_dir(dir, targets[t].fn);
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", targets[t].name);
        int r = replay_dir(dir, targets[t].fn);
        bool ok = c > 0 && r >= 0; /* every target has a committed corpus */
        printf("%s fuzz_replay_%s (%d corpus inputs, %d regressions)\n", ok ? "PASS" : "FAIL", targets[t].name, c, r);
        fflush(stdout);
        failed += !ok;
    }
    return failed ? 1 : 0;
}
