/*
 * test_tokenizer.c — the tokenizer against the Hugging Face reference's ids (Mistral and Qwen3
 * dev cases, llama.cpp's Qwen3 vectors, llama2.c's tok512 vectors, the hard cases of
 * tools/tok_make_cases.mjs for all three), decode round trips over the
 * TinyStories validation text, the streaming detokenizer, malformed files, every normalizer /
 * pre-tokenizer / decoder / added-token flag on small in-test tokenizers, and chat templates.
 * The fast paths are checked against the plain ones they replace: the hand-written matcher of the
 * Qwen/Llama 3 pattern against PCRE2, normalization by ASCII-separated runs against utf8proc on
 * the whole text, the streaming pre-tokenizer against the step-by-step one, and the vocab/merges
 * scanner against cJSON.
 * Fixtures (tests/fixtures/tokenizers/, tests/fixtures/tok512-vectors.tsv) are read relative to
 * the repository root; see tests/fixtures/tokenizers/LICENSE for their licences.
 */
#include "base/clock.h"
#include "harness.h"
#include "moge.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#define MISTRAL "tests/fixtures/tokenizers/mistral"
#define QWEN3 "tests/fixtures/tokenizers/qwen3"
#define TOK512 "models/stories260K/tokenizer.json"
#define VALID_TXT "tests/fixtures/tokenizers/tinystories-valid.txt"

#if defined(__SANITIZE_ADDRESS__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW_BUILD 1
#endif
#endif
#ifndef SLOW_BUILD
#define SLOW_BUILD 0
#endif

/* ---- helpers ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *q = realloc(p, 2 * cap + 1);
            if (!q) {
                free(p);
                p = NULL;
                break;
            }
            p = q;
            cap *= 2;
        }
    }
    fclose(f);
    if (p) p[n] = '\0';
    if (len) *len = n;
    return p;
}

static moge_tokenizer *load(const char *path) {
    char err[512] = "";
    moge_tokenizer *t = NULL;
    moge_status st = moge_tokenizer_load(path, &t, err, sizeof err);
    CHECKF(st == MOGE_OK && t, "loading %s: %s (%s)", path, moge_status_str(st), err);
    return t;
}

/* Encodes text (no special tokens unless asked); returns a malloc'd array, count in *n. */
static int32_t *encode(const moge_tokenizer *t, const char *s, size_t len, bool special, size_t *n) {
    size_t cap = len + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    moge_status st = moge_tokenize(t, s, len, special, ids, cap, n);
    CHECKF(st == MOGE_OK, "moge_tokenize: %s", moge_status_str(st));
    if (st) *n = 0;
    return ids;
}

static char *decode(const moge_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t need = 0;
    moge_status st = moge_detokenize(t, ids, n, NULL, 0, &need);
    CHECK(st == MOGE_OK || st == MOGE_ERR_BUFFER);
    char *out = malloc(need + 1);
    st = moge_detokenize(t, ids, n, out, need + 1, len);
    CHECKF(st == MOGE_OK, "moge_detokenize: %s", moge_status_str(st));
    if (st) {
        out[0] = '\0';
        *len = 0;
    }
    return out;
}

static bool utf8_ok(const char *s, size_t n) { return tk_utf8_valid(s, n); }

/* Streams ids one at a time; checks every chunk is whole UTF-8 and fits the advertised bound,
 * and that the chunks concatenate to moge_detokenize's output. */
static bool stream_matches(const moge_tokenizer *t, const int32_t *ids, size_t n) {
    moge_detok_stream *s = NULL;
    if (moge_detok_stream_new(t, &s) != MOGE_OK) return false;
    tk_buf acc = {0};
    bool ok = true;
    for (size_t i = 0; i <= n && ok; i++) {
        size_t cap = moge_detok_stream_max_bytes(s) + 1, got = 0;
        char *buf = malloc(cap);
        moge_status st = i < n ? moge_detok_stream_push(s, ids[i], buf, cap, &got)
                               : moge_detok_stream_flush(s, buf, cap, &got);
        if (st != MOGE_OK || !utf8_ok(buf, got) || got >= cap || strlen(buf) > got) ok = false;
        else tk_buf_put(&acc, buf, got);
        free(buf);
    }
    size_t len;
    char *whole = decode(t, ids, n, &len);
    ok = ok && acc.len == len && (len == 0 || memcmp(acc.p, whole, len) == 0);
    free(whole);
    tk_buf_free(&acc);
    moge_detok_stream_free(s);
    return ok;
}

/* Decodes the JSON string starting at p (just after the opening quote) into out. */
static const char *json_string(const char *p, tk_buf *out) {
    out->len = 0;
    while (*p && *p != '"') {
        if (*p != '\\') {
            tk_buf_putc(out, *p++);
            continue;
        }
        p++;
        char c = *p++;
        switch (c) {
        case 'n': tk_buf_putc(out, '\n'); break;
        case 't': tk_buf_putc(out, '\t'); break;
        case 'r': tk_buf_putc(out, '\r'); break;
        case 'b': tk_buf_putc(out, '\b'); break;
        case 'f': tk_buf_putc(out, '\f'); break;
        case 'u': {
            uint32_t cp = (uint32_t)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo = (uint32_t)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            char u[4];
            tk_buf_put(out, u, tk_utf8_put(cp, u));
            break;
        }
        default: tk_buf_putc(out, c);
        }
    }
    tk_buf_put(out, "", 0);
    return p;
}

typedef struct {
    size_t total, exact, roundtrip, stream_ok;
} case_stats;

/* Checks every {"text": ..., "ids": [...]} line of a jsonl file. */
static case_stats check_jsonl(const moge_tokenizer *t, const char *path) {
    case_stats cs = {0};
    char *data = slurp(path, NULL);
    CHECKF(data != NULL, "cannot read %s", path);
    if (!data) return cs;
    tk_buf text = {0};
    for (char *line = data; *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char *tp = strstr(line, "\"text\":\"");
        char *ip = strstr(line, "\"ids\":[");
        if (tp && ip) {
            json_string(tp + 8, &text);
            int32_t want[4096];
            size_t nw = 0;
            for (char *q = ip + 7; *q && *q != ']' && nw < 4096;) {
                want[nw++] = (int32_t)strtol(q, &q, 10);
                if (*q == ',') q++;
            }
            size_t n;
            int32_t *got = encode(t, text.p, text.len, false, &n);
            cs.total++;
            bool same = n == nw && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
            cs.exact += same;
            if (!same && cs.total - cs.exact <= 3) {
                printf("  %s: mismatch on %.60s\n   want:", path, text.p);
                for (size_t i = 0; i < nw && i < 24; i++) printf(" %d", want[i]);
                printf("\n   got: ");
                for (size_t i = 0; i < n && i < 24; i++) printf(" %d", got[i]);
                printf("\n");
            }
            size_t dl;
            char *back = decode(t, got, n, &dl);
            cs.roundtrip += dl == text.len && memcmp(back, text.p, dl) == 0;
            cs.stream_ok += stream_matches(t, got, n);
            free(back);
            free(got);
        }
        if (!end) break;
        line = end + 1;
    }
    tk_buf_free(&text);
    free(data);
    return cs;
}

/* Writes json to a fresh temporary tokenizer.json and loads it; returns status, err filled. */
static moge_status load_json(const char *json, moge_tokenizer **out, char *err, size_t err_size) {
    char dir[] = "/tmp/moge_tok_XXXXXX";
    *out = NULL;
    if (!mkdtemp(dir)) return MOGE_ERR_IO;
    char path[64];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return MOGE_ERR_IO;
    fputs(json, f);
    fclose(f);
    moge_status st = moge_tokenizer_load(path, out, err, err_size);
    remove(path);
    rmdir(dir);
    return st;
}

static moge_tokenizer *tiny(const char *json) {
    char err[512] = "";
    moge_tokenizer *t = NULL;
    moge_status st = load_json(json, &t, err, sizeof err);
    CHECKF(st == MOGE_OK, "tiny tokenizer: %s: %s", moge_status_str(st), err);
    return t;
}

