/*
 * gguf_vocab.c — the tokenizer of a GGUF file (its tokenizer.ggml.* metadata) as the
 * tokenizer.json and tokenizer_config.json a Hugging Face directory of the same model holds, so
 * tokenizer.c builds it with the same code:
 *   - "llama" (SentencePiece-style BPE with byte fallback): tokens and scores; merges as
 *     tokenizer.ggml.merges gives them or, when absent (llama.cpp writes none for this model), made
 *     from the scores as the Hugging Face converter makes them (every split of every piece into two
 *     pieces of the vocabulary, ordered by the piece's score, then the left part's and the right
 *     part's length, longest first, then the two ids); normalizer Prepend("▁") (when
 *     add_space_prefix, the default) and Replace(" ", "▁"), the matching decoder;
 *   - "gpt2" (byte-level BPE): tokens and merges; the pre-tokenizer by tokenizer.ggml.pre's name
 *     (the regular expression of that model family: qwen2, llama-bpe / llama3, gpt-2 / default);
 *   - tokens of type control or unknown are special added tokens, user-defined ones added tokens;
 *     bos/eos/unk ids; add_bos_token / add_eos_token as a TemplateProcessing post-processor;
 *     tokenizer.chat_template as the chat template.
 * Every failure names the file and the key (and the token's index).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf.h"
#include "tokenizer/tokenizer.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
    const gguf_file *g;
    char *err;
    size_t n;
    tk_str *tok;      /* [n_tok] into the mapping */
    int32_t *type;    /* [n_tok] */
    float *score;     /* [n_tok] or NULL */
    uint64_t n_tok;
} gv;

static moge_status fail_key(gv *v, const char *key, const char *what) {
    return tk_fail(v->err, v->n, MOGE_ERR_FORMAT, "%s: metadata key %s: %s", v->g->what, key, what);
}

/* An optional numeric array of n_tok values into out (as int32 or float). */
static moge_status read_numbers(gv *v, const char *key, int32_t *ints, float *floats) {
    const gguf_kv *kv = gguf_find(v->g, key);
    if (!kv) return MOGE_OK;
    if (kv->type != GGUF_ARR || kv->arr_n != v->n_tok) {
        char what[160];
        snprintf(what, sizeof what, "must be an array of %llu numbers, one per token", (unsigned long long)v->n_tok);
        return fail_key(v, key, what);
    }
    for (uint64_t i = 0; i < v->n_tok; i++) {
        double d;
        if (!gguf_arr_num(kv, i, &d)) return fail_key(v, key, "must hold numbers");
        if (ints) ints[i] = d >= -1e9 && d <= 1e9 ? (int32_t)d : 0;
        if (floats) floats[i] = (float)d;
    }
    return MOGE_OK;
}

/* A token id key: -1 when absent; an error when not an id of the vocabulary. */
static moge_status read_id(gv *v, const char *key, int64_t *out) {
    *out = -1;
    const gguf_kv *kv = gguf_find(v->g, key);
    if (!kv) return MOGE_OK;
    if (!gguf_kv_int(kv, out) || *out < 0 || (uint64_t)*out >= v->n_tok) {
        char what[96];
        snprintf(what, sizeof what, "must be a token id below %llu", (unsigned long long)v->n_tok);
        return fail_key(v, key, what);
    }
    return MOGE_OK;
}

static bool read_bool(const gguf_file *g, const char *key, bool def) {
    bool b;
    return gguf_kv_bool(gguf_find(g, key), &b) ? b : def;
}

/* ---- SentencePiece merges from the scores ---- */

typedef struct {
    int32_t l, r, piece;
    uint32_t llen, rlen; /* in characters */
    float score;
    uint32_t order;
} spm_merge;

