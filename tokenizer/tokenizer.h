/*
 * tokenizer.h — internal interfaces of the tokenizer module (the .c files of tokenizer/); the
 * public API is in include/moge.h.
 *
 * Pipeline (as the Hugging Face `tokenizers` reference runs it):
 *   input bytes --(invalid UTF-8 -> U+FFFD)--> split on non-normalized added tokens
 *   --> normalizer (normalize.c) --> split on normalized added tokens
 *   --> pre-tokenizer (pretokenize.c) --> BPE model per word (bpe.c)
 *   --> post-processor when add_special (tokenizer.c).
 * Decoding runs the decoder chain as a stream of stages (decode.c); moge_detokenize() is the
 * stream fed with every id and flushed, so streaming and one-shot decoding agree by construction.
 *
 * Every function returning int returns 0 on success and -1 when an allocation failed, unless it
 * says otherwise. Nothing here prints or exits.
 */
#ifndef MOGE_TOKENIZER_INTERNAL_H
#define MOGE_TOKENIZER_INTERNAL_H

#include "moge.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Internal: byte buffers, UTF-8, hashing (text.c)                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} tk_buf;

int tk_buf_reserve(tk_buf *b, size_t extra);
int tk_buf_put(tk_buf *b, const void *s, size_t n);
int tk_buf_putc(tk_buf *b, char c);
void tk_buf_free(tk_buf *b);

typedef struct {
    int32_t *v;
    size_t n, cap;
} tk_ids;

int tk_ids_push(tk_ids *a, int32_t id);
int tk_ids_append(tk_ids *a, const int32_t *v, size_t n);
void tk_ids_free(tk_ids *a);

/* Length of the ASCII prefix of s[0..n). */
size_t tk_ascii_prefix(const char *s, size_t n);

/* Length of the valid UTF-8 character at s (1..4), or 0 when s[0..n) does not start with one. */
size_t tk_utf8_char(const char *s, size_t n, uint32_t *cp);
/* Length of the "maximal subpart" of an invalid or truncated sequence at s (>= 1): the bytes one
 * U+FFFD replaces, as Rust's from_utf8_lossy and Python's errors="replace" do. */
size_t tk_utf8_bad_len(const char *s, size_t n);
/* True when s[0..n) is valid UTF-8. */
bool tk_utf8_valid(const char *s, size_t n);
/* Appends s[0..n) with every invalid sequence replaced by U+FFFD. */
int tk_utf8_lossy(tk_buf *out, const char *s, size_t n);
/* Writes cp as UTF-8 to out (4 bytes room); returns its length. */
size_t tk_utf8_put(uint32_t cp, char *out);
/* Unicode White_Space property (what Rust's char::is_whitespace and \s in the reference use). */
bool tk_is_whitespace(uint32_t cp);

uint64_t tk_hash(const char *s, size_t n);

