/*
 * normalize.c — the "normalizer" of tokenizer.json: NFC, NFD, NFKC, NFKD (utf8proc), Lowercase,
 * Strip, StripAccents, Prepend, Replace (string or regex), ByteLevel and Sequence.
 * Contract: tk_normalizer_parse validates the JSON and reports the field at fault; tk_normalize
 * maps valid UTF-8 to valid UTF-8, exactly as the reference's normalizers transform a
 * NormalizedString's text (offsets are not tracked: moge only needs ids). The Unicode forms run
 * utf8proc only on the non-ASCII runs of a text (see unicode_form).
 */
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef enum {
    N_NFC,
    N_NFD,
    N_NFKC,
    N_NFKD,
    N_LOWERCASE,
    N_STRIP,
    N_STRIP_ACCENTS,
    N_PREPEND,
    N_REPLACE,
    N_BYTELEVEL,
    N_SEQUENCE,
} ntype;

struct tk_normalizer {
    ntype type;
    char *text; /* Prepend: the prefix; Replace: the content */
    size_t text_len;
    char *pattern; /* Replace with a String pattern */
    size_t pattern_len;
    tk_regex *re; /* Replace with a Regex pattern */
    bool left, right;
    tk_normalizer **items;
    size_t n_items;
};

void tk_normalizer_free(tk_normalizer *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_items; i++) tk_normalizer_free(n->items[i]);
    free(n->items);
    free(n->text);
    free(n->pattern);
    tk_regex_free(n->re);
    free(n);
}

static char *dup_str(const char *s, size_t *len) {
    *len = strlen(s);
    char *d = malloc(*len + 1);
    if (d) memcpy(d, s, *len + 1);
    return d;
}

static moge_status need_string(const cJSON *obj, const char *key, const char *where, char **out, size_t *len,
                               char *err, size_t err_size) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.%s: missing or not a string", where, key);
    *out = dup_str(v->valuestring, len);
    return *out ? MOGE_OK : set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
}

moge_status tk_normalizer_parse(const void *json, const char *where, tk_normalizer **out, char *err,
                                size_t err_size) {
    const cJSON *j = json;
    *out = NULL;
    if (!cJSON_IsObject(j)) return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: expected an object", where);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.type: missing or not a string", where);
    const char *t = type->valuestring;
    tk_normalizer *n = calloc(1, sizeof *n);
    if (!n) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    moge_status st = MOGE_OK;
    if (!strcmp(t, "NFC")) n->type = N_NFC;
    else if (!strcmp(t, "NFD")) n->type = N_NFD;
    else if (!strcmp(t, "NFKC")) n->type = N_NFKC;
    else if (!strcmp(t, "NFKD")) n->type = N_NFKD;
    else if (!strcmp(t, "Lowercase")) n->type = N_LOWERCASE;
    else if (!strcmp(t, "StripAccents")) n->type = N_STRIP_ACCENTS;
    else if (!strcmp(t, "ByteLevel")) n->type = N_BYTELEVEL;
    else if (!strcmp(t, "Strip")) {
        n->type = N_STRIP;
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "strip_left");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "strip_right");
        n->left = !cJSON_IsBool(l) || cJSON_IsTrue(l);
        n->right = !cJSON_IsBool(r) || cJSON_IsTrue(r);
    } else if (!strcmp(t, "Prepend")) {
        n->type = N_PREPEND;
        st = need_string(j, "prepend", where, &n->text, &n->text_len, err, err_size);
    } else if (!strcmp(t, "Replace")) {
        n->type = N_REPLACE;
        st = need_string(j, "content", where, &n->text, &n->text_len, err, err_size);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        if (st) {
        } else if (cJSON_IsString(ps)) {
            n->pattern = dup_str(ps->valuestring, &n->pattern_len);
            if (!n->pattern) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
            else if (n->pattern_len == 0)
                st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern.String: empty pattern", where);
        } else if (cJSON_IsString(pr)) {
            char msg[200];
            n->re = tk_regex_new(pr->valuestring, strlen(pr->valuestring), false, msg, sizeof msg);
            if (!n->re) st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern.Regex: %s", where, msg);
        } else {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}",
                         where);
        }
    } else if (!strcmp(t, "Sequence")) {
        n->type = N_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(items)) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.normalizers: missing or not an array", where);
        } else {
            size_t cnt = (size_t)cJSON_GetArraySize(items);
            n->items = calloc(cnt ? cnt : 1, sizeof *n->items);
            if (!n->items) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
            size_t i = 0;
            for (const cJSON *it = items->child; it && !st; it = it->next, i++) {
                char sub[256];
                snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
                st = tk_normalizer_parse(it, sub, &n->items[i], err, err_size);
                if (!st) n->n_items = i + 1;
            }
        }
    } else {
        st = set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.type: normalizer \"%.40s\" is not supported", where, t);
    }
    if (st) {
        tk_normalizer_free(n);
        return st;
    }
    *out = n;
    return MOGE_OK;
}

