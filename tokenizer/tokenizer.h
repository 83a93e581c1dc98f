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
void tk_ids_free(tk_ids *a);

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
void tk_strmap_free(tk_strmap *m);

/* Bump allocator for the many small strings of a vocabulary. */
typedef struct tk_arena_block tk_arena_block;
typedef struct {
    tk_arena_block *head;
} tk_arena;

/* Copies s[0..n) plus a NUL into the arena; NULL when out of memory. */
char *tk_arena_strdup(tk_arena *a, const char *s, size_t n);
void tk_arena_free(tk_arena *a);

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

/* ------------------------------------------------------------------------------------------ */
/* Internal: the BPE model (bpe.c)                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t *keys; /* (left id << 32) | right id; UINT64_MAX when empty */
    uint32_t *rank;
    int32_t *new_id;
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
    /* The pairs of adjacent characters inside merged tokens (a set of (cp1 << 32) | cp2): a
     * boundary between two in-vocabulary characters whose pair is absent can never be merged
     * across, so long words are encoded in independent pieces. NULL when unused. */
    uint64_t *bigrams;
    size_t bigram_mask;
} tk_bpe;

/* Parses the "model" object into bpe (strings go to arena). */
moge_status tk_bpe_parse(const void *json, const char *file, tk_bpe *bpe, tk_arena *arena, char *err,
                         size_t err_size);
void tk_bpe_free(tk_bpe *bpe);
/* Appends the ids of one pre-tokenized word. */
int tk_bpe_encode(const tk_bpe *bpe, const char *word, size_t n, tk_ids *out);

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
    int32_t bos, eos;
    char *chat_template;
    moge_chat_family chat_family;
};

#endif /* MOGE_TOKENIZER_INTERNAL_H */
