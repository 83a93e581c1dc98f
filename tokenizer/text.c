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

int tk_ids_append(tk_ids *a, const int32_t *v, size_t n) {
    if (n == 0) return 0;
    if (a->cap - a->n < n) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap - a->n < n) cap *= 2;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    memcpy(a->v + a->n, v, n * sizeof *v);
    a->n += n;
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

size_t tk_ascii_prefix(const char *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    return i;
}

bool tk_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i += tk_ascii_prefix(s + i, n - i);
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

static inline uint64_t rd64(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t rd32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t mum(uint64_t a, uint64_t b) {
    __extension__ unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* wyhash-style: short keys are read with (overlapping) loads that never leave s[0..n). */
uint64_t tk_hash(const char *s, size_t n) {
    const uint64_t k0 = 0xA0761D6478BD642Full, k1 = 0xE7037ED1A0B428DBull, k2 = 0x8EBC6AF09C88C6E3ull;
    uint64_t a, b, seed = k0 ^ n;
    if (n <= 16) {
        if (n >= 4) {
            size_t m = (n >> 3) << 2;
            a = (rd32(s) << 32) | rd32(s + m);
            b = (rd32(s + n - 4) << 32) | rd32(s + n - 4 - m);
        } else if (n > 0) {
            const unsigned char *u = (const unsigned char *)s;
            a = ((uint64_t)u[0] << 16) | ((uint64_t)u[n >> 1] << 8) | u[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = 0;
        for (; i + 16 < n; i += 16) seed = mum(rd64(s + i) ^ k1, rd64(s + i + 8) ^ seed);
        a = rd64(s + n - 16);
        b = rd64(s + n - 8);
    }
    return mum(k1 ^ n, mum(a ^ k1, b ^ seed) ^ k2);
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
    return k->s && k->len == n && tk_bytes_eq(k->s, s, n);
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

void tk_strmap_prefetch(const tk_strmap *m, const char *s, size_t n) {
    if (m->slots) __builtin_prefetch(&m->slots[tk_hash(s, n) & m->mask]);
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

/* ---- the word cache ----------------------------------------------------------------------- */

static int wcache_grow(tk_wcache *c) {
    size_t cap = c->slots ? (c->mask + 1) * 2 : 1024;
    tk_wslot *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    if (c->slots)
        for (size_t i = 0; i <= c->mask; i++) {
            if (!c->slots[i].h) continue;
            size_t k = c->slots[i].h & (cap - 1);
            while (s[k].h) k = (k + 1) & (cap - 1);
            s[k] = c->slots[i];
        }
    free(c->slots);
    c->slots = s;
    c->mask = cap - 1;
    return 0;
}

const int32_t *tk_wcache_get(const tk_wcache *c, const char *w, size_t n, uint64_t h, size_t *n_ids) {
    if (!c->slots) return NULL;
    h |= 1;
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        const tk_wslot *sl = &c->slots[i];
        if (!sl->h) return NULL;
        if (sl->h == h && sl->key_len == n && tk_bytes_eq(c->keys.p + sl->key, w, n)) {
            *n_ids = sl->n_ids;
            return c->vals.v + sl->ids;
        }
    }
}

int tk_wcache_put(tk_wcache *c, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t n_ids) {
    if (c->count >= TK_WCACHE_MAX_WORDS || c->keys.len + n > TK_WCACHE_MAX_BYTES ||
        (c->vals.n + n_ids) * sizeof(int32_t) > TK_WCACHE_MAX_BYTES)
        return 0; /* full: later words are encoded without the cache */
    if ((c->count + 1) * 2 > (c->slots ? c->mask + 1 : 0) && wcache_grow(c)) return -1;
    /* ids may point into vals (not here: the caller's output), so copy before growing keys. */
    size_t key = c->keys.len, at = c->vals.n;
    if (tk_buf_put(&c->keys, w, n) || tk_ids_append(&c->vals, ids, n_ids)) return -1;
    h |= 1;
    size_t i = h & c->mask;
    while (c->slots[i].h) i = (i + 1) & c->mask;
    c->slots[i] = (tk_wslot){h, (uint32_t)key, (uint32_t)n, (uint32_t)at, (uint32_t)n_ids};
    c->count++;
    return 0;
}

void tk_wcache_free(tk_wcache *c) {
    free(c->slots);
    tk_buf_free(&c->keys);
    tk_ids_free(&c->vals);
    memset(c, 0, sizeof *c);
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

void tk_arena_adopt(tk_arena *dst, tk_arena *src) {
    if (!src->head) return;
    tk_arena_block *last = src->head;
    while (last->next) last = last->next;
    /* src's newest block goes behind dst's head, so dst keeps filling its current block. */
    if (dst->head) {
        last->next = dst->head->next;
        dst->head->next = src->head;
    } else {
        dst->head = src->head;
    }
    src->head = NULL;
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

