/*
 * tokenizer.c — loading a Hugging Face tokenizer (tokenizer.json, plus tokenizer_config.json for
 * BOS/EOS and the chat template) and the encoding half of the public API: moge_tokenize and the
 * vocabulary queries.
 * Encoding follows the reference's Tokenizer::encode: invalid UTF-8 becomes U+FFFD (as Python's
 * errors="replace"), added tokens whose "normalized" is false are matched in the raw text
 * (leftmost-longest, honouring single_word / lstrip / rstrip), every other segment is normalized,
 * searched for normalized added tokens, pre-tokenized and encoded word by word with the BPE
 * model; the post-processor's BOS/EOS ids are added only when add_special is true.
 * Speed: the common pre-tokenizers run as one streaming pass (tk_pretok_plan: regex matches go
 * straight to the model, no piece lists), each word's ids are remembered in a per-call word
 * cache, the Unicode normalizers are skipped for ASCII text, and model.vocab / model.merges are
 * read by json_scan.c rather than cJSON when loading.
 * A loaded tokenizer is read-only; encoding allocates only per call, so threads may share one.
 */
#include "tokenizer/tokenizer.h"
#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/json_num.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ---- files -------------------------------------------------------------------------------- */

/* Every key and string in the tree must be valid UTF-8 (cJSON passes raw bytes through, and
 * invalid text in a normalizer or pattern would reach the regex engine, which is run without
 * its own UTF check). False with the path of the first bad one in path (cap bytes). */
static bool json_utf8_ok(const cJSON *j, char *path, size_t len, size_t cap, bool *in_key) {
    size_t i = 0; /* c's index in an array (counted, not searched for: merges have 10^5 entries) */
    for (const cJSON *c = j->child; c; c = c->next, i++) {
        size_t k = len;
        if (c->string) {
            if (!tk_utf8_valid(c->string, strlen(c->string))) {
                *in_key = true;
                return false;
            }
            int w = snprintf(path + len, cap - len, "%s%.60s", len ? "." : "", c->string);
            k = w < 0 || (size_t)w >= cap - len ? cap - 1 : len + (size_t)w;
        } else if (cJSON_IsArray(j)) {
            int w = snprintf(path + len, cap - len, "[%zu]", i);
            k = w < 0 || (size_t)w >= cap - len ? cap - 1 : len + (size_t)w;
        }
        if (cJSON_IsString(c) && !tk_utf8_valid(c->valuestring, strlen(c->valuestring))) return false;
        if (c->child && !json_utf8_ok(c, path, k, cap, in_key)) return false;
        path[len] = 0;
    }
    return true;
}

/* Parses a JSON file whose top level is an object. With pre (tokenizer.json), model.vocab and
 * model.merges are read by json_scan.c when it can (*scanned is then true and pre filled) and
 * cJSON parses the rest; the file text is handed back in *keep, since pre may point into it. */
static moge_status parse_json_file(const char *path, cJSON **out, tk_model_text *pre, bool *scanned, char **keep,
                                   char *err, size_t err_size) {
    char *data;
    size_t len;
    *out = NULL;
    if (scanned) *scanned = false;
    moge_status st = read_whole_file(path, &data, &len, err, err_size);
    if (st) return st;
    const char *end = NULL;
    cJSON *j = NULL;
    if (pre) {
        tk_buf doc = {0};
        if (tk_model_scan(data, len, pre, &doc)) {
            j = cJSON_ParseWithLengthOpts(doc.p, doc.len, &end, false);
            char where[8];
            bool in_key = false;
            /* invalid UTF-8 anywhere: the whole file is parsed below, for the error's path */
            if (j && cJSON_IsObject(j) && tk_model_text_utf8_ok(pre) && json_utf8_ok(j, where, 0, sizeof where, &in_key)) {
                *scanned = true;
                *keep = data;
                tk_buf_free(&doc);
                *out = j;
                return MOGE_OK;
            }
            cJSON_Delete(j); /* parse the original instead, for the error's position */
            tk_model_text_free(pre);
        }
        tk_buf_free(&doc);
    }
    j = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (!j) {
        size_t at = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
        size_t line = 1;
        for (size_t i = 0; i < at; i++) line += data[i] == '\n';
        free(data);
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: invalid JSON at byte %zu (line %zu)", path, at, line);
    }
    free(data);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
    }
    char where[256] = "";
    bool in_key = false;
    if (!json_utf8_ok(j, where, 0, sizeof where, &in_key)) {
        cJSON_Delete(j);
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: %s: invalid UTF-8 in a %s", path, where[0] ? where : "(top level)",
                       in_key ? "key" : "string");
    }
    *out = j;
    return MOGE_OK;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* ---- added tokens ------------------------------------------------------------------------- */

