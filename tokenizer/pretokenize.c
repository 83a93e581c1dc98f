/*
 * pretokenize.c — the "pre_tokenizer" of tokenizer.json: Split (string or regex pattern, every
 * split behaviour, invert), ByteLevel (optional GPT-2 regex, add_prefix_space, and the GPT-2
 * byte -> unicode alphabet), Metaspace (replacement, prepend_scheme always/first/never, split),
 * Digits, Whitespace, WhitespaceSplit, Punctuation and Sequence.
 * Contract: tk_pretokenize turns a list of pieces into the list of words the model encodes,
 * following the reference's NormalizedString::split semantics (empty pieces are dropped).
 * tk_pretok_plan_of recognises the pipelines the encoder can run in one streaming pass instead.
 */
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } behavior;

typedef enum { P_SPLIT, P_BYTELEVEL, P_METASPACE, P_DIGITS, P_WHITESPACE, P_WSSPLIT, P_PUNCT, P_SEQUENCE } ptype;

typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

struct tk_pretok {
    ptype type;
    tk_regex *re; /* Split, ByteLevel with use_regex, Whitespace */
    behavior beh;
    bool invert;
    bool add_prefix_space;
    char repl[8]; /* Metaspace replacement character, UTF-8 */
    size_t repl_len;
    prepend_scheme scheme;
    bool split;
    bool individual_digits;
    tk_pretok **items;
    size_t n_items;
};

/* ---- GPT-2 byte alphabet ------------------------------------------------------------------ */

static char byte_char[256][3];
static int16_t char_byte[324]; /* code points 0..323 cover the whole alphabet */
static int alphabet_ready;

static void build_alphabet(void) {
    if (__atomic_load_n(&alphabet_ready, __ATOMIC_ACQUIRE)) return;
    uint32_t cp_of[256];
    int next = 0;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of[b] = self ? (uint32_t)b : (uint32_t)(256 + next++);
    }
    for (int c = 0; c < 324; c++) char_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        char tmp[4];
        size_t l = tk_utf8_put(cp_of[b], tmp);
        memset(byte_char[b], 0, 3);
        memcpy(byte_char[b], tmp, l);
        char_byte[cp_of[b]] = (int16_t)b;
    }
    __atomic_store_n(&alphabet_ready, 1, __ATOMIC_RELEASE);
}

const char *tk_byte_to_unicode(uint8_t b) {
    build_alphabet();
    return byte_char[b];
}

size_t tk_byte_level_map(const char *s, size_t n, char *out) {
    build_alphabet();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *u = byte_char[(unsigned char)s[i]];
        out[k++] = u[0];
        if (u[1]) out[k++] = u[1];
    }
    return k;
}

int tk_unicode_to_byte(uint32_t cp) {
    build_alphabet();
    return cp < 324 ? char_byte[cp] : -1;
}

/* ---- pieces ------------------------------------------------------------------------------- */

int tk_pieces_add(tk_pieces *p, const char *s, size_t n, bool at_origin) {
    if (n == 0) return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        tk_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return -1;
        p->v = v;
        p->cap = cap;
    }
    size_t off = p->text.len;
    if (tk_buf_put(&p->text, s, n)) return -1;
    p->v[p->n].off = off;
    p->v[p->n].len = n;
    p->v[p->n].at_origin = at_origin;
    p->n++;
    return 0;
}

void tk_pieces_clear(tk_pieces *p) {
    p->n = 0;
    p->text.len = 0;
}

void tk_pieces_free(tk_pieces *p) {
    free(p->v);
    tk_buf_free(&p->text);
    memset(p, 0, sizeof *p);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_items; i++) tk_pretok_free(p->items[i]);
    free(p->items);
    tk_regex_free(p->re);
    free(p);
}

static bool get_bool(const cJSON *j, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static moge_status parse_behavior(const cJSON *j, const char *where, behavior dflt, behavior *out, char *err,
                                  size_t err_size) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    *out = dflt;
    if (!v) return MOGE_OK;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    if (cJSON_IsString(v))
        for (int i = 0; i < 5; i++)
            if (!strcmp(v->valuestring, names[i])) {
                *out = (behavior)i;
                return MOGE_OK;
            }
    return set_err(err, err_size, MOGE_ERR_FORMAT,
                   "%s.behavior: expected one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous",
                   where);
}