/* ---- normalizing -------------------------------------------------------------------------- */

static int map_chunk(const char *in, size_t n, int opts, tk_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &dst, opts);
    if (r < 0) {
        free(dst);
        /* Input is valid UTF-8, so only out-of-memory can fail here. */
        return r == UTF8PROC_ERROR_NOMEM ? -1 : tk_buf_put(out, in, n);
    }
    int rc = tk_buf_put(out, dst, (size_t)r);
    free(dst);
    return rc;
}

/* The four Unicode forms. ASCII characters are unchanged by all of them, have combining class 0
 * and are never the second character of a canonical composition, so a text may be cut before
 * any ASCII character and each part normalized alone: only the non-ASCII runs, each with the
 * ASCII character before it (which a following combining mark may compose with), go through
 * utf8proc. */
static int unicode_form(const char *in, size_t n, int opts, tk_buf *out) {
    out->len = 0;
    if (n == 0) return tk_buf_put(out, "", 0);
    if (tk_buf_reserve(out, n)) return -1;
    size_t done = 0;
    while (done < n) {
        size_t i = done + tk_ascii_prefix(in + done, n - done);
        if (i == n) break;
        size_t start = i > done ? i - 1 : i, end = i;
        while (end < n && (unsigned char)in[end] >= 0x80) end++;
        if (tk_buf_put(out, in + done, start - done) || map_chunk(in + start, end - start, opts, out)) return -1;
        done = end;
    }
    return tk_buf_put(out, in + done, n - done);
}

static int lowercase(const char *in, size_t n, tk_buf *out) {
    out->len = 0;
    if (tk_buf_reserve(out, n)) return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_char(in + i, n - i, &cp);
        if (!l) {
            cp = (unsigned char)in[i];
            l = 1;
        }
        char tmp[8];
        size_t tl;
        if (cp == 0x130) { /* the one unconditional multi-character lowercase mapping */
            memcpy(tmp, "i\xCC\x87", 3);
            tl = 3;
        } else {
            tl = tk_utf8_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), tmp);
        }
        if (tk_buf_put(out, tmp, tl)) return -1;
        i += l;
    }
    return 0;
}

static int strip(const char *in, size_t n, bool left, bool right, tk_buf *out) {
    size_t a = 0, b = n;
    while (left && a < b) {
        uint32_t cp;
        size_t l = tk_utf8_char(in + a, b - a, &cp);
        if (!l || !tk_is_whitespace(cp)) break;
        a += l;
    }
    while (right && b > a) {
        size_t s = b - 1;
        while (s > a && ((unsigned char)in[s] & 0xC0) == 0x80) s--;
        uint32_t cp;
        size_t l = tk_utf8_char(in + s, b - s, &cp);
        if (!l || !tk_is_whitespace(cp)) break;
        b = s;
    }
    out->len = 0;
    return tk_buf_put(out, in + a, b - a);
}

static int strip_accents(const char *in, size_t n, tk_buf *out) {
    out->len = 0;
    if (tk_buf_reserve(out, n)) return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_char(in + i, n - i, &cp);
        if (!l) l = 1, cp = 0;
        if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN && tk_buf_put(out, in + i, l))
            return -1;
        i += l;
    }
    return 0;
}

