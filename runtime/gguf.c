/*
 * gguf.c — parse and validate a GGUF v2/v3 file (gguf.h). Written from the format's description
 * (ggml's gguf docs); every read is bounds-checked against the buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/fileio.h"
#include "base/filemap.h"
#include "runtime/gguf.h"

/* ---- ggml types: elements per block, bytes per block ---- */

typedef struct {
    const char *name;
    uint32_t blck, bytes;
} ggml_type_info;

static const ggml_type_info TYPES[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},     [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 40},
    [10] = {"Q2_K", 256, 84},  [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82}, [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},      [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},      [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54},  [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

const char *gguf_type_name(uint32_t t) { return t < N_TYPES && TYPES[t].name ? TYPES[t].name : "?"; }

static const char *const VTYPE_NAMES[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
const char *gguf_vtype_name(uint32_t v) { return v < GGUF_N_VTYPES ? VTYPE_NAMES[v] : "?"; }

/* bytes of a scalar value type, 0 for string/array/unknown */
static uint32_t scalar_size(uint32_t v) {
    static const uint8_t sz[GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return v < GGUF_N_VTYPES ? sz[v] : 0;
}

/* ---- a cursor over the buffer ---- */

typedef struct {
    const uint8_t *p, *end, *base;
    const char *what;
    char *err;
    size_t n;
} cursor;

static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t rd_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static size_t left(const cursor *c) { return (size_t)(c->end - c->p); }
static long long at(const cursor *c) { return (long long)(c->p - c->base); }

static moge_status truncated(cursor *c, const char *ctx) {
    return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: truncated: the file ends at byte %lld inside %s", c->what, (long long)(c->end - c->base), ctx);
}

static moge_status get_u32(cursor *c, uint32_t *v, const char *ctx) {
    if (left(c) < 4) return truncated(c, ctx);
    *v = rd_u32(c->p);
    c->p += 4;
    return MOGE_OK;
}
static moge_status get_u64(cursor *c, uint64_t *v, const char *ctx) {
    if (left(c) < 8) return truncated(c, ctx);
    *v = rd_u64(c->p);
    c->p += 8;
    return MOGE_OK;
}
static moge_status get_str(cursor *c, gguf_str *s, const char *ctx) {
    uint64_t len;
    long long pos = at(c);
    moge_status st = get_u64(c, &len, ctx);
    if (st != MOGE_OK) return st;
    if (len > left(c))
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: %s: a string of %llu bytes at byte %lld reaches past the end of the file (%lld bytes)",
                       c->what, ctx, (unsigned long long)len, pos, (long long)(c->end - c->base));
    s->s = (const char *)c->p;
    s->len = len;
    c->p += len;
    return MOGE_OK;
}

/* Skips one value of type v (arrays recursively, at most GGUF_MAX_DEPTH deep). `key` names it. */
static moge_status skip_value(cursor *c, uint32_t v, int depth, const char *key) {
    char ctx[300];
    snprintf(ctx, sizeof ctx, "the value of key \"%s\"", key);
    if (v == GGUF_STR) {
        gguf_str s;
        return get_str(c, &s, ctx);
    }
    if (v == GGUF_ARR) {
        if (depth >= GGUF_MAX_DEPTH)
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": arrays nested more than %d deep", c->what, key, GGUF_MAX_DEPTH);
        uint32_t et;
        uint64_t cnt;
        moge_status st = get_u32(c, &et, ctx);
        if (st == MOGE_OK) st = get_u64(c, &cnt, ctx);
        if (st != MOGE_OK) return st;
        if (et >= GGUF_N_VTYPES)
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": unknown array element type %u", c->what, key, et);
        uint32_t es = scalar_size(et);
        if (es) {
            if (cnt > left(c) / es)
                return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": an array of %llu %s elements reaches past the end of the file",
                               c->what, key, (unsigned long long)cnt, gguf_vtype_name(et));
            c->p += cnt * es;
            return MOGE_OK;
        }
        /* strings take 8 bytes at least, arrays 12: a count the bytes cannot hold fails before the walk */
        if (cnt > left(c) / (et == GGUF_STR ? 8 : 12))
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": an array of %llu %ss cannot fit in the %zu bytes left", c->what, key,
                           (unsigned long long)cnt, gguf_vtype_name(et), left(c));
        for (uint64_t i = 0; i < cnt; i++) {
            st = skip_value(c, et, depth + 1, key);
            if (st != MOGE_OK) return st;
        }
        return MOGE_OK;
    }
    uint32_t s = scalar_size(v);
    if (!s) return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": unknown value type %u", c->what, key, v);
    if (left(c) < s) return truncated(c, ctx);
    if (v == GGUF_BOOL && *c->p > 1) return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": a bool of value %u", c->what, key, *c->p);
    c->p += s;
    return MOGE_OK;
}