moge_status tk_pretok_parse(const void *json, const char *where, tk_pretok **out, char *err, size_t err_size) {
    const cJSON *j = json;
    *out = NULL;
    if (!cJSON_IsObject(j)) return set_err(err, err_size, MOGE_ERR_FORMAT, "%s: expected an object", where);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return set_err(err, err_size, MOGE_ERR_FORMAT, "%s.type: missing or not a string", where);
    const char *t = type->valuestring;
    tk_pretok *p = calloc(1, sizeof *p);
    if (!p) return set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
    moge_status st = MOGE_OK;
    char msg[200];
    if (!strcmp(t, "Split")) {
        p->type = P_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        if (cJSON_IsString(ps) || cJSON_IsString(pr)) {
            const char *s = cJSON_IsString(ps) ? ps->valuestring : pr->valuestring;
            p->re = tk_regex_new(s, strlen(s), cJSON_IsString(ps), msg, sizeof msg);
            if (!p->re)
                st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern.%s: %s", where,
                             cJSON_IsString(ps) ? "String" : "Regex", msg);
        } else {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}",
                         where);
        }
        if (!st) st = parse_behavior(j, where, B_ISOLATED, &p->beh, err, err_size);
        p->invert = get_bool(j, "invert", false);
    } else if (!strcmp(t, "ByteLevel")) {
        p->type = P_BYTELEVEL;
        p->add_prefix_space = get_bool(j, "add_prefix_space", true);
        if (get_bool(j, "use_regex", true)) {
            p->re = tk_regex_new(GPT2_PATTERN, strlen(GPT2_PATTERN), false, msg, sizeof msg);
            if (!p->re) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: %s", where, msg);
        }
    } else if (!strcmp(t, "Metaspace")) {
        p->type = P_METASPACE;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        uint32_t cp;
        size_t rl = cJSON_IsString(r) ? strlen(r->valuestring) : 0;
        if (!cJSON_IsString(r) || rl == 0 || tk_utf8_char(r->valuestring, rl, &cp) != rl) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.replacement: expected a one-character string", where);
        } else {
            memcpy(p->repl, r->valuestring, rl);
            p->repl_len = rl;
        }
        p->split = get_bool(j, "split", true);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        if (cJSON_IsString(ps)) {
            if (!strcmp(ps->valuestring, "always")) p->scheme = PREPEND_ALWAYS;
            else if (!strcmp(ps->valuestring, "first")) p->scheme = PREPEND_FIRST;
            else if (!strcmp(ps->valuestring, "never")) p->scheme = PREPEND_NEVER;
            else if (!st)
                st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.prepend_scheme: expected always, first or never",
                             where);
        } else {
            p->scheme = get_bool(j, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
    } else if (!strcmp(t, "Digits")) {
        p->type = P_DIGITS;
        p->individual_digits = get_bool(j, "individual_digits", false);
    } else if (!strcmp(t, "Whitespace")) {
        p->type = P_WHITESPACE;
        static const char ws[] = "\\w+|[^\\w\\s]+";
        p->re = tk_regex_new(ws, strlen(ws), false, msg, sizeof msg);
        if (!p->re) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: %s", where, msg);
    } else if (!strcmp(t, "WhitespaceSplit")) {
        p->type = P_WSSPLIT;
    } else if (!strcmp(t, "Punctuation")) {
        p->type = P_PUNCT;
        st = parse_behavior(j, where, B_ISOLATED, &p->beh, err, err_size);
    } else if (!strcmp(t, "Sequence")) {
        p->type = P_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(items)) {
            st = set_err(err, err_size, MOGE_ERR_FORMAT, "%s.pretokenizers: missing or not an array", where);
        } else {
            size_t cnt = (size_t)cJSON_GetArraySize(items);
            p->items = calloc(cnt ? cnt : 1, sizeof *p->items);
            if (!p->items) st = set_err(err, err_size, MOGE_ERR_NOMEM, "%s: out of memory", where);
            size_t i = 0;
            for (const cJSON *it = items->child; it && !st; it = it->next, i++) {
                char sub[256];
                snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
                st = tk_pretok_parse(it, sub, &p->items[i], err, err_size);
                if (!st) p->n_items = i + 1;
            }
        }
    } else {
        st = set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "%s.type: pre-tokenizer \"%.40s\" is not supported", where,
                     t);
    }
    if (st) {
        tk_pretok_free(p);
        return st;
    }
    *out = p;
    return MOGE_OK;
}

/* ---- splitting ---------------------------------------------------------------------------- */

typedef struct {
    size_t a, b;
    bool match;
} event;

typedef struct {
    event *v;
    size_t n, cap;
} events;

static int ev_push(events *e, size_t a, size_t b, bool match) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 32;
        event *v = realloc(e->v, cap * sizeof *v);
        if (!v) return -1;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = (event){a, b, match};
    return 0;
}