static int replace(const tk_normalizer *nz, const char *in, size_t n, tk_buf *out) {
    out->len = 0;
    if (tk_buf_reserve(out, n)) return -1;
    if (nz->re) {
        tk_spans sp = {0};
        int rc = tk_regex_find_all(nz->re, in, n, &sp);
        size_t at = 0;
        for (size_t i = 0; rc == 0 && i < sp.n; i++) {
            if (tk_buf_put(out, in + at, sp.v[i].start - at) || tk_buf_put(out, nz->text, nz->text_len)) rc = -1;
            at = sp.v[i].end;
        }
        if (rc == 0 && tk_buf_put(out, in + at, n - at)) rc = -1;
        tk_spans_free(&sp);
        return rc;
    }
    /* A string pattern: count the occurrences (non-overlapping, left to right), then copy once. */
    size_t pl = nz->pattern_len, count = 0;
    const char first = nz->pattern[0];
    for (const char *p = in, *end = in + n; (size_t)(end - p) >= pl;) {
        const char *q = memchr(p, first, (size_t)(end - p) - pl + 1);
        if (!q) break;
        if (pl == 1 || memcmp(q, nz->pattern, pl) == 0) {
            count++;
            p = q + pl;
        } else {
            p = q + 1;
        }
    }
    if (count == 0) return tk_buf_put(out, in, n);
    if (tk_buf_reserve(out, n - count * pl + count * nz->text_len)) return -1;
    char *o = out->p;
    size_t at = 0;
    for (size_t done = 0; done < count;) {
        const char *q = memchr(in + at, first, n - at);
        size_t i = (size_t)(q - in);
        if (pl > 1 && memcmp(q, nz->pattern, pl) != 0) {
            memcpy(o, in + at, i + 1 - at);
            o += i + 1 - at;
            at = i + 1;
            continue;
        }
        memcpy(o, in + at, i - at);
        o += i - at;
        memcpy(o, nz->text, nz->text_len);
        o += nz->text_len;
        at = i + pl;
        done++;
    }
    memcpy(o, in + at, n - at);
    o += n - at;
    out->len = (size_t)(o - out->p);
    out->p[out->len] = '\0';
    return 0;
}

static int bytelevel(const char *in, size_t n, tk_buf *out) {
    out->len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *u = tk_byte_to_unicode((uint8_t)in[i]);
        if (tk_buf_put(out, u, strlen(u))) return -1;
    }
    return tk_buf_put(out, "", 0);
}

bool tk_normalizer_ascii_identity(const tk_normalizer *nz) {
    switch (nz->type) {
    case N_NFC:
    case N_NFD:
    case N_NFKC:
    case N_NFKD:
    case N_STRIP_ACCENTS: return true;
    case N_SEQUENCE:
        for (size_t i = 0; i < nz->n_items; i++)
            if (!tk_normalizer_ascii_identity(nz->items[i])) return false;
        return true;
    default: return false;
    }
}

int tk_normalize(const tk_normalizer *nz, const char *in, size_t n, tk_buf *out) {
    switch (nz->type) {
    case N_NFC: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
    case N_NFD: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    case N_NFKC: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case N_NFKD: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case N_LOWERCASE: return lowercase(in, n, out);
    case N_STRIP: return strip(in, n, nz->left, nz->right, out);
    case N_STRIP_ACCENTS: return strip_accents(in, n, out);
    case N_PREPEND:
        out->len = 0;
        if (n == 0) return tk_buf_put(out, "", 0);
        return tk_buf_put(out, nz->text, nz->text_len) || tk_buf_put(out, in, n) ? -1 : 0;
    case N_REPLACE: return replace(nz, in, n, out);
    case N_BYTELEVEL: return bytelevel(in, n, out);
    case N_SEQUENCE: {
        tk_buf a = {0}, b = {0};
        if (nz->n_items == 0) {
            out->len = 0;
            return tk_buf_put(out, in, n);
        }
        for (size_t i = 0; i < nz->n_items; i++) {
            /* The first step reads the input itself. */
            int rc = i == 0 ? tk_normalize(nz->items[0], in, n, &b) : tk_normalize(nz->items[i], a.p, a.len, &b);
            if (rc) { /* -1 out of memory, -2 a regex too complex for the input */
                tk_buf_free(&a);
                tk_buf_free(&b);
                return rc;
            }
            tk_buf t = a;
            a = b;
            b = t;
        }
        tk_buf_free(&b);
        tk_buf_free(out);
        *out = a;
        return 0;
    }
    }
    return -1;
}
