/*
 * cmd_tokenize.c — `moge tokenize`: encode text to ids or decode ids to text with a Hugging Face
 * tokenizer (a model directory or a tokenizer.json).
 *
 *   moge tokenize -m PATH [-p TEXT] [--jsonl] [--add-special] [--decode]
 *
 *   -p TEXT        the text to encode (or, with --decode, the ids); without -p it is read from stdin
 *   --jsonl        stdin holds one JSON object per line, {"text": ...}; each line gets one output
 *                  line {"ids": [...]}, in order (with --decode: {"ids": [...]} -> {"text": ...})
 *   --add-special  apply the tokenizer's post-processor (e.g. BOS first); off by default
 *   --decode       ids (separated by spaces, commas or newlines) -> text
 *
 * Ids are printed on one line separated by spaces. Errors go to stderr and name the flag, file or
 * input line at fault; the exit status is 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#include "cli/cli.h"
#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "moge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: moge tokenize -m PATH [-p TEXT] [--jsonl] [--add-special] [--decode]\n"
          "  -m PATH        model directory or tokenizer.json\n"
          "  -p TEXT        text to encode (ids with --decode); read from stdin when absent\n"
          "  --jsonl        stdin lines {\"text\": ...} -> {\"ids\": [...]} (reversed with --decode)\n"
          "  --add-special  add the tokenizer's special tokens (e.g. BOS); off by default\n"
          "  --decode       decode ids to text\n",
          f);
}

static char *read_all(FILE *f, size_t *len) {
    tk_buf b = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tk_buf_put(&b, chunk, n)) {
            tk_buf_free(&b);
            return NULL;
        }
    if (!b.p && tk_buf_put(&b, "", 0)) return NULL;
    *len = b.len;
    return b.p;
}

/* ---- a minimal JSON reader for one line: finds a top-level key's value ---------------------- */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return p;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

/* Parses a JSON string at p (at the opening quote) into out (may be NULL); returns the position
 * after it, or NULL. Keeps embedded NULs, which a C-string JSON library would cut. */
static const char *json_str(const char *p, tk_buf *out) {
    if (*p != '"') return NULL;
    p++;
    if (out) out->len = 0;
    while (*p != '"') {
        if (!*p || (unsigned char)*p < 0x20) return NULL;
        char c = *p++;
        char u[4];
        size_t ul = 1;
        u[0] = c;
        if (c == '\\') {
            c = *p++;
            switch (c) {
            case '"': case '\\': case '/': u[0] = c; break;
            case 'n': u[0] = '\n'; break;
            case 't': u[0] = '\t'; break;
            case 'r': u[0] = '\r'; break;
            case 'b': u[0] = '\b'; break;
            case 'f': u[0] = '\f'; break;
            case 'u': {
                uint32_t cp, lo;
                if (hex4(p, &cp)) return NULL;
                p += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u' && !hex4(p + 2, &lo) && lo >= 0xDC00 &&
                    lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else if (cp >= 0xD800 && cp < 0xE000) {
                    cp = 0xFFFD; /* a lone surrogate, as Python's json + errors="replace" gives */
                }
                ul = tk_utf8_put(cp, u);
                break;
            }
            default: return NULL;
            }
        }
        if (out && tk_buf_put(out, u, ul)) return NULL;
    }
    if (out && tk_buf_put(out, "", 0)) return NULL;
    return p + 1;
}

static const char *json_skip(const char *p, int depth) {
    p = ws(p);
    if (depth > 64) return NULL;
    if (*p == '"') return json_str(p, NULL);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (!(p = json_str(ws(p), NULL))) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = json_skip(p, depth + 1))) return NULL;
            p = ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    const char *s = p;
    while (*p && strchr("+-0123456789.eEtruefalsn", *p)) p++;
    return p > s ? p : NULL;
}

