/*
 * test_hostile.c — regression tests of issue 18's defects 6-9 that are not in the fixture table
 * of test_loader (tests/fixtures/broken/cases.tsv): each case holds the reproducing input, made
 * here in a temporary directory.
 *   - tokenizer.json ids far beyond its entries (a 77-byte file asking for 1.57 GB of tables)
 *   - /dev/zero or a file larger than the JSON limit as tokenizer.json, config.json or the
 *     shard index: refused at once, naming the file (and the limit); a FIFO as a revision's
 *     commit in the download cache does not block moge_resolve_model or moge_cache_list
 *   - a normalizer or pre-tokenizer regex that backtracks past PCRE2's match limit:
 *     MOGE_ERR_TOO_COMPLEX, "pattern too complex for input"
 *   - moge_detokenize's cap is the buffer's size, the NUL included
 *   - NaN / Inf in a norm weight or the embedding: moge_forward fails with MOGE_ERR_NUMERIC naming
 *     the tensor, instead of logits that sample as blank text
 *   - max_position_embeddings 1e7: a context of that size allocates its KV cache for what is
 *     used and grows it, with the same logits as a context sized up front
 *   - the weight files' one file map (base/filemap.c): a FIFO, a directory, an empty or too short
 *     file as model.safetensors or a GGUF file is refused naming it (a FIFO without blocking); a
 *     mapped file holds the bytes read_whole_file reads
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"
#include "moge_hub.h"
#include "runtime/context.h"
#include "base/fileio.h"
#include "base/filemap.h"
#include "runtime/gguf.h"

#define VALID "tests/fixtures/broken/valid"
#define STORIES "models/stories260K"

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A fresh directory under /tmp (removed by rm_dir). */
static bool new_dir(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/moge_hostile_XXXXXX");
    return mkdtemp(dir) != NULL;
}

static void rm_dir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static bool write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    fputs(text, f);
    return fclose(f) == 0;
}

static moge_status load_tokenizer_json(const char *json, moge_tokenizer **t, char *err, size_t cap) {
    char dir[64];
    *t = NULL;
    if (!new_dir(dir, sizeof dir) || !write_text(dir, "tokenizer.json", json)) return MOGE_ERR_IO;
    moge_status st = moge_tokenizer_load(dir, t, err, cap);
    rm_dir(dir);
    return st;
}

/* ---- defect 6: ids far beyond the entries ------------------------------------------------- */

static void test_tokenizer_huge_ids(void) {
    static const struct { const char *json, *needle; } cases[] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 100000000}, \"merges\": []}}", "id 100000000"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2147483646}, \"merges\": []}}", "id 2147483646"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}, \"added_tokens\": "
         "[{\"id\": 2147483646, \"content\": \"<x>\", \"special\": true}]}", "added_tokens[0].id: 2147483646"},
    };
    long rss0 = max_rss_kb();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        moge_tokenizer *t;
        moge_status st = load_tokenizer_json(cases[i].json, &t, err, sizeof err);
        CHECKF(st == MOGE_ERR_FORMAT && !t && strstr(err, cases[i].needle) && strstr(err, "far beyond"), "case %zu: %s: %s", i,
               moge_status_str(st), err);
        moge_tokenizer_free(t);
    }
    /* the tables were never made: the peak grew by far less than one n_vocab x 16-byte table */
    long grown = max_rss_kb() - rss0;
    CHECKF(grown < 64 * 1024, "peak RSS grew by %ld KiB", grown);
    /* a hole of a few thousand ids (unused ids in a real vocabulary) still loads */
    char err[512] = "";
    moge_tokenizer *t;
    moge_status st = load_tokenizer_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 5000}, \"merges\": []}}", &t,
                                         err, sizeof err);
    CHECKF(st == MOGE_OK && moge_tokenizer_n_vocab(t) == 5001, "%s: %s", moge_status_str(st), err);
    moge_tokenizer_free(t);
}

/* ---- defect 9: non-regular and huge JSON files -------------------------------------------- */

/* dir/name is a symbolic link to /dev/zero, or a sparse file one byte over FILE_READ_MAX. */
static bool hostile_file(const char *dir, const char *name, bool zero) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    remove(path);
    if (zero) return symlink("/dev/zero", path) == 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = ftruncate(fd, (off_t)FILE_READ_MAX + 1) == 0;
    close(fd);
    return ok;
}

