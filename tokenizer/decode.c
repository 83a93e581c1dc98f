/*
 * decode.c — the "decoder" of tokenizer.json and the public decoding API: moge_detokenize and
 * the streaming detokenizer.
 * Decoders supported: Replace (string pattern), ByteFallback, Fuse, Strip, ByteLevel, Metaspace
 * and Sequence of them; no decoder joins the tokens with spaces, as the reference does.
 * Design: the chain runs as a pipeline of streaming stages. Each stage receives the tokens the
 * previous stage produced, one at a time, and may hold some text back until it knows more (a
 * ByteFallback run of "<0xXX>" tokens, a UTF-8 character cut between ByteLevel tokens, a
 * Replace pattern or trailing Strip characters cut between chunks). Stages after Fuse (or
 * ByteLevel, which fuses) see the text as one token in the reference; here they receive it in
 * chunks and are written to give the same result for any chunking. moge_detokenize() pushes all
 * ids through a fresh stream and flushes it, so the streamed pieces always concatenate to the
 * one-shot result, and every emitted piece is whole UTF-8 characters.
 */
#include "tokenizer/tokenizer.h"
#include "runtime/json_num.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { D_REPLACE, D_BYTE_FALLBACK, D_FUSE, D_STRIP, D_BYTELEVEL, D_METASPACE, D_JOIN } dtype;

typedef struct {
    dtype type;
    bool fused; /* an earlier stage fused the tokens into one text */
    char *pat, *content;
    size_t pat_len, content_len;
    char ch[8]; /* Strip content / Metaspace replacement (one character, UTF-8) */
    size_t ch_len;
    size_t start, stop;
    bool meta_prepend; /* Metaspace: prepend_scheme != never */
} dstage;

struct tk_decoder {
    dstage *st;
    size_t n, cap;
    size_t expand; /* worst-case growth factor of the chain */
};

void tk_decoder_free(tk_decoder *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->st[i].pat);
        free(d->st[i].content);
    }
    free(d->st);
    free(d);
}

static dstage *add_stage(tk_decoder *d, dtype t) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        dstage *v = realloc(d->st, cap * sizeof *v);
        if (!v) return NULL;
        d->st = v;
        d->cap = cap;
    }
    dstage *s = &d->st[d->n++];
    memset(s, 0, sizeof *s);
    s->type = t;
    return s;
}

static moge_status one_char(const cJSON *j, const char *key, const char *where, dstage *s, char *err,
                            size_t err_size) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    size_t l = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    if (!l || tk_utf8_char(v->valuestring, l, NULL) != l)
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.%s: expected a one-character string", where, key);
    memcpy(s->ch, v->valuestring, l);
    s->ch_len = l;
    return MOGE_OK;
}