/* Match spans -> events covering [0, n) (the reference's find_matches). */
static int spans_to_events(const tk_spans *sp, size_t n, bool invert, events *e) {
    size_t prev = 0;
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->v[i].start > prev && ev_push(e, prev, sp->v[i].start, invert)) return -1;
        if (ev_push(e, sp->v[i].start, sp->v[i].end, !invert)) return -1;
        prev = sp->v[i].end;
    }
    if (prev < n && ev_push(e, prev, n, invert)) return -1;
    return 0;
}

/* Applies a split behaviour to events and adds the resulting pieces of s to out. */
static int emit(events *e, behavior beh, const char *s, bool at_origin, tk_pieces *out) {
    event *v = e->v;
    size_t m = 0; /* compacted count */
    switch (beh) {
    case B_REMOVED:
        for (size_t i = 0; i < e->n; i++)
            if (!v[i].match) v[m++] = v[i];
        break;
    case B_ISOLATED: m = e->n; break;
    case B_CONTIGUOUS: {
        int prev = -1;
        for (size_t i = 0; i < e->n; i++) {
            if (prev == (int)v[i].match && m) v[m - 1].b = v[i].b;
            else v[m++] = v[i];
            prev = v[i].match;
        }
        break;
    }
    case B_MERGED_PREV: {
        bool prev = false;
        for (size_t i = 0; i < e->n; i++) {
            bool mt = v[i].match;
            if (mt && !prev && m) v[m - 1].b = v[i].b;
            else v[m++] = v[i];
            prev = mt;
        }
        break;
    }
    case B_MERGED_NEXT: {
        /* Walk backwards: a match that follows a non-match joins the piece after it. */
        bool prev = false;
        size_t k = e->n;
        for (size_t i = e->n; i-- > 0;) {
            bool mt = v[i].match;
            if (mt && !prev && k < e->n) v[k].a = v[i].a;
            else v[--k] = v[i];
            prev = mt;
        }
        for (size_t i = k; i < e->n; i++) v[m++] = v[i];
        break;
    }
    }
    for (size_t i = 0; i < m; i++)
        if (tk_pieces_add(out, s + v[i].a, v[i].b - v[i].a, at_origin && v[i].a == 0)) return -1;
    return 0;
}

static int split_regex(const tk_regex *re, const char *s, size_t n, bool invert, behavior beh, bool at_origin,
                       tk_pieces *out) {
    tk_spans sp = {0};
    events e = {0};
    int rc = tk_regex_find_all(re, s, n, &sp);
    if (rc == 0) rc = spans_to_events(&sp, n, invert, &e);
    if (rc == 0) rc = emit(&e, beh, s, at_origin, out);
    tk_spans_free(&sp);
    free(e.v);
    return rc;
}

typedef bool (*char_pred)(uint32_t cp);

