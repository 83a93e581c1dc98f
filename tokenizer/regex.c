/*
 * regex.c — the regular expressions of Split pre-tokenizers and Replace normalizers, on PCRE2
 * (UTF + UCP mode, JIT-compiled when the platform has a JIT).
 * The reference compiles these patterns with Oniguruma, whose \s is the Unicode White_Space
 * property; PCRE2's \s in UCP mode differs (it misses U+0085), so \s and \S outside character
 * classes, and \s inside them, are rewritten to the explicit White_Space set. Everything else in
 * the Hugging Face patterns in use (\p{L}, \p{N}, (?i:...), lookahead, {1,3}) means the same in
 * both. Compiled patterns are read-only; the match data lives in a tk_matcher that each caller
 * (thread) owns, so one tk_regex may be used by several threads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct tk_regex {
    pcre2_code *code;
    bool jit;
    int fast_digits; /* > 0: the pattern is QWEN_PATTERN (1) or LLAMA3_PATTERN (3); see fast_match */
};

struct tk_matcher {
    pcre2_match_data *md;
    pcre2_match_context *mc; /* with a large JIT stack, made when a match first outgrew the default */
    pcre2_jit_stack *js;
};

#define WS_SET "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Rewrites \s / \S as described above. */
static int translate(const char *p, size_t n, tk_buf *out) {
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            int rc = 0;
            if (e == 's') rc = in_class ? tk_buf_put(out, WS_SET, strlen(WS_SET))
                                        : tk_buf_put(out, "[" WS_SET "]", strlen(WS_SET) + 2);
            else if (e == 'S' && !in_class) rc = tk_buf_put(out, "[^" WS_SET "]", strlen(WS_SET) + 3);
            else rc = tk_buf_put(out, p + i, 2);
            if (rc) return -1;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            if (tk_buf_putc(out, c)) return -1;
            if (i + 1 < n && p[i + 1] == '^') {
                if (tk_buf_putc(out, '^')) return -1;
                i++;
            }
            if (i + 1 < n && p[i + 1] == ']') {
                if (tk_buf_putc(out, ']')) return -1;
                i++;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < n; j++)
                if (p[j] == ':' && p[j + 1] == ']') {
                    end = p + j + 2;
                    break;
                }
            if (end) {
                if (tk_buf_put(out, p + i, (size_t)(end - (p + i)))) return -1;
                i = (size_t)(end - p) - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        if (tk_buf_putc(out, c)) return -1;
    }
    return 0;
}

/* ---- a hand-written matcher for the most common pattern, on ASCII text -------------------- */

/* The pre-tokenizer pattern of Qwen2/2.5/3 (and, with \p{N}{1,3}, of Llama 3 and cl100k). */
static const char QWEN_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum { C_L = 1, C_N = 2, C_WS = 4, C_NL = 8, C_O = 16, C_HI = 32 };

/* Class of each byte: ASCII letter, digit, white space (\r and \n also C_NL), other; or a byte
 * of a non-ASCII character (C_HI), whose class fast_match does not know. */
#define CLS(b)                                                                                       \
    ((b) >= 0x80                                                          ? C_HI                     \
     : (((b) >= 'a' && (b) <= 'z') || ((b) >= 'A' && (b) <= 'Z'))         ? C_L                      \
     : ((b) >= '0' && (b) <= '9')                                          ? C_N                      \
     : ((b) == '\r' || (b) == '\n')                                        ? C_WS | C_NL              \
     : (((b) >= 0x09 && (b) <= 0x0D) || (b) == ' ')                        ? C_WS                     \
                                                                           : C_O)
#define CLS4(b) CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define CLS16(b) CLS4(b), CLS4((b) + 4), CLS4((b) + 8), CLS4((b) + 12)
#define CLS64(b) CLS16(b), CLS16((b) + 16), CLS16((b) + 32), CLS16((b) + 48)
static const uint8_t byte_cls[256] = {CLS64(0), CLS64(64), CLS64(128), CLS64(192)};