/* A printable copy of s for messages (cut, control bytes as '?'). */
static void show(char *buf, size_t cap, gguf_str s) {
    size_t k = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < k; i++) buf[i] = (unsigned char)s.s[i] < 32 ? '?' : s.s[i];
    buf[k] = 0;
}

/* ---- duplicates: sort indices by name ---- */

typedef struct { const char *s; uint64_t len; uint64_t i; } name_ref;

static int cmp_name(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    uint64_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, (size_t)m);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Index of a name that occurs twice (its second occurrence in r after sorting), or -1. */
static int64_t find_duplicate(name_ref *r, uint64_t cnt) {
    if (cnt < 2) return -1;
    qsort(r, (size_t)cnt, sizeof *r, cmp_name);
    for (uint64_t i = 1; i < cnt; i++)
        if (cmp_name(&r[i - 1], &r[i]) == 0) return (int64_t)i;
    return -1;
}

typedef struct { uint64_t begin, end, i; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* ---- the parse ---- */

#define TRY_GOTO(x) do { if ((st = (x)) != MOGE_OK) goto fail; } while (0)

static moge_status parse_kvs(gguf_file *g, cursor *c) {
    moge_status st = MOGE_OK;
    char ctx[300], key[200];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        snprintf(ctx, sizeof ctx, "the key of metadata pair %llu", (unsigned long long)i);
        if ((st = get_str(c, &kv->key, ctx)) != MOGE_OK) return st;
        show(key, sizeof key, kv->key);
        if (kv->key.len == 0) return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: metadata pair %llu has an empty key", c->what, (unsigned long long)i);
        if (memchr(kv->key.s, 0, (size_t)kv->key.len))
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: metadata key \"%s\" holds a NUL byte", c->what, key);
        snprintf(ctx, sizeof ctx, "the type of key \"%s\"", key);
        if ((st = get_u32(c, &kv->type, ctx)) != MOGE_OK) return st;
        if (kv->type >= GGUF_N_VTYPES)
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: key \"%s\": unknown value type %u", c->what, key, kv->type);
        if (kv->type == GGUF_ARR) {
            if (left(c) >= 12) {
                kv->arr_type = rd_u32(c->p);
                kv->arr_n = rd_u64(c->p + 4);
            }
            const uint8_t *start = c->p + 12;
            if ((st = skip_value(c, GGUF_ARR, 0, key)) != MOGE_OK) return st;
            kv->val = start;
            kv->val_len = (uint64_t)(c->p - start);
        } else {
            const uint8_t *start = c->p;
            if ((st = skip_value(c, kv->type, 0, key)) != MOGE_OK) return st;
            kv->val = start;
            kv->val_len = (uint64_t)(c->p - start);
        }
    }
    return st;
}

static moge_status parse_tensor(gguf_file *g, cursor *c, uint64_t i) {
    gguf_tensor *t = &g->tensors[i];
    moge_status st;
    char ctx[400];
    gguf_str name;
    snprintf(ctx, sizeof ctx, "the name of tensor %llu", (unsigned long long)i);
    if ((st = get_str(c, &name, ctx)) != MOGE_OK) return st;
    if (name.len == 0 || name.len >= sizeof t->name || memchr(name.s, 0, (size_t)name.len)) {
        char shown[80];
        show(shown, sizeof shown, name);
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %llu: its name \"%s\" (%llu bytes) is empty, longer than %zu bytes or holds a NUL",
                       c->what, (unsigned long long)i, shown, (unsigned long long)name.len, sizeof t->name - 1);
    }
    memcpy(t->name, name.s, (size_t)name.len);
    t->name[name.len] = 0;
    snprintf(ctx, sizeof ctx, "the entry of tensor %s", t->name);
    if ((st = get_u32(c, &t->n_dims, ctx)) != MOGE_OK) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s has %u dimensions (1 to %d)", c->what, t->name, t->n_dims, GGUF_MAX_DIMS);
    int64_t numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if ((st = get_u64(c, &v, ctx)) != MOGE_OK) return st;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s: dimension %u is %llu", c->what, t->name, d, (unsigned long long)v);
        if ((uint64_t)numel > (uint64_t)INT64_MAX / v)
            return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s: its dimensions' product overflows 64 bits", c->what, t->name);
        t->ne[d] = (int64_t)v;
        numel *= (int64_t)v;
    }
    t->numel = numel;
    if ((st = get_u32(c, &t->type, ctx)) != MOGE_OK) return st;
    if ((st = get_u64(c, &t->offset, ctx)) != MOGE_OK) return st;
    if (t->type >= N_TYPES || !TYPES[t->type].name)
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s has unknown ggml type %u", c->what, t->name, t->type);
    const ggml_type_info *ti = &TYPES[t->type];
    if (t->ne[0] % ti->blck)
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s: rows of %lld values are not whole %s blocks of %u", c->what, t->name,
                       (long long)t->ne[0], ti->name, ti->blck);
    uint64_t blocks = (uint64_t)numel / ti->blck;
    if (blocks > UINT64_MAX / ti->bytes)
        return set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s: its size overflows 64 bits", c->what, t->name);
    t->nbytes = blocks * ti->bytes;
    return MOGE_OK;
}

