/*
 * json_scan.c — reads model.vocab and model.merges straight from the tokenizer.json text.
 * They are nearly all of an 11 MB file (a Qwen3 vocabulary and merge list is ~600 k JSON values);
 * building cJSON nodes for them, one malloc each, took most of the load time. The scanner finds
 * the two values, reads them into flat lists, and hands cJSON the rest of the document with the
 * two values replaced by {} and [] (cJSON still validates every other byte).
 * It is strict: anything but the plain shape ({"token": id, ...}, ["a b", ...] or [["a", "b"],
 * ...], standard escapes, ids 0..2147483646 written as plain integers, keys without escapes
 * where it looks for "model", "vocab" and "merges") makes it give up, and the caller parses the
 * whole file with cJSON as before, so malformed files get the same errors either way.
 */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} cur;

static void skip_ws(cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static bool eat(cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Skips a string (c->p at its opening quote); *esc: it has a backslash. */
static bool skip_string(cur *c, bool *esc) {
    *esc = false;
    c->p++;
    for (;;) {
        while (c->p < c->end && *c->p != '"' && *c->p != '\\') c->p++;
        if (c->p >= c->end) return false;
        if (*c->p == '"') {
            c->p++;
            return true;
        }
        *esc = true;
        c->p += 2;
    }
}

/* Skips any value without validating it (cJSON validates what is not cut out). */
static bool skip_value(cur *c) {
    skip_ws(c);
    if (c->p >= c->end) return false;
    bool esc;
    if (*c->p == '"') return skip_string(c, &esc);
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->end) {
            char ch = *c->p;
            if (ch == '"') {
                if (!skip_string(c, &esc)) return false;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            else if (ch == '}' || ch == ']') {
                if (--depth == 0) {
                    c->p++;
                    return true;
                }
            }
            c->p++;
        }
        return false;
    }
    while (c->p < c->end && !strchr(",}] \t\r\n", *c->p)) c->p++;
    return true;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return -1;
    }
    return v;
}

/* Decodes the string at c->p (its opening quote) into out (replacing its contents). Refuses
 * control characters, \u0000 and unpaired surrogates (left to cJSON). */
static bool read_string(cur *c, tk_buf *out) {
    out->len = 0;
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    for (;;) {
        const char *s = c->p;
        while (c->p < c->end && *c->p != '"' && *c->p != '\\' && (unsigned char)*c->p >= 0x20) c->p++;
        if (c->p >= c->end || (unsigned char)*c->p < 0x20) return false;
        if (tk_buf_put(out, s, (size_t)(c->p - s))) return false;
        if (*c->p == '"') {
            c->p++;
            return true;
        }
        if (c->end - c->p < 2) return false;
        char e = c->p[1], ch;
        c->p += 2;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            if (c->end - c->p < 4) return false;
            int u = hex4(c->p);
            c->p += 4;
            if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
            uint32_t cp = (uint32_t)u;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') return false;
                int lo = hex4(c->p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                c->p += 6;
                cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            }
            char tmp[4];
            if (tk_buf_put(out, tmp, tk_utf8_put(cp, tmp))) return false;
            continue;
        }
        default: return false;
        }
        if (tk_buf_putc(out, ch)) return false;
    }
}

/* A string without escapes, in place: [*s, *s + *n). */
static bool plain_string(cur *c, const char **s, size_t *n) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return false;
    const char *a = c->p + 1;
    const char *q = a;
    while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q >= c->end || *q != '"') return false;
    *s = a;
    *n = (size_t)(q - a);
    c->p = q + 1;
    return true;
}

/* A string: in place when it has no escapes, else decoded into the arena. */
static bool any_string(cur *c, tk_arena *strings, tk_buf *tmp, const char **s, size_t *n) {
    cur save = *c;
    if (plain_string(c, s, n)) return true;
    *c = save;
    skip_ws(c);
    if (!read_string(c, tmp)) return false;
    *s = tk_arena_strdup(strings, tmp->p ? tmp->p : "", tmp->len);
    *n = tmp->len;
    return *s != NULL;
}

static bool read_vocab(cur *c, tk_arena *arena, tk_buf *tmp, tk_model_text *m) {
    size_t cap = 0;
    if (!eat(c, '{')) return false;
    if (eat(c, '}')) return true;
    for (;;) {
        const char *s;
        size_t n;
        cur save = *c;
        if (plain_string(c, &s, &n)) {
            s = tk_arena_strdup(arena, s, n);
        } else {
            *c = save;
            skip_ws(c);
            if (!read_string(c, tmp)) return false;
            n = tmp->len;
            s = tk_arena_strdup(arena, tmp->p ? tmp->p : "", n);
        }
        if (!s || !eat(c, ':')) return false;
        skip_ws(c);
        /* 0 or [1-9][0-9]*, at most 2147483646 */
        int64_t id = 0;
        const char *d = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && c->p - d <= 10) id = id * 10 + (*c->p++ - '0');
        if (c->p == d || (*d == '0' && c->p - d > 1) || id > 2147483646) return false;
        if (c->p < c->end && !strchr(",} \t\r\n", *c->p)) return false;
        if (m->n_vocab == cap) {
            cap = cap ? cap * 2 : 1024;
            tk_vocab_ent *v = realloc(m->vocab, cap * sizeof *v);
            if (!v) return false;
            m->vocab = v;
        }
        m->vocab[m->n_vocab++] = (tk_vocab_ent){s, (uint32_t)n, (int32_t)id};
        if (eat(c, '}')) return true;
        if (!eat(c, ',')) return false;
    }
}