static moge_status parse_added(moge_tokenizer *t, const cJSON *arr, const char *file, char *err, size_t err_size) {
    if (!arr || cJSON_IsNull(arr)) return MOGE_OK;
    if (!cJSON_IsArray(arr))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: added_tokens: expected an array", file);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int32_t idv;
        if (!json_int32(id, 0, INT32_MAX - 1, &idv))
            return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: added_tokens[%zu].id: expected a non-negative integer",
                           file, i);
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: added_tokens[%zu].content: expected a non-empty string",
                           file, i);
        tk_added *a = &t->added[t->n_added++];
        a->id = idv;
        a->len = strlen(content->valuestring);
        a->content = tk_arena_strdup(&t->arena, content->valuestring, a->len);
        if (!a->content) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
        const cJSON *f;
        a->special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        a->single_word = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "single_word"));
        a->lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "lstrip"));
        a->rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "rstrip"));
        f = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        a->normalized = cJSON_IsBool(f) ? cJSON_IsTrue(f) : !a->special;
    }
    return MOGE_OK;
}

/* Unicode \w as the reference's regex crate defines it: letters, marks, decimal digits,
 * connector punctuation. */
static bool is_word_char(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
           c == UTF8PROC_CATEGORY_PC;
}

typedef struct {
    size_t start, end;
    int32_t id; /* -1: plain text */
} segment;

typedef struct {
    segment *v;
    size_t n, cap;
} segments;

static int seg_push(segments *s, size_t a, size_t b, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        segment *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (segment){a, b, id};
    return 0;
}

static uint32_t last_cp(const char *s, size_t n) {
    if (!n) return 0;
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp = 0;
    return tk_utf8_char(s + i, n - i, &cp) ? cp : 0xFFFD;
}