static moge_status parse_into(tk_decoder *d, const cJSON *j, const char *where, char *err, size_t err_size) {
    if (!cJSON_IsObject(j)) return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: expected an object", where);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.type: missing or not a string", where);
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(items))
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.decoders: missing or not an array", where);
        size_t i = 0;
        for (const cJSON *it = items->child; it; it = it->next, i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", where, i);
            moge_status st = parse_into(d, it, sub, err, err_size);
            if (st) return st;
        }
        return MOGE_OK;
    }
    bool fused = false;
    for (size_t i = 0; i < d->n; i++)
        if (d->st[i].type == D_FUSE || d->st[i].type == D_BYTELEVEL) fused = true;
    dstage *s;
    if (!strcmp(t, "Replace")) s = add_stage(d, D_REPLACE);
    else if (!strcmp(t, "ByteFallback")) s = add_stage(d, D_BYTE_FALLBACK);
    else if (!strcmp(t, "Fuse")) s = add_stage(d, D_FUSE);
    else if (!strcmp(t, "Strip")) s = add_stage(d, D_STRIP);
    else if (!strcmp(t, "ByteLevel")) s = add_stage(d, D_BYTELEVEL);
    else if (!strcmp(t, "Metaspace")) s = add_stage(d, D_METASPACE);
    else return set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.type: decoder \"%.40s\" is not supported", where, t);
    if (!s) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    s->fused = fused;
    if ((s->type == D_BYTE_FALLBACK) && fused)
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s: %s after Fuse/ByteLevel is not supported", where, t);
    switch (s->type) {
    case D_REPLACE: {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");
        if (cJSON_GetObjectItemCaseSensitive(pat, "Regex"))
            return set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.pattern: a Regex pattern in a decoder is not supported",
                           where);
        if (!cJSON_IsString(ps) || !ps->valuestring[0])
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern: expected {\"String\": non-empty string}", where);
        if (!cJSON_IsString(c))
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.content: missing or not a string", where);
        s->pat_len = strlen(ps->valuestring);
        s->content_len = strlen(c->valuestring);
        s->pat = malloc(s->pat_len + 1);
        s->content = malloc(s->content_len + 1);
        if (!s->pat || !s->content) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
        memcpy(s->pat, ps->valuestring, s->pat_len + 1);
        memcpy(s->content, c->valuestring, s->content_len + 1);
        size_t f = (s->content_len + s->pat_len - 1) / s->pat_len;
        if (f > 1) d->expand *= f;
        return MOGE_OK;
    }
    case D_STRIP: {
        moge_status st = one_char(j, "content", where, s, err, err_size);
        if (st) return st;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        int64_t start, stop;
        if (!json_integer(a, 0, 1e9, &start) || !json_integer(b, 0, 1e9, &stop))
            return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: start and stop must be non-negative integers", where);
        s->start = (size_t)start;
        s->stop = (size_t)stop;
        return MOGE_OK;
    }
    case D_METASPACE: {
        moge_status st = one_char(j, "replacement", where, s, err, err_size);
        if (st) return st;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
        if (cJSON_IsString(ps)) s->meta_prepend = strcmp(ps->valuestring, "never") != 0;
        else s->meta_prepend = !cJSON_IsBool(ap) || cJSON_IsTrue(ap);
        return MOGE_OK;
    }
    case D_BYTE_FALLBACK:
    case D_BYTELEVEL: d->expand *= 3; return MOGE_OK;
    default: return MOGE_OK;
    }
}

moge_status tk_decoder_parse(const void *json, const char *where, tk_decoder **out, char *err, size_t err_size) {
    *out = NULL;
    tk_decoder *d = calloc(1, sizeof *d);
    if (!d) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    d->expand = 1;
    moge_status st = MOGE_OK;
    if (!json || cJSON_IsNull((const cJSON *)json)) {
        if (!add_stage(d, D_JOIN)) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    } else {
        st = parse_into(d, json, where, err, err_size);
    }
    if (st) {
        tk_decoder_free(d);
        return st;
    }
    *out = d;
    return MOGE_OK;
}

/* ---- the stream --------------------------------------------------------------------------- */

typedef struct {
    tk_buf hold;
    size_t count; /* tokens seen (Metaspace, join) or leading characters stripped (Strip) */
    bool start_done;
} sstate;

struct moge_detok_stream {
    const moge_tokenizer *tok;
    const tk_decoder *dec;
    sstate *st;
    tk_buf out; /* produced but not yet delivered */
    size_t skip; /* bytes still to drop from what is produced: the primed prompt's held text */
};

static int push(moge_detok_stream *s, size_t k, const char *p, size_t n);
static int flush(moge_detok_stream *s, size_t k);

static bool is_byte_token(const char *p, size_t n, uint8_t *b) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *b = (uint8_t)v;
    return true;
}

/* ByteFallback: a finished run becomes one token, or one U+FFFD token per byte if invalid. */
static int end_byte_run(moge_detok_stream *s, size_t k) {
    tk_buf *h = &s->st[k].hold;
    if (!h->len) return 0;
    int rc = 0;
    if (tk_utf8_valid(h->p, h->len)) {
        rc = push(s, k + 1, h->p, h->len);
    } else {
        for (size_t i = 0; i < h->len && !rc; i++) rc = push(s, k + 1, "\xEF\xBF\xBD", 3);
    }
    h->len = 0;
    return rc;
}

/* Whether s[0..n) is the start of a valid UTF-8 character cut short by the end of the data. */
static bool utf8_incomplete(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    size_t want = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    return want > n && tk_utf8_bad_len(s, n) == n;
}