static bool read_merges(cur *c, tk_buf *tmp, tk_model_text *m) {
    size_t cap = 0;
    if (!eat(c, '[')) return false;
    if (eat(c, ']')) return true;
    for (;;) {
        tk_merge_ent e = {0};
        const char *a, *b = NULL;
        size_t alen, blen = 0;
        skip_ws(c);
        if (c->p < c->end && *c->p == '[') {
            c->p++;
            if (!any_string(c, &m->strings, tmp, &a, &alen) || !eat(c, ',') ||
                !any_string(c, &m->strings, tmp, &b, &blen) || !eat(c, ']'))
                return false;
        } else if (!any_string(c, &m->strings, tmp, &a, &alen)) {
            return false;
        }
        e.a = a;
        e.alen = (uint32_t)alen;
        e.b = b;
        e.blen = (uint32_t)blen;
        if (m->n_merges == cap) {
            cap = cap ? cap * 2 : 1024;
            tk_merge_ent *v = realloc(m->merges, cap * sizeof *v);
            if (!v) return false;
            m->merges = v;
        }
        m->merges[m->n_merges++] = e;
        if (eat(c, ']')) return true;
        if (!eat(c, ',')) return false;
    }
}

/* The key of the next member of an object (c->p after its '{' or ','), and its colon. */
static bool member_key(cur *c, const char **key, size_t *klen) {
    return plain_string(c, key, klen) && eat(c, ':');
}

static bool key_is(const char *key, size_t klen, const char *name) {
    return strlen(name) == klen && memcmp(key, name, klen) == 0;
}

bool tk_model_scan(const char *text, size_t len, tk_model_text *m, tk_buf *doc) {
    memset(m, 0, sizeof *m);
    if (len >= UINT32_MAX) return false;
    cur c = {text, text + len};
    const char *key;
    size_t klen;
    /* The top level up to the first "model" (the one cJSON would return). */
    if (!eat(&c, '{')) return false;
    for (;;) {
        if (!member_key(&c, &key, &klen)) return false;
        if (key_is(key, klen, "model")) break;
        if (!skip_value(&c) || !eat(&c, ',')) return false;
    }
    /* Its members: the first "vocab" and "merges" are read, the rest skipped. */
    const char *at[2] = {NULL, NULL}, *end[2] = {NULL, NULL};
    tk_buf tmp = {0};
    bool ok = eat(&c, '{');
    while (ok && !eat(&c, '}')) {
        ok = member_key(&c, &key, &klen);
        if (!ok) break;
        skip_ws(&c);
        int k = key_is(key, klen, "vocab") ? 0 : key_is(key, klen, "merges") ? 1 : -1;
        if (k >= 0 && !at[k]) {
            at[k] = c.p;
            ok = k == 0 ? read_vocab(&c, &m->keys, &tmp, m) : read_merges(&c, &tmp, m);
            end[k] = c.p;
        } else {
            ok = skip_value(&c);
        }
        if (ok && !eat(&c, ',')) {
            ok = eat(&c, '}');
            break;
        }
    }
    tk_buf_free(&tmp);
    ok = ok && at[0] && at[1];
    /* The document without the two values. */
    int first = ok && at[0] < at[1] ? 0 : 1, second = 1 - first;
    static const char *const empty[] = {"{}", "[]"};
    doc->len = 0;
    ok = ok && !tk_buf_reserve(doc, len) && !tk_buf_put(doc, text, (size_t)(at[first] - text)) &&
         !tk_buf_put(doc, empty[first], 2) && !tk_buf_put(doc, end[first], (size_t)(at[second] - end[first])) &&
         !tk_buf_put(doc, empty[second], 2) && !tk_buf_put(doc, end[second], (size_t)(text + len - end[second]));
    if (!ok) tk_model_text_free(m);
    return ok;
}

void tk_model_text_free(tk_model_text *m) {
    free(m->vocab);
    free(m->merges);
    tk_arena_free(&m->keys);
    tk_arena_free(&m->strings);
    memset(m, 0, sizeof *m);
}

bool tk_model_text_utf8_ok(const tk_model_text *m) {
    for (size_t i = 0; i < m->n_vocab; i++)
        if (!tk_utf8_valid(m->vocab[i].s, m->vocab[i].len)) return false;
    for (size_t i = 0; i < m->n_merges; i++)
        if (!tk_utf8_valid(m->merges[i].a, m->merges[i].alen) || (m->merges[i].b && !tk_utf8_valid(m->merges[i].b, m->merges[i].blen)))
            return false;
    return true;
}