/* Splits s into plain segments and added-token segments, as AddedVocabulary::find_matches. */
static int split_added(const moge_tokenizer *t, bool normalized, const char *s, size_t n, segments *out) {
    size_t start_offset = 0;
    const bool *first = t->added_first[normalized];
    int only = t->added_only[normalized]; /* the one first byte of them all, -1: several, -2: none */
    if (only == -2) return n ? seg_push(out, 0, n, -1) : 0;
    for (size_t i = 0; i < n;) {
        if (only >= 0) {
            const char *p = memchr(s + i, only, n - i);
            if (!p) break;
            i = (size_t)(p - s);
        } else if (!first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        const tk_added *best = NULL;
        size_t best_len = 0;
        for (size_t k = 0; k < t->n_added; k++) {
            const tk_added *a = &t->added[k];
            if (a->normalized != normalized) continue;
            const char *c = normalized ? a->norm : a->content;
            size_t cl = normalized ? a->norm_len : a->len;
            if (cl > best_len && cl <= n - i && c[0] == s[i] && memcmp(c, s + i, cl) == 0) {
                best = a;
                best_len = cl;
            }
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, stop = i + best_len;
        i = stop;
        if (best->single_word) {
            uint32_t before = last_cp(s, start), after = 0;
            if (stop < n && !tk_utf8_char(s + stop, n - stop, &after)) after = 0xFFFD;
            bool start_space = start == 0 || !is_word_char(before);
            bool stop_space = stop == n || !is_word_char(after);
            if (!start_space || !stop_space) continue;
        }
        if (best->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = ns - 1;
                while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                uint32_t cp;
                if (!tk_utf8_char(s + p, ns - p, &cp) || !tk_is_whitespace(cp)) break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (best->rstrip) {
            while (stop < n) {
                uint32_t cp;
                size_t l = tk_utf8_char(s + stop, n - stop, &cp);
                if (!l || !tk_is_whitespace(cp)) break;
                stop += l;
            }
        }
        if (start_offset < start && seg_push(out, start_offset, start, -1)) return -1;
        if (seg_push(out, start, stop, best->id)) return -1;
        start_offset = stop;
    }
    if (start_offset < n && seg_push(out, start_offset, n, -1)) return -1;
    return 0;
}

/* ---- post-processor ----------------------------------------------------------------------- */

static int ids_append(int32_t **v, size_t *n, const int32_t *src, size_t k, bool front) {
    int32_t *nv = realloc(*v, (*n + k + 1) * sizeof *nv);
    if (!nv) return -1;
    if (front) {
        memmove(nv + k, nv, *n * sizeof *nv);
        memcpy(nv, src, k * sizeof *nv);
    } else {
        memcpy(nv + *n, src, k * sizeof *nv);
    }
    *v = nv;
    *n += k;
    return 0;
}

static moge_status parse_post(moge_tokenizer *t, const cJSON *j, const char *where, char *err, size_t err_size) {
    if (!j || cJSON_IsNull(j)) return MOGE_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.type: missing or not a string", where);
    const char *ty = type->valuestring;
    if (!strcmp(ty, "ByteLevel")) return MOGE_OK; /* only trims offsets */
    if (!strcmp(ty, "Sequence")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "processors");
        if (!cJSON_IsArray(items))
            return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.processors: missing or not an array", where);
        size_t i = 0;
        for (const cJSON *it = items->child; it; it = it->next, i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", where, i);
            moge_status st = parse_post(t, it, sub, err, err_size);
            if (st) return st;
        }
        return MOGE_OK;
    }
    int32_t pre[64], post[64];
    size_t npre = 0, npost = 0;
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        if (!cJSON_IsArray(cls) || cJSON_GetArraySize(cls) != 2 || !cJSON_IsNumber(cls->child->next) ||
            !cJSON_IsArray(sep) || cJSON_GetArraySize(sep) != 2 || !cJSON_IsNumber(sep->child->next))
            return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: cls and sep must be [token, id] pairs", where);
        const cJSON *ids[2] = {cls->child->next, sep->child->next};
        int32_t *dst[2] = {&pre[npre++], &post[npost++]};
        for (int k = 0; k < 2; k++)
            if (!json_int32(ids[k], 0, INT32_MAX - 1, dst[k]))
                return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.%s: id %.17g is not a token id (an integer from 0)", where,
                               k ? "sep" : "cls", ids[k]->valuedouble);
    } else if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
        if (!cJSON_IsArray(single))
            return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.single: missing or not an array", where);
        bool seen_seq = false;
        size_t i = 0;
        for (const cJSON *it = single->child; it; it = it->next, i++) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (sq) {
                seen_seq = true;
                continue;
            }
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (!cJSON_IsString(name))
                return tk_fail(err, err_size, MOGE_ERR_FORMAT,
                               "%s.single[%zu]: expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}", where, i);
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
            if (!cJSON_IsArray(ids))
                return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.single[%zu]: special token \"%.40s\" has no ids in %s.special_tokens",
                               where, i, name->valuestring, where);
            for (const cJSON *x = ids->child; x; x = x->next) {
                int32_t v;
                if (!cJSON_IsNumber(x))
                    return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s.special_tokens[\"%.40s\"].ids: expected integers",
                                   where, name->valuestring);
                if (!json_int32(x, 0, INT32_MAX - 1, &v))
                    return tk_fail(err, err_size, MOGE_ERR_FORMAT,
                                   "%s.special_tokens[\"%.40s\"].ids: id %.17g is not a token id (an integer from 0)", where,
                                   name->valuestring, x->valuedouble);
                if ((seen_seq ? npost : npre) >= 64)
                    return tk_fail(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.single: too many special tokens", where);
                if (seen_seq) post[npost++] = v;
                else pre[npre++] = v;
            }
        }
    } else {
        return tk_fail(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.type: post-processor \"%.40s\" is not supported", where, ty);
    }
    if (ids_append(&t->post_pre, &t->n_post_pre, pre, npre, true) ||
        ids_append(&t->post_post, &t->n_post_post, post, npost, false))
        return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    return MOGE_OK;
}

/* ---- tokenizer_config.json ---------------------------------------------------------------- */