static int cmp_local(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static int cmp_global(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->llen != y->llen) return x->llen > y->llen ? -1 : 1;
    if (x->rlen != y->rlen) return x->rlen > y->rlen ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static moge_status spm_merges(gv *v, const tk_strmap *map, cJSON *out) {
    size_t cap = 1024, cnt = 0;
    spm_merge *m = malloc(cap * sizeof *m);
    if (!m) return tk_fail(v->err, v->n, MOGE_ERR_NOMEM, "%s: out of memory", v->g->what);
    for (uint64_t p = 0; p < v->n_tok; p++) {
        const tk_str *s = &v->tok[p];
        size_t first = cnt;
        for (uint32_t k = 1; k < s->len; k++) {
            if (((unsigned char)s->s[k] & 0xC0) == 0x80) continue; /* split between characters only */
            int32_t l = tk_strmap_get(map, s->s, k), r = tk_strmap_get(map, s->s + k, s->len - k);
            if (l < 0 || r < 0) continue;
            if (cnt == cap) {
                spm_merge *w = realloc(m, (cap *= 2) * sizeof *m);
                if (!w) {
                    free(m);
                    return tk_fail(v->err, v->n, MOGE_ERR_NOMEM, "%s: out of memory", v->g->what);
                }
                m = w;
            }
            m[cnt++] = (spm_merge){.l = l, .r = r, .piece = (int32_t)p, .llen = (uint32_t)utf8_chars(s->s, k),
                                   .rlen = (uint32_t)utf8_chars(s->s + k, s->len - k), .score = v->score ? v->score[p] : 0.0f};
        }
        qsort(m + first, cnt - first, sizeof *m, cmp_local);
    }
    for (size_t i = 0; i < cnt; i++) m[i].order = (uint32_t)i;
    qsort(m, cnt, sizeof *m, cmp_global);
    moge_status st = MOGE_OK;
    for (size_t i = 0; i < cnt && st == MOGE_OK; i++) {
        cJSON *pair = cJSON_CreateArray();
        const tk_str *a = &v->tok[m[i].l], *b = &v->tok[m[i].r];
        cJSON *ja = cJSON_CreateString(""), *jb = cJSON_CreateString("");
        /* the pieces are not NUL-terminated in the mapping: copy */
        if (ja) { free(ja->valuestring); ja->valuestring = strndup(a->s, a->len); }
        if (jb) { free(jb->valuestring); jb->valuestring = strndup(b->s, b->len); }
        if (!pair || !ja || !jb || !ja->valuestring || !jb->valuestring) {
            cJSON_Delete(pair); cJSON_Delete(ja); cJSON_Delete(jb);
            st = tk_fail(v->err, v->n, MOGE_ERR_NOMEM, "%s: out of memory", v->g->what);
            break;
        }
        cJSON_AddItemToArray(pair, ja);
        cJSON_AddItemToArray(pair, jb);
        cJSON_AddItemToArray(out, pair);
    }
    free(m);
    return st;
}

/* ---- the JSON documents ---- */

static cJSON *str_n(const char *s, size_t n) {
    cJSON *j = cJSON_CreateString("");
    if (!j) return NULL;
    free(j->valuestring);
    j->valuestring = strndup(s, n);
    if (!j->valuestring) { cJSON_Delete(j); return NULL; }
    return j;
}

static cJSON *parse_const(const char *json) { return cJSON_Parse(json); }

/* The pre-tokenizer of a byte-level BPE by llama.cpp's pre-tokenizer name. */
static const char *gpt2_pre(const char *name, const char **normalizer) {
    static const char QWEN2[] =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
        "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";
    static const char LLAMA3[] =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
        "\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}";
    static const char GPT2[] = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
    *normalizer = NULL;
    if (!strcmp(name, "qwen2")) {
        *normalizer = "{\"type\":\"NFC\"}";
        return QWEN2;
    }
    if (!strcmp(name, "llama-bpe") || !strcmp(name, "llama3")) return LLAMA3;
    if (!strcmp(name, "gpt-2") || !strcmp(name, "default")) return GPT2;
    return NULL;
}

#define TRY(x) do { if ((st = (x)) != MOGE_OK) goto done; } while (0)
#define NEED(p) do { if (!(p)) { st = tk_fail(err, n, MOGE_ERR_NOMEM, "%s: out of memory", g->what); goto done; } } while (0)

static moge_status build_docs(const gguf_file *g, cJSON **tok_out, cJSON **cfg_out, char *err, size_t n) {
    gv v = {.g = g, .err = err, .n = n};
    moge_status st = MOGE_OK;
    cJSON *root = NULL, *cfg = NULL;
    tk_strmap map = {0};
    gguf_str model_s;
    if (!gguf_kv_string(gguf_find(g, "tokenizer.ggml.model"), &model_s))
        return tk_fail(err, n, MOGE_ERR_FORMAT, "%s: no tokenizer: missing string metadata key tokenizer.ggml.model", g->what);
    bool spm = model_s.len == 5 && !memcmp(model_s.s, "llama", 5), bpe = model_s.len == 4 && !memcmp(model_s.s, "gpt2", 4);
    if (!spm && !bpe)
        return tk_fail(err, n, MOGE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (llama, gpt2)", g->what,
                       (int)(model_s.len < 40 ? model_s.len : 40), model_s.s);
    const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GGUF_ARR || tk->arr_type != GGUF_STR || tk->arr_n == 0 || tk->arr_n > INT32_MAX - 1)
        return tk_fail(err, n, MOGE_ERR_FORMAT, "%s: metadata key tokenizer.ggml.tokens must be a non-empty array of strings", g->what);
    v.n_tok = tk->arr_n;
    v.tok = calloc((size_t)v.n_tok, sizeof *v.tok);
    v.type = malloc((size_t)v.n_tok * sizeof *v.type);
    if (spm) v.score = calloc((size_t)v.n_tok, sizeof *v.score);
    NEED(v.tok && v.type && (!spm || v.score));
    gguf_iter it;
    gguf_iter_init(&it, tk);
    gguf_str s;
    for (uint64_t i = 0; gguf_iter_str(&it, &s); i++) {
        if (s.len > UINT32_MAX / 2 || !tk_utf8_valid(s.s, (size_t)s.len)) {
            st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] is not valid UTF-8", g->what, (unsigned long long)i);
            goto done;
        }
        v.tok[i] = (tk_str){s.s, (uint32_t)s.len};
        v.type[i] = TT_NORMAL;
    }
    TRY(read_numbers(&v, "tokenizer.ggml.token_type", v.type, NULL));
    if (spm) TRY(read_numbers(&v, "tokenizer.ggml.scores", NULL, v.score));
    int64_t bos, eos, unk;
    TRY(read_id(&v, "tokenizer.ggml.bos_token_id", &bos));
    TRY(read_id(&v, "tokenizer.ggml.eos_token_id", &eos));
    TRY(read_id(&v, "tokenizer.ggml.unknown_token_id", &unk));

    if (tk_strmap_init(&map, v.tok, (size_t)v.n_tok)) NEED(0);
    root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model"), *vocab = model ? cJSON_AddObjectToObject(model, "vocab") : NULL;
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens"), *merges = model ? cJSON_AddArrayToObject(model, "merges") : NULL;
    NEED(root && model && vocab && added && merges);
    cJSON_AddStringToObject(model, "type", "BPE");
    for (uint64_t i = 0; i < v.n_tok; i++) {
        if (tk_strmap_get(&map, v.tok[i].s, v.tok[i].len) < 0) { /* a repeated piece keeps its first id */
            if (tk_strmap_put(&map, (int32_t)i)) NEED(0);
            cJSON *id = cJSON_CreateNumber((double)i);
            NEED(id);
            char *key = strndup(v.tok[i].s, v.tok[i].len);
            if (!key) cJSON_Delete(id);
            NEED(key);
            cJSON_AddItemToObject(vocab, key, id);
            free(key);
        }
        int ty = v.type[i];
        if (ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject(), *c = str_n(v.tok[i].s, v.tok[i].len);
            if (!a || !c) { cJSON_Delete(a); cJSON_Delete(c); NEED(0); }
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddItemToObject(a, "content", c);
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", false);
            cJSON_AddBoolToObject(a, "special", ty != TT_USER_DEFINED);
            cJSON_AddItemToArray(added, a);
        }
    }
    const gguf_kv *mk = gguf_find(g, "tokenizer.ggml.merges");
    if (mk) {
        if (mk->type != GGUF_ARR || mk->arr_type != GGUF_STR) {
            st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: metadata key tokenizer.ggml.merges must be an array of strings", g->what);
            goto done;
        }
        gguf_iter_init(&it, mk);
        for (uint64_t i = 0; gguf_iter_str(&it, &s); i++) {
            if (!tk_utf8_valid(s.s, (size_t)s.len)) {
                st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is not valid UTF-8", g->what, (unsigned long long)i);
                goto done;
            }
            cJSON *j = str_n(s.s, (size_t)s.len);
            NEED(j);
            cJSON_AddItemToArray(merges, j);
        }
    } else if (spm) {
        TRY(spm_merges(&v, &map, merges));
    } else {
        st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: a gpt2 tokenizer without tokenizer.ggml.merges", g->what);
        goto done;
    }
    bool add_bos = read_bool(g, "tokenizer.ggml.add_bos_token", spm), add_eos = read_bool(g, "tokenizer.ggml.add_eos_token", false);
    if (spm) {
        bool prefix = read_bool(g, "tokenizer.ggml.add_space_prefix", true);
        cJSON_AddBoolToObject(model, "fuse_unk", true);
        cJSON_AddBoolToObject(model, "byte_fallback", true);
        if (unk >= 0) cJSON_AddItemToObject(model, "unk_token", str_n(v.tok[unk].s, v.tok[unk].len));
        cJSON *norm = parse_const(prefix ? "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
                                           "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]}"
                                         : "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}");
        cJSON *dec = parse_const(prefix ? "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
                                          "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}"
                                        : "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
                                          "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}");
        if (!norm || !dec) { cJSON_Delete(norm); cJSON_Delete(dec); NEED(0); }
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddItemToObject(root, "decoder", dec);
    } else {
        gguf_str pre = {"default", 7};
        const gguf_kv *pk = gguf_find(g, "tokenizer.ggml.pre");
        if (pk && !gguf_kv_string(pk, &pre)) {
            st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: metadata key tokenizer.ggml.pre must be a string", g->what);
            goto done;
        }
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(pre.len < 63 ? pre.len : 63), pre.s);
        const char *normalizer, *pj = gpt2_pre(name, &normalizer);
        if (!pj) {
            st = tk_fail(err, n, MOGE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%s\" is not supported (qwen2, llama-bpe, gpt-2, default)", g->what, name);
            goto done;
        }
        cJSON *pt = parse_const(pj), *dec = parse_const("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}");
        cJSON *nm = normalizer ? parse_const(normalizer) : NULL;
        if (!pt || !dec || (normalizer && !nm)) { cJSON_Delete(pt); cJSON_Delete(dec); cJSON_Delete(nm); NEED(0); }
        cJSON_AddItemToObject(root, "pre_tokenizer", pt);
        cJSON_AddItemToObject(root, "decoder", dec);
        if (nm) cJSON_AddItemToObject(root, "normalizer", nm);
        cJSON_AddBoolToObject(model, "byte_fallback", false);
        cJSON_AddBoolToObject(model, "ignore_merges", !strcmp(name, "llama-bpe") || !strcmp(name, "llama3"));
    }
    if ((add_bos && bos >= 0) || (add_eos && eos >= 0)) {
        cJSON *post = cJSON_AddObjectToObject(root, "post_processor"), *single = post ? cJSON_AddArrayToObject(post, "single") : NULL;
        cJSON *specials = post ? cJSON_AddObjectToObject(post, "special_tokens") : NULL;
        NEED(post && single && specials);
        cJSON_AddStringToObject(post, "type", "TemplateProcessing");
        int64_t ids[2] = {add_bos ? bos : -1, add_eos ? eos : -1};
        for (int k = 0; k < 3; k++) {
            if (k == 1) {
                cJSON *seq = cJSON_Parse("{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}");
                NEED(seq);
                cJSON_AddItemToArray(single, seq);
                continue;
            }
            int64_t id = ids[k / 2];
            if (id < 0) continue;
            char *content = strndup(v.tok[id].s, v.tok[id].len);
            NEED(content);
            cJSON *sp = cJSON_CreateObject(), *inner = sp ? cJSON_AddObjectToObject(sp, "SpecialToken") : NULL;
            cJSON *entry = cJSON_AddObjectToObject(specials, content);
            if (!sp || !inner || !entry) { free(content); cJSON_Delete(sp); NEED(0); }
            cJSON_AddStringToObject(inner, "id", content);
            cJSON_AddNumberToObject(inner, "type_id", 0);
            cJSON_AddItemToArray(single, sp);
            cJSON_AddStringToObject(entry, "id", content);
            cJSON *idarr = cJSON_AddArrayToObject(entry, "ids"), *toks = cJSON_AddArrayToObject(entry, "tokens");
            if (idarr) cJSON_AddItemToArray(idarr, cJSON_CreateNumber((double)id));
            if (toks) cJSON_AddItemToArray(toks, cJSON_CreateString(content));
            free(content);
        }
    }
    /* tokenizer_config.json: bos / eos and the chat template */
    cfg = cJSON_CreateObject();
    NEED(cfg);
    if (bos >= 0) cJSON_AddItemToObject(cfg, "bos_token", str_n(v.tok[bos].s, v.tok[bos].len));
    if (eos >= 0) cJSON_AddItemToObject(cfg, "eos_token", str_n(v.tok[eos].s, v.tok[eos].len));
    gguf_str tmpl;
    const gguf_kv *ck = gguf_find(g, "tokenizer.chat_template");
    if (ck) {
        if (!gguf_kv_string(ck, &tmpl) || !tk_utf8_valid(tmpl.s, (size_t)tmpl.len)) {
            st = tk_fail(err, n, MOGE_ERR_FORMAT, "%s: metadata key tokenizer.chat_template must be a UTF-8 string", g->what);
            goto done;
        }
        cJSON *j = str_n(tmpl.s, (size_t)tmpl.len);
        NEED(j);
        cJSON_AddItemToObject(cfg, "chat_template", j);
    }
done:
    tk_strmap_free(&map);
    free(v.tok);
    free(v.type);
    free(v.score);
    if (st != MOGE_OK) {
        cJSON_Delete(root);
        cJSON_Delete(cfg);
        return st;
    }
    *tok_out = root;
    *cfg_out = cfg;
    return MOGE_OK;
}

moge_status tk_gguf_docs(const char *path, cJSON **tok, cJSON **cfg, char *err, size_t n) {
    *tok = *cfg = NULL;
    gguf_file g;
    moge_status st = gguf_open(&g, path, err, n);
    if (st != MOGE_OK) return st;
    st = build_docs(&g, tok, cfg, err, n);
    gguf_close(&g);
    return st;
}