/* Emits the complete UTF-8 prefix of hold (invalid sequences as U+FFFD), keeps an incomplete
 * tail unless final. */
static int drain_utf8(moge_detok_stream *s, size_t k, bool final) {
    tk_buf *h = &s->st[k].hold;
    tk_buf o = {0};
    size_t i = 0;
    int rc = 0;
    while (i < h->len && !rc) {
        size_t l = (unsigned char)h->p[i] < 0x80 ? 1 : tk_utf8_char(h->p + i, h->len - i, NULL);
        if (l) {
            rc = tk_buf_put(&o, h->p + i, l);
            i += l;
        } else if (!final && utf8_incomplete(h->p + i, h->len - i)) {
            break;
        } else {
            rc = tk_buf_put(&o, "\xEF\xBF\xBD", 3);
            i += tk_utf8_bad_len(h->p + i, h->len - i);
        }
    }
    if (!rc && o.len) rc = push(s, k + 1, o.p, o.len);
    tk_buf_free(&o);
    if (i) memmove(h->p, h->p + i, h->len - i);
    h->len -= i;
    return rc;
}

/* Replace on a fused stream: replaces the matches that are certain, keeps a possible prefix. */
static int replace_fused(moge_detok_stream *s, size_t k, bool final) {
    const dstage *d = &s->dec->st[k];
    tk_buf *h = &s->st[k].hold;
    tk_buf o = {0};
    size_t i = 0;
    int rc = 0;
    while (i < h->len && !rc) {
        if (i + d->pat_len <= h->len && memcmp(h->p + i, d->pat, d->pat_len) == 0) {
            rc = tk_buf_put(&o, d->content, d->content_len);
            i += d->pat_len;
        } else if (!final && i + d->pat_len > h->len) {
            break;
        } else {
            rc = tk_buf_put(&o, h->p + i, 1);
            i++;
        }
    }
    /* Never split a UTF-8 character between what is emitted and what is held. */
    while (i > 0 && i < h->len && ((unsigned char)h->p[i] & 0xC0) == 0x80 && o.len) {
        i--;
        o.len--;
    }
    if (!rc && o.len) rc = push(s, k + 1, o.p, o.len);
    tk_buf_free(&o);
    if (i) memmove(h->p, h->p + i, h->len - i);
    h->len -= i;
    return rc;
}

static int replace_token(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    const dstage *d = &s->dec->st[k];
    tk_buf o = {0};
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i + d->pat_len <= n && !rc;) {
        if (memcmp(p + i, d->pat, d->pat_len) == 0) {
            rc = tk_buf_put(&o, p + at, i - at) || tk_buf_put(&o, d->content, d->content_len);
            i += d->pat_len;
            at = i;
        } else {
            i++;
        }
    }
    if (!rc) rc = tk_buf_put(&o, p + at, n - at);
    if (!rc) rc = push(s, k + 1, o.p ? o.p : "", o.len);
    tk_buf_free(&o);
    return rc;
}

static int strip_token(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    const dstage *d = &s->dec->st[k];
    size_t a = 0, b = n, cl = d->ch_len;
    for (size_t i = 0; i < d->start && a + cl <= n && memcmp(p + a, d->ch, cl) == 0; i++) a += cl;
    for (size_t i = 0; i < d->stop && b >= a + cl && memcmp(p + b - cl, d->ch, cl) == 0; i++) b -= cl;
    return push(s, k + 1, p + a, b - a);
}

static int strip_fused(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    const dstage *d = &s->dec->st[k];
    sstate *ss = &s->st[k];
    size_t cl = d->ch_len, a = 0;
    while (!ss->start_done && a < n) {
        if (ss->count < d->start && a + cl <= n && memcmp(p + a, d->ch, cl) == 0) {
            a += cl;
            ss->count++;
        } else {
            ss->start_done = true;
        }
    }
    if (ss->count >= d->start) ss->start_done = true;
    if (a == n) return 0;
    if (d->stop == 0) return push(s, k + 1, p + a, n - a);
    /* Hold the trailing run of content characters (at most `stop` of them). */
    tk_buf *h = &ss->hold;
    if (tk_buf_put(h, p + a, n - a)) return -1;
    size_t b = h->len, run = 0;
    while (run < d->stop && b >= cl && memcmp(h->p + b - cl, d->ch, cl) == 0) {
        b -= cl;
        run++;
    }
    int rc = b ? push(s, k + 1, h->p, b) : 0;
    if (b) memmove(h->p, h->p + b, h->len - b);
    h->len -= b;
    return rc;
}