static void test_json_files_bounded(void) {
    static const char *const names[] = {"tokenizer.json", "config.json", "model.safetensors.index.json"};
    for (int zero = 0; zero < 2; zero++)
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char dir[64], cmd[256], err[512] = "", path[512];
            if (!new_dir(dir, sizeof dir)) { CHECK(0); continue; }
            snprintf(cmd, sizeof cmd, "cp %s/* %s/ && cp %s/tokenizer.json %s/", VALID, dir, STORIES, dir);
            CHECK(system(cmd) == 0);
            if (i == 2) { /* the index names the weights: the single file goes */
                snprintf(path, sizeof path, "%s/model.safetensors", dir);
                remove(path);
            }
            CHECK(hostile_file(dir, names[i], zero));
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            alarm(30); /* a regression reads /dev/zero until memory runs out: die instead */
            moge_status st;
            if (i == 0) {
                moge_tokenizer *t = NULL;
                st = moge_tokenizer_load(dir, &t, err, sizeof err);
                CHECK(t == NULL);
                moge_tokenizer_free(t);
            } else {
                moge_model *m = NULL;
                st = moge_model_load(dir, NULL, &m, err, sizeof err);
                CHECK(m == NULL);
                moge_model_free(m);
            }
            alarm(0);
            const char *why = zero ? "not a regular file" : "256 MiB";
            CHECKF(st != MOGE_OK && strstr(err, path) && strstr(err, why), "%s as %s: %s: %s", names[i],
                   zero ? "/dev/zero" : "a huge file", moge_status_str(st), err);
            rm_dir(dir);
        }
}

/* ---- defect 8: regex match limit, moge_detokenize's cap ------------------------------------ */

static void test_regex_too_complex(void) {
    /* (a|aa)+$ backtracks exponentially on a run of a's that ends in anything else */
    static const char *const jsons[] = {
        "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(a|aa)+$\"}, \"content\": \"x\"}, "
        "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"x\": 2}, \"merges\": []}}",
        "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(a|aa)+$\"}, "
        "\"content\": \"x\"}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"x\": 2}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a|aa)+$\"}, \"behavior\": \"Isolated\"}, "
        "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"x\": 2}, \"merges\": []}}",
    };
    char text[128];
    memset(text, 'a', 100);
    text[100] = 'b';
    text[101] = 0;
    for (size_t i = 0; i < sizeof jsons / sizeof jsons[0]; i++) {
        char err[512] = "";
        moge_tokenizer *t;
        moge_status st = load_tokenizer_json(jsons[i], &t, err, sizeof err);
        CHECKF(st == MOGE_OK, "case %zu: %s", i, err);
        if (!t) continue;
        int32_t ids[256];
        size_t n = 0;
        CHECK(moge_tokenize(t, "ab", 2, false, ids, 256, &n) == MOGE_OK); /* short input: fine */
        st = moge_tokenize(t, text, strlen(text), false, ids, 256, &n);
        CHECKF(st == MOGE_ERR_TOO_COMPLEX && strcmp(moge_status_str(st), "pattern too complex for input") == 0, "case %zu: %s", i,
               moge_status_str(st));
        moge_tokenizer_free(t);
    }
}

static void test_detokenize_cap(void) {
    moge_tokenizer *t = NULL;
    char err[256] = "";
    CHECKF(moge_tokenizer_load(STORIES, &t, err, sizeof err) == MOGE_OK, "%s", err);
    if (!t) return;
    int32_t ids[64];
    size_t n = 0, len = 0;
    const char *text = "Once upon a time";
    CHECK(moge_tokenize(t, text, strlen(text), false, ids, 64, &n) == MOGE_OK);
    char out[64];
    size_t want = strlen(text);
    memset(out, 'z', sizeof out);
    /* cap is the buffer's size: the text's length leaves no room for the NUL */
    CHECK(moge_detokenize(t, ids, n, out, want, &len) == MOGE_ERR_BUFFER && len == want && out[0] == 0);
    CHECK(out[want] == 'z'); /* nothing written past cap */
    CHECK(moge_detokenize(t, ids, n, out, want + 1, &len) == MOGE_OK && len == want && strcmp(out, text) == 0);
    moge_tokenizer_free(t);
}

/* ---- defect 7: NaN / Inf weights -------------------------------------------------------- */