/* Encodes text and compares with the expected ids (terminated by -1). */
static bool enc_is(const moge_tokenizer *t, const char *text, const int32_t *want) {
    if (!t) return false;
    size_t n, nw = 0;
    while (want[nw] >= 0) nw++;
    int32_t *got = encode(t, text, strlen(text), false, &n);
    bool same = n == nw && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
    if (!same) {
        printf("  \"%s\": got", text);
        for (size_t i = 0; i < n; i++) printf(" %d", got[i]);
        printf("\n");
    }
    free(got);
    return same;
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define NO_IDS ((const int32_t[]){-1})

static bool dec_is(const moge_tokenizer *t, const int32_t *ids, size_t n, const char *want) {
    if (!t) return false;
    size_t len;
    char *s = decode(t, ids, n, &len);
    bool ok = len == strlen(want) && memcmp(s, want, len) == 0;
    if (!ok) printf("  decoded \"%s\", want \"%s\"\n", s, want);
    free(s);
    return ok && stream_matches(t, ids, n);
}

/* ---- reference vectors -------------------------------------------------------------------- */

static void test_mistral_cases_dev(void) {
    moge_tokenizer *t = load(MISTRAL);
    if (!t) return;
    case_stats cs = check_jsonl(t, MISTRAL "/cases-dev.jsonl");
    printf("  mistral cases-dev: %zu/%zu exact, %zu decode back to the text, %zu streams match\n", cs.exact,
           cs.total, cs.roundtrip, cs.stream_ok);
    CHECK(cs.total == 176);
    CHECK(cs.exact == cs.total);
    CHECK(cs.stream_ok == cs.total);
    /* Only "<s> </s> [INST] ..." decodes differently (the reference also adds spaces there). */
    CHECK(cs.roundtrip == cs.total - 1);
    moge_tokenizer_free(t);
}

static void test_qwen3_cases_dev(void) {
    moge_tokenizer *t = load(QWEN3);
    if (!t) return;
    case_stats cs = check_jsonl(t, QWEN3 "/cases-dev.jsonl");
    printf("  qwen3 cases-dev: %zu/%zu exact, %zu decode back to the text, %zu streams match\n", cs.exact, cs.total,
           cs.roundtrip, cs.stream_ok);
    CHECK(cs.total == 176);
    CHECK(cs.exact == cs.total);
    CHECK(cs.stream_ok == cs.total);
    CHECK(cs.roundtrip == cs.total - 1); /* the decomposed "é" comes back NFC-composed */
    moge_tokenizer_free(t);
}

static void test_qwen3_llamacpp_vectors(void) {
    moge_tokenizer *t = load(QWEN3);
    size_t inp_len;
    char *inp = slurp(QWEN3 "/llamacpp-vectors.inp", &inp_len);
    char *out = slurp(QWEN3 "/llamacpp-vectors.out", NULL);
    CHECK(inp && out);
    if (!t || !inp || !out) goto done;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t total = 0, exact = 0;
    char *p = inp, *o = out;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        char *oe = strchr(o, '\n');
        if (!oe) break;
        *oe = '\0';
        int32_t want[1024];
        size_t nw = 0;
        for (char *q = o; nw < 1024;) {
            char *qe;
            long v = strtol(q, &qe, 10);
            if (qe == q) break;
            want[nw++] = (int32_t)v;
            q = qe;
        }
        size_t n;
        int32_t *got = encode(t, p, (size_t)(e - p), false, &n);
        total++;
        bool same = n == nw && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
        exact += same;
        if (!same) printf("  mismatch on llama.cpp vector %zu: %.*s\n", total, (int)(e - p > 60 ? 60 : e - p), p);
        CHECK(stream_matches(t, got, n));
        free(got);
        p = e + strlen(sep);
        o = oe + 1;
    }
    printf("  qwen3 llama.cpp vectors: %zu/%zu exact\n", exact, total);
    CHECK(total == 46);
    CHECK(exact == total);
done:
    free(inp);
    free(out);
    moge_tokenizer_free(t);
}

static void test_tok512_vectors(void) {
    moge_tokenizer *t = load(TOK512);
    char *data = slurp("tests/fixtures/tok512-vectors.tsv", NULL);
    CHECK(data != NULL);
    if (!t || !data) goto done;
    size_t total = 0, exact = 0;
    for (char *line = data; *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char *tab = strrchr(line, '\t');
        if (tab) {
            *tab = '\0';
            int32_t want[512];
            size_t nw = 0;
            for (char *q = tab + 1; nw < 512;) {
                char *qe;
                long v = strtol(q, &qe, 10);
                if (qe == q) break;
                want[nw++] = (int32_t)v;
                q = qe;
            }
            size_t n;
            int32_t *got = encode(t, line, strlen(line), true, &n);
            total++;
            bool same = n == nw && memcmp(got, want, n * sizeof *got) == 0;
            exact += same;
            if (!same) printf("  tok512 mismatch on \"%s\"\n", line);
            /* Decoding with BOS keeps "<s>" (special tokens are not skipped). */
            size_t dl;
            char *back = decode(t, got + 1, n - 1, &dl);
            CHECKF(strcmp(back, line) == 0, "decode(encode(\"%s\")) = \"%s\"", line, back);
            free(back);
            free(got);
        }
        if (!end) break;
        line = end + 1;
    }
    printf("  tok512 vectors: %zu/%zu exact\n", exact, total);
    CHECK(total == 5);
    CHECK(exact == total);
    CHECK(moge_tokenizer_n_vocab(t) == 512);
    CHECK(moge_tokenizer_bos(t) == 1 && moge_tokenizer_eos(t) == 2);
done:
    free(data);
    moge_tokenizer_free(t);
}

/* Prints at most max bytes of s with C escapes for what is not printable ASCII or UTF-8. */
static void print_escaped(const char *s, size_t n, size_t max) {
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') printf("\\n");
        else if (c == '\r') printf("\\r");
        else if (c == '\t') printf("\\t");
        else if (c == '\\' || c == '"') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02X", c);
        else putchar(c);
    }
    if (n > max) printf("...(%zu bytes)", n);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    printf("   %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 32; i++) printf(" %d", ids[i]);
    if (n > 32) printf(" ...");
    printf("\n");
}

/* tests/fixtures/tokenizers/hard-cases/NAME.jsonl (made by tools/tok_make_cases.mjs with the
 * reference): lines {"text": ..., "add_special": bool, "ids": [...]}; every case exact. */
static void test_hard_cases(void) {
    static const struct {
        const char *name, *tokenizer;
        size_t n_cases;
    } sets[] = {{"qwen3", QWEN3, 130}, {"mistral", MISTRAL, 130}, {"stories260K", TOK512, 130}};
    for (size_t s = 0; s < sizeof sets / sizeof *sets; s++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/tokenizers/hard-cases/%s.jsonl", sets[s].name);
        moge_tokenizer *t = load(sets[s].tokenizer);
        char *data = slurp(path, NULL);
        CHECKF(data != NULL, "cannot read %s", path);
        if (!t || !data) {
            free(data);
            moge_tokenizer_free(t);
            continue;
        }
        size_t total = 0, exact = 0, streams = 0, malformed = 0;
        tk_buf text = {0};
        size_t want_cap = 1024;
        int32_t *want = malloc(want_cap * sizeof *want);
        for (char *line = data; *line;) {
            char *end = strchr(line, '\n');
            if (end) *end = '\0';
            char *tp = strstr(line, "{\"text\":\"");
            const char *after = tp ? json_string(tp + 9, &text) : NULL;
            char *sp = after ? strstr(after, "\"add_special\":") : NULL;
            char *ip = sp ? strstr(sp, "\"ids\":[") : NULL;
            if (!ip) {
                if (*line) malformed++;
            } else {
                bool special = strncmp(sp + 14, "true", 4) == 0;
                size_t nw = 0;
                for (char *q = ip + 7; *q && *q != ']';) {
                    if (nw == want_cap) {
                        want_cap *= 2;
                        want = realloc(want, want_cap * sizeof *want);
                    }
                    want[nw++] = (int32_t)strtol(q, &q, 10);
                    if (*q == ',') q++;
                }
                size_t n;
                int32_t *got = encode(t, text.p, text.len, special, &n);
                total++;
                bool same = n == nw && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
                exact += same;
                if (!same && total - exact <= 5) {
                    printf("  %s: mismatch (add_special %s) on \"", sets[s].name, special ? "true" : "false");
                    print_escaped(text.p, text.len, 100);
                    printf("\"\n");
                    size_t d = 0;
                    while (d < n && d < nw && got[d] == want[d]) d++;
                    printf("   first difference at id %zu\n", d);
                    print_ids("want", want, nw);
                    print_ids("got ", got, n);
                }
                streams += stream_matches(t, got, n);
                free(got);
            }
            if (!end) break;
            line = end + 1;
        }
        printf("  %s hard cases: %zu/%zu exact, %zu streams match\n", sets[s].name, exact, total, streams);
        CHECKF(malformed == 0, "%s: %zu lines not understood", path, malformed);
        CHECKF(total == sets[s].n_cases, "%s: %zu cases, want %zu", path, total, sets[s].n_cases);
        CHECK(exact == total);
        CHECK(streams == total);
        free(want);
        tk_buf_free(&text);
        free(data);
        moge_tokenizer_free(t);
    }
}