moge_status gguf_parse(gguf_file *g, const void *buf, size_t size, const char *what, char *err, size_t n) {
    memset(g, 0, sizeof *g);
    moge_status st = MOGE_OK;
    g->what = strdup(what ? what : "(buffer)");
    if (!g->what) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    g->buf = buf;
    g->size = size;
    g->alignment = 32;
    cursor c = {.p = buf, .end = (const uint8_t *)buf + size, .base = buf, .what = g->what, .err = err, .n = n};
    name_ref *refs = NULL;
    span *spans = NULL;
    if (!buf || size < 4 || memcmp(buf, "GGUF", 4) != 0) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic at its start)", g->what);
        goto fail;
    }
    c.p += 4;
    TRY_GOTO(get_u32(&c, &g->version, "the header"));
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1) st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (2 and 3 are)", g->what);
        else if (rd_u32((const uint8_t *)buf + 4) >= (1u << 16))
            st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: GGUF version %u: a big-endian file? (only little-endian versions 2 and 3)", g->what, g->version);
        else st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", g->what, g->version);
        goto fail;
    }
    TRY_GOTO(get_u64(&c, &g->n_tensors, "the header"));
    TRY_GOTO(get_u64(&c, &g->n_kv, "the header"));
    /* a pair takes 13 bytes at least (key length, type, a one-byte value), a tensor entry 33 */
    if (g->n_kv > left(&c) / 13) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: the header says %llu metadata pairs; the %zu bytes left cannot hold them", g->what,
                     (unsigned long long)g->n_kv, left(&c));
        goto fail;
    }
    if (g->n_tensors > left(&c) / 33) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: the header says %llu tensors; the %zu bytes left cannot hold them", g->what,
                     (unsigned long long)g->n_tensors, left(&c));
        goto fail;
    }
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    uint64_t most = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    refs = malloc((most ? (size_t)most : 1) * sizeof *refs);
    spans = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *spans);
    if (!g->kv || !g->tensors || !refs || !spans) {
        st = set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory for %llu metadata pairs and %llu tensors", g->what,
                     (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
        goto fail;
    }
    TRY_GOTO(parse_kvs(g, &c));
    for (uint64_t i = 0; i < g->n_kv; i++) refs[i] = (name_ref){g->kv[i].key.s, g->kv[i].key.len, i};
    int64_t dup = find_duplicate(refs, g->n_kv);
    if (dup >= 0) {
        char key[200];
        show(key, sizeof key, (gguf_str){refs[dup].s, refs[dup].len});
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: metadata key \"%s\" appears twice", g->what, key);
        goto fail;
    }
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_U32 || rd_u32(al->val) == 0 || (rd_u32(al->val) & (rd_u32(al->val) - 1)) != 0) {
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: general.alignment must be a u32 power of two (found %s%s)", g->what,
                         gguf_vtype_name(al->type), al->type == GGUF_U32 ? " not a power of two" : "");
            goto fail;
        }
        g->alignment = rd_u32(al->val);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) TRY_GOTO(parse_tensor(g, &c, i));
    for (uint64_t i = 0; i < g->n_tensors; i++) refs[i] = (name_ref){g->tensors[i].name, strlen(g->tensors[i].name), i};
    dup = find_duplicate(refs, g->n_tensors);
    if (dup >= 0) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s appears twice", g->what, g->tensors[refs[dup].i].name);
        goto fail;
    }
    uint64_t end_of_table = (uint64_t)at(&c);
    g->data_offset = (end_of_table + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > size) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: truncated: the data section would start at byte %llu, past the end of the file (%zu bytes)",
                     g->what, (unsigned long long)g->data_offset, size);
        goto fail;
    }
    uint64_t room = size - (g->data_offset < size ? g->data_offset : size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment) {
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: offset %llu is not a multiple of the alignment %u", g->what, t->name,
                         (unsigned long long)t->offset, g->alignment);
            goto fail;
        }
        if (t->offset > room || t->nbytes > room - t->offset) {
            st = set_err(err, n, MOGE_ERR_FORMAT,
                         "%s: tensor %s: its %llu bytes at offset %llu of the data section (byte %llu) reach past the end of the file (%zu bytes)",
                         g->what, t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                         (unsigned long long)(g->data_offset + t->offset), size);
            goto fail;
        }
        t->data = g->buf + g->data_offset + t->offset;
        spans[i] = (span){t->offset, t->offset + t->nbytes, i};
    }
    if (g->n_tensors > 1) {
        qsort(spans, (size_t)g->n_tensors, sizeof *spans, cmp_span);
        uint64_t far = spans[0].end, far_i = spans[0].i;
        for (uint64_t i = 1; i < g->n_tensors; i++) {
            if (spans[i].begin < far) {
                st = set_err(err, n, MOGE_ERR_FORMAT, "%s: tensors %s and %s overlap in the data section", g->what, g->tensors[far_i].name,
                             g->tensors[spans[i].i].name);
                goto fail;
            }
            if (spans[i].end > far) far = spans[i].end, far_i = spans[i].i;
        }
    }
    free(refs);
    free(spans);
    return MOGE_OK;