/* Writes v over element k of tensor `name` (F32) in dir/model.safetensors. */
static bool poke_f32(const char *dir, const char *name, int64_t k, float v) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    if (!f) return false;
    uint64_t hlen = 0;
    bool ok = fread(&hlen, 8, 1, f) == 1 && hlen < (1u << 20);
    char *h = ok ? calloc(hlen + 1, 1) : NULL;
    ok = h && fread(h, 1, hlen, f) == hlen;
    cJSON *j = ok ? cJSON_Parse(h) : NULL;
    const cJSON *off = cJSON_GetObjectItem(cJSON_GetObjectItem(j, name), "data_offsets");
    ok = cJSON_IsArray(off) && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, name), "dtype")), "F32") == 0;
    if (ok) {
        long at = (long)(8 + hlen + (uint64_t)cJSON_GetArrayItem(off, 0)->valuedouble + 4 * (uint64_t)k);
        ok = fseek(f, at, SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1;
    }
    cJSON_Delete(j);
    free(h);
    return fclose(f) == 0 && ok;
}

/* A copy of stories260K in dir (config.json edited by `sed` when not NULL). */
static bool copy_stories(char *dir, size_t cap, const char *sed) {
    char cmd[512];
    if (!new_dir(dir, cap)) return false;
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/model.safetensors %s/tokenizer.json %s/tokenizer_config.json %s/", STORIES, STORIES,
             STORIES, STORIES, dir);
    if (system(cmd) != 0) return false;
    if (!sed) return true;
    snprintf(cmd, sizeof cmd, "sed -i '%s' %s/config.json", sed, dir);
    return system(cmd) == 0;
}

static void test_nonfinite_weights(void) {
    static const struct { const char *tensor; int64_t k; float v; const char *what; } cases[] = {
        {"model.layers.2.input_layernorm.weight", 3, NAN, "NaN"},
        {"model.norm.weight", 0, INFINITY, "Inf"},
        {"model.embed_tokens.weight", 64 * 1 + 5, NAN, "NaN"}, /* the BOS row (id 1): every prompt reads it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[64], err[512] = "", want[160];
        if (!copy_stories(dir, sizeof dir, NULL) || !poke_f32(dir, cases[i].tensor, cases[i].k, cases[i].v)) { CHECK(0); continue; }
        moge_model *m = NULL;
        moge_context *ctx = NULL;
        CHECKF(moge_model_load(dir, NULL, &m, err, sizeof err) == MOGE_OK && moge_context_new(m, NULL, &ctx, err, sizeof err) == MOGE_OK,
               "%s", err);
        if (ctx) {
            int32_t toks[3] = {1, 403, 407};
            const float *lg = NULL;
            moge_batch b = {.n = 3, .tokens = toks};
            moge_status st = moge_forward(ctx, &b, &lg);
            snprintf(want, sizeof want, "tensor %s holds %s at element %lld", cases[i].tensor, cases[i].what, (long long)cases[i].k);
            CHECKF(st == MOGE_ERR_NUMERIC && lg == NULL && strstr(moge_context_error(ctx), want), "%s: %s: %s", cases[i].tensor,
                   moge_status_str(st), moge_context_error(ctx));
        }
        /* the command line: an error naming the tensor, a non-zero exit, no blank text with exit 0 */
        if (i == 0) {
            char args[256];
            snprintf(args, sizeof args, "run -m %s -p \"Once upon a time\" -n 8 --temp 0", dir);
            expect_moge_error(args, 1, cases[i].tensor, "build/test_hostile.out", "build/test_hostile.err");
        }
        moge_context_free(ctx);
        moge_model_free(m);
        rm_dir(dir);
    }
    /* the scan names no weight when all are finite: a finite model runs */
    moge_model *m = NULL;
    moge_context *ctx = NULL;
    char err[256] = "";
    CHECK(moge_model_load(STORIES, NULL, &m, err, sizeof err) == MOGE_OK && moge_context_new(m, NULL, &ctx, err, sizeof err) == MOGE_OK);
    if (ctx) {
        int32_t toks[2] = {1, 403};
        const float *lg = NULL;
        moge_batch b = {.n = 2, .tokens = toks};
        CHECK(moge_forward(ctx, &b, &lg) == MOGE_OK && lg);
    }
    moge_context_free(ctx);
    moge_model_free(m);
}

/* ---- defect 6: a context of max_position_embeddings 10^7 ----------------------------------- */

typedef struct { int32_t ids[1024]; int n; } token_log;

static bool on_token(int32_t tok, void *user) {
    token_log *l = user;
    if (l->n < 1024) l->ids[l->n++] = tok;
    return true;
}