/* decode(encode(valid.txt)) == valid.txt, and the streamed decode agrees. */
static void roundtrip_valid(const char *path, const char *name) {
    moge_tokenizer *t = load(path);
    size_t len;
    char *text = slurp(VALID_TXT, &len);
    CHECK(text != NULL);
    if (!t || !text) goto done;
    double t0 = clock_now();
    size_t n;
    int32_t *ids = encode(t, text, len, false, &n);
    double t1 = clock_now();
    size_t dl;
    char *back = decode(t, ids, n, &dl);
    double t2 = clock_now();
    printf("  %s: %zu bytes -> %zu tokens; encode %.1f MB/s, decode %.1f MB/s\n", name, len, n,
           (double)len / 1e6 / (t1 - t0), (double)len / 1e6 / (t2 - t1));
    CHECK(n > len / 8);
    CHECK(dl == len && memcmp(back, text, len) == 0);
    CHECK(stream_matches(t, ids, n));
    free(back);
    free(ids);
done:
    free(text);
    moge_tokenizer_free(t);
}

static void test_roundtrip_tinystories_mistral(void) { roundtrip_valid(MISTRAL, "mistral"); }
static void test_roundtrip_tinystories_qwen3(void) { roundtrip_valid(QWEN3, "qwen3"); }
static void test_roundtrip_tinystories_tok512(void) { roundtrip_valid(TOK512, "tok512"); }

static void test_qwen3_load_speed(void) {
    double t0 = clock_now();
    moge_tokenizer *t = load(QWEN3);
    double dt = clock_now() - t0;
    printf("  qwen3 tokenizer.json (11 MB) loads in %.3f s\n", dt);
    CHECK(dt < (SLOW_BUILD ? 6.0 : 1.0));
    CHECK(moge_tokenizer_n_vocab(t) == 151669);
    moge_tokenizer_free(t);
}

/* ---- API behaviour ------------------------------------------------------------------------ */

static void test_vocab_queries(void) {
    moge_tokenizer *m = load(MISTRAL), *q = load(QWEN3);
    if (!m || !q) goto done;
    CHECK(moge_tokenizer_n_vocab(m) == 32000);
    CHECK(moge_tokenizer_bos(m) == 1 && moge_tokenizer_eos(m) == 2);
    CHECK(strcmp(moge_tokenizer_piece(m, 1), "<s>") == 0);
    CHECK(strcmp(moge_tokenizer_piece(m, 28705), "\xE2\x96\x81") == 0);
    CHECK(moge_tokenizer_piece(m, 32000) == NULL && moge_tokenizer_piece(m, -1) == NULL);
    CHECK(moge_tokenizer_bos(q) == -1); /* Qwen3's config has bos_token null */
    CHECK(moge_tokenizer_eos(q) == 151645);
    CHECK(strcmp(moge_tokenizer_piece(q, 151643), "<|endoftext|>") == 0);
    CHECK(moge_tokenizer_token_id(q, "<|im_start|>", 12) == 151644);
    CHECK(moge_tokenizer_is_special(q, 151644) && !moge_tokenizer_is_special(q, 220));
done:
    moge_tokenizer_free(m);
    moge_tokenizer_free(q);
}

static void test_add_special_only_when_asked(void) {
    moge_tokenizer *m = load(MISTRAL), *q = load(QWEN3);
    if (!m || !q) goto done;
    size_t a, b;
    int32_t *plain = encode(m, "Hello world", 11, false, &a);
    int32_t *spec = encode(m, "Hello world", 11, true, &b);
    CHECK(b == a + 1 && spec[0] == 1 && memcmp(spec + 1, plain, a * sizeof *plain) == 0);
    CHECK(plain[0] != 1);
    free(plain);
    free(spec);
    /* Qwen3's post-processor (ByteLevel) adds nothing. */
    plain = encode(q, "Hello world", 11, false, &a);
    spec = encode(q, "Hello world", 11, true, &b);
    CHECK(a == b && memcmp(plain, spec, a * sizeof *plain) == 0);
    free(plain);
    free(spec);
done:
    moge_tokenizer_free(m);
    moge_tokenizer_free(q);
}

static void test_buffer_too_small(void) {
    moge_tokenizer *t = load(MISTRAL);
    if (!t) return;
    int32_t ids[3];
    size_t n = 0;
    CHECK(moge_tokenize(t, "Once upon a time there was", 26, false, ids, 3, &n) == MOGE_ERR_BUFFER);
    CHECK(n > 3);
    int32_t big[64];
    size_t n2;
    CHECK(moge_tokenize(t, "Once upon a time there was", 26, false, big, 64, &n2) == MOGE_OK && n2 == n);
    char small[4];
    size_t len = 0;
    CHECK(moge_detokenize(t, big, n2, small, sizeof small, &len) == MOGE_ERR_BUFFER);
    CHECK(len == 26);
    char out[27];
    CHECK(moge_detokenize(t, big, n2, out, sizeof out, &len) == MOGE_OK && strcmp(out, "Once upon a time there was") == 0);
    int32_t bad = 32000;
    CHECK(moge_detokenize(t, &bad, 1, out, sizeof out, &len) == MOGE_ERR_ARG);
    CHECK(moge_tokenize(NULL, "a", 1, false, big, 64, &n2) == MOGE_ERR_ARG);
    /* A stream whose output did not fit keeps it for the next call. */
    moge_detok_stream *s;
    CHECK(moge_detok_stream_new(t, &s) == MOGE_OK);
    CHECK(moge_detok_stream_push(s, big[0], small, 1, &len) == MOGE_ERR_BUFFER && len == 4); /* "Once" */
    CHECK(moge_detok_stream_push(s, big[1], out, sizeof out, &len) == MOGE_OK && strcmp(out, "Once upon") == 0);
    moge_detok_stream_free(s);
    moge_tokenizer_free(t);
}

static void test_invalid_utf8_input(void) {
    moge_tokenizer *m = load(MISTRAL), *q = load(QWEN3);
    if (!m || !q) goto done;
    /* Each maximal invalid subpart becomes one U+FFFD, as Python's errors="replace" does. */
    static const char *bad[] = {("a\xff" "b"), "\xe4\xb8", "x\xe4\xb8y\xf0\x9f\x98", "\xc0\xaf!", "\xed\xa0\x80z"};
    static const char *good[] = {("a\xEF\xBF\xBD" "b"), "\xEF\xBF\xBD", "x\xEF\xBF\xBDy\xEF\xBF\xBD",
                                 "\xEF\xBF\xBD\xEF\xBF\xBD!", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz"};
    for (int k = 0; k < 2; k++) {
        const moge_tokenizer *t = k ? q : m;
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            size_t a, b;
            int32_t *x = encode(t, bad[i], strlen(bad[i]), false, &a);
            int32_t *y = encode(t, good[i], strlen(good[i]), false, &b);
            CHECKF(a == b && a > 0 && memcmp(x, y, a * sizeof *x) == 0, "invalid UTF-8 case %zu (%s)", i,
                   k ? "qwen3" : "mistral");
            free(x);
            free(y);
        }
    }
done:
    moge_tokenizer_free(m);
    moge_tokenizer_free(q);
}

static void test_stream_never_splits_utf8(void) {
    moge_tokenizer *q = load(QWEN3), *m = load(MISTRAL);
    if (!q || !m) goto done;
    const char *text = "h\xC3\xA9llo \xF0\x9F\x98\x80\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 w\xC3\xB6rld \xE4\xB8\xAD\xE6\x96\x87!";
    for (int k = 0; k < 2; k++) {
        const moge_tokenizer *t = k ? m : q;
        size_t n;
        int32_t *ids = encode(t, text, strlen(text), false, &n);
        CHECK(n > 5);
        CHECK(stream_matches(t, ids, n));
        size_t len;
        char *back = decode(t, ids, n, &len);
        CHECK(strcmp(back, text) == 0);
        free(back);
        free(ids);
    }
    /* Qwen3: the four bytes of U+1F600 pushed as four byte-level tokens. */
    int32_t b[4];
    const unsigned char emoji[4] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 4; i++) {
        const char *u = tk_byte_to_unicode(emoji[i]);
        b[i] = moge_tokenizer_token_id(q, u, strlen(u));
        CHECK(b[i] >= 0);
    }
    moge_detok_stream *s;
    CHECK(moge_detok_stream_new(q, &s) == MOGE_OK);
    char out[64];
    size_t len;
    for (int i = 0; i < 3; i++) CHECK(moge_detok_stream_push(s, b[i], out, sizeof out, &len) == MOGE_OK && len == 0);
    CHECK(moge_detok_stream_push(s, b[3], out, sizeof out, &len) == MOGE_OK && strcmp(out, "\xF0\x9F\x98\x80") == 0);
    /* An incomplete character at the end becomes U+FFFD on flush, as the reference decodes it. */
    CHECK(moge_detok_stream_push(s, b[0], out, sizeof out, &len) == MOGE_OK && len == 0);
    CHECK(moge_detok_stream_push(s, b[1], out, sizeof out, &len) == MOGE_OK && len == 0);
    CHECK(moge_detok_stream_flush(s, out, sizeof out, &len) == MOGE_OK && strcmp(out, "\xEF\xBF\xBD") == 0);
    moge_detok_stream_free(s);
    CHECK(dec_is(q, b, 2, "\xEF\xBF\xBD"));
    CHECK(dec_is(q, IDS(b[0], b[1], b[2], b[3]), 4, "\xF0\x9F\x98\x80"));
    /* Mistral ByteFallback: an invalid run gives one U+FFFD per byte token. */
    CHECK(dec_is(m, IDS(3 + 0xE4, 3 + 0xB8, 264), 3, "\xEF\xBF\xBD\xEF\xBF\xBD a"));
    CHECK(dec_is(m, IDS(3 + 0xE4, 3 + 0xB8, 3 + 0xAD, 264), 4, "\xE4\xB8\xAD a"));
