/*
 * test_limits.c — files that claim huge sizes (a safetensors header length, tensor shapes and
 * data offsets, JSON nested a million deep, config.json dimensions, a quantized tensor's shape)
 * must fail to load with a format error before allocating more than the file's size plus a
 * fixed bound. Each case runs in a forked child, which measures its peak resident memory
 * (getrusage ru_maxrss) before and after the load: the growth must stay under the size of the
 * files read plus LIMIT_SLACK. Outside AddressSanitizer (whose shadow memory needs a huge
 * address space) the child also caps its address space at what it maps now plus the same
 * bound, so an allocation that is asked for and never touched fails too (and the loader would
 * then report out of memory, which the case refuses: it must say what is wrong with the file).
 */
#include "tests/harness.h"
#include "tests/test_util.h"

#include <errno.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "moge.h"
#include "runtime/safetensors.h"

#if defined(__SANITIZE_ADDRESS__)
#define LIMIT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LIMIT_ASAN 1
#endif
#endif

#define LIMIT_SLACK (64LL << 20) /* bytes a load may use beyond the files it reads */

static char dir_tmpl[] = "/tmp/moge-limits-XXXXXX";
static const char *dir;

static long long file_bytes(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static void write_file(const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        printf("  cannot write %s\n", p);
        exit(1);
    }
}

/* model.safetensors: the 8-byte length (claimed), the header, then data_len zero bytes. */
static void write_st(uint64_t claimed, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(claimed >> (8 * i));
    memcpy(buf + 8, header, hl);
    write_file("model.safetensors", buf, 8 + hl + data_len);
    free(buf);
}

static void clear_dir(void) {
    static const char *const names[] = {"model.safetensors", "config.json", "model.safetensors.index.json",
                                        "model-00001-of-00002.safetensors", "tokenizer.json"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) snprintf(p, sizeof p, "%s/%s", dir, names[i]), unlink(p);
}

static long long dir_bytes(void) {
    static const char *const names[] = {"model.safetensors", "config.json", "model.safetensors.index.json",
                                        "model-00001-of-00002.safetensors", "tokenizer.json"};
    char p[512];
    long long n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) snprintf(p, sizeof p, "%s/%s", dir, names[i]), n += file_bytes(p);
    return n;
}

#ifndef LIMIT_ASAN
/* Virtual memory of this process now, from /proc/self/statm (pages), in bytes; 0 when unknown. */
static long long vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0;
    if (f) {
        if (fscanf(f, "%lld", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}
#endif

typedef enum { LOAD_ST, LOAD_MODEL, LOAD_TOKENIZER } load_kind;

/* What one child reports: the load's status and its peak growth in KiB. */
typedef struct {
    int status;
    long long grown_kib;
} child_report;

/* Loads dir as `kind` in a child; checks the status is `want` and the growth is bounded. */
static void expect_bounded(const char *name, load_kind kind, moge_status want) {
    long long bytes = dir_bytes();
    int fds[2];
    if (pipe(fds) != 0) {
        CHECK(!"pipe");
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
#ifndef LIMIT_ASAN
        struct rlimit rl = {.rlim_cur = (rlim_t)(vm_bytes() + bytes + LIMIT_SLACK), .rlim_max = RLIM_INFINITY};
        setrlimit(RLIMIT_AS, &rl);
#endif
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        long before = ru.ru_maxrss;
        char err[512] = "";
        moge_status st;
        if (kind == LOAD_ST) {
            st_table t;
            st = st_open_dir(&t, dir, err, sizeof err);
            if (st == MOGE_OK) st_close(&t);
        } else if (kind == LOAD_MODEL) {
            moge_model_params mp = moge_model_default_params();
            mp.n_threads = 1;
            moge_model *m = NULL;
            st = moge_model_load(dir, &mp, &m, err, sizeof err);
            moge_model_free(m);
        } else {
            char p[512];
            snprintf(p, sizeof p, "%s/tokenizer.json", dir);
            moge_tokenizer *tok = NULL;
            st = moge_tokenizer_load(p, &tok, err, sizeof err);
            moge_tokenizer_free(tok);
        }
        getrusage(RUSAGE_SELF, &ru);
        child_report r = {st, ru.ru_maxrss - before};
        if (write(fds[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(2);
        if (st != want) printf("  %s: %s (%s)\n", name, err, moge_status_str(st));
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    child_report r = {-1, -1};
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    CHECKF(got == (ssize_t)sizeof r && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s: the child died (status %d)", name, ws);
    CHECKF(r.status == (int)want, "%s: status %d (%s), expected %s", name, r.status, moge_status_str((moge_status)r.status),
           moge_status_str(want));
    long long bound_kib = (bytes + LIMIT_SLACK) / 1024;
    CHECKF(r.grown_kib >= 0 && r.grown_kib <= bound_kib, "%s: peak RSS grew %lld KiB, files %lld bytes, bound %lld KiB", name,
           r.grown_kib, bytes, bound_kib);
    printf("  %-34s peak +%6lld KiB (files %lld bytes)\n", name, r.grown_kib, bytes);
}

static const char *const VALID_CONFIG = "tests/fixtures/broken/valid/config.json";
static const char *const VALID_ST = "tests/fixtures/broken/valid/model.safetensors";

static void copy_fixture(const char *from, const char *name) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/%s'", from, dir, name);
    if (shell(cmd) != 0) {
        printf("  cannot copy %s\n", from);
        exit(1);
    }
}

static void test_safetensors_claims(void) {
    clear_dir();
    write_st(1ULL << 40, "{}", 64);
    expect_bounded("st: header length 2^40", LOAD_ST, MOGE_ERR_FORMAT);
    write_st(UINT64_MAX, "{}", 64);
    expect_bounded("st: header length 2^64-1", LOAD_ST, MOGE_ERR_FORMAT);
    write_st(2, "{}", 0);
    write_st(2, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647],\"data_offsets\":[0,16]}}", 16);
    expect_bounded("st: shape 2^31 x 2^31", LOAD_ST, MOGE_ERR_FORMAT);
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,4611686018427387904]}}";
    write_st(strlen(h), h, 16);
    expect_bounded("st: data_offsets end 2^62", LOAD_ST, MOGE_ERR_FORMAT);
    h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,1073741824,4],\"data_offsets\":[0,16]}}";
    write_st(strlen(h), h, 16);
    expect_bounded("st: shape product past 2^64", LOAD_ST, MOGE_ERR_FORMAT);
    /* a header of one million '[': cJSON's nesting limit, not the stack */
    size_t deep = 1000000;
    char *d = malloc(deep + 1);
    memset(d, '[', deep);
    d[deep] = '\0';
    write_st(deep, d, 0);
    free(d);
    expect_bounded("st: JSON nested 10^6 deep", LOAD_ST, MOGE_ERR_FORMAT);
    /* a header that claims 10^6 tensors in a file that holds 2 */
    h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1000000],\"data_offsets\":[4,4000004]}}";
    write_st(strlen(h), h, 8);
    expect_bounded("st: 10^6 floats past the end", LOAD_ST, MOGE_ERR_FORMAT);
}