static const char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static moge_status apply_config(moge_tokenizer *t, const cJSON *cfg, const char *file, char *err, size_t err_size) {
    const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
    if (bos) t->bos = moge_tokenizer_token_id(t, bos, strlen(bos));
    if (eos) t->eos = moge_tokenizer_token_id(t, eos, strlen(eos));
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(ct)) {
        tmpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        for (const cJSON *e = ct->child; e; e = e->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tx = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(tx)) continue;
            if (!tmpl || (cJSON_IsString(name) && !strcmp(name->valuestring, "default"))) tmpl = tx->valuestring;
        }
    } else if (ct && !cJSON_IsNull(ct)) {
        return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: chat_template: expected a string or a list", file);
    }
    if (tmpl) {
        t->chat_template = tk_arena_strdup(&t->arena, tmpl, strlen(tmpl));
        if (!t->chat_template) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    }
    t->chat_family = moge_chat_detect(t->chat_template);
    return MOGE_OK;
}

/* BOS/EOS without tokenizer_config.json: the post-processor's first token, or a special added
 * token with a usual name. */
static int32_t special_named(const moge_tokenizer *t, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < t->n_added; k++)
            if (t->added[k].special && !strcmp(t->added[k].content, names[i])) return t->added[k].id;
    return -1;
}

static void guess_bos_eos(moge_tokenizer *t) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"};
    t->bos = t->n_post_pre ? t->post_pre[0] : special_named(t, bos_names, sizeof bos_names / sizeof *bos_names);
    t->eos = special_named(t, eos_names, sizeof eos_names / sizeof *eos_names);
}

/* ---- loading ------------------------------------------------------------------------------ */

static moge_status build(moge_tokenizer *t, const cJSON *root, const char *file, tk_model_text *pre, char *err,
                         size_t err_size) {
    moge_status st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) return tk_fail(err, err_size, MOGE_ERR_FORMAT, "%s: missing \"model\"", file);
    if ((st = tk_bpe_parse(model, file, &t->bpe, &t->arena, pre, err, err_size))) return st;
    if ((st = parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), file, err, err_size))) return st;

    char where[512];
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (j && !cJSON_IsNull(j)) {
        snprintf(where, sizeof where, "%s: normalizer", file);
        if ((st = tk_normalizer_parse(j, where, &t->normalizer, err, err_size))) return st;
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (j && !cJSON_IsNull(j)) {
        snprintf(where, sizeof where, "%s: pre_tokenizer", file);
        if ((st = tk_pretok_parse(j, where, &t->pretok, err, err_size))) return st;
    }
    snprintf(where, sizeof where, "%s: post_processor", file);
    if ((st = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), where, err, err_size)))
        return st;
    snprintf(where, sizeof where, "%s: decoder", file);
    if ((st = tk_decoder_parse(cJSON_GetObjectItemCaseSensitive(root, "decoder"), where, &t->decoder, err, err_size)))
        return st;

    /* The id -> string table: the model's vocabulary, overridden by added tokens. */
    int32_t n = t->bpe.n_vocab;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n) n = t->added[i].id + 1;
    t->n_vocab = n;
    t->piece = calloc((size_t)n + 1, sizeof *t->piece);
    t->special = calloc((size_t)n + 1, 1);
    if (!t->piece || !t->special) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
    for (int32_t i = 0; i < t->bpe.n_vocab; i++) t->piece[i] = t->bpe.vocab[i];
    tk_buf nb = {0};
    for (size_t i = 0; i < t->n_added; i++) {
        tk_added *a = &t->added[i];
        t->piece[a->id].s = a->content;
        t->piece[a->id].len = (uint32_t)a->len;
        t->special[a->id] = a->special;
        if (a->normalized) {
            nb.len = 0;
            if (t->normalizer ? tk_normalize(t->normalizer, a->content, a->len, &nb) : tk_buf_put(&nb, a->content, a->len)) {
                tk_buf_free(&nb);
                return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            }
            a->norm = tk_arena_strdup(&t->arena, nb.p ? nb.p : "", nb.len);
            a->norm_len = nb.len;
            if (!a->norm) {
                tk_buf_free(&nb);
                return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", file);
            }
            if (a->norm_len == 0) a->normalized = false; /* an empty pattern never matches */
        }
    }
    tk_buf_free(&nb);
    tk_pretok_plan_of(t->pretok, &t->plan);
    t->norm_ascii_identity = t->normalizer && tk_normalizer_ascii_identity(t->normalizer);
    for (size_t i = 0; i < t->n_added; i++) {
        const tk_added *a = &t->added[i];
        t->added_first[a->normalized][(unsigned char)(a->normalized ? a->norm[0] : a->content[0])] = true;
    }
    for (int k = 0; k < 2; k++) {
        t->added_only[k] = -2;
        for (int b = 0; b < 256; b++)
            if (t->added_first[k][b]) t->added_only[k] = t->added_only[k] == -2 ? b : -1;
    }
    for (int32_t i = 0; i < n; i++)
        if (t->piece[i].len > t->max_piece_len) t->max_piece_len = t->piece[i].len;
    for (size_t i = 0; i < t->n_post_pre + t->n_post_post; i++) {
        int32_t id = i < t->n_post_pre ? t->post_pre[i] : t->post_post[i - t->n_post_pre];
        if (id >= n || !t->piece[id].s)
            return tk_fail(err, err_size, MOGE_ERR_FORMAT,
                           "%s: post_processor: special token id %d is outside the vocabulary (%d ids%s)", file, id, n,
                           id < n ? ", and none has that id" : "");
    }
    return MOGE_OK;
}