/* memcmp(a, b, n) == 0, inline for short strings. */
static inline bool tk_bytes_eq(const char *a, const char *b, size_t n) {
    if (n > 16) return memcmp(a, b, n) == 0;
    if (n >= 8) {
        uint64_t x, y, z, w;
        memcpy(&x, a, 8), memcpy(&y, b, 8), memcpy(&z, a + n - 8, 8), memcpy(&w, b + n - 8, 8);
        return ((x ^ y) | (z ^ w)) == 0;
    }
    if (n >= 4) {
        uint32_t x, y, z, w;
        memcpy(&x, a, 4), memcpy(&y, b, 4), memcpy(&z, a + n - 4, 4), memcpy(&w, b + n - 4, 4);
        return ((x ^ y) | (z ^ w)) == 0;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* A string owned elsewhere. */
typedef struct {
    const char *s;
    uint32_t len;
} tk_str;

/* Open-addressing map from a string to an int32 id; the key of id i is keys[i]. */
typedef struct {
    int32_t id;   /* -1 when empty */
    uint32_t tag; /* high bits of the key's hash, checked before the key */
} tk_strslot;

typedef struct {
    tk_strslot *slots;
    size_t mask;
    const tk_str *keys;
} tk_strmap;

int tk_strmap_init(tk_strmap *m, const tk_str *keys, size_t expected);
/* Inserts id (keys[id] must be set); replaces an id with an equal key. */
int tk_strmap_put(tk_strmap *m, int32_t id);
int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n);
/* Starts loading the slot of s, for a tk_strmap_get soon after. */
void tk_strmap_prefetch(const tk_strmap *m, const char *s, size_t n);
void tk_strmap_free(tk_strmap *m);

/* The word cache of one encode call: the ids of each word the BPE model has encoded (most words
 * of a text repeat). A per-call object, so a shared tokenizer stays read-only. Keys and ids live
 * in two growing buffers; past the limits below nothing more is added. */
#define TK_WCACHE_MAX_WORD 255           /* longer words are not cached */
#define TK_WCACHE_MAX_WORDS ((size_t)1 << 20) /* at most 48 MiB of slots */
#define TK_WCACHE_MAX_BYTES ((size_t)32 << 20) /* of keys, and of ids */

typedef struct {
    uint64_t h; /* hash | 1; 0 when empty */
    uint32_t key, key_len, ids, n_ids;
} tk_wslot;

typedef struct {
    tk_wslot *slots;
    size_t mask, count;
    tk_buf keys;
    tk_ids vals;
} tk_wcache;

/* The cached ids of w (h = tk_hash(w, n)), valid until the next put; NULL when absent. */
const int32_t *tk_wcache_get(const tk_wcache *c, const char *w, size_t n, uint64_t h, size_t *n_ids);
/* ids must not point into the cache. */
int tk_wcache_put(tk_wcache *c, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t n_ids);
void tk_wcache_free(tk_wcache *c);

/* Bump allocator for the many small strings of a vocabulary. */
typedef struct tk_arena_block tk_arena_block;
typedef struct {
    tk_arena_block *head;
} tk_arena;

/* Copies s[0..n) plus a NUL into the arena; NULL when out of memory. */
char *tk_arena_strdup(tk_arena *a, const char *s, size_t n);
void tk_arena_free(tk_arena *a);
/* Moves every string of src into dst (src is left empty). */
void tk_arena_adopt(tk_arena *dst, tk_arena *src);

/* Writes a formatted message to err (when err && err_size) and returns st. */
moge_status tk_fail(char *err, size_t err_size, moge_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------------------------------ */
/* Internal: regular expressions (regex.c) — PCRE2 in UTF + UCP mode, JIT-compiled             */
/* ------------------------------------------------------------------------------------------ */

typedef struct tk_regex tk_regex;

typedef struct {
    size_t start, end;
} tk_span;

typedef struct {
    tk_span *v;
    size_t n, cap;
} tk_spans;

/* Compiles a Hugging Face (Oniguruma-flavoured) pattern; `literal` compiles it as a plain
 * string. On a pattern error writes the PCRE2 message (with offset) to msg. */
tk_regex *tk_regex_new(const char *pattern, size_t len, bool literal, char *msg, size_t msg_size);
void tk_regex_free(tk_regex *re);
/* All non-overlapping matches in s[0..n) (valid UTF-8), left to right, appended to out.
 * Returns 0, -1 on out-of-memory, -2 on a matching error (e.g. resource limits). */
int tk_regex_find_all(const tk_regex *re, const char *s, size_t n, tk_spans *out);
void tk_spans_free(tk_spans *s);

/* Reusable match state (one per thread). */
typedef struct tk_matcher tk_matcher;
tk_matcher *tk_matcher_new(void);
void tk_matcher_free(tk_matcher *m);
/* The first non-empty match in s[0..n) (valid UTF-8) that starts at or after byte `at` (a
 * character boundary): 1 with [*a, *b), 0 when none, -1 on out-of-memory, -2 on a matching
 * error. Empty matches are stepped over, as tk_regex_find_all does. *m is made when PCRE2 is
 * first needed (start with NULL; free with tk_matcher_free). */
int tk_regex_next(const tk_regex *re, tk_matcher **m, const char *s, size_t n, size_t at, size_t *a, size_t *b);
/* The Qwen2/3 and Llama 3 pre-tokenizer patterns are matched by hand on ASCII text (PCRE2 takes
 * over around other characters). on = false makes re use PCRE2 only (for differential tests);
 * on = true changes nothing. Returns whether re had the hand-written matcher. */
bool tk_regex_set_fast(tk_regex *re, bool on);

/* ------------------------------------------------------------------------------------------ */
/* Internal: normalizers (normalize.c)                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct tk_normalizer tk_normalizer;

/* Parses the "normalizer" object (json is a cJSON*); `where` names it in errors, e.g.
 * "tokenizer.json: normalizer". */
moge_status tk_normalizer_parse(const void *json, const char *where, tk_normalizer **out, char *err,
                                size_t err_size);
void tk_normalizer_free(tk_normalizer *n);
/* Normalizes in[0..n) (valid UTF-8) into out (replacing its contents). */
int tk_normalize(const tk_normalizer *nz, const char *in, size_t n, tk_buf *out);
/* True when nz leaves every ASCII-only text unchanged (the Unicode forms, StripAccents and
 * Sequences of them), so encoding may skip it for such text. */
bool tk_normalizer_ascii_identity(const tk_normalizer *nz);

/* ------------------------------------------------------------------------------------------ */
/* Internal: pre-tokenizers (pretokenize.c)                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct tk_pretok tk_pretok;

/* A piece of text being pre-tokenized: bytes [off, off+len) of its list's text. at_origin is
 * true for the piece that starts at offset 0 of the original input (Metaspace "first"). */
typedef struct {
    size_t off, len;
    bool at_origin;
} tk_piece;

typedef struct {
    tk_buf text;
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

int tk_pieces_add(tk_pieces *p, const char *s, size_t n, bool at_origin);
void tk_pieces_clear(tk_pieces *p);
void tk_pieces_free(tk_pieces *p);

moge_status tk_pretok_parse(const void *json, const char *where, tk_pretok **out, char *err,
                            size_t err_size);
void tk_pretok_free(tk_pretok *p);
/* Splits every piece of io further (io is replaced). Returns 0, -1 on out-of-memory, -2 when a
 * regex failed to match (resource limits). */
int tk_pretokenize(const tk_pretok *p, tk_pieces *io);

/* The GPT-2 byte <-> unicode alphabet of the ByteLevel pre-tokenizer and decoder. */
/* UTF-8 text (1 or 2 bytes, NUL-terminated) of the character that byte b maps to. */
const char *tk_byte_to_unicode(uint8_t b);
/* The byte a code point maps back to, or -1 when it is not in the alphabet. */
int tk_unicode_to_byte(uint32_t cp);
/* Writes s[0..n) mapped to the alphabet to out (room for 2n bytes); returns the length. */
size_t tk_byte_level_map(const char *s, size_t n, char *out);

/* The pre-tokenizers the encoder runs in one streaming pass, without piece lists: at most one
 * regex split (a Split with behavior Isolated, not inverted, or ByteLevel's own GPT-2 regex)
 * and at most one ByteLevel, in that order (Sequences flattened); no pre-tokenizer at all also
 * fits. ok is false for anything else (tk_pretokenize then runs step by step). */
typedef struct {
    bool ok;
    const tk_regex *re;   /* the words are the matches and the text between them; NULL: one word */
    bool space_before_re; /* ByteLevel add_prefix_space applied before the split (or with none) */
    bool space_per_word;  /* ByteLevel add_prefix_space after a Split: each word lacking one */
    bool byte_map;        /* ByteLevel: map each word's bytes to the GPT-2 alphabet */
} tk_pretok_plan;

void tk_pretok_plan_of(const tk_pretok *p, tk_pretok_plan *plan); /* p may be NULL */

/* ------------------------------------------------------------------------------------------ */
/* Internal: model.vocab and model.merges read straight from the text (json_scan.c)           */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *s; /* the token, NUL-terminated */
    uint32_t len;
    int32_t id;
} tk_vocab_ent;

/* One merge: the string "a b" in a[0..alen) when b is NULL, else the pair a, b. Not
 * NUL-terminated (they may point into the file text). */
typedef struct {
    const char *a, *b;
    uint32_t alen, blen;
} tk_merge_ent;

typedef struct {
    tk_vocab_ent *vocab;
    size_t n_vocab;
    tk_merge_ent *merges;
    size_t n_merges;
    tk_arena keys;    /* the vocabulary strings (adopted by the tokenizer's arena) */
    tk_arena strings; /* merge strings that had escapes */
} tk_model_text;

/* Reads model.vocab and model.merges from the tokenizer.json text into m, in document order,
 * and writes to doc the text with those two values replaced by {} and [] for cJSON. The merge
 * strings may point into text, which must outlive m. Returns false (m empty) when the text does
 * not have the plain shape json_scan.c handles; the caller then parses the file with cJSON. */
bool tk_model_scan(const char *text, size_t len, tk_model_text *m, tk_buf *doc);
void tk_model_text_free(tk_model_text *m);
/* Every vocab key and merge string of a scanned model is valid UTF-8. */
bool tk_model_text_utf8_ok(const tk_model_text *m);

/* ------------------------------------------------------------------------------------------ */
/* Internal: the BPE model (bpe.c)                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX when empty */
    uint32_t rank;
    int32_t new_id;
} tk_merge;

typedef struct {
    tk_merge *slots; /* open addressing, one cache line per probe */
    size_t mask;
} tk_mergemap;

typedef struct {
    tk_str *vocab; /* by id; s == NULL for ids the model does not define */
    int32_t n_vocab;
    tk_strmap map;
    tk_mergemap merges;
    int32_t unk_id; /* -1 when none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *subword_prefix, *word_suffix; /* continuing_subword_prefix, end_of_word_suffix or NULL */
    int32_t byte_id[256];               /* ids of "<0xXX>" or -1 */
    int32_t *bmp_id; /* id of each BMP character alone (-1: none); NULL with prefix/suffix */
    /* The junctions of the merges (a set of (cp1 << 32) | cp2: the last character of the left
     * token, the first of the right one). A word starts as single characters and a merge joins
     * two adjacent symbols, so the boundary between two in-vocabulary characters is only ever
     * merged across by a merge whose junction is that pair; where the pair is absent the word is
     * encoded in independent pieces. NULL when unused. */
    uint64_t *bigrams;
    size_t bigram_mask;
    uint8_t *small;       /* by BMP code point: 1..255 for the 255 commonest characters, else 0 */
    uint64_t *pair_bits;  /* bit small[a] * 256 + small[b]: the pair (a, b) is in bigrams */
} tk_bpe;

/* Parses the "model" object into bpe (strings go to arena). With pre (not NULL) the vocabulary
 * and merges are taken from it (json_scan.c; its keys are adopted into arena), not from json. */
moge_status tk_bpe_parse(const void *json, const char *file, tk_bpe *bpe, tk_arena *arena, tk_model_text *pre,
                         char *err, size_t err_size);
void tk_bpe_free(tk_bpe *bpe);
/* Appends the ids of one pre-tokenized word; cache (may be NULL) remembers the ids of words. */
int tk_bpe_encode(const tk_bpe *bpe, const char *word, size_t n, tk_ids *out, tk_wcache *cache);

/* ------------------------------------------------------------------------------------------ */
/* Internal: decoders (decode.c)                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct tk_decoder tk_decoder;

/* json may be NULL (no decoder: tokens are joined with spaces, as the reference does). */
moge_status tk_decoder_parse(const void *json, const char *where, tk_decoder **out, char *err,
                             size_t err_size);
void tk_decoder_free(tk_decoder *d);

/* ------------------------------------------------------------------------------------------ */
/* Internal: the tokenizer object (tokenizer.c)                                               */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *content;
    size_t len;
    char *norm; /* content after the normalizer (normalized tokens only) */
    size_t norm_len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} tk_added;