fail:
    free(refs);
    free(spans);
    gguf_close(g);
    return st;
}

moge_status gguf_open(gguf_file *g, const char *path, char *err, size_t n) {
    memset(g, 0, sizeof *g);
    file_map fm;
    moge_status st = file_map_open(&fm, path, 4, "a GGUF file", err, n);
    if (st != MOGE_OK) return st;
    st = gguf_parse(g, fm.data, fm.size, path, err, n);
    if (st != MOGE_OK) {
        file_map_close(&fm);
        return st;
    }
    g->map = fm.data;
    return MOGE_OK;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    file_map_close(&(file_map){g->map, g->size});
    free((void *)g->what);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

bool gguf_is_file(const char *path) {
    int fd;
    if (!path || file_open_regular(path, &fd, NULL, NULL, 0) != MOGE_OK) return false;
    char magic[4];
    bool ok = read(fd, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;
    close(fd);
    return ok;
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    size_t len = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == len && memcmp(g->kv[i].key.s, key, len) == 0) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* A scalar of type v at p as a double (integers exactly up to 2^53) and, for integers, as int64
 * when in range (*is_int). */
static bool scalar_num(uint32_t v, const uint8_t *p, double *d, int64_t *i, bool *is_int) {
    uint64_t u = 0;
    *is_int = true;
    switch (v) {
    case GGUF_U8: *i = p[0]; break;
    case GGUF_I8: *i = (int8_t)p[0]; break;
    case GGUF_U16: *i = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_I16: *i = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_U32: *i = rd_u32(p); break;
    case GGUF_I32: *i = (int32_t)rd_u32(p); break;
    case GGUF_U64:
        u = rd_u64(p);
        if (u > (uint64_t)INT64_MAX) { *is_int = false; *d = (double)u; return true; }
        *i = (int64_t)u;
        break;
    case GGUF_I64: *i = (int64_t)rd_u64(p); break;
    case GGUF_F32: {
        uint32_t b = rd_u32(p);
        float f;
        memcpy(&f, &b, 4);
        *d = f;
        *is_int = false;
        return true;
    }
    case GGUF_F64: {
        uint64_t b = rd_u64(p);
        memcpy(d, &b, 8);
        *is_int = false;
        return true;
    }
    default: return false;
    }
    *d = (double)*i;
    return true;
}

bool gguf_kv_int(const gguf_kv *kv, int64_t *out) {
    double d;
    bool is_int;
    return kv && scalar_num(kv->type, kv->val, &d, out, &is_int) && is_int;
}

bool gguf_kv_float(const gguf_kv *kv, double *out) {
    int64_t i;
    bool is_int;
    return kv && scalar_num(kv->type, kv->val, out, &i, &is_int);
}

bool gguf_kv_bool(const gguf_kv *kv, bool *out) {
    if (!kv || kv->type != GGUF_BOOL) return false;
    *out = kv->val[0] != 0;
    return true;
}

bool gguf_kv_string(const gguf_kv *kv, gguf_str *out) {
    if (!kv || kv->type != GGUF_STR) return false;
    out->len = rd_u64(kv->val);
    out->s = (const char *)kv->val + 8;
    return true;
}

void gguf_iter_init(gguf_iter *it, const gguf_kv *kv) {
    it->kv = kv;
    it->p = kv->val;
    it->i = 0;
}

bool gguf_iter_str(gguf_iter *it, gguf_str *out) {
    if (it->kv->type != GGUF_ARR || it->kv->arr_type != GGUF_STR || it->i >= it->kv->arr_n) return false;
    out->len = rd_u64(it->p); /* validated by the parse */
    out->s = (const char *)it->p + 8;
    it->p += 8 + out->len;
    it->i++;
    return true;
}

bool gguf_arr_num(const gguf_kv *kv, uint64_t i, double *out) {
    if (kv->type != GGUF_ARR || i >= kv->arr_n) return false;
    uint32_t es = scalar_size(kv->arr_type);
    if (!es || kv->arr_type == GGUF_BOOL) return false;
    int64_t iv;
    bool is_int;
    return scalar_num(kv->arr_type, kv->val + i * es, out, &iv, &is_int);
}
