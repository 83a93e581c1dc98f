/*
 * text.c — small building blocks of the tokenizer: growable byte and id buffers, UTF-8
 * decoding with the reference's replacement rules (U+FFFD per "maximal subpart", as Rust's
 * String::from_utf8_lossy and Python's errors="replace"), the White_Space property, a string
 * hash, a string -> id hash map, a bump arena for vocabulary strings and error formatting.
 * Contract: no I/O, no printing; allocation failures are reported as -1 / NULL.
 */
#include "tokenizer/tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (tk_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int tk_buf_putc(tk_buf *b, char c) { return tk_buf_put(b, &c, 1); }

void tk_buf_free(tk_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int tk_ids_push(tk_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

void tk_ids_free(tk_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Valid second-byte range of a sequence led by c (Unicode Table 3-7). */
static void second_range(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0;
    else if (c == 0xED) *hi = 0x9F;
    else if (c == 0xF0) *lo = 0x90;
    else if (c == 0xF4) *hi = 0x8F;
}

static size_t seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

size_t tk_utf8_char(const char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t len = seq_len(u[0]);
    if (len == 0 || len > n) return 0;
    if (len == 1) {
        if (cp) *cp = u[0];
        return 1;
    }
    unsigned char lo, hi;
    second_range(u[0], &lo, &hi);
    if (u[1] < lo || u[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((u[i] & 0xC0) != 0x80) return 0;
    if (cp) {
        uint32_t c = u[0] & (0xFF >> (len + 1));
        for (size_t i = 1; i < len; i++) c = (c << 6) | (u[i] & 0x3F);
        *cp = c;
    }
    return len;
}

size_t tk_utf8_bad_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = seq_len(u[0]);
    if (len <= 1) return 1;
    unsigned char lo, hi;
    second_range(u[0], &lo, &hi);
    if (n < 2 || u[1] < lo || u[1] > hi) return 1;
    size_t i = 2;
    while (i < len && i < n && (u[i] & 0xC0) == 0x80) i++;
    return i;
}

bool tk_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = tk_utf8_char(s + i, n - i, NULL);
        if (!l) return false;
        i += l;
    }
    return true;
}

int tk_utf8_lossy(tk_buf *out, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = (unsigned char)s[i] < 0x80 ? 1 : tk_utf8_char(s + i, n - i, NULL);
        if (l) {
            i += l;
            continue;
        }
        if (tk_buf_put(out, s + run, i - run) || tk_buf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += tk_utf8_bad_len(s + i, n - i);
        run = i;
    }
    return tk_buf_put(out, s + run, n - run);
}

size_t tk_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tk_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* ---- hashing and the string map ----------------------------------------------------------- */

uint64_t tk_hash(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

int tk_strmap_init(tk_strmap *m, const tk_str *keys, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].id = -1;
    m->mask = cap - 1;
    m->keys = keys;
    return 0;
}

static bool key_eq(const tk_str *k, const char *s, size_t n) {
    return k->s && k->len == n && memcmp(k->s, s, n) == 0;
}

int tk_strmap_put(tk_strmap *m, int32_t id) {
    const tk_str *k = &m->keys[id];
    uint64_t h = tk_hash(k->s, k->len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = h & m->mask;
    for (;;) {
        tk_strslot *sl = &m->slots[i];
        if (sl->id < 0 || (sl->tag == tag && key_eq(&m->keys[sl->id], k->s, k->len))) {
            sl->id = id;
            sl->tag = tag;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
}

int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n) {
    if (!m->slots) return -1;
    uint64_t h = tk_hash(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = h & m->mask;
    for (;;) {
        const tk_strslot *sl = &m->slots[i];
        if (sl->id < 0) return -1;
        if (sl->tag == tag && key_eq(&m->keys[sl->id], s, n)) return sl->id;
        i = (i + 1) & m->mask;
    }
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

/* ---- arena -------------------------------------------------------------------------------- */

struct tk_arena_block {
    tk_arena_block *next;
    size_t used, cap;
    char data[];
};

char *tk_arena_strdup(tk_arena *a, const char *s, size_t n) {
    tk_arena_block *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

void tk_arena_free(tk_arena *a) {
    tk_arena_block *b = a->head;
    while (b) {
        tk_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

moge_status tk_fail(char *err, size_t err_size, moge_status st, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return st;
}
