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
 */
#include "tokenizer/tokenizer.h"

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
    m->keys = malloc(cap * sizeof *m->keys);
    m->rank = malloc(cap * sizeof *m->rank);
    m->new_id = malloc(cap * sizeof *m->new_id);
    if (!m->keys || !m->rank || !m->new_id) return -1;
    for (size_t i = 0; i < cap; i++) m->keys[i] = UINT64_MAX;
    m->mask = cap - 1;
    return 0;
}

static void mergemap_put(tk_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(k) & m->mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & m->mask;
    m->keys[i] = k;
    m->rank[i] = rank;
    m->new_id[i] = new_id;
}

static inline bool mergemap_get(const tk_mergemap *m, int32_t a, int32_t b, uint32_t *rank,
                                int32_t *new_id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(k) & m->mask;
    for (;;) {
        uint64_t cur = m->keys[i];
        if (cur == k) {
            *rank = m->rank[i];
            *new_id = m->new_id[i];
            return true;
        }
        if (cur == UINT64_MAX) return false;
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

/* Records the character pairs of a merged token; grows the set as needed. */
static int bigrams_add_token(tk_bpe *bpe, const char *s, size_t n, size_t *count) {
    uint32_t prev = 0;
    bool have_prev = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_char(s + i, n - i, &cp);
        if (!l) return 0;
        if (have_prev) {
            if ((*count + 1) * 2 > bpe->bigram_mask + 1) {
                size_t cap = (bpe->bigram_mask + 1) * 2;
                uint64_t *old = bpe->bigrams;
                size_t old_cap = bpe->bigram_mask + 1;
                bpe->bigrams = malloc(cap * sizeof *bpe->bigrams);
                if (!bpe->bigrams) {
                    bpe->bigrams = old;
                    return -1;
                }
                for (size_t k = 0; k < cap; k++) bpe->bigrams[k] = UINT64_MAX;
                bpe->bigram_mask = cap - 1;
                for (size_t k = 0; k < old_cap; k++)
                    if (old[k] != UINT64_MAX) bigram_put(bpe, old[k]);
                free(old);
            }
            uint64_t key = ((uint64_t)prev << 32) | cp;
            if (!bigram_has(bpe, key)) {
                bigram_put(bpe, key);
                (*count)++;
            }
        }
        prev = cp;
        have_prev = true;
        i += l;
    }
    return 0;
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
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model.%s: expected a string or null", file, key);
    if (v->valuestring[0] == '\0') return MOGE_OK;
    *out = tk_arena_strdup(arena, v->valuestring, strlen(v->valuestring));
    if (!*out) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    return MOGE_OK;
}

static moge_status parse_vocab(const cJSON *vocab, const char *file, tk_bpe *bpe, tk_arena *arena,
                               char *err, size_t err_size) {
    if (!cJSON_IsObject(vocab))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model.vocab: missing or not an object", file);
    int64_t max_id = -1;
    size_t count = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || d < 0 || d > 2147483646.0 || d != floor(d))
            return tk_fail(err, err_size, MOGE_ERR_FORMAT,
                           "%s: model.vocab[\"%.60s\"]: expected a non-negative integer id", file, e->string);
        if ((int64_t)d > max_id) max_id = (int64_t)d;
        count++;
    }
    bpe->n_vocab = (int32_t)(max_id + 1);
    bpe->vocab = calloc((size_t)bpe->n_vocab + 1, sizeof *bpe->vocab);
    if (!bpe->vocab || tk_strmap_init(&bpe->map, bpe->vocab, count))
        return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t len = strlen(e->string);
        char *s = tk_arena_strdup(arena, e->string, len);
        if (!s) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        bpe->vocab[id].s = s;
        bpe->vocab[id].len = (uint32_t)len;
        tk_strmap_put(&bpe->map, id);
    }
    return MOGE_OK;
}

