/*
 * bpe.c — the BPE model of tokenizer.json ("model": {"type": "BPE", ...}): parsing the
 * vocabulary and merges, and encoding one pre-tokenized word exactly as the reference's
 * BPE::merge_word + Word::merge_all do:
 *   - the word is split into characters, each looked up in the vocabulary (with
 *     continuing_subword_prefix / end_of_word_suffix when set); a missing character becomes its
 *     "<0xXX>" byte tokens (byte_fallback) or the unknown token (consecutive ones fused when
 *     fuse_unk), or is dropped when there is no unknown token;
 *   - merges are applied lowest rank first (ties: leftmost) with a binary heap over a linked list
 *     of symbols and a hash map (left id, right id) -> (rank, merged id): O(n log n) per word;
 *   - ignore_merges: a word that is itself in the vocabulary is emitted as that token.
 * Merges may be "a b" strings or ["a", "b"] pairs; a later duplicate pair overrides the earlier
 * one, as in the reference.
 * Speed: words are looked up in the caller's word cache first (tk_wcache; most words repeat);
 * a long word (a whole text when there is no pre-tokenizer, as for SentencePiece-style models) is
 * cut where no merge's junction can ever join the two sides (tk_bpe.bigrams, with a bitmap for
 * the common characters) and its pieces go through the cache one by one.
 */
#include "tokenizer/tokenizer.h"
#include "runtime/json_num.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- merge map ---------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

static int mergemap_init(tk_mergemap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    return 0;
}

static void mergemap_put(tk_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(k) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != k) i = (i + 1) & m->mask;
    m->slots[i] = (tk_merge){k, rank, new_id};
}

static inline bool mergemap_get(const tk_mergemap *m, int32_t a, int32_t b, uint32_t *rank,
                                int32_t *new_id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(k) & m->mask;
    for (;;) {
        const tk_merge *e = &m->slots[i];
        if (e->key == k) {
            *rank = e->rank;
            *new_id = e->new_id;
            return true;
        }
        if (e->key == UINT64_MAX) return false;
        i = (i + 1) & m->mask;
    }
}

/* ---- character-pair set ------------------------------------------------------------------- */

static void bigram_put(tk_bpe *bpe, uint64_t k) {
    size_t i = mix64(k) & bpe->bigram_mask;
    while (bpe->bigrams[i] != UINT64_MAX && bpe->bigrams[i] != k) i = (i + 1) & bpe->bigram_mask;
    bpe->bigrams[i] = k;
}

static bool bigram_has(const tk_bpe *bpe, uint64_t k) {
    size_t i = mix64(k) & bpe->bigram_mask;
    for (;;) {
        if (bpe->bigrams[i] == k) return true;
        if (bpe->bigrams[i] == UINT64_MAX) return false;
        i = (i + 1) & bpe->bigram_mask;
    }
}

/* Records the junction of a merge "a b": the last character of a and the first of b. */
static void bigram_add_junction(tk_bpe *bpe, const char *a, size_t alen, const char *b, size_t blen) {
    if (!alen || !blen) return;
    size_t i = alen - 1;
    while (i > 0 && ((unsigned char)a[i] & 0xC0) == 0x80) i--;
    uint32_t x, y;
    /* A token that is not valid UTF-8 never arises from the characters of a valid text. */
    if (tk_utf8_char(a + i, alen - i, &x) != alen - i || !tk_utf8_char(b, blen, &y)) return;
    uint64_t key = ((uint64_t)x << 32) | y;
    if (!bigram_has(bpe, key)) bigram_put(bpe, key);
}

/* A bitmap over pairs of the 255 "small" characters (ASCII and the 127 others most frequent in
 * the pair set), so that the common boundaries are checked without hashing. */