/* Finds top-level `key` in the object on `line`; returns a pointer to its value or NULL. */
static const char *json_find(const char *line, const char *key) {
    const char *p = ws(line);
    if (*p++ != '{') return NULL;
    tk_buf k = {0};
    const char *found = NULL;
    p = ws(p);
    while (p && *p && *p != '}') {
        p = json_str(p, &k);
        if (!p) break;
        p = ws(p);
        if (*p++ != ':') break;
        p = ws(p);
        if (k.p && !strcmp(k.p, key) && strlen(key) == k.len) {
            found = p;
            break;
        }
        p = json_skip(p, 0);
        if (!p) break;
        p = ws(p);
        if (*p == ',') p = ws(p + 1);
    }
    tk_buf_free(&k);
    return found;
}

static void put_json_string(const char *s, size_t n, FILE *f) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') fputs("\\\"", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ---- encode / decode ---------------------------------------------------------------------- */

static int encode_text(const moge_tokenizer *t, const char *s, size_t n, bool special, int32_t **ids, size_t *n_ids) {
    size_t cap = n + 8;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    moge_status st = moge_tokenize(t, s, n, special, *ids, cap, n_ids);
    if (st == MOGE_ERR_BUFFER) {
        free(*ids);
        cap = *n_ids;
        *ids = malloc(cap * sizeof **ids);
        if (!*ids) return -1;
        st = moge_tokenize(t, s, n, special, *ids, cap, n_ids);
    }
    if (st) {
        fprintf(stderr, "moge tokenize: encoding failed: %s\n", moge_status_str(st));
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return 0;
}

/* Parses ids separated by spaces/commas/newlines (a surrounding [...] is allowed). */
static int parse_ids(const char *s, const char *what, const moge_tokenizer *t, int32_t **ids, size_t *n) {
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p && strchr(" \t\r\n,[]", *p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && !strchr(" \t\r\n,[]", *end))) {
            const char *e = p;
            while (*e && !strchr(" \t\r\n,[]", *e)) e++;
            fprintf(stderr, "moge tokenize: %s: '%.*s' is not a token id\n", what, (int)(e - p), p);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        if (v < 0 || v >= moge_tokenizer_n_vocab(t)) {
            fprintf(stderr, "moge tokenize: %s: token id %ld is outside the vocabulary (0..%d)\n", what, v,
                    moge_tokenizer_n_vocab(t) - 1);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        if (*n == cap) {
            int32_t *g = realloc(*ids, 2 * cap * sizeof **ids);
            if (!g) {
                free(*ids);
                *ids = NULL;
                return -1;
            }
            *ids = g;
            cap *= 2;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
    return 0;
}

static char *decode_ids(const moge_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t need = 0;
    moge_status st = moge_detokenize(t, ids, n, NULL, 0, &need);
    if (st != MOGE_OK && st != MOGE_ERR_BUFFER) {
        fprintf(stderr, "moge tokenize: decoding failed: %s\n", moge_status_str(st));
        return NULL;
    }
    char *out = malloc(need + 1);
    if (!out) return NULL;
    st = moge_detokenize(t, ids, n, out, need + 1, len);
    if (st) {
        fprintf(stderr, "moge tokenize: decoding failed: %s\n", moge_status_str(st));
        free(out);
        return NULL;
    }
    return out;
}

static void print_ids(const int32_t *ids, size_t n, FILE *f) {
    for (size_t i = 0; i < n; i++) fprintf(f, i ? " %d" : "%d", ids[i]);
}

static int run_jsonl(const moge_tokenizer *t, bool special, bool dec) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    size_t lineno = 0;
    int rc = 0;
    tk_buf text = {0};
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        const char *p = ws(line);
        if (!*p) continue; /* blank line */
        const char *v = json_find(line, dec ? "ids" : "text");
        char where[64];
        snprintf(where, sizeof where, "stdin line %zu", lineno);
        if (dec) {
            const char *e = v && *v == '[' ? strchr(v, ']') : NULL;
            if (!e) {
                fprintf(stderr, "moge tokenize: %s: expected a JSON object with an array \"ids\"\n", where);
                rc = 1;
                break;
            }
            char *arr = strndup(v, (size_t)(e - v) + 1);
            int32_t *ids = NULL;
            size_t n = 0, len = 0;
            char *s = NULL;
            if (!arr || parse_ids(arr, where, t, &ids, &n) || !(s = decode_ids(t, ids, n, &len))) rc = 1;
            else {
                fputs("{\"text\": ", stdout);
                put_json_string(s, len, stdout);
                fputs("}\n", stdout);
            }
            free(s);
            free(ids);
            free(arr);
        } else {
            if (!v || !json_str(v, &text)) {
                fprintf(stderr, "moge tokenize: %s: expected a JSON object with a string \"text\"\n", where);
                rc = 1;
                break;
            }
            int32_t *ids;
            size_t n;
            if (encode_text(t, text.p, text.len, special, &ids, &n)) rc = 1;
            else {
                fputs("{\"ids\": [", stdout);
                for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
                fputs("]}\n", stdout);
                free(ids);
            }
        }
    }
    free(line);
    tk_buf_free(&text);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    bool jsonl = false, special = false, dec = false;
    const cli_flag flags[] = {{"-m", "--model", CLI_ARG_STR, &model, 0, 0},   {"-p", "--prompt", CLI_ARG_STR, &prompt, 0, 0},
                              {NULL, "--jsonl", CLI_ARG_SWITCH, &jsonl, 0, 0},  {NULL, "--add-special", CLI_ARG_SWITCH, &special, 0, 0},
                              {NULL, "--decode", CLI_ARG_SWITCH, &dec, 0, 0}};
    const char *pos[1];
    int n_pos, rc = cli_parse_flags("tokenize", flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, pos, 0, &n_pos, usage);
    if (rc >= 0) return rc;
    if (!model) {
        fprintf(stderr, "moge tokenize: -m PATH is required (a model directory or a tokenizer.json)\n");
        usage(stderr);
        return 2;
    }
    if (jsonl && prompt) {
        fprintf(stderr, "moge tokenize: --jsonl reads stdin; it cannot be combined with -p\n");
        return 2;
    }
    if (dec && special) {
        fprintf(stderr, "moge tokenize: --add-special has no meaning with --decode\n");
        return 2;
    }
    char err[512] = "";
    moge_tokenizer *t = NULL;
    moge_status st = moge_tokenizer_load(model, &t, err, sizeof err);
    if (st) {
        fprintf(stderr, "moge tokenize: -m: %s\n", err[0] ? err : moge_status_str(st));
        return 1;
    }
    rc = 0;
    if (jsonl) {
        rc = run_jsonl(t, special, dec);
    } else {
        size_t len = 0;
        char *input = prompt ? strdup(prompt) : read_all(stdin, &len);
        if (prompt && input) len = strlen(input);
        if (!input) {
            fprintf(stderr, "moge tokenize: out of memory reading the input\n");
            rc = 1;
        } else if (dec) {
            int32_t *ids = NULL;
            size_t n = 0, tl = 0;
            char *s = NULL;
            if (parse_ids(input, prompt ? "-p" : "stdin", t, &ids, &n) || !(s = decode_ids(t, ids, n, &tl))) rc = 1;
            else {
                fwrite(s, 1, tl, stdout);
                fputc('\n', stdout);
            }
            free(s);
            free(ids);
        } else {
            int32_t *ids;
            size_t n;
            if (encode_text(t, input, len, special, &ids, &n)) rc = 1;
            else {
                print_ids(ids, n, stdout);
                fputc('\n', stdout);
                free(ids);
            }
        }
        free(input);
    }
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "moge tokenize: writing the output failed\n");
        rc = 1;
    }
    moge_tokenizer_free(t);
    return rc;
}