done:
    moge_tokenizer_free(q);
    moge_tokenizer_free(m);
}

/* ---- malformed files ---------------------------------------------------------------------- */

static void expect_load_error(const char *json, moge_status want, const char *needle) {
    char err[512] = "";
    moge_tokenizer *t = NULL;
    moge_status st = load_json(json, &t, err, sizeof err);
    CHECKF(st == want && t == NULL, "got %s (%s), want %s", moge_status_str(st), err, moge_status_str(want));
    CHECKF(strstr(err, needle) != NULL, "error \"%s\" does not mention \"%s\"", err, needle);
    CHECKF(strstr(err, "tokenizer.json") != NULL, "error \"%s\" does not name the file", err);
    moge_tokenizer_free(t);
}

#define VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}"

static void test_malformed_files(void) {
    expect_load_error("{\"version\": \"1.0\"}", MOGE_ERR_FORMAT, "missing \"model\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b\", 12]}}", MOGE_ERR_FORMAT,
                      "model.merges[1]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b c\"]}}", MOGE_ERR_FORMAT,
                      "model.merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [[\"a\", \"x\"]]}}", MOGE_ERR_FORMAT,
                      "\"x\" is not in model.vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      MOGE_ERR_FORMAT, "merged token \"ab\"");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", MOGE_ERR_FORMAT,
                      "model.vocab[\"a\"]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", MOGE_ERR_FORMAT, "model.vocab");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", MOGE_ERR_UNSUPPORTED, "Unigram");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"normalizer\": {\"type\": \"Fancy\"}}",
                      MOGE_ERR_UNSUPPORTED, "normalizer.type");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
                      "\"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                      "\"behavior\": \"Isolated\"}]}}",
                      MOGE_ERR_FORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
                      "\"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}}",
                      MOGE_ERR_FORMAT, "behavior");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"decoder\": {\"type\": \"Nope\"}}",
                      MOGE_ERR_UNSUPPORTED, "decoder.type");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"added_tokens\": [{\"id\": 5}]}",
                      MOGE_ERR_FORMAT, "added_tokens[0].content");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"post_processor\": {\"type\": "
                      "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {}}}",
                      MOGE_ERR_FORMAT, "post_processor.single[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b\"]", MOGE_ERR_FORMAT,
                      "invalid JSON");
    expect_load_error("[1, 2]", MOGE_ERR_FORMAT, "JSON object");
    char err[256] = "";
    moge_tokenizer *t = (moge_tokenizer *)1;
    CHECK(moge_tokenizer_load("tests/fixtures/tokenizers/no-such-dir", &t, err, sizeof err) == MOGE_ERR_IO);
    CHECK(t == NULL && strstr(err, "no-such-dir") != NULL);
    CHECK(moge_tokenizer_load("tests/fixtures/tokenizers", &t, err, sizeof err) == MOGE_ERR_IO);
    CHECK(strstr(err, "tokenizers/tokenizer.json") != NULL);
}

/* ---- hostile files (issue 18) -------------------------------------------------------------- */

#define HOSTILE_MODEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}"
#define TEMPLATE_IDS(ids) HOSTILE_MODEL ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": " \
    "[{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"ids\": " ids "}}}"

static void test_hostile_files(void) {
    /* Defect 1: a raw 0xF0 byte in a Replace normalizer's content, then a Split on ".": the match
     * ran past the normalized text. Invalid UTF-8 in any string is refused at load, naming it. */
    expect_load_error("{" HOSTILE_MODEL ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, "
                      "\"content\": \"\xf0\"}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \".\"}, "
                      "\"behavior\": \"Isolated\"}}",
                      MOGE_ERR_FORMAT, "normalizer.content: invalid UTF-8");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xf0\": 1}, \"merges\": []}}", MOGE_ERR_FORMAT,
                      "model.vocab: invalid UTF-8 in a key");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc3\xa9\": 1}, \"merges\": [\"a \xe4\xb8\"]}}",
                      MOGE_ERR_FORMAT, "model.merges[0]: invalid UTF-8");
    expect_load_error("{" HOSTILE_MODEL ", \"added_tokens\": [{\"id\": 3, \"content\": \"x\xff\"}]}", MOGE_ERR_FORMAT,
                      "added_tokens[0].content: invalid UTF-8");
    /* and no regex match may end past its subject, whatever bytes it is given */
    char msg[128];
    tk_regex *re = tk_regex_new(".", 1, true, msg, sizeof msg);
    CHECK(re != NULL);
    if (re) {
        char *buf = malloc(8);
        memcpy(buf, "\xf0.\xf0.....", 8);
        tk_matcher *m = NULL;
        for (size_t n = 1; n <= 8; n++) {
            size_t a = 0, b = 0;
            int rc = tk_regex_next(re, &m, buf, n, 0, &a, &b);
            CHECKF(rc != 1 || (a <= b && b <= n), "match [%zu, %zu) past a subject of %zu bytes", a, b, n);
        }
        tk_matcher_free(m);
        free(buf);
        tk_regex_free(re);
    }
    /* Defect 3: numbers out of range are refused before any cast (UBSan: float-cast-overflow). */
    expect_load_error("{" HOSTILE_MODEL ", \"added_tokens\": [{\"id\": 1e10, \"content\": \"<x>\"}]}", MOGE_ERR_FORMAT,
                      "added_tokens[0].id");
    expect_load_error("{" TEMPLATE_IDS("[1e10]") "}", MOGE_ERR_FORMAT, "special_tokens[\"<s>\"].ids: id 10000000000");
    expect_load_error("{" HOSTILE_MODEL ", \"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": 1e300, "
                      "\"stop\": 0}}", MOGE_ERR_FORMAT, "start and stop");
    expect_load_error("{" HOSTILE_MODEL ", \"post_processor\": {\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 1e10], "
                      "\"sep\": [\"[SEP]\", 1]}}", MOGE_ERR_FORMAT, "post_processor.cls: id 10000000000");
    /* Defect 4: special ids that are negative or outside the vocabulary are refused at load. */
    expect_load_error("{" TEMPLATE_IDS("[-1]") "}", MOGE_ERR_FORMAT, "special_tokens[\"<s>\"].ids: id -1");
    expect_load_error("{" TEMPLATE_IDS("[3]") "}", MOGE_ERR_FORMAT, "special token id 3 is outside the vocabulary (3 ids");
    expect_load_error("{" HOSTILE_MODEL ", \"post_processor\": {\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 0], "
                      "\"sep\": [\"[SEP]\", -2]}}", MOGE_ERR_FORMAT, "post_processor.sep: id -2");
    expect_load_error("{" HOSTILE_MODEL ", \"post_processor\": {\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 0], "
                      "\"sep\": [\"[SEP]\", 70000]}}", MOGE_ERR_FORMAT, "special token id 70000 is outside the vocabulary");
    moge_tokenizer *t = tiny("{" TEMPLATE_IDS("[2]") "}");
    if (t) {
        CHECK(enc_is(t, "ab", IDS(0, 1)));
        moge_tokenizer_free(t);
    }
    /* Defect 3: a word that encodes to no id (no unk token) must not add an offset to a NULL id
     * list (UBSan: pointer-overflow), through the word cache and the streaming plan alike. */
    t = tiny("{" HOSTILE_MODEL "}");
    if (t) {
        CHECK(enc_is(t, "xyz", NO_IDS));
        CHECK(enc_is(t, "xyz xyz", NO_IDS));
        moge_tokenizer_free(t);
    }
    t = tiny("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc4\xa0\": 1}, \"merges\": []}, \"pre_tokenizer\": "
             "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}}");
    if (t) {
        CHECK(enc_is(t, "xyz", NO_IDS));
        CHECK(enc_is(t, "xyz xyz a", IDS(1, 1, 0)));
        moge_tokenizer_free(t);
    }
    /* Defect 5: a FIFO named tokenizer.json is refused without blocking. */
    char dir[] = "/tmp/moge_fifo_XXXXXX", path[64], err[256] = "";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(mkfifo(path, 0600) == 0);
    t = NULL;
    alarm(30); /* a regression blocks in open(): die rather than hang the suite */
    moge_status st = moge_tokenizer_load(dir, &t, err, sizeof err);
    alarm(0);
    CHECKF(st == MOGE_ERR_IO && t == NULL && strstr(err, path) && strstr(err, "not a regular file"), "FIFO: %s (%s)",
           moge_status_str(st), err);
    moge_tokenizer_free(t);
    remove(path);
    rmdir(dir);
}