static int cmp_count_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int build_pair_bits(tk_bpe *bpe) {
    uint32_t *count = calloc(0x10000, sizeof *count);
    bpe->small = calloc(0x10000, 1);
    bpe->pair_bits = calloc(256 * 256 / 64, sizeof *bpe->pair_bits);
    uint64_t *order = NULL;
    if (!count || !bpe->small || !bpe->pair_bits) goto fail;
    size_t n_cp = 0;
    for (size_t i = 0; i <= bpe->bigram_mask; i++) {
        uint64_t k = bpe->bigrams[i];
        if (k == UINT64_MAX) continue;
        uint32_t cps[2] = {(uint32_t)(k >> 32), (uint32_t)k};
        for (int j = 0; j < 2; j++)
            if (cps[j] >= 0x80 && cps[j] < 0x10000 && count[cps[j]]++ == 0) n_cp++;
    }
    order = malloc((n_cp ? n_cp : 1) * sizeof *order);
    if (!order) goto fail;
    size_t m = 0;
    for (uint32_t cp = 0x80; cp < 0x10000; cp++)
        if (count[cp]) order[m++] = ((uint64_t)count[cp] << 32) | (0xFFFFu - cp); /* ties: lower cp */
    qsort(order, m, sizeof *order, cmp_count_desc);
    for (uint32_t c = 0; c < 0x80; c++) bpe->small[c] = (uint8_t)(c + 1);
    for (size_t i = 0; i < m && i < 127; i++) bpe->small[0xFFFFu - (uint32_t)(order[i] & 0xFFFF)] = (uint8_t)(129 + i);
    for (size_t i = 0; i <= bpe->bigram_mask; i++) {
        uint64_t k = bpe->bigrams[i];
        if (k == UINT64_MAX) continue;
        uint32_t a = (uint32_t)(k >> 32), b = (uint32_t)k;
        if (a < 0x10000 && b < 0x10000 && bpe->small[a] && bpe->small[b]) {
            size_t bit = (size_t)bpe->small[a] * 256 + bpe->small[b];
            bpe->pair_bits[bit >> 6] |= 1ull << (bit & 63);
        }
    }
    free(count);
    free(order);
    return 0;
fail:
    free(count);
    free(order);
    return -1;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static bool json_bool(const cJSON *obj, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* A JSON string or null field: NULL when absent/null/empty, "" never returned. */
static moge_status opt_string(const cJSON *obj, const char *key, const char *file, char **out,
                              tk_arena *arena, char *err, size_t err_size) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return MOGE_OK;
    if (!cJSON_IsString(v))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.%s: expected a string or null", file, key);
    if (v->valuestring[0] == '\0') return MOGE_OK;
    *out = tk_arena_strdup(arena, v->valuestring, strlen(v->valuestring));
    if (!*out) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    return MOGE_OK;
}

static moge_status parse_vocab(const cJSON *vocab, const char *file, tk_bpe *bpe, tk_arena *arena,
                               tk_model_text *pre, char *err, size_t err_size) {
    tk_vocab_ent *ents = NULL;
    size_t n = 0;
    if (pre) {
        ents = pre->vocab;
        n = pre->n_vocab;
        tk_arena_adopt(arena, &pre->keys);
    } else {
        if (!cJSON_IsObject(vocab))
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.vocab: missing or not an object", file);
        for (const cJSON *e = vocab->child; e; e = e->next) {
            int32_t id;
            if (!json_int32(e, 0, INT32_MAX - 1, &id))
                return set_err(err, err_size, MOGE_ERR_FORMAT,
                               "%s: model.vocab[\"%.60s\"]: expected a non-negative integer id", file, e->string);
            n++;
        }
        ents = malloc((n ? n : 1) * sizeof *ents);
        if (!ents) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        size_t i = 0;
        for (const cJSON *e = vocab->child; e; e = e->next, i++) {
            size_t len = strlen(e->string);
            char *str = tk_arena_strdup(arena, e->string, len);
            if (!str) {
                free(ents);
                return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            }
            ents[i] = (tk_vocab_ent){str, (uint32_t)len, 0};
            json_int32(e, 0, INT32_MAX - 1, &ents[i].id); /* checked above */
        }
    }
    int64_t max_id = -1;
    for (size_t i = 0; i < n; i++)
        if (ents[i].id > max_id) max_id = ents[i].id;
    moge_status st = MOGE_OK;
    if (max_id >= tk_id_limit(n)) {
        st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.vocab: id %lld is far beyond its %zu entries (ids below %lld "
                     "are accepted: tables are indexed by id)", file, (long long)max_id, n, (long long)tk_id_limit(n));
        if (!pre) free(ents);
        return st;
    }
    bpe->n_vocab = (int32_t)(max_id + 1);
    bpe->vocab = calloc((size_t)bpe->n_vocab + 1, sizeof *bpe->vocab);
    if (!bpe->vocab || tk_strmap_init(&bpe->map, bpe->vocab, n)) {
        st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    } else {
        for (size_t i = 0; i < n; i++) {
            bpe->vocab[ents[i].id].s = ents[i].s;
            bpe->vocab[ents[i].id].len = ents[i].len;
            tk_strmap_put(&bpe->map, ents[i].id);
        }
    }
    if (!pre) free(ents);
    return st;
}

static moge_status parse_merges(const cJSON *merges, const char *file, tk_bpe *bpe, tk_model_text *pre, char *err,
                                size_t err_size) {
    tk_merge_ent *ents = NULL;
    size_t n = 0;
    if (pre) {
        ents = pre->merges;
        n = pre->n_merges;
    } else {
        if (!merges || cJSON_IsNull(merges)) merges = NULL;
        else if (!cJSON_IsArray(merges))
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.merges: expected an array", file);
        n = merges ? (size_t)cJSON_GetArraySize(merges) : 0;
        ents = calloc(n ? n : 1, sizeof *ents);
        if (!ents) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        size_t i = 0;
        for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, i++) {
            if (cJSON_IsString(m)) {
                ents[i].a = m->valuestring;
                ents[i].alen = (uint32_t)strlen(m->valuestring);
            } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                       cJSON_IsString(m->child->next)) {
                ents[i].a = m->child->valuestring;
                ents[i].alen = (uint32_t)strlen(ents[i].a);
                ents[i].b = m->child->next->valuestring;
                ents[i].blen = (uint32_t)strlen(ents[i].b);
            } /* else a stays NULL: reported below, in order */
        }
    }
    moge_status st = MOGE_OK;
    if (mergemap_init(&bpe->merges, n)) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    size_t plen = bpe->subword_prefix ? strlen(bpe->subword_prefix) : 0;
    tk_buf joined = {0};
    if (!st && bpe->bmp_id) {
        size_t cap = 1024; /* at most one junction per merge: the set stays at most half full */
        while (cap < 2 * n) cap *= 2;
        bpe->bigrams = malloc(cap * sizeof *bpe->bigrams);
        if (!bpe->bigrams) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        for (size_t k = 0; bpe->bigrams && k < cap; k++) bpe->bigrams[k] = UINT64_MAX;
        bpe->bigram_mask = cap - 1;
    }
    for (uint32_t rank = 0; !st && rank < n; rank++) {
        if (rank + 8 < n && ents[rank + 8].a) { /* the table is large: fetch ahead */
            const tk_merge_ent *f = &ents[rank + 8];
            const char *sp = f->b ? NULL : memchr(f->a, ' ', f->alen);
            if (f->b) {
                tk_strmap_prefetch(&bpe->map, f->a, f->alen);
                tk_strmap_prefetch(&bpe->map, f->b, f->blen);
            } else if (sp) {
                tk_strmap_prefetch(&bpe->map, f->a, (size_t)(sp - f->a));
                tk_strmap_prefetch(&bpe->map, sp + 1, f->alen - (size_t)(sp + 1 - f->a));
            }
        }
        const tk_merge_ent *e = &ents[rank];
        const char *a = e->a, *b = e->b;
        size_t alen = e->alen, blen = e->blen;
        if (!a) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT,
                         "%s: model.merges[%u]: expected a string \"a b\" or a pair of strings", file, rank);
            break;
        }
        if (!b) {
            const char *sp = memchr(a, ' ', alen);
            if (!sp || memchr(sp + 1, ' ', alen - (size_t)(sp + 1 - a))) {
                st = set_err(err, err_size, MOGE_ERR_FORMAT,
                             "%s: model.merges[%u]: \"%.*s\" is not two tokens separated by one space", file,
                             rank, (int)(alen > 60 ? 60 : alen), a);
                break;
            }
            b = sp + 1;
            blen = alen - (size_t)(b - a);
            alen = (size_t)(sp - a);
        }
        int32_t ia = tk_strmap_get(&bpe->map, a, alen), ib = tk_strmap_get(&bpe->map, b, blen);
        if (ia < 0 || ib < 0) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.merges[%u]: token \"%.*s\" is not in model.vocab",
                         file, rank, (int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
            break;
        }
        size_t cut = blen >= plen ? plen : blen;
        joined.len = 0;
        if (tk_buf_put(&joined, a, alen) || tk_buf_put(&joined, b + cut, blen - cut)) {
            st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            break;
        }
        int32_t inew = tk_strmap_get(&bpe->map, joined.p, joined.len);
        if (inew < 0) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT,
                         "%s: model.merges[%u]: merged token \"%.*s\" is not in model.vocab", file, rank,
                         (int)(joined.len > 60 ? 60 : joined.len), joined.p);
            break;
        }
        mergemap_put(&bpe->merges, ia, ib, rank, inew);
        if (bpe->bigrams) bigram_add_junction(bpe, a, alen, b + cut, blen - cut);
    }
    tk_buf_free(&joined);
    if (!pre) free(ents);
    return st;
}