static void test_kv_cache_grows(void) {
    char dir[64], err[512] = "";
    if (!copy_stories(dir, sizeof dir, "s/\"max_position_embeddings\": 512/\"max_position_embeddings\": 10000000/")) { CHECK(0); return; }
    moge_model *m = NULL;
    moge_context *big = NULL, *ref = NULL;
    long rss0 = max_rss_kb();
    moge_context_params rp = moge_context_default_params();
    rp.n_ctx = 1024;
    CHECKF(moge_model_load(dir, NULL, &m, err, sizeof err) == MOGE_OK && moge_context_new(m, NULL, &big, err, sizeof err) == MOGE_OK &&
               moge_context_new(m, &rp, &ref, err, sizeof err) == MOGE_OK,
           "%s", err);
    if (!ref) goto done;
    /* the default context is the model's 10^7 tokens (a 12.8 GB cache if made whole) */
    CHECK(moge_context_n_ctx(big) == 10000000 && big->kv_cap == 256);
    long grown = max_rss_kb() - rss0;
    CHECKF(grown < 256 * 1024, "making the context grew the peak RSS by %ld KiB", grown);
    CHECK(context_kv_reserve(ref, 1024) == MOGE_OK && ref->kv_cap == 1024); /* the reference: sized up front */
    /* the same 700 tokens through both (prefill in chunks of 100, across the growth 256 -> 512 -> 1024):
     * identical logits, bit for bit */
    int32_t toks[700];
    for (int i = 0; i < 700; i++) toks[i] = (int32_t)((i * 37 + 11) % 500) + 3;
    int diffs = 0;
    for (int done = 0; done < 700; done += 100) {
        const float *a = NULL, *b = NULL;
        moge_batch bt = {.n = 100, .tokens = toks + done};
        CHECK(moge_forward(big, &bt, &a) == MOGE_OK && moge_kv_commit(big, NULL, 100) == MOGE_OK);
        CHECK(moge_forward(ref, &bt, &b) == MOGE_OK && moge_kv_commit(ref, NULL, 100) == MOGE_OK);
        if (a && b) diffs += memcmp(a, b, (size_t)100 * 512 * sizeof(float)) != 0;
    }
    CHECKF(diffs == 0, "%d chunks' logits differ", diffs);
    CHECKF(big->kv_cap == 1024, "kv_cap %d after 700 tokens", big->kv_cap);
    /* speculation stays exact across growth: greedy chain speculation from a short prompt (the
     * cache grows during generation) gives what the target alone gives */
    moge_context_free(big);
    big = NULL;
    CHECK(moge_context_new(m, NULL, &big, err, sizeof err) == MOGE_OK && moge_kv_truncate(ref, 0) == MOGE_OK);
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip(m, 2, 0, &d, err, sizeof err) == MOGE_OK, "%s", err);
    if (!big || !d) goto done;
    token_log plain = {0}, spec = {0};
    moge_generate_params gp = moge_generate_default_params();
    gp.n_predict = 400;
    gp.sampler.temperature = 0.0f;
    CHECK(moge_generate(ref, toks, 20, &gp, on_token, &plain, NULL) == MOGE_OK);
    gp.spec = MOGE_SPEC_CHAIN;
    gp.drafter = d;
    CHECK(moge_generate(big, toks, 20, &gp, on_token, &spec, NULL) == MOGE_OK);
    CHECKF(plain.n == spec.n && plain.n > 300 && memcmp(plain.ids, spec.ids, (size_t)plain.n * sizeof(int32_t)) == 0,
           "plain %d tokens, speculative %d, or they differ", plain.n, spec.n);
    CHECKF(big->kv_cap == 512, "kv_cap %d after %d tokens", big->kv_cap, 20 + spec.n);
    moge_drafter_free(d);
done:
    moge_context_free(big);
    moge_context_free(ref);
    moge_model_free(m);
    rm_dir(dir);
}

/* ---- defect 9: a FIFO where the download cache keeps a revision's commit -------------------- */

static void on_entry(const moge_cache_entry *e, void *user) {
    (void)e;
    ++*(int *)user;
}