/* ---- pipeline components on tiny tokenizers ----------------------------------------------- */

static void test_merges_string_and_pair_forms(void) {
    moge_tokenizer *t = tiny("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, "
                             "\"abc\": 4, \"c c\": 5, \"c \": 6, \" \": 7}, \"merges\": [\"a b\", [\"ab\", \"c\"], "
                             "[\"c\", \" \"], [\"c \", \"c\"]]}}");
    CHECK(enc_is(t, "abc", IDS(4)));
    CHECK(enc_is(t, "cab", IDS(2, 3)));
    CHECK(enc_is(t, "c c", IDS(5))); /* pair merges may contain spaces */
    CHECK(enc_is(t, "", NO_IDS));
    CHECK(dec_is(t, IDS(4, 2), 2, "abc c")); /* no decoder: tokens joined with spaces */
    moge_tokenizer_free(t);
}

static void test_bpe_unknown_and_fallback(void) {
    /* fuse_unk fuses consecutive unknown characters; byte_fallback uses <0xXX> tokens first. */
    moge_tokenizer *t = tiny("{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, "
                             "\"vocab\": {\"<unk>\": 0, \"a\": 1}, \"merges\": []}}");
    CHECK(enc_is(t, "axyza", IDS(1, 0, 1)));
    moge_tokenizer_free(t);
    t = tiny("{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": false, "
             "\"vocab\": {\"<unk>\": 0, \"a\": 1}, \"merges\": []}}");
    CHECK(enc_is(t, "axya", IDS(1, 0, 0, 1)));
    moge_tokenizer_free(t);
    t = tiny("{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, "
             "\"vocab\": {\"<unk>\": 0, \"a\": 1, \"<0x78>\": 2, \"<0xC3>\": 3, \"<0xA9>\": 4}, \"merges\": []}}");
    CHECK(enc_is(t, "ax\xC3\xA9z", IDS(1, 2, 3, 4, 0)));
    moge_tokenizer_free(t);
    /* ignore_merges: a word in the vocabulary is taken whole. */
    const char *im = "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\": {\"a\": 0, \"b\": 1, "
                     "\"c\": 2, \"bc\": 3, \"abc\": 4, \"ab\": 5}, \"merges\": [\"b c\", \"a b\"]}}";
    char json[512];
    snprintf(json, sizeof json, im, "true");
    t = tiny(json);
    CHECK(enc_is(t, "abc", IDS(4)));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, im, "false");
    t = tiny(json);
    CHECK(enc_is(t, "abc", IDS(0, 3)));
    moge_tokenizer_free(t);
}

#define CHARS "\"a\": 0, \"b\": 1, \" \": 2, \"t\": 3, \"o\": 4, \"k\": 5, \"x\": 6"

static void test_added_token_flags(void) {
    moge_tokenizer *t = tiny(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {" CHARS "}, \"merges\": []},"
        " \"normalizer\": {\"type\": \"Lowercase\"},"
        " \"added_tokens\": ["
        "  {\"id\": 10, \"content\": \"<l>\", \"lstrip\": true, \"rstrip\": false, \"single_word\": false, \"normalized\": false, \"special\": true},"
        "  {\"id\": 11, \"content\": \"<r>\", \"lstrip\": false, \"rstrip\": true, \"single_word\": false, \"normalized\": false, \"special\": true},"
        "  {\"id\": 12, \"content\": \"tok\", \"lstrip\": false, \"rstrip\": false, \"single_word\": true, \"normalized\": false, \"special\": false},"
        "  {\"id\": 13, \"content\": \"AB\", \"lstrip\": false, \"rstrip\": false, \"single_word\": false, \"normalized\": true, \"special\": false},"
        "  {\"id\": 14, \"content\": \"XO\", \"lstrip\": false, \"rstrip\": false, \"single_word\": false, \"normalized\": false, \"special\": false},"
        "  {\"id\": 15, \"content\": \"<l><r>\", \"lstrip\": false, \"rstrip\": false, \"single_word\": false, \"normalized\": false, \"special\": true}"
        " ]}");
    CHECK(enc_is(t, "a <l> b", IDS(0, 10, 2, 1)));     /* lstrip eats the space on its left */
    CHECK(enc_is(t, "a  <r>  b", IDS(0, 2, 2, 11, 1))); /* rstrip eats the spaces on its right */
    CHECK(enc_is(t, "tok atok tok", IDS(12, 2, 0, 3, 4, 5, 2, 12))); /* single_word */
    CHECK(enc_is(t, "tokx", IDS(3, 4, 5, 6)));
    CHECK(enc_is(t, "xAB", IDS(6, 13)));  /* normalized: matched after lowercasing */
    CHECK(enc_is(t, "xab", IDS(6, 13)));
    CHECK(enc_is(t, "XO", IDS(14)));      /* not normalized: matched in the raw text only */
    CHECK(enc_is(t, "xo", IDS(6, 4)));
    CHECK(enc_is(t, "a<l><r>b", IDS(0, 15, 1))); /* leftmost-longest */
    CHECK(moge_tokenizer_n_vocab(t) == 16);
    CHECK(dec_is(t, IDS(0, 10, 13), 3, "a <l> AB"));
    moge_tokenizer_free(t);
}

#define SPLIT_TOK(pre)                                                                                        \
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \" \": 2, \"a \": 3, \"a b\": 4, "     \
    "\"  \": 5, \" b\": 6}, \"merges\": [[\"a\", \" \"], [\"a \", \"b\"], [\" \", \" \"], [\" \", \"b\"]]}, " \
    "\"pre_tokenizer\": " pre "}"

static void test_split_behaviors(void) {
    struct {
        const char *json, *text;
        const int32_t *want;
    } cases[] = {
        {SPLIT_TOK("null"), "a b", IDS(4)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Removed\"}"), "a b", IDS(0, 1)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}"), "a b", IDS(0, 2, 1)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\"}"), "a b", IDS(3, 1)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithNext\"}"), "a b", IDS(0, 6)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Isolated\"}"), "a  b", IDS(0, 2, 2, 1)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Contiguous\"}"), "a  b", IDS(0, 5, 1)},
        {SPLIT_TOK("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a|b\"}, \"behavior\": \"Removed\", \"invert\": true}"), "a b", IDS(0, 1)},
        {SPLIT_TOK("{\"type\": \"WhitespaceSplit\"}"), "a  b", IDS(0, 1)},
        {SPLIT_TOK("{\"type\": \"Whitespace\"}"), "a b", IDS(0, 1)},
        {SPLIT_TOK("{\"type\": \"Punctuation\"}"), "a b", IDS(4)},
        {SPLIT_TOK("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \"b\"}, "
                   "\"behavior\": \"Isolated\"}, {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": "
                   "\"MergedWithPrevious\"}]}"),
         "a b", IDS(3, 1)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        moge_tokenizer *t = tiny(cases[i].json);
        CHECKF(enc_is(t, cases[i].text, cases[i].want), "split case %zu", i);
        moge_tokenizer_free(t);
    }
}