typedef enum { TK_POST_NONE, TK_POST_TEMPLATE } tk_post_kind;

struct moge_tokenizer {
    tk_arena arena;
    tk_bpe bpe;
    tk_added *added;
    size_t n_added;
    bool added_first[2][256]; /* [normalized][byte]: some added token starts with this byte */
    int added_only[2];        /* [normalized]: the only such byte; -1: several, -2: none */
    tk_normalizer *normalizer; /* NULL: none */
    tk_pretok *pretok;         /* NULL: none */
    tk_decoder *decoder;
    /* add_special: the ids before and after the sequence */
    int32_t *post_pre, *post_post;
    size_t n_post_pre, n_post_post;
    tk_str *piece; /* by id, added tokens included; s == NULL for holes */
    uint8_t *special;
    int32_t n_vocab;
    size_t max_piece_len;
    tk_pretok_plan plan;
    bool norm_ascii_identity;
    int32_t bos, eos;
    char *chat_template;
    moge_chat_family chat_family;
};

/* ------------------------------------------------------------------------------------------ */
/* GGUF (gguf_vocab.c)                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The tokenizer.ggml.* metadata of the GGUF file at path as the tokenizer.json (*tok) and
 * tokenizer_config.json (*cfg) documents of the same model; the caller deletes both. */
struct cJSON;
moge_status tk_gguf_docs(const char *path, struct cJSON **tok, struct cJSON **cfg, char *err, size_t err_size);

#endif /* MOGE_TOKENIZER_INTERNAL_H */