static int metaspace(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    const dstage *d = &s->dec->st[k];
    bool first = d->fused || s->st[k].count == 0;
    s->st[k].count++;
    tk_buf o = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        if (i + d->ch_len <= n && memcmp(p + i, d->ch, d->ch_len) == 0) {
            if (!(first && d->meta_prepend)) rc = tk_buf_putc(&o, ' ');
            i += d->ch_len;
        } else {
            rc = tk_buf_put(&o, p + i, 1);
            i++;
        }
    }
    if (!rc) rc = push(s, k + 1, o.p ? o.p : "", o.len);
    tk_buf_free(&o);
    return rc;
}

static int bytelevel(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    tk_buf *h = &s->st[k].hold;
    size_t mark = h->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_char(p + i, n - i, &cp);
        int b = l ? tk_unicode_to_byte(cp) : -1;
        if (b < 0) { /* not all characters are in the alphabet: the token's own bytes */
            h->len = mark;
            if (tk_buf_put(h, p, n)) return -1;
            break;
        }
        if (tk_buf_putc(h, (char)b)) return -1;
        i += l;
    }
    return drain_utf8(s, k, false);
}

static int push(moge_detok_stream *s, size_t k, const char *p, size_t n) {
    if (k == s->dec->n) return tk_buf_put(&s->out, p, n);
    const dstage *d = &s->dec->st[k];
    sstate *ss = &s->st[k];
    switch (d->type) {
    case D_FUSE: return push(s, k + 1, p, n);
    case D_REPLACE:
        if (!d->fused) return replace_token(s, k, p, n);
        return tk_buf_put(&ss->hold, p, n) ? -1 : replace_fused(s, k, false);
    case D_BYTE_FALLBACK: {
        uint8_t b;
        if (is_byte_token(p, n, &b)) return tk_buf_putc(&ss->hold, (char)b);
        if (end_byte_run(s, k)) return -1;
        return push(s, k + 1, p, n);
    }
    case D_STRIP: return d->fused ? strip_fused(s, k, p, n) : strip_token(s, k, p, n);
    case D_METASPACE: return metaspace(s, k, p, n);
    case D_BYTELEVEL: return bytelevel(s, k, p, n);
    case D_JOIN:
        if (ss->count++ && push(s, k + 1, " ", 1)) return -1;
        return push(s, k + 1, p, n);
    }
    return -1;
}

static int flush(moge_detok_stream *s, size_t k) {
    if (k == s->dec->n) return 0;
    const dstage *d = &s->dec->st[k];
    sstate *ss = &s->st[k];
    int rc = 0;
    switch (d->type) {
    case D_REPLACE:
        if (d->fused) rc = replace_fused(s, k, true);
        break;
    case D_BYTE_FALLBACK: rc = end_byte_run(s, k); break;
    case D_BYTELEVEL: rc = drain_utf8(s, k, true); break;
    case D_STRIP: ss->hold.len = 0; break; /* trailing characters that are stripped */
    default: break;
    }
    return rc ? rc : flush(s, k + 1);
}

moge_status moge_detok_stream_new(const moge_tokenizer *tok, moge_detok_stream **out) {
    if (!out) return MOGE_ERR_ARG;
    *out = NULL;
    if (!tok) return MOGE_ERR_ARG;
    moge_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return MOGE_ERR_NOMEM;
    s->tok = tok;
    s->dec = tok->decoder;
    s->st = calloc(s->dec->n + 1, sizeof *s->st);
    if (!s->st) {
        free(s);
        return MOGE_ERR_NOMEM;
    }
    *out = s;
    return MOGE_OK;
}