static void test_digits_bytelevel_metaspace(void) {
    const char *digits = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"1\": 0, \"2\": 1, \"12\": 2, \"x\": 3, \"x1\": 4}, "
                         "\"merges\": [\"1 2\", \"x 1\"]}, \"pre_tokenizer\": {\"type\": \"Digits\", \"individual_digits\": %s}}";
    char json[512];
    snprintf(json, sizeof json, digits, "true");
    moge_tokenizer *t = tiny(json);
    CHECK(enc_is(t, "x12", IDS(3, 0, 1)));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, digits, "false");
    t = tiny(json);
    CHECK(enc_is(t, "x12", IDS(3, 2)));
    moge_tokenizer_free(t);

    /* ByteLevel: "Ġ" is the space byte; the GPT-2 regex splits letters from digits. */
    const char *bl = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"\xC4\xA0\": 2, \"ab\": 3, \"1\": 4, "
                     "\"a1\": 5, \"\xC4\xA0" "ab\": 6, \"\xC4\xA0" "a\": 7}, \"merges\": [\"a b\", \"a 1\", \"\xC4\xA0 a\", "
                     "\"\xC4\xA0" "a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": %s, "
                     "\"use_regex\": %s}, \"decoder\": {\"type\": \"ByteLevel\"}}";
    snprintf(json, sizeof json, bl, "false", "true");
    t = tiny(json);
    CHECK(enc_is(t, "a1", IDS(0, 4)));
    CHECK(enc_is(t, "ab ab", IDS(3, 2, 3))); /* "a b" (rank 0) wins over "Ġ a" (rank 2) */
    CHECK(enc_is(t, "ab a", IDS(3, 7)));
    CHECK(dec_is(t, IDS(3, 6, 2), 3, "ab ab "));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, bl, "false", "false");
    t = tiny(json);
    CHECK(enc_is(t, "a1", IDS(5)));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, bl, "true", "true");
    t = tiny(json);
    CHECK(enc_is(t, "ab ab", IDS(2, 3, 2, 3)));
    CHECK(enc_is(t, " a", IDS(7)));
    moge_tokenizer_free(t);

    /* Metaspace: spaces become "▁", split before each one; prepend_scheme first/always/never. */
    const char *ms = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xE2\x96\x81\": 0, \"a\": 1, \"b\": 2, "
                     "\"\xE2\x96\x81" "a\": 3, \"\xE2\x96\x81" "b\": 4}, \"merges\": [\"\xE2\x96\x81 a\", \"\xE2\x96\x81 b\"]}, "
                     "\"added_tokens\": [{\"id\": 5, \"content\": \"<s>\", \"special\": true, \"normalized\": false}], "
                     "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", "
                     "\"prepend_scheme\": \"%s\", \"split\": true}, \"decoder\": {\"type\": \"Metaspace\", "
                     "\"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"%s\", \"split\": true}}";
    snprintf(json, sizeof json, ms, "first", "first");
    t = tiny(json);
    CHECK(enc_is(t, "a b", IDS(3, 4)));
    CHECK(enc_is(t, "a<s>b", IDS(3, 5, 2)));
    CHECK(enc_is(t, "<s>b", IDS(5, 2)));
    CHECK(dec_is(t, IDS(3, 4), 2, "a b"));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, ms, "always", "always");
    t = tiny(json);
    CHECK(enc_is(t, "a<s>b", IDS(3, 5, 4)));
    moge_tokenizer_free(t);
    snprintf(json, sizeof json, ms, "never", "never");
    t = tiny(json);
    CHECK(enc_is(t, "a b", IDS(1, 4)));
    CHECK(dec_is(t, IDS(3, 4), 2, " a b"));
    moge_tokenizer_free(t);
}

/* ---- fast paths against the plain ones --------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* A random text of up to max_frags fragments drawn from frags. */
static void random_text(tk_buf *b, const char *const *frags, size_t n_frags, size_t max_frags) {
    b->len = 0;
    tk_buf_put(b, "", 0);
    size_t k = rng() % (max_frags + 1);
    for (size_t i = 0; i < k; i++) {
        const char *f = frags[rng() % n_frags];
        tk_buf_put(b, f, strlen(f));
    }
}

static bool same_spans(const tk_regex *a, const tk_regex *b, const char *s, size_t n) {
    tk_spans x = {0}, y = {0};
    int ra = tk_regex_find_all(a, s, n, &x), rb = tk_regex_find_all(b, s, n, &y);
    bool same = ra == 0 && rb == 0 && x.n == y.n && (x.n == 0 || memcmp(x.v, y.v, x.n * sizeof *x.v) == 0);
    if (!same && n < 200) {
        printf("  spans differ on \"");
        for (size_t i = 0; i < n; i++) printf((unsigned char)s[i] < 0x20 ? "\\x%02x" : "%c", (unsigned char)s[i]);
        printf("\" (%zu vs %zu spans)\n", x.n, y.n);
    }
    tk_spans_free(&x);
    tk_spans_free(&y);
    return same;
}