static bool is_numeric(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

static bool is_punct(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                          (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/* Splits on every character satisfying pred (each one a separate match). */
static int split_chars(char_pred pred, const char *s, size_t n, behavior beh, bool at_origin, tk_pieces *out) {
    events e = {0};
    size_t last = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        uint32_t cp;
        size_t l = tk_utf8_char(s + i, n - i, &cp);
        if (!l) l = 1, cp = 0xFFFD;
        if (pred(cp)) {
            if (last < i) rc = ev_push(&e, last, i, false);
            if (rc == 0) rc = ev_push(&e, i, i + l, true);
            last = i + l;
        }
        i += l;
    }
    if (rc == 0 && last < n) rc = ev_push(&e, last, n, false);
    if (rc == 0) rc = emit(&e, beh, s, at_origin, out);
    free(e.v);
    return rc;
}

static int apply(const tk_pretok *p, const char *s, size_t n, bool at_origin, tk_pieces *out) {
    switch (p->type) {
    case P_SPLIT: return split_regex(p->re, s, n, p->invert, p->beh, at_origin, out);
    case P_WHITESPACE: return split_regex(p->re, s, n, true, B_REMOVED, at_origin, out);
    case P_WSSPLIT: return split_chars(tk_is_whitespace, s, n, B_REMOVED, at_origin, out);
    case P_PUNCT: return split_chars(is_punct, s, n, p->beh, at_origin, out);
    case P_DIGITS:
        return split_chars(is_numeric, s, n, p->individual_digits ? B_ISOLATED : B_CONTIGUOUS, at_origin, out);
    case P_BYTELEVEL: {
        tk_buf t = {0};
        tk_pieces mid = {0};
        int rc = 0;
        if (p->add_prefix_space && s[0] != ' ') rc = tk_buf_putc(&t, ' ');
        if (rc == 0) rc = tk_buf_put(&t, s, n);
        if (rc == 0)
            rc = p->re ? split_regex(p->re, t.p, t.len, false, B_ISOLATED, at_origin, &mid)
                       : tk_pieces_add(&mid, t.p, t.len, at_origin);
        tk_buf mapped = {0};
        for (size_t i = 0; rc == 0 && i < mid.n; i++) {
            mapped.len = 0;
            const char *w = mid.text.p + mid.v[i].off;
            for (size_t k = 0; rc == 0 && k < mid.v[i].len; k++) {
                const char *u = tk_byte_to_unicode((uint8_t)w[k]);
                rc = tk_buf_put(&mapped, u, u[1] ? 2 : 1);
            }
            if (rc == 0) rc = tk_pieces_add(out, mapped.p, mapped.len, mid.v[i].at_origin);
        }
        tk_buf_free(&mapped);
        tk_buf_free(&t);
        tk_pieces_free(&mid);
        return rc;
    }
    case P_METASPACE: {
        tk_buf t = {0};
        int rc = 0;
        bool starts = n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;
        /* Spaces become the replacement first; a leading space counts as "starts with it". */
        if (n && s[0] == ' ') starts = true;
        if (!starts && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && at_origin)))
            rc = tk_buf_put(&t, p->repl, p->repl_len);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = s[i] == ' ' ? tk_buf_put(&t, p->repl, p->repl_len) : tk_buf_putc(&t, s[i]);
        if (rc == 0 && !p->split) rc = tk_pieces_add(out, t.p, t.len, at_origin);
        if (rc == 0 && p->split) {
            /* Split on the replacement, each occurrence starting a new piece (MergedWithNext). */
            events e = {0};
            size_t last = 0;
            for (size_t i = 0; rc == 0 && i + p->repl_len <= t.len;) {
                if (memcmp(t.p + i, p->repl, p->repl_len) == 0) {
                    if (last < i) rc = ev_push(&e, last, i, false);
                    if (rc == 0) rc = ev_push(&e, i, i + p->repl_len, true);
                    last = i + p->repl_len;
                    i += p->repl_len;
                } else {
                    i++;
                }
            }
            if (rc == 0 && last < t.len) rc = ev_push(&e, last, t.len, false);
            if (rc == 0) rc = emit(&e, B_MERGED_NEXT, t.p, at_origin, out);
            free(e.v);
        }
        tk_buf_free(&t);
        return rc;
    }
    case P_SEQUENCE: break;
    }
    return -1;
}

/* Flattens Sequences into the plan; false when a step does not fit it. */
static bool plan_add(const tk_pretok *p, tk_pretok_plan *plan, bool *have_re) {
    switch (p->type) {
    case P_SEQUENCE:
        for (size_t i = 0; i < p->n_items; i++)
            if (!plan_add(p->items[i], plan, have_re)) return false;
        return true;
    case P_SPLIT:
        if (*have_re || plan->byte_map || p->invert || p->beh != B_ISOLATED) return false;
        plan->re = p->re;
        *have_re = true;
        return true;
    case P_BYTELEVEL:
        if (plan->byte_map) return false;
        plan->byte_map = true;
        if (p->re) {
            if (*have_re) return false;
            plan->re = p->re;
            *have_re = true;
            plan->space_before_re = p->add_prefix_space;
        } else if (*have_re) {
            plan->space_per_word = p->add_prefix_space;
        } else {
            plan->space_before_re = p->add_prefix_space;
        }
        return true;
    default: return false;
    }
}

void tk_pretok_plan_of(const tk_pretok *p, tk_pretok_plan *plan) {
    memset(plan, 0, sizeof *plan);
    bool have_re = false;
    plan->ok = !p || plan_add(p, plan, &have_re);
    if (!plan->ok) memset(plan, 0, sizeof *plan);
}

int tk_pretokenize(const tk_pretok *p, tk_pieces *io) {
    if (p->type == P_SEQUENCE) {
        for (size_t i = 0; i < p->n_items; i++) {
            int rc = tk_pretokenize(p->items[i], io);
            if (rc) return rc;
        }
        return 0;
    }
    tk_pieces out = {0};
    for (size_t i = 0; i < io->n; i++) {
        int rc = apply(p, io->text.p + io->v[i].off, io->v[i].len, io->v[i].at_origin, &out);
        if (rc) {
            tk_pieces_free(&out);
            return rc;
        }
    }
    tk_pieces_free(io);
    *io = out;
    return 0;
}