static moge_status parse_merges(const cJSON *merges, const char *file, tk_bpe *bpe, char *err,
                                size_t err_size) {
    if (!merges || cJSON_IsNull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model.merges: expected an array", file);
    size_t n = merges ? (size_t)cJSON_GetArraySize(merges) : 0;
    if (mergemap_init(&bpe->merges, n)) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    size_t plen = bpe->subword_prefix ? strlen(bpe->subword_prefix) : 0;
    tk_buf joined = {0};
    moge_status st = MOGE_OK;
    uint32_t rank = 0;
    size_t n_bigrams = 0;
    if (bpe->bmp_id) {
        bpe->bigrams = malloc(1024 * sizeof *bpe->bigrams);
        if (!bpe->bigrams) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        for (size_t k = 0; k < 1024; k++) bpe->bigrams[k] = UINT64_MAX;
        bpe->bigram_mask = 1023;
    }
    for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, rank++) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = tk_fail(err, err_size, MOGE_ERR_FORMAT,
                             "%s: model.merges[%u]: \"%.60s\" is not two tokens separated by one space",
                             file, rank, s);
                break;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            alen = strlen(a);
            b = m->child->next->valuestring;
            blen = strlen(b);
        } else {
            st = tk_fail(err, err_size, MOGE_ERR_FORMAT,
                         "%s: model.merges[%u]: expected a string \"a b\" or a pair of strings", file, rank);
            break;
        }
        int32_t ia = tk_strmap_get(&bpe->map, a, alen), ib = tk_strmap_get(&bpe->map, b, blen);
        if (ia < 0 || ib < 0) {
            st = tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model.merges[%u]: token \"%.*s\" is not in model.vocab",
                         file, rank, (int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
            break;
        }
        size_t cut = blen >= plen ? plen : blen;
        joined.len = 0;
        if (tk_buf_put(&joined, a, alen) || tk_buf_put(&joined, b + cut, blen - cut)) {
            st = tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            break;
        }
        int32_t inew = tk_strmap_get(&bpe->map, joined.p, joined.len);
        if (inew < 0) {
            st = tk_fail(err, err_size, MOGE_ERR_FORMAT,
                         "%s: model.merges[%u]: merged token \"%.*s\" is not in model.vocab", file, rank,
                         (int)(joined.len > 60 ? 60 : joined.len), joined.p);
            break;
        }
        mergemap_put(&bpe->merges, ia, ib, rank, inew);
        if (bpe->bigrams && bigrams_add_token(bpe, joined.p, joined.len, &n_bigrams)) {
            st = tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            break;
        }
    }
    tk_buf_free(&joined);
    return st;
}

moge_status tk_bpe_parse(const void *json, const char *file, tk_bpe *bpe, tk_arena *arena, char *err,
                         size_t err_size) {
    const cJSON *model = json;
    memset(bpe, 0, sizeof *bpe);
    bpe->unk_id = -1;
    for (int i = 0; i < 256; i++) bpe->byte_id[i] = -1;
    if (!cJSON_IsObject(model))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model: missing or not an object", file);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !cJSON_IsString(type))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: model.type: expected a string", file);
    if (type && strcmp(type->valuestring, "BPE") != 0)
        return tk_fail(err, err_size, MOGE_ERR_UNSUPPORTED,
                       "%s: model.type \"%.40s\" is not supported (only BPE)", file, type->valuestring);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return tk_fail(err, err_size, MOGE_ERR_UNSUPPORTED,
                       "%s: model: no \"type\" and no \"merges\"; only BPE models are supported", file);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return tk_fail(err, err_size, MOGE_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", file);

    bpe->fuse_unk = json_bool(model, "fuse_unk", false);
    bpe->byte_fallback = json_bool(model, "byte_fallback", false);
    bpe->ignore_merges = json_bool(model, "ignore_merges", false);
    moge_status st;
    char *unk = NULL;
    if ((st = opt_string(model, "continuing_subword_prefix", file, &bpe->subword_prefix, arena, err, err_size)) ||
        (st = opt_string(model, "end_of_word_suffix", file, &bpe->word_suffix, arena, err, err_size)) ||
        (st = opt_string(model, "unk_token", file, &unk, arena, err, err_size)))
        return st;
    if ((st = parse_vocab(cJSON_GetObjectItemCaseSensitive(model, "vocab"), file, bpe, arena, err, err_size)))
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
        if (!bpe->bmp_id) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        for (uint32_t cp = 0; cp < 0x10000; cp++) {
            char u[4];
            bpe->bmp_id[cp] = cp >= 0xD800 && cp < 0xE000 ? -1 : tk_strmap_get(&bpe->map, u, tk_utf8_put(cp, u));
        }
    }
    return parse_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"), file, bpe, err, err_size);
}

void tk_bpe_free(tk_bpe *bpe) {
    free(bpe->vocab);
    free(bpe->bmp_id);
    free(bpe->bigrams);
    tk_strmap_free(&bpe->map);
    free(bpe->merges.keys);
    free(bpe->merges.rank);
    free(bpe->merges.new_id);
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

int tk_bpe_encode(const tk_bpe *bpe, const char *w, size_t n, tk_ids *out) {
    if (n == 0) return 0;
    if (bpe->ignore_merges) {
        int32_t id = tk_strmap_get(&bpe->map, w, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    if (!bpe->bigrams || n < 256) return encode_word(bpe, w, n, out);
    /* A long word: cut it where no merge can ever join the two sides (see tk_bpe.bigrams). The
     * pieces' merges are independent, so the result equals encoding the word whole. */
    size_t start = 0;
    uint32_t prev = 0;
    bool prev_known = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_char(w + i, n - i, &cp);
        if (!l) {
            l = 1;
            cp = 0x110000;
        }
        bool known = cp < 0x10000 ? bpe->bmp_id[cp] >= 0 : tk_strmap_get(&bpe->map, w + i, l) >= 0;
        if (known && prev_known && !bigram_has(bpe, ((uint64_t)prev << 32) | cp)) {
            if (encode_word(bpe, w + start, i - start, out)) return -1;
            start = i;
        }
        prev = cp;
        prev_known = known;
        i += l;
    }
    return encode_word(bpe, w + start, n - start, out);
}