/* The match of QWEN_PATTERN / LLAMA3_PATTERN that starts at i < n, as PCRE2 (leftmost-first
 * alternation, greedy, backtracking) finds it, worked out alternative by alternative on ASCII.
 * Every character matches some alternative, so matches are contiguous and the one found from i
 * starts at i. Returns 1 with *end, or 0 when a byte it would have to classify is not ASCII (the
 * caller then asks PCRE2). */
static int fast_match(const char *s, size_t n, size_t i, int max_digits, size_t *end) {
    const uint8_t *cls = byte_cls;
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = cls[u[i]];
    size_t j;
    if (c & C_HI) return 0;
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (u[i] == '\'' && i + 1 < n) {
        if (u[i + 1] >= 0x80) return 0; /* e.g. U+017F matches (?i:s) */
        unsigned x = u[i + 1] | 0x20;
        if (x == 's' || x == 't' || x == 'm' || x == 'd') {
            *end = i + 2;
            return 1;
        }
        if ((x == 'r' || x == 'v' || x == 'l') && i + 2 < n) {
            if (u[i + 2] >= 0x80) return 0;
            unsigned y = u[i + 2] | 0x20;
            if (y == (x == 'l' ? 'l' : 'e')) {
                *end = i + 3;
                return 1;
            }
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    j = i;
    if (!(c & (C_L | C_N | C_NL)) && i + 1 < n) {
        if (cls[u[i + 1]] & C_HI) return 0;
        if (cls[u[i + 1]] & C_L) j = i + 1;
    }
    if (cls[u[j]] & C_L) {
        for (j++; j < n && (cls[u[j]] & C_L); j++) {}
        if (j < n && (cls[u[j]] & C_HI)) return 0;
        *end = j;
        return 1;
    }
    /* \p{N} or \p{N}{1,3} */
    if (c & C_N) {
        for (j = i + 1; j < n && j < i + (size_t)max_digits && (cls[u[j]] & C_N); j++) {}
        if (j < n && j < i + (size_t)max_digits && (cls[u[j]] & C_HI)) return 0;
        *end = j;
        return 1;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = u[i] == ' ' && i + 1 < n ? i + 1 : i;
    if (cls[u[j]] & C_HI) return 0;
    if (cls[u[j]] & C_O) {
        for (j++; j < n && (cls[u[j]] & C_O); j++) {}
        if (j < n && (cls[u[j]] & C_HI)) return 0;
        while (j < n && (cls[u[j]] & C_NL)) j++;
        *end = j;
        return 1;
    }
    /* \s*[\r\n]+ | \s+(?!\S) | \s+ over the run of white space from i */
    if (!(c & C_WS)) return 0;
    size_t last_nl = SIZE_MAX;
    for (j = i; j < n && (cls[u[j]] & C_WS); j++)
        if (cls[u[j]] & C_NL) last_nl = j;
    if (j < n && (cls[u[j]] & C_HI)) return 0; /* the run may go on (U+00A0, U+3000, ...) */
    if (last_nl != SIZE_MAX) *end = last_nl + 1; /* \s* backs off to the last line break */
    else if (j == n || j - i == 1) *end = j;     /* \s+(?!\S) at the end, or \s+ */
    else *end = j - 1;                           /* \s+(?!\S) leaves one space to the next word */
    return 1;
}

bool tk_regex_set_fast(tk_regex *re, bool on) {
    bool was = re->fast_digits > 0;
    if (!on) re->fast_digits = 0;
    return was;
}

tk_regex *tk_regex_new(const char *pattern, size_t len, bool literal, char *msg, size_t msg_size) {
    tk_buf pat = {0};
    const char *src = pattern;
    size_t src_len = len;
    if (!literal) {
        if (translate(pattern, len, &pat)) {
            set_err(msg, msg_size, MOGE_ERR_NOMEM, "out of memory");
            tk_buf_free(&pat);
            return NULL;
        }
        src = pat.p ? pat.p : "";
        src_len = pat.len;
    }
    int ec = 0;
    PCRE2_SIZE eo = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)src, src_len, opts, &ec, &eo, NULL);
    tk_buf_free(&pat);
    if (!code) {
        PCRE2_UCHAR buf[160];
        pcre2_get_error_message(ec, buf, sizeof buf);
        set_err(msg, msg_size, MOGE_ERR_FORMAT, "%s at offset %zu", (const char *)buf, (size_t)eo);
        return NULL;
    }
    bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0; /* else the interpreter */
    tk_regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(code);
        set_err(msg, msg_size, MOGE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    re->code = code;
    re->jit = jit;
    re->fast_digits = 0;
    if (!literal && len == strlen(QWEN_PATTERN) && memcmp(pattern, QWEN_PATTERN, len) == 0) re->fast_digits = 1;
    if (!literal && len == strlen(LLAMA3_PATTERN) && memcmp(pattern, LLAMA3_PATTERN, len) == 0) re->fast_digits = 3;
    return re;
}

void tk_regex_free(tk_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

static int spans_push(tk_spans *s, size_t a, size_t b) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        tk_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].start = a;
    s->v[s->n].end = b;
    s->n++;
    return 0;
}

void tk_spans_free(tk_spans *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

tk_matcher *tk_matcher_new(void) {
    tk_matcher *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->md = pcre2_match_data_create(1, NULL); /* only the whole match is read */
    if (!m->md) {
        free(m);
        return NULL;
    }
    return m;
}

void tk_matcher_free(tk_matcher *m) {
    if (!m) return;
    if (m->js) pcre2_jit_stack_free(m->js);
    if (m->mc) pcre2_match_context_free(m->mc);
    pcre2_match_data_free(m->md);
    free(m);
}

int tk_regex_next(const tk_regex *re, tk_matcher **mp, const char *s, size_t n, size_t at, size_t *a, size_t *b) {
    if (re->fast_digits) {
        if (at >= n) return 0; /* every alternative needs a character */
        if (fast_match(s, n, at, re->fast_digits, b)) {
            *a = at;
            return 1;
        }
    }
    if (!*mp && !(*mp = tk_matcher_new())) return -1;
    tk_matcher *m = *mp;
    const char *subject = n ? s : "";
    while (at <= n) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)subject, n, at, 0, m->md, m->mc)
                         : pcre2_match(re->code, (PCRE2_SPTR)subject, n, at, PCRE2_NO_UTF_CHECK, m->md, m->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !m->js) {
            /* A long run (e.g. of spaces) outgrew the default 32 KiB JIT stack: retry bigger. */
            m->mc = pcre2_match_context_create(NULL);
            m->js = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!m->mc || !m->js) return -1;
            pcre2_jit_stack_assign(m->mc, NULL, m->js);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return -2; /* rc == 0: the ovector has fewer pairs than the groups; [0] is set */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        if (ov[0] > n || ov[1] > n) return -2; /* never a match past the subject (invalid UTF-8 would do it) */
        if (ov[1] > ov[0]) {
            *a = ov[0];
            *b = ov[1];
            return 1;
        }
        /* An empty match splits nothing; step over one character. */
        if (ov[0] >= n) return 0;
        size_t l = tk_utf8_char(s + ov[0], n - ov[0], NULL);
        at = ov[0] + (l ? l : 1);
    }
    return 0;
}

int tk_regex_find_all(const tk_regex *re, const char *s, size_t n, tk_spans *out) {
    tk_matcher *m = NULL;
    int rc;
    size_t at = 0, a, b;
    while ((rc = tk_regex_next(re, &m, s, n, at, &a, &b)) == 1) {
        if (spans_push(out, a, b)) {
            rc = -1;
            break;
        }
        at = b;
    }
    tk_matcher_free(m);
    return rc;
}