static void test_index_claims(void) {
    clear_dir();
    const char *idx = "{\"metadata\":{\"total_size\":1e300},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}";
    write_file("model.safetensors.index.json", idx, strlen(idx));
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647],\"data_offsets\":[0,16]}}";
    size_t hl = strlen(h);
    unsigned char buf[256] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    write_file("model-00001-of-00002.safetensors", buf, 8 + hl + 16);
    expect_bounded("index: shard with shape 2^31 x 2^31", LOAD_ST, MOGE_ERR_FORMAT);
}

static void test_config_claims(void) {
    /* the valid fixture's weights with a config.json that claims huge dimensions: the tensors'
     * shapes must be checked against it before anything the size of a claimed tensor exists */
    static const char *const configs[] = {
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000000000,\"hidden_size\":16,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":2,\"intermediate_size\":24}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":64,\"hidden_size\":1000000000,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":2,\"intermediate_size\":24}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":64,\"hidden_size\":16,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":2,\"intermediate_size\":1000000000}",
        "{\"architectures\":[\"MixtralForCausalLM\"],\"vocab_size\":64,\"hidden_size\":16,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":2,\"intermediate_size\":24,\"num_local_experts\":1000000,\"num_experts_per_tok\":2}",
    };
    static const char *const names[] = {"config: vocab_size 1e9", "config: hidden_size 1e9", "config: intermediate_size 1e9",
                                        "config: 10^6 experts"};
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        clear_dir();
        copy_fixture(VALID_ST, "model.safetensors");
        write_file("config.json", configs[i], strlen(configs[i]));
        expect_bounded(names[i], LOAD_MODEL, i == 3 ? MOGE_ERR_FORMAT : MOGE_ERR_SHAPE);
    }
}

static void test_quant_claims(void) {
    /* a pre-quantized file whose U8 block tensor claims a matrix of 2^30 x 2^30 */
    clear_dir();
    copy_fixture(VALID_CONFIG, "config.json");
    const char *h = "{\"__metadata__\":{\"moge.quant\":\"q8\"},\"model.embed_tokens.weight\":{\"dtype\":\"U8\","
                    "\"shape\":[1073741824,1207959552],\"data_offsets\":[0,64]}}";
    write_st(strlen(h), h, 64);
    expect_bounded("quant: U8 blocks of 2^30 x 2^30", LOAD_MODEL, MOGE_ERR_FORMAT);
}

/* A tokenizer.json whose one vocabulary id claims 10^8 (or 2^31 - 2) entries (issue 18, defect 6:
 * two tables were sized by the largest id, 1.57 GB from 77 bytes): refused, memory bounded. */
static void test_tokenizer_claims(void) {
    static const char *const toks[] = {
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":100000000},\"merges\":[]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2147483646},\"merges\":[]}}",
    };
    static const char *const names[] = {"tokenizer: vocab id 10^8", "tokenizer: vocab id 2^31 - 2"};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        clear_dir();
        write_file("tokenizer.json", toks[i], strlen(toks[i]));
        expect_bounded(names[i], LOAD_TOKENIZER, MOGE_ERR_FORMAT);
    }
}

int main(void) {
    if (!(dir = mkdtemp(dir_tmpl))) {
        printf("FAIL limits: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    harness_case cases[] = {T(test_safetensors_claims), T(test_index_claims), T(test_config_claims), T(test_quant_claims),
                           T(test_tokenizer_claims)};
    int rc = harness_run(cases, (int)(sizeof cases / sizeof cases[0]));
    clear_dir();
    rmdir(dir);
    return rc;
}