/* The hand-written matcher of the Qwen2/3 and Llama 3 patterns finds exactly PCRE2's matches. */
static void test_fast_regex_matches_pcre2(void) {
    static const char *const patterns[] = {
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
        "\\s+(?!\\S)|\\s+",
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    static const char *const frags[] = {
        "a", "Z", "s", "S", "t", "T", "e", "E", "l", "L", "r", "v", "m", "d", "x", "'", "'", "0", "9", "123", " ",
        "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x7f", "\x01", ",", ".", "!", "\"", "_", "-",
        "\xC3\xA9",         /* é */
        "e\xCC\x81",        /* e + combining acute */
        "\xC5\xBF",         /* ſ, which (?i) matches with s */
        "\xE2\x84\xAA",     /* Kelvin sign */
        "\xC2\xA0",         /* no-break space */
        "\xC2\x85",         /* NEL */
        "\xE3\x80\x80",     /* ideographic space */
        "\xE2\x80\xA8",     /* line separator */
        "\xC2\xB2",         /* superscript two (\p{N}) */
        "\xD9\xA3",         /* Arabic-indic three */
        "\xE2\x80\x9C",     /* left double quotation mark */
        "\xE4\xB8\xAD",     /* a CJK letter */
        "\xF0\x9F\x98\x80", /* an emoji */
    };
    size_t len = 0;
    char *valid = slurp(VALID_TXT, &len);
    CHECK(valid != NULL);
    tk_buf text = {0};
    for (size_t p = 0; p < sizeof patterns / sizeof *patterns; p++) {
        char msg[200];
        tk_regex *fast = tk_regex_new(patterns[p], strlen(patterns[p]), false, msg, sizeof msg);
        tk_regex *slow = tk_regex_new(patterns[p], strlen(patterns[p]), false, msg, sizeof msg);
        CHECK(fast && slow);
        if (!fast || !slow) continue;
        CHECK(tk_regex_set_fast(slow, false));
        CHECK(!tk_regex_set_fast(slow, true));
        if (valid) CHECK(same_spans(fast, slow, valid, len));
        size_t bad = 0;
        for (int i = 0; i < 30000 && bad < 5; i++) {
            random_text(&text, frags, sizeof frags / sizeof *frags, 12);
            if (!same_spans(fast, slow, text.p, text.len)) bad++;
        }
        CHECK(bad == 0);
        tk_regex_free(fast);
        tk_regex_free(slow);
    }
    tk_buf_free(&text);
    free(valid);
    /* Qwen3's tokenizer.json spells the pattern exactly so: the hand-written matcher is used. */
    moge_tokenizer *q = load(QWEN3);
    CHECK(q && q->plan.ok && q->plan.re && q->plan.byte_map && tk_regex_set_fast((tk_regex *)q->plan.re, true));
    moge_tokenizer_free(q);
}

/* The Unicode forms normalize only the non-ASCII runs; the result equals utf8proc on the whole. */
static void test_unicode_forms_by_runs(void) {
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    static const int opts[] = {UTF8PROC_COMPOSE, UTF8PROC_DECOMPOSE, UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                               UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
    static const char *const frags[] = {
        "a", "e", "A", "o", "n", " ", ".", "\n", "s",
        "\xCC\x81",         /* combining acute */
        "\xCC\xA7",         /* combining cedilla */
        "\xCC\xA3",         /* combining dot below */
        "\xCD\x84",         /* combining Greek dialytika tonos (decomposes) */
        "\xC3\xA9",         /* é */
        "\xE2\x84\xAB",     /* Angstrom sign */
        "\xEF\xAC\x81",     /* ﬁ */
        "\xEF\xBC\xA1",     /* fullwidth A */
        "\xE2\x91\xA0",     /* circled one */
        "\xE1\x84\x80",     /* Hangul choseong kiyeok */
        "\xE1\x85\xA1",     /* Hangul jungseong a */
        "\xE1\x86\xA8",     /* Hangul jongseong kiyeok */
        "\xEA\xB0\x80",     /* 가 */
        "\xE0\xA4\xA8",     /* Devanagari na */
        "\xE0\xA4\xBC",     /* Devanagari nukta */
        "\xE0\xA5\x9B",     /* Devanagari za (composition exclusion) */
        "\xE2\x80\x9C",     /* left double quotation mark */
    };
    tk_buf text = {0}, got = {0};
    for (size_t f = 0; f < 4; f++) {
        char json[64], err[256];
        snprintf(json, sizeof json, "{\"type\": \"%s\"}", forms[f]);
        cJSON *j = cJSON_Parse(json);
        tk_normalizer *nz = NULL;
        CHECK(j && tk_normalizer_parse(j, "test", &nz, err, sizeof err) == MOGE_OK);
        cJSON_Delete(j);
        if (!nz) continue;
        CHECK(tk_normalizer_ascii_identity(nz));
        size_t bad = 0;
        for (int i = 0; i < 20000 && bad < 5; i++) {
            random_text(&text, frags, sizeof frags / sizeof *frags, 10);
            CHECK(tk_normalize(nz, text.p, text.len, &got) == 0);
            utf8proc_uint8_t *want = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text.p, (utf8proc_ssize_t)text.len, &want,
                                              UTF8PROC_STABLE | opts[f]);
            if (r < 0 || (size_t)r != got.len || memcmp(want, got.p, got.len) != 0) {
                if (bad++ == 0) printf("  %s differs on a %zu-byte text\n", forms[f], text.len);
            }
            free(want);
        }
        CHECK(bad == 0);
        tk_normalizer_free(nz);
    }
    tk_buf_free(&text);
    tk_buf_free(&got);
}

/* The one-pass pre-tokenizer (tk_pretok_plan) with the word cache gives the same ids as the
 * step-by-step pipeline, which two no-op Splits in front force. */
static void test_streaming_pretokenizer_matches_steps(void) {
    /* Every GPT-2 alphabet character alone, and a few merges across spaces, letters, newlines. */
    tk_buf vocab = {0};
    int id = 0;
    char item[64];
    for (int b = 0; b < 256; b++) {
        const char *u = tk_byte_to_unicode((uint8_t)b);
        snprintf(item, sizeof item, "%s\"%s%s\": %d", b ? ", " : "", u[0] == '"' || u[0] == '\\' ? "\\" : "", u, id++);
        tk_buf_put(&vocab, item, strlen(item));
    }
    static const char *const merged[][2] = {{"\xC4\xA0", "a"}, {"a", "b"}, {"\xC4\xA0" "a", "b"}, {"\xC4\x8A", "\xC4\x8A"},
                                            {"1", "2"}, {"h", "e"}, {"\xC4\xA0", "he"}, {"\xC4\xA0", "\xC4\xA0"}};
    tk_buf merges = {0};
    for (size_t i = 0; i < sizeof merged / sizeof *merged; i++) {
        snprintf(item, sizeof item, ", \"%s%s\": %d", merged[i][0], merged[i][1], id++);
        tk_buf_put(&vocab, item, strlen(item));
        snprintf(item, sizeof item, "%s\"%s %s\"", i ? ", " : "", merged[i][0], merged[i][1]);
        tk_buf_put(&merges, item, strlen(item));
    }
    static const char *const noop = "{\"type\": \"Split\", \"pattern\": {\"String\": \"\\u0001\\u0002\\u0001\"}, "
                                    "\"behavior\": \"Isolated\"}, ";
    static const char *const split =
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
        "\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
        "\"behavior\": \"Isolated\"}, ";
    static const char *const variants[][2] = {
        {"", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"},
        {"", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}"},
        {"", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": false}"},
        {"split", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}"},
        {"split", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": false}"},
    };
    static const char *const texts[] = {
        "ab ab ab he he  he\n\nab", " ab", "ab", "  ab\t12 123 he's\r\n ab", ("\xC3\xA9t\xC3\xA9 ab \xE2\x80\x9C" "ab\xE2\x80\x9D"),
        "he he he he he he he he he he he he he he he he", "", " ", "\n", "ab<x>ab",
    };
    size_t cap = 1 << 16;
    char *json = malloc(cap);
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        moge_tokenizer *t[2] = {NULL, NULL};
        for (int slow = 0; slow < 2; slow++) {
            snprintf(json, cap,
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {%s}, \"merges\": [%s]}, "
                     "\"added_tokens\": [{\"id\": %d, \"content\": \"<x>\", \"special\": true, \"normalized\": true}], "
                     "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [%s%s%s%s]}}",
                     vocab.p, merges.p, id, slow ? noop : "", slow ? noop : "", variants[v][0][0] ? split : "",
                     variants[v][1]);
            t[slow] = tiny(json);
        }
        CHECKF(t[0] && t[1] && t[0]->plan.ok && !t[1]->plan.ok, "variant %zu", v);
        for (size_t i = 0; t[0] && t[1] && i < sizeof texts / sizeof *texts; i++) {
            size_t na, nb;
            int32_t *a = encode(t[0], texts[i], strlen(texts[i]), false, &na);
            int32_t *b = encode(t[1], texts[i], strlen(texts[i]), false, &nb);
            bool same = na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
            CHECKF(same, "variant %zu, text %zu: %zu vs %zu ids", v, i, na, nb);
            free(a);
            free(b);
        }
        moge_tokenizer_free(t[0]);
        moge_tokenizer_free(t[1]);
    }
    free(json);
    tk_buf_free(&vocab);
    tk_buf_free(&merges);
}

/* Loads the tokenizer.json text json twice: as it is (model.vocab and model.merges read by the
 * scanner of json_scan.c) and with the "model" key spelled with an escape, which the scanner
 * leaves to cJSON; the two must agree on every piece and on the ids of text. */
static bool scan_matches_cjson(const char *json, size_t len, const char *text, size_t text_len) {
    const char *k = strstr(json, "\"model\"");
    if (!k) return false;
    tk_buf alt = {0};
    tk_buf_put(&alt, json, (size_t)(k - json));
    tk_buf_put(&alt, "\"\\u006dodel\"", 12);
    tk_buf_put(&alt, k + 7, len - (size_t)(k + 7 - json));
    moge_tokenizer *t[2] = {NULL, NULL};
    char err[512] = "";
    moge_status st0 = load_json(json, &t[0], err, sizeof err);
    CHECKF(st0 == MOGE_OK, "%s", err);
    moge_status st1 = load_json(alt.p, &t[1], err, sizeof err);
    CHECKF(st1 == MOGE_OK, "%s", err);
    tk_buf_free(&alt);
    bool same = t[0] && t[1] && moge_tokenizer_n_vocab(t[0]) == moge_tokenizer_n_vocab(t[1]) &&
                t[0]->bpe.n_vocab == t[1]->bpe.n_vocab;
    for (int32_t i = 0; same && i < moge_tokenizer_n_vocab(t[0]); i++) {
        const tk_str *a = &t[0]->piece[i], *b = &t[1]->piece[i];
        same = (a->s == NULL) == (b->s == NULL) && a->len == b->len && (!a->s || memcmp(a->s, b->s, a->len) == 0);
        if (!same) printf("  piece %d differs\n", i);
    }
    if (same) {
        size_t na, nb;
        int32_t *a = encode(t[0], text, text_len, false, &na);
        int32_t *b = encode(t[1], text, text_len, false, &nb);
        same = na == nb && memcmp(a, b, na * sizeof *a) == 0;
        free(a);
        free(b);
    }
    moge_tokenizer_free(t[0]);
    moge_tokenizer_free(t[1]);
    return same;
}

static void test_vocab_scanner_matches_cjson(void) {
    /* Escapes of every kind in tokens and merges, both merge forms. */
    const char *tiny_json =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\\\"\": 1, \"\\\\\": 2, \"\\/\": 3, \"\\u00e9\": 4, "
        "\"\\ud83d\\ude00\": 5, \"a\\\"\": 6, \"\\t\\n\\r\\b\\f\": 7, \"\\u00e9\\u00e9\": 8, \"\\t\": 9, \"\\n\": 10, "
        "\"\\r\": 11, \"\\b\": 12, \"\\f\": 13, \"\\t\\n\": 14, \"\\r\\b\": 15, \"\\t\\n\\r\\b\": 16},"
        " \"merges\": [\"a \\\"\", [\"\\u00e9\", \"\\u00E9\"], \"\\t \\n\", [\"\\r\", \"\\b\"], "
        "[\"\\t\\n\", \"\\r\\b\"], \"\\t\\n\\r\\b \\f\"]}, \"pre_tokenizer\": null}";
    const char *text = "a\"\\/\xC3\xA9\xC3\xA9\xF0\x9F\x98\x80\t\n\r\b\fa\"";
    CHECK(scan_matches_cjson(tiny_json, strlen(tiny_json), text, strlen(text)));
    static const char *const files[] = {MISTRAL "/tokenizer.json", QWEN3 "/tokenizer.json", TOK512};
    size_t vlen = 0;
    char *valid = slurp(VALID_TXT, &vlen);
    CHECK(valid != NULL);
    for (size_t i = 0; valid && i < sizeof files / sizeof *files; i++) {
        size_t len;
        char *json = slurp(files[i], &len);
        CHECK(json != NULL);
        if (json) CHECKF(scan_matches_cjson(json, len, valid, vlen > 50000 ? 50000 : vlen), "%s", files[i]);
        free(json);
    }
    free(valid);
}

/* The word cache never answers for a word that ignore_merges would take whole: "abc" is in the
 * vocabulary but its merges give "a" "bc"; inside the long first segment (cut into pieces, one
 * of them "abc") it is merged, after the added token it is one token. */
static void test_word_cache_keeps_ignore_merges(void) {
    const char *json = "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"vocab\": {\"a\": 0, \"b\": 1, "
                       "\"c\": 2, \"bc\": 3, \"ab\": 4, \"abc\": 5, \" \": 6}, \"merges\": [\"b c\", \"a b\"]}, "
                       "\"added_tokens\": [{\"id\": 7, \"content\": \"<x>\", \"special\": true, \"normalized\": false}]}";
    moge_tokenizer *t = tiny(json);
    tk_buf text = {0};
    for (int i = 0; i < 100; i++) tk_buf_put(&text, "abc ", 4);
    tk_buf_put(&text, "<x>abc", 6);
    size_t n;
    int32_t *ids = t ? encode(t, text.p, text.len, false, &n) : NULL;
    bool ok = ids && n == 302;
    for (size_t i = 0; ok && i < 300; i++) ok = ids[i] == (int32_t[]){0, 3, 6}[i % 3];
    CHECK(ok && ids[300] == 7 && ids[301] == 5);
    CHECK(enc_is(t, "abc", IDS(5)));
    free(ids);
    tk_buf_free(&text);
    moge_tokenizer_free(t);
}

static void test_normalizers(void) {
    const char *tpl = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"vocab\": {\"?\": 0, \"f\": 1, \"i\": 2, "
                      "\"a\": 3, \" \": 4, \"_\": 5, \"e\": 6, \"\xCC\x81\": 7, \"\xC3\xA9\": 8}, \"merges\": []}, "
                      "\"normalizer\": %s}";
    struct {
        const char *norm, *text;
        const int32_t *want;
    } cases[] = {
        {"{\"type\": \"NFKC\"}", "\xEF\xAC\x81", IDS(1, 2)},                    /* ﬁ -> fi */
        {"{\"type\": \"NFC\"}", "e\xCC\x81", IDS(8)},                            /* e + combining acute -> é */
        {"{\"type\": \"NFD\"}", "\xC3\xA9", IDS(6, 7)},
        {"{\"type\": \"NFKD\"}", "\xEF\xAC\x81\xC3\xA9", IDS(1, 2, 6, 7)},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, {\"type\": \"StripAccents\"}]}", "\xC3\xA9", IDS(6)},
        {"{\"type\": \"Lowercase\"}", "FIA", IDS(1, 2, 3)},
        {"{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}", "  a \t", IDS(3)},
        {"{\"type\": \"Strip\", \"strip_left\": false, \"strip_right\": true}", " a ", IDS(4, 3)},
        {"{\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"_\"}", "a   a", IDS(3, 5, 3)},
        {"{\"type\": \"Replace\", \"pattern\": {\"String\": \"aa\"}, \"content\": \"f\"}", "aaa", IDS(1, 3)},
        {"{\"type\": \"Prepend\", \"prepend\": \"_\"}", "a", IDS(5, 3)},
        {"{\"type\": \"Prepend\", \"prepend\": \"_\"}", "", NO_IDS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json, tpl, cases[i].norm);
        moge_tokenizer *t = tiny(json);
        CHECKF(enc_is(t, cases[i].text, cases[i].want), "normalizer case %zu", i);
        moge_tokenizer_free(t);
    }
}

static void test_decoders(void) {
    const char *tpl = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"_a\": 0, \"b_\": 1, \"<0x41>\": 2, \"xx\": 3, "
                      "\"x\": 4}, \"merges\": []}, \"decoder\": %s}";
    struct {
        const char *dec;
        const int32_t *ids;
        size_t n;
        const char *want;
    } cases[] = {
        {"{\"type\": \"Replace\", \"pattern\": {\"String\": \"_\"}, \"content\": \" \"}", IDS(0, 1), 2, " ab "},
        {"{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"_\"}, \"content\": "
         "\" \"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 1}]}",
         IDS(0, 1, 0), 3, "aba"}, /* without Fuse, Strip applies to every token */
        {"{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \"_\", "
         "\"start\": 1, \"stop\": 2}]}",
         IDS(0, 1, 1), 3, "ab_b"},
        {"{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": "
         "\"xxx\"}, \"content\": \"Y\"}]}",
         IDS(4, 3, 4, 3, 3), 5, "YYxx"}, /* the pattern spans tokens after Fuse */
        {"{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}", IDS(2, 4, 2), 3,
         "AxA"},
        {"{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"always\", \"split\": true}", IDS(0, 0, 1),
         3, "a ab "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json, tpl, cases[i].dec);
        moge_tokenizer *t = tiny(json);
        CHECKF(dec_is(t, cases[i].ids, cases[i].n, cases[i].want), "decoder case %zu", i);
        moge_tokenizer_free(t);
    }
}

/* ---- chat templates ----------------------------------------------------------------------- */

static void test_chat_templates(void) {
    moge_tokenizer *q = load(QWEN3), *m = load(MISTRAL);
    if (!q || !m) goto done;
    CHECK(moge_tokenizer_chat_family(q) == MOGE_CHAT_CHATML);
    CHECK(moge_tokenizer_chat_template(q) != NULL);
    CHECK(moge_tokenizer_chat_family(m) == MOGE_CHAT_NONE);
    CHECK(moge_chat_detect("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>"
                           "\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}") == MOGE_CHAT_LLAMA3);
    CHECK(moge_chat_detect("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}") ==
          MOGE_CHAT_MISTRAL);
    CHECK(moge_chat_detect("{% for m in messages %}[unused9]用户：{{ m.content }}[unused10]{% endfor %}") ==
          MOGE_CHAT_PANGU);
    CHECK(moge_chat_detect("{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}") == MOGE_CHAT_UNKNOWN);
    CHECK(moge_chat_detect(NULL) == MOGE_CHAT_NONE);
    CHECK(strcmp(moge_chat_family_name(MOGE_CHAT_CHATML), "chatml") == 0);

    moge_chat_message conv[] = {{"system", "Be brief."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Bye"}};
    char *out = NULL, err[256];
    CHECK(moge_chat_render(MOGE_CHAT_CHATML, conv, 4, true, NULL, NULL, &out, err, sizeof err) == MOGE_OK);
    CHECK(out && strcmp(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                             "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                             "<|im_start|>assistant\n") == 0);
    if (out) {
        size_t n;
        int32_t *ids = encode(q, out, strlen(out), false, &n);
        CHECK(n > 10 && ids[0] == 151644 && ids[n - 3] == 151644); /* <|im_start|> matched as one token */
        free(ids);
    }
    free(out);
    CHECK(moge_chat_render(MOGE_CHAT_LLAMA3, conv + 1, 1, true, "<|begin_of_text|>", NULL, &out, err, sizeof err) ==
          MOGE_OK);
    CHECK(out && strcmp(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n") == 0);
    free(out);
    CHECK(moge_chat_render(MOGE_CHAT_MISTRAL, conv, 4, true, "<s>", "</s>", &out, err, sizeof err) == MOGE_OK);
    CHECK(out && strcmp(out, "<s>[INST] Be brief.\n\nHi! [/INST]Hello.</s>[INST] Bye [/INST]") == 0);
    free(out);
    CHECK(moge_chat_render(MOGE_CHAT_MISTRAL, conv + 2, 1, true, "<s>", "</s>", &out, err, sizeof err) == MOGE_ERR_ARG);
    CHECK(out == NULL && strstr(err, "alternate") != NULL);
    CHECK(moge_chat_render(MOGE_CHAT_PANGU, conv + 1, 1, true, NULL, NULL, &out, err, sizeof err) == MOGE_OK);
    CHECK(out && strcmp(out, "[unused9]系统：[unused10][unused9]用户：Hi![unused10][unused9]助手：") == 0);
    free(out);
    CHECK(moge_chat_render(MOGE_CHAT_PLAIN, conv + 1, 1, true, NULL, NULL, &out, err, sizeof err) == MOGE_OK);
    CHECK(out && strcmp(out, "user: Hi!\nassistant:") == 0);
    free(out);
    CHECK(moge_chat_render(MOGE_CHAT_UNKNOWN, conv, 4, true, NULL, NULL, &out, err, sizeof err) == MOGE_ERR_UNSUPPORTED);
    CHECK(strstr(err, "not one moge recognises") != NULL);
done:
    moge_tokenizer_free(q);
    moge_tokenizer_free(m);
}

int main(void) {
    RUN_TESTS(T(test_mistral_cases_dev), T(test_qwen3_cases_dev), T(test_qwen3_llamacpp_vectors),
              T(test_tok512_vectors), T(test_hard_cases), T(test_roundtrip_tinystories_mistral), T(test_roundtrip_tinystories_qwen3),
              T(test_roundtrip_tinystories_tok512), T(test_qwen3_load_speed), T(test_vocab_queries),
              T(test_add_special_only_when_asked), T(test_buffer_too_small), T(test_invalid_utf8_input),
              T(test_stream_never_splits_utf8), T(test_malformed_files), T(test_merges_string_and_pair_forms),
              T(test_bpe_unknown_and_fallback), T(test_added_token_flags), T(test_split_behaviors),
              T(test_digits_bytelevel_metaspace), T(test_normalizers), T(test_decoders), T(test_chat_templates),
              T(test_fast_regex_matches_pcre2), T(test_unicode_forms_by_runs),
              T(test_streaming_pretokenizer_matches_steps), T(test_vocab_scanner_matches_cjson),
              T(test_word_cache_keeps_ignore_merges), T(test_hostile_files));
}
