/*
 * regex.c — the regular expressions of Split pre-tokenizers and Replace normalizers, on PCRE2
 * (UTF + UCP mode, JIT-compiled when the platform has a JIT).
 * The reference compiles these patterns with Oniguruma, whose \s is the Unicode White_Space
 * property; PCRE2's \s in UCP mode differs (it misses U+0085), so \s and \S outside character
 * classes, and \s inside them, are rewritten to the explicit White_Space set. Everything else in
 * the Hugging Face patterns in use (\p{L}, \p{N}, (?i:...), lookahead, {1,3}) means the same in
 * both. Compiled patterns are read-only; each match call makes its own match data, so one
 * tk_regex may be used by several threads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct tk_regex {
    pcre2_code *code;
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

tk_regex *tk_regex_new(const char *pattern, size_t len, bool literal, char *msg, size_t msg_size) {
    tk_buf pat = {0};
    const char *src = pattern;
    size_t src_len = len;
    if (!literal) {
        if (translate(pattern, len, &pat)) {
            tk_fail(msg, msg_size, MOGE_ERR_NOMEM, "out of memory");
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
        tk_fail(msg, msg_size, MOGE_ERR_FORMAT, "%s at offset %zu", (const char *)buf, (size_t)eo);
        return NULL;
    }
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    tk_regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(code);
        tk_fail(msg, msg_size, MOGE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    re->code = code;
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

int tk_regex_find_all(const tk_regex *re, const char *s, size_t n, tk_spans *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) return -1;
    pcre2_match_context *mc = NULL;
    pcre2_jit_stack *js = NULL;
    int result = 0;
    size_t at = 0;
    const char *subject = n ? s : "";
    while (at <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, n, at, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !js) {
            /* A long run (e.g. of spaces) outgrew the default 32 KiB JIT stack: retry bigger. */
            mc = pcre2_match_context_create(NULL);
            js = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!mc || !js) {
                result = -1;
                break;
            }
            pcre2_jit_stack_assign(mc, NULL, js);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            result = -2;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b > a) {
            if (spans_push(out, a, b)) {
                result = -1;
                break;
            }
            at = b;
        } else {
            /* An empty match splits nothing; step over one character. */
            if (a >= n) break;
            size_t l = tk_utf8_char(s + a, n - a, NULL);
            at = a + (l ? l : 1);
        }
    }
    if (js) pcre2_jit_stack_free(js);
    if (mc) pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    return result;
}