static void test_fifo_in_cache(void) {
    char cache[64], path[256], err[512] = "", dir[512];
    if (!new_dir(cache, sizeof cache)) { CHECK(0); return; }
    snprintf(path, sizeof path, "mkdir -p %s/models/a/b/refs %s/models/a/b/0123abcd", cache, cache);
    CHECK(system(path) == 0);
    snprintf(path, sizeof path, "%s/models/a/b/refs/main", cache);
    CHECK(mkfifo(path, 0600) == 0);
    setenv("MOGE_CACHE", cache, 1);
    alarm(30); /* a regression blocks in open() for a writer that never comes */
    moge_status st = moge_resolve_model("a/b", dir, sizeof dir, err, sizeof err);
    CHECKF(st == MOGE_ERR_IO && strstr(err, "not in the cache"), "%s: %s", moge_status_str(st), err);
    int n = 0;
    st = moge_cache_list(on_entry, &n, err, sizeof err);
    CHECKF(st == MOGE_OK && n == 1, "%s, %d entries: %s", moge_status_str(st), n, err);
    alarm(0);
    unsetenv("MOGE_CACHE");
    rm_dir(cache);
}

/* ---- the weight files' file map -------------------------------------------------------------- */

/* moge_model_load of dir (config.json of the valid fixture) fails naming model.safetensors and
 * saying `why`. */
static void expect_weights_refused(const char *dir, const char *why) {
    char err[1024] = "";
    moge_model *m = NULL;
    alarm(30); /* a regression blocks in open() on a FIFO */
    moge_status st = moge_model_load(dir, NULL, &m, err, sizeof err);
    alarm(0);
    CHECKF(st != MOGE_OK && !m && strstr(err, "model.safetensors") && strstr(err, why), "%s: %s (expected \"%s\")", moge_status_str(st),
           err, why);
    moge_model_free(m);
}

static void test_weight_file_map(void) {
    char dir[64], path[256], cmd[512], err[1024] = "";
    if (!new_dir(dir, sizeof dir)) { CHECK(0); return; }
    snprintf(cmd, sizeof cmd, "cp " VALID "/config.json %s/", dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(mkfifo(path, 0600) == 0);
    expect_weights_refused(dir, "not a regular file (it is a FIFO)");
    CHECK(unlink(path) == 0 && mkdir(path, 0700) == 0);
    expect_weights_refused(dir, "not a regular file (it is a directory)");
    CHECK(rmdir(path) == 0 && write_text(dir, "model.safetensors", ""));
    expect_weights_refused(dir, "0 bytes, too short for a safetensors header");
    CHECK(write_text(dir, "model.safetensors", "1234567"));
    expect_weights_refused(dir, "7 bytes, too short for a safetensors header");
    /* a GGUF file: the same checks through gguf_open */
    gguf_file g;
    CHECK(write_text(dir, "x.gguf", "GGU"));
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    moge_status st = gguf_open(&g, path, err, sizeof err);
    CHECKF(st == MOGE_ERR_FORMAT && strstr(err, "x.gguf: 3 bytes, too short for a GGUF file"), "%s: %s", moge_status_str(st), err);
    CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    alarm(30);
    st = gguf_open(&g, path, err, sizeof err);
    alarm(0);
    CHECKF(st == MOGE_ERR_IO && strstr(err, "x.gguf: not a regular file (it is a FIFO)"), "%s: %s", moge_status_str(st), err);
    CHECK(!gguf_is_file(path));
    /* a mapped file holds what read_whole_file reads; an empty one maps to nothing */
    file_map fm;
    char *text = NULL;
    size_t len = 0;
    st = file_map_open(&fm, VALID "/model.safetensors", 8, "a safetensors header", err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(read_whole_file(VALID "/model.safetensors", &text, &len, err, sizeof err) == MOGE_OK);
    CHECK(st == MOGE_OK && text && fm.size == len && len > 8 && memcmp(fm.data, text, len) == 0);
    free(text);
    file_map_close(&fm);
    CHECK(!fm.data && fm.size == 0);
    file_map_close(&fm); /* twice: nothing */
    CHECK(write_text(dir, "empty", ""));
    snprintf(path, sizeof path, "%s/empty", dir);
    CHECK(file_map_open(&fm, path, 0, "anything", err, sizeof err) == MOGE_OK && !fm.data && fm.size == 0);
    rm_dir(dir);
}

int main(void) {
    RUN_TESTS(T(test_tokenizer_huge_ids), T(test_json_files_bounded), T(test_regex_too_complex), T(test_detokenize_cap),
              T(test_nonfinite_weights), T(test_kv_cache_grows), T(test_fifo_in_cache),
              T(test_weight_file_map));
}