/* A GGUF file's tokenizer: its metadata as the two documents, built as they are. */
static moge_status load_gguf(const char *path, moge_tokenizer **out, char *err, size_t err_size) {
    cJSON *root = NULL, *cfg = NULL;
    moge_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", path);
    t->bos = t->eos = -1;
    moge_status st = tk_gguf_docs(path, &root, &cfg, err, err_size);
    if (st == MOGE_OK) st = build(t, root, path, NULL, err, err_size);
    if (st == MOGE_OK) st = apply_config(t, cfg, path, err, err_size);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) {
        moge_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MOGE_OK;
}

moge_status moge_tokenizer_load(const char *path, moge_tokenizer **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!out) return tk_fail(err, err_size, MOGE_ERR_ARG, "moge_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return tk_fail(err, err_size, MOGE_ERR_ARG, "moge_tokenizer_load: path is NULL");
    (void)tk_byte_to_unicode(0); /* build the shared byte alphabet before any thread uses it */

    if (gguf_is_file(path)) return load_gguf(path, out, err, err_size);
    struct stat sb;
    if (stat(path, &sb) != 0) return tk_fail(err, err_size, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    char *file, *cfg_file;
    if (S_ISDIR(sb.st_mode)) {
        file = join_path(path, "tokenizer.json");
        cfg_file = join_path(path, "tokenizer_config.json");
    } else {
        file = join_path("", path);
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup("");
        cfg_file = dir ? join_path(dir, "tokenizer_config.json") : NULL;
        free(dir);
    }
    moge_tokenizer *t = calloc(1, sizeof *t);
    cJSON *root = NULL, *cfg = NULL;
    tk_model_text pre = {0};
    bool scanned = false;
    char *text = NULL;
    moge_status st = MOGE_OK;
    if (!file || !cfg_file || !t) {
        st = tk_fail(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    t->bos = t->eos = -1;
    if ((st = parse_json_file(file, &root, &pre, &scanned, &text, err, err_size))) goto done;
    if ((st = build(t, root, file, scanned ? &pre : NULL, err, err_size))) goto done;
    if (stat(cfg_file, &sb) == 0) {
        if ((st = parse_json_file(cfg_file, &cfg, NULL, NULL, NULL, err, err_size))) goto done;
        if ((st = apply_config(t, cfg, cfg_file, err, err_size))) goto done;
    } else {
        guess_bos_eos(t);
    }
done:
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    tk_model_text_free(&pre);
    free(text);
    free(file);
    free(cfg_file);
    if (st) {
        moge_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MOGE_OK;
}

void moge_tokenizer_free(moge_tokenizer *t) {
    if (!t) return;
    tk_bpe_free(&t->bpe);
    free(t->added);
    tk_normalizer_free(t->normalizer);
    tk_pretok_free(t->pretok);
    tk_decoder_free(t->decoder);
    free(t->post_pre);
    free(t->post_post);
    free(t->piece);
    free(t->special);
    tk_arena_free(&t->arena);
    free(t);
}

/* ---- queries ------------------------------------------------------------------------------ */

int32_t moge_tokenizer_n_vocab(const moge_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *moge_tokenizer_kind(const moge_tokenizer *t) {
    if (!t) return "none";
    if (t->bpe.byte_fallback) return "BPE, SentencePiece-style with byte fallback";
    if (t->plan.ok && t->plan.byte_map) return "BPE, byte-level";
    return "BPE";
}
int32_t moge_tokenizer_bos(const moge_tokenizer *t) { return t ? t->bos : -1; }
int32_t moge_tokenizer_eos(const moge_tokenizer *t) { return t ? t->eos : -1; }

const char *moge_tokenizer_piece(const moge_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->piece[id].s ? t->piece[id].s : "";
}

int32_t moge_tokenizer_token_id(const moge_tokenizer *t, const char *s, size_t n) {
    if (!t || !s) return -1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, s, n) == 0) return t->added[i].id;
    return tk_strmap_get(&t->bpe.map, s, n);
}

bool moge_tokenizer_is_special(const moge_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && t->special[id];
}

const char *moge_tokenizer_chat_template(const moge_tokenizer *t) { return t ? t->chat_template : NULL; }
moge_chat_family moge_tokenizer_chat_family(const moge_tokenizer *t) { return t ? t->chat_family : MOGE_CHAT_NONE; }

/* ---- encoding ----------------------------------------------------------------------------- */

/* The scratch state of one moge_tokenize call. */
typedef struct {
    tk_wcache cache;
    tk_matcher *matcher; /* made on first use */
    tk_buf norm, word, spaced;
    segments segs;
    tk_pieces pieces;
} enc_ctx;

static void enc_ctx_free(enc_ctx *c) {
    tk_wcache_free(&c->cache);
    tk_matcher_free(c->matcher);
    tk_buf_free(&c->norm);
    tk_buf_free(&c->word);
    tk_buf_free(&c->spaced);
    free(c->segs.v);
    tk_pieces_free(&c->pieces);
}

/* One word of the streaming pre-tokenizer (tk_pretok_plan): the ByteLevel steps, then the model.
 * With ByteLevel the cache is keyed by the word before the mapping (a function of it), so a word
 * seen before costs one lookup, and the model runs without the cache, which would otherwise mix
 * the two spellings; without, the model uses the cache itself. */
static int plan_word(const moge_tokenizer *t, enc_ctx *c, const char *w, size_t n, tk_ids *ids) {
    const tk_pretok_plan *pl = &t->plan;
    if (!pl->byte_map) return tk_bpe_encode(&t->bpe, w, n, ids, &c->cache);
    uint64_t h = 0;
    bool cached = n <= TK_WCACHE_MAX_WORD;
    if (cached) {
        h = tk_hash(w, n);
        size_t k;
        const int32_t *v = tk_wcache_get(&c->cache, w, n, h, &k);
        if (v) return tk_ids_append(ids, v, k);
    }
    size_t before = ids->n;
    c->word.len = 0;
    if (tk_buf_reserve(&c->word, 2 * n + 2)) return -1;
    size_t k = 0;
    if (pl->space_per_word && w[0] != ' ') k = tk_byte_level_map(" ", 1, c->word.p);
    k += tk_byte_level_map(w, n, c->word.p + k);
    if (tk_bpe_encode(&t->bpe, c->word.p, k, ids, NULL)) return -1;
    /* a word without ids (no unk token) is not cached: ids->v may still be NULL */
    return cached && ids->n > before ? tk_wcache_put(&c->cache, w, n, h, ids->v + before, ids->n - before) : 0;
}

/* Pre-tokenizes and encodes one piece s[0..n) (n > 0) along t->plan. */
static int plan_piece(const moge_tokenizer *t, enc_ctx *c, const char *s, size_t n, tk_ids *ids) {
    const tk_pretok_plan *pl = &t->plan;
    if (pl->space_before_re && s[0] != ' ') {
        c->spaced.len = 0;
        if (tk_buf_putc(&c->spaced, ' ') || tk_buf_put(&c->spaced, s, n)) return -1;
        s = c->spaced.p;
        n = c->spaced.len;
    }
    if (!pl->re) return plan_word(t, c, s, n, ids);
    size_t at = 0, a, b;
    int rc;
    while ((rc = tk_regex_next(pl->re, &c->matcher, s, n, at, &a, &b)) == 1) {
        if (a > at && plan_word(t, c, s + at, a - at, ids)) return -1;
        if (plan_word(t, c, s + a, b - a, ids)) return -1;
        at = b;
    }
    if (rc) return rc;
    return at < n ? plan_word(t, c, s + at, n - at, ids) : 0;
}

/* Normalizes one plain segment, splits it on normalized added tokens, pre-tokenizes and runs the
 * model. Returns 0, -1 (out of memory) or -2 (regex failure). */
static int encode_segment(const moge_tokenizer *t, enc_ctx *c, const char *s, size_t n, bool at_origin,
                          tk_ids *ids) {
    int rc = 0;
    const char *ns = s;
    size_t nn = n;
    if (t->normalizer && !(t->norm_ascii_identity && tk_ascii_prefix(s, n) == n)) {
        if (tk_normalize(t->normalizer, s, n, &c->norm)) return -1;
        ns = c->norm.p ? c->norm.p : "";
        nn = c->norm.len;
    }
    c->segs.n = 0;
    if (split_added(t, true, ns, nn, &c->segs)) return -1;
    for (size_t i = 0; i < c->segs.n && !rc; i++) {
        const segment *g = &c->segs.v[i];
        if (g->id >= 0) {
            rc = tk_ids_push(ids, g->id);
            continue;
        }
        if (t->plan.ok) {
            rc = plan_piece(t, c, ns + g->start, g->end - g->start, ids);
            continue;
        }
        tk_pieces *pieces = &c->pieces;
        tk_pieces_clear(pieces);
        if (tk_pieces_add(pieces, ns + g->start, g->end - g->start, at_origin && g->start == 0)) return -1;
        if (t->pretok && (rc = tk_pretokenize(t->pretok, pieces))) break;
        for (size_t k = 0; k < pieces->n && !rc; k++)
            rc = tk_bpe_encode(&t->bpe, pieces->text.p + pieces->v[k].off, pieces->v[k].len, ids, &c->cache);
    }
    return rc;
}

moge_status moge_tokenize(const moge_tokenizer *t, const char *text, size_t len, bool add_special, int32_t *ids,
                          size_t max_ids, size_t *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || (len && !text) || !n_ids || (max_ids && !ids)) return MOGE_ERR_ARG;
    tk_buf clean = {0};
    tk_ids acc = {0};
    segments segs = {0};
    enc_ctx ctx = {0};
    int rc = 0;
    if (!tk_utf8_valid(text, len)) {
        if (tk_utf8_lossy(&clean, text, len)) rc = -1;
        text = clean.p;
        len = clean.len;
    }
    if (!rc && add_special)
        for (size_t i = 0; i < t->n_post_pre && !rc; i++) rc = tk_ids_push(&acc, t->post_pre[i]);
    if (!rc) rc = split_added(t, false, text ? text : "", len, &segs);
    for (size_t i = 0; i < segs.n && !rc; i++) {
        const segment *g = &segs.v[i];
        rc = g->id >= 0 ? tk_ids_push(&acc, g->id) : encode_segment(t, &ctx, text + g->start, g->end - g->start, g->start == 0, &acc);
    }
    if (!rc && add_special)
        for (size_t i = 0; i < t->n_post_post && !rc; i++) rc = tk_ids_push(&acc, t->post_post[i]);
    moge_status st = MOGE_OK;
    if (rc == -1) st = MOGE_ERR_NOMEM;
    else if (rc) st = MOGE_ERR_UNSUPPORTED; /* the pre-tokenizer regex hit a PCRE2 resource limit */
    else {
        *n_ids = acc.n;
        if (acc.n > max_ids) st = MOGE_ERR_BUFFER;
        else if (acc.n) memcpy(ids, acc.v, acc.n * sizeof *ids);
    }
    tk_buf_free(&clean);
    tk_ids_free(&acc);
    free(segs.v);
    enc_ctx_free(&ctx);
    return st;
}
