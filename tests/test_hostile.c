/*
 * test_hostile.c — regression tests of issue 18's defects 6-9 that are not in the fixture table
 * of test_loader (tests/fixtures/broken/cases.tsv): each case holds the reproducing input, made
 * here in a temporary directory.
 *   - tokenizer.json ids far beyond its entries (a 77-byte file asking for 1.57 GB of tables)
 *   - /dev/zero or a file larger than the JSON limit as tokenizer.json, config.json or the
 *     shard index: refused at once, naming the file (and the limit)
 *   - a normalizer or pre-tokenizer regex that backtracks past PCRE2's match limit:
 *     MOGE_ERR_TOO_COMPLEX, "pattern too complex for input"
 *   - moge_detokenize's cap is the buffer's size, the NUL included
 *   - NaN / Inf in a norm weight or the embedding: moge_forward fails with MOGE_ERR_NUMERIC naming
 *     the tensor, instead of logits that sample as blank text
 *   - max_position_embeddings 1e7: a context of that size allocates its KV cache for what is
 *     used and grows it, with the same logits as a context sized up front
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

#include "harness.h"
#include "moge.h"
#include "runtime/context.h"
#include "runtime/fileio.h"

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

int main(void) {
    RUN_TESTS(T(test_tokenizer_huge_ids), T(test_json_files_bounded), T(test_regex_too_complex), T(test_detokenize_cap));
}