moge_status tk_bpe_parse(const void *json, const char *file, tk_bpe *bpe, tk_arena *arena, tk_model_text *pre,
                         char *err, size_t err_size) {
    const cJSON *model = json;
    memset(bpe, 0, sizeof *bpe);
    bpe->unk_id = -1;
    for (int i = 0; i < 256; i++) bpe->byte_id[i] = -1;
    if (!cJSON_IsObject(model))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model: missing or not an object", file);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !cJSON_IsString(type))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: model.type: expected a string", file);
    if (type && strcmp(type->valuestring, "BPE") != 0)
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED,
                       "%s: model.type \"%.40s\" is not supported (only BPE)", file, type->valuestring);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED,
                       "%s: model: no \"type\" and no \"merges\"; only BPE models are supported", file);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", file);

    bpe->fuse_unk = json_bool(model, "fuse_unk", false);
    bpe->byte_fallback = json_bool(model, "byte_fallback", false);
    bpe->ignore_merges = json_bool(model, "ignore_merges", false);
    moge_status st;
    char *unk = NULL;
    if ((st = opt_string(model, "continuing_subword_prefix", file, &bpe->subword_prefix, arena, err, err_size)) ||
        (st = opt_string(model, "end_of_word_suffix", file, &bpe->word_suffix, arena, err, err_size)) ||
        (st = opt_string(model, "unk_token", file, &unk, arena, err, err_size)))
        return st;
    if ((st = parse_vocab(cJSON_GetObjectItemCaseSensitive(model, "vocab"), file, bpe, arena, pre, err, err_size)))
        return st;
    if (unk) bpe->unk_id = tk_strmap_get(&bpe->map, unk, strlen(unk));
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        bpe->byte_id[i] = tk_strmap_get(&bpe->map, name, 6);
    }
    if (!bpe->subword_prefix && !bpe->word_suffix) {
        /* Direct lookup of single characters, the first step of every word. */
        bpe->bmp_id = malloc(0x10000 * sizeof *bpe->bmp_id);
        if (!bpe->bmp_id) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        for (uint32_t cp = 0; cp < 0x10000; cp++) bpe->bmp_id[cp] = -1;
        /* Each distinct string has one slot in the map, holding the id a lookup would return. */
        for (size_t i = 0; i <= bpe->map.mask; i++) {
            int32_t id = bpe->map.slots[i].id;
            if (id < 0) continue;
            const tk_str *k = &bpe->vocab[id];
            uint32_t cp;
            if (k->len <= 3 && tk_utf8_char(k->s, k->len, &cp) == k->len && cp < 0x10000) bpe->bmp_id[cp] = id;
        }
    }
    if ((st = parse_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"), file, bpe, pre, err, err_size)))
        return st;
    if (bpe->bigrams && build_pair_bits(bpe)) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    return MOGE_OK;
}

void tk_bpe_free(tk_bpe *bpe) {
    free(bpe->vocab);
    free(bpe->bmp_id);
    free(bpe->bigrams);
    free(bpe->small);
    free(bpe->pair_bits);
    tk_strmap_free(&bpe->map);
    free(bpe->merges.slots);
    memset(bpe, 0, sizeof *bpe);
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct {
    int32_t id; /* -1: merged away */
    int32_t prev, next;
} sym;

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} merge_op;

static inline bool op_less(const merge_op *x, const merge_op *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(merge_op *h, size_t *n, merge_op op) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!op_less(&op, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = op;
}

static merge_op heap_pop(merge_op *h, size_t *n) {
    merge_op top = h[0];
    merge_op last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && op_less(&h[c + 1], &h[c])) c++;
        if (!op_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

typedef struct {
    sym *s;
    size_t n, cap;
    bool on_stack; /* s is the caller's local array */
} sym_list;

static int sym_add(sym_list *l, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap * 2;
        sym *s = l->on_stack ? malloc(cap * sizeof *s) : realloc(l->s, cap * sizeof *s);
        if (!s) return -1;
        if (l->on_stack) memcpy(s, l->s, l->n * sizeof *s);
        l->on_stack = false;
        l->s = s;
        l->cap = cap;
    }
    l->s[l->n].id = id;
    l->s[l->n].prev = (int32_t)l->n - 1;
    l->s[l->n].next = (int32_t)l->n + 1;
    l->n++;
    return 0;
}

/* Looks up the character s[0..len) as the reference does, with prefix/suffix decorations. */
static int32_t char_id(const tk_bpe *bpe, const char *s, size_t len, bool first, bool last, tk_buf *tmp) {
    bool pre = !first && bpe->subword_prefix, suf = last && bpe->word_suffix;
    if (!pre && !suf) return tk_strmap_get(&bpe->map, s, len);
    tmp->len = 0;
    if ((pre && tk_buf_put(tmp, bpe->subword_prefix, strlen(bpe->subword_prefix))) || tk_buf_put(tmp, s, len) ||
        (suf && tk_buf_put(tmp, bpe->word_suffix, strlen(bpe->word_suffix))))
        return -2;
    return tk_strmap_get(&bpe->map, tmp->p, tmp->len);
}

/* Encodes w as one word (merge_word + merge_all of the reference). */
static int encode_word(const tk_bpe *bpe, const char *w, size_t n, tk_ids *out) {
    sym local[64];
    sym_list L = {local, 0, 64, true};
    tk_buf tmp = {0};
    int rc = -1;
    merge_op *heap = NULL, local_heap[256];
    int32_t unk_pending = -1;

    for (size_t i = 0; i < n;) {
        uint32_t cp = 0x110000;
        size_t cl = tk_utf8_char(w + i, n - i, &cp);
        if (!cl) cl = 1; /* input is valid UTF-8; be safe anyway */
        bool first = i == 0, last = i + cl >= n;
        int32_t id = bpe->bmp_id && cp < 0x10000 ? bpe->bmp_id[cp] : char_id(bpe, w + i, cl, first, last, &tmp);
        if (id == -2) goto done;
        if (id >= 0) {
            if (unk_pending >= 0) {
                if (sym_add(&L, unk_pending)) goto done;
                unk_pending = -1;
            }
            if (sym_add(&L, id)) goto done;
        } else {
            bool fell_back = false;
            if (bpe->byte_fallback) {
                /* The reference looks up the bytes of the (decorated) string. */
                const char *src = w + i;
                size_t sl = cl;
                if ((!first && bpe->subword_prefix) || (last && bpe->word_suffix)) {
                    src = tmp.p;
                    sl = tmp.len;
                }
                bool all = true;
                for (size_t k = 0; k < sl; k++)
                    if (bpe->byte_id[(unsigned char)src[k]] < 0) all = false;
                if (all) {
                    for (size_t k = 0; k < sl; k++)
                        if (sym_add(&L, bpe->byte_id[(unsigned char)src[k]])) goto done;
                    fell_back = true;
                }
            }
            if (!fell_back && bpe->unk_id >= 0) {
                if (unk_pending >= 0 && !bpe->fuse_unk)
                    if (sym_add(&L, unk_pending)) goto done;
                unk_pending = bpe->unk_id;
            }
        }
        i += cl;
    }
    if (unk_pending >= 0 && sym_add(&L, unk_pending)) goto done;
    if (L.n == 0) {
        rc = 0;
        goto done;
    }
    L.s[L.n - 1].next = -1;

    size_t hcap = 3 * L.n + 4, hn = 0;
    heap = hcap <= 256 ? local_heap : malloc(hcap * sizeof *heap);
    if (!heap) goto done;
    for (size_t i = 0; i + 1 < L.n; i++) {
        merge_op op;
        if (mergemap_get(&bpe->merges, L.s[i].id, L.s[i + 1].id, &op.rank, &op.new_id)) {
            op.pos = (uint32_t)i;
            heap_push(heap, &hn, op);
        }
    }
    while (hn) {
        merge_op top = heap_pop(heap, &hn);
        sym *cur = &L.s[top.pos];
        if (cur->id < 0 || cur->next < 0) continue;
        sym *right = &L.s[cur->next];
        uint32_t rank;
        int32_t nid;
        if (!mergemap_get(&bpe->merges, cur->id, right->id, &rank, &nid) || nid != top.new_id) continue;
        cur->id = top.new_id;
        right->id = -1;
        cur->next = right->next;
        if (cur->next >= 0) L.s[cur->next].prev = (int32_t)top.pos;
        merge_op op;
        if (cur->prev >= 0 && mergemap_get(&bpe->merges, L.s[cur->prev].id, cur->id, &op.rank, &op.new_id)) {
            op.pos = (uint32_t)cur->prev;
            heap_push(heap, &hn, op);
        }
        if (cur->next >= 0 && mergemap_get(&bpe->merges, cur->id, L.s[cur->next].id, &op.rank, &op.new_id)) {
            op.pos = top.pos;
            heap_push(heap, &hn, op);
        }
    }
    for (int32_t i = 0; i >= 0; i = L.s[i].next)
        if (tk_ids_push(out, L.s[i].id)) goto done;
    rc = 0;
done:
    if (heap != local_heap) free(heap);
    tk_buf_free(&tmp);
    if (!L.on_stack) free(L.s);
    return rc;
}

/* Encodes a piece that no merge crosses, through the cache when it is short enough. */
static int encode_cached(const tk_bpe *bpe, const char *w, size_t n, tk_ids *out, tk_wcache *cache) {
    if (!cache || n > TK_WCACHE_MAX_WORD) return encode_word(bpe, w, n, out);
    uint64_t h = tk_hash(w, n);
    size_t k;
    const int32_t *v = tk_wcache_get(cache, w, n, h, &k);
    if (v) return tk_ids_append(out, v, k);
    size_t before = out->n;
    if (encode_word(bpe, w, n, out)) return -1;
    /* a word without ids (no unk token) is not cached: out->v may still be NULL */
    return out->n > before ? tk_wcache_put(cache, w, n, h, out->v + before, out->n - before) : 0;
}

int tk_bpe_encode(const tk_bpe *bpe, const char *w, size_t n, tk_ids *out, tk_wcache *cache) {
    if (n == 0) return 0;
    if (bpe->ignore_merges) {
        int32_t id = tk_strmap_get(&bpe->map, w, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    if (!bpe->bigrams || n <= TK_WCACHE_MAX_WORD) return encode_cached(bpe, w, n, out, cache);
    /* A long word: cut it where no merge can ever join the two sides (see tk_bpe.bigrams). The
     * pieces' merges are independent, so the result equals encoding the word whole. */
    const uint8_t *small = bpe->small;
    size_t start = 0;
    uint32_t prev = 0;
    unsigned prev_small = 0;
    bool prev_known = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l;
        const unsigned char *u = (const unsigned char *)w + i;
        if (u[0] < 0x80) {
            cp = u[0];
            l = 1;
        } else if (u[0] >= 0xE1 && u[0] <= 0xEC && i + 2 < n && (u[1] & 0xC0) == 0x80 && (u[2] & 0xC0) == 0x80) {
            cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
            l = 3; /* the common three-byte characters (U+1000..U+CFFF), e.g. U+2581 */
        } else if (!(l = tk_utf8_char(w + i, n - i, &cp))) {
            l = 1;
            cp = 0x110000;
        }
        bool known = cp < 0x10000 ? bpe->bmp_id[cp] >= 0 : tk_strmap_get(&bpe->map, w + i, l) >= 0;
        unsigned sm = cp < 0x10000 ? small[cp] : 0;
        if (known && prev_known) {
            bool joinable;
            if (sm && prev_small) {
                size_t bit = (size_t)prev_small * 256 + sm;
                joinable = (bpe->pair_bits[bit >> 6] >> (bit & 63)) & 1;
            } else {
                joinable = bigram_has(bpe, ((uint64_t)prev << 32) | cp);
            }
            if (!joinable) {
                if (encode_cached(bpe, w + start, i - start, out, cache)) return -1;
                start = i;
            }
        }
        prev = cp;
        prev_small = sm;
        prev_known = known;
        i += l;
    }
    return encode_cached(bpe, w + start, n - start, out, cache);
}