void moge_detok_stream_free(moge_detok_stream *s) {
    if (!s) return;
    for (size_t i = 0; i < s->dec->n; i++) tk_buf_free(&s->st[i].hold);
    free(s->st);
    tk_buf_free(&s->out);
    free(s);
}

size_t moge_detok_stream_max_bytes(const moge_detok_stream *s) {
    if (!s) return 0;
    size_t held = 0;
    for (size_t i = 0; i < s->dec->n; i++) held += s->st[i].hold.len;
    return s->out.len + (held + s->tok->max_piece_len + 1) * s->dec->expand + 16;
}

static moge_status deliver(moge_detok_stream *s, char *out, size_t cap, size_t *n_out) {
    if (s->skip && s->out.len) { /* the end of a primed prompt's text: not the caller's */
        size_t k = s->skip < s->out.len ? s->skip : s->out.len;
        memmove(s->out.p, s->out.p + k, s->out.len - k);
        s->out.len -= k;
        s->skip -= k;
    }
    size_t n = s->out.len;
    if (n_out) *n_out = n;
    if (n + 1 > cap || !out) {
        if (out && cap) out[0] = '\0';
        return n == 0 && !out ? MOGE_OK : MOGE_ERR_BUFFER;
    }
    if (n) memcpy(out, s->out.p, n);
    out[n] = '\0';
    s->out.len = 0;
    return MOGE_OK;
}

static moge_status feed(moge_detok_stream *s, int32_t id) {
    const moge_tokenizer *t = s->tok;
    if (id < 0 || id >= t->n_vocab) return MOGE_ERR_ARG;
    const tk_str *p = &t->piece[id];
    if (!p->s) return MOGE_OK; /* an id no token has: the reference skips it */
    return push(s, 0, p->s, p->len) ? MOGE_ERR_NOMEM : MOGE_OK;
}

moge_status moge_detok_stream_push(moge_detok_stream *s, int32_t id, char *out, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!s) return MOGE_ERR_ARG;
    moge_status st = feed(s, id);
    if (st) return st;
    return deliver(s, out, cap, n_out);
}

moge_status moge_detok_stream_flush(moge_detok_stream *s, char *out, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!s) return MOGE_ERR_ARG;
    if (flush(s, 0)) return MOGE_ERR_NOMEM;
    return deliver(s, out, cap, n_out);
}

moge_status moge_detok_stream_prime(moge_detok_stream *s, const int32_t *ids, size_t n_ids) {
    if (!s || (n_ids && !ids)) return MOGE_ERR_ARG;
    const moge_tokenizer *t = s->tok;
    int32_t *text_ids = malloc((n_ids ? n_ids : 1) * sizeof *text_ids);
    if (!text_ids) return MOGE_ERR_NOMEM;
    size_t n_text = 0, delivered = s->out.len, full = 0;
    moge_status st = MOGE_OK;
    for (size_t i = 0; i < n_ids && st == MOGE_OK; i++) {
        if (moge_tokenizer_is_special(t, ids[i])) continue;
        text_ids[n_text++] = ids[i];
        st = feed(s, ids[i]);
    }
    delivered = s->out.len - delivered;
    s->out.len = 0; /* the prompt's text that came out: the caller has it */
    /* the whole prompt's text: its length minus what came out is what the stream holds */
    if (st == MOGE_OK && n_text) {
        moge_status d = moge_detokenize(t, text_ids, n_text, NULL, 0, &full);
        if (d != MOGE_OK && d != MOGE_ERR_BUFFER) st = d;
        else s->skip = full > delivered ? full - delivered : 0;
    }
    free(text_ids);
    return st;
}

moge_status moge_detokenize(const moge_tokenizer *tok, const int32_t *ids, size_t n_ids, char *out, size_t cap,
                            size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!tok || (n_ids && !ids)) return MOGE_ERR_ARG;
    moge_detok_stream *s;
    moge_status st = moge_detok_stream_new(tok, &s);
    if (st) return st;
    for (size_t i = 0; i < n_ids && !st; i++) st = feed(s, ids[i]);
    if (!st && flush(s, 0)) st = MOGE_ERR_NOMEM;
    if (!st) st = deliver(s, out, cap, n_out);
    moge_detok_stream_free(s);
    return st;
}
