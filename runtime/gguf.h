/*
 * gguf.h — a reader of GGUF files (llama.cpp's format), versions 2 and 3.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; each
 * metadata pair is a string key (u64 length + bytes), a u32 value type and the value (arrays: u32
 * element type, u64 count, the elements; arrays of arrays nest); each tensor entry is its name,
 * u32 n_dims, n_dims u64 sizes (innermost first: a (rows, cols) matrix is [cols, rows]), u32 ggml
 * type and a u64 offset into the data section, which starts at the next multiple of
 * general.alignment (32 when absent) after the table.
 *
 * gguf_parse checks everything before anything is handed out: every count, length and offset
 * against the bytes that are there (so no allocation exceeds a bound set by the buffer's size),
 * value and tensor types, dimensions and the overflow of their product, alignment, tensors past
 * the end or overlapping, a key or tensor name twice; each failure is a message naming the key or
 * tensor. It parses a buffer in memory (the entry point for fuzzing); gguf_open maps a file and
 * parses that. Nothing is copied: strings and tensor data point into the buffer.
 */
#ifndef MOGE_GGUF_H
#define MOGE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moge.h"

/* metadata value types */
enum {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR, GGUF_U64,
    GGUF_I64, GGUF_F64, GGUF_N_VTYPES
};

/* the ggml tensor types moge converts (the reader knows the block sizes of every ggml type) */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q6_K = 14, GGML_BF16 = 30 };

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_DEPTH 8 /* arrays of arrays nest at most this deep */

typedef struct {
    const char *s; /* into the buffer; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct {
    gguf_str key;
    uint32_t type;      /* GGUF_* */
    uint32_t arr_type;  /* arrays: the elements' type */
    uint64_t arr_n;     /* arrays: the element count */
    const uint8_t *val; /* the value (arrays: the first element) */
    uint64_t val_len;   /* bytes of the value (arrays: of the elements) */
} gguf_kv;

typedef struct {
    char name[257];     /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* innermost first, unused ones 1 */
    uint32_t type;      /* ggml type */
    uint64_t offset;    /* from the start of the data section */
    uint64_t nbytes;
    int64_t numel;
    const void *data;
} gguf_tensor;

typedef struct {
    const char *what;   /* the path (or name) for messages; owned */
    const uint8_t *buf;
    size_t size;
    void *map;          /* gguf_open's mapping, or NULL */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    gguf_kv *kv;
    uint64_t n_kv;
    gguf_tensor *tensors;
    uint64_t n_tensors;
} gguf_file;

/* Parses size bytes at buf (which must outlive g); `what` names it in messages. On failure g is
 * empty (gguf_close is still fine). */
moge_status gguf_parse(gguf_file *g, const void *buf, size_t size, const char *what, char *err, size_t n);
/* Maps the file at path read-only and parses it. */
moge_status gguf_open(gguf_file *g, const char *path, char *err, size_t n);
void gguf_close(gguf_file *g);

/* True when path is a regular file that starts with the GGUF magic. */
bool gguf_is_file(const char *path);

/* The pair with key `key` or NULL. */
const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
const char *gguf_type_name(uint32_t ggml_type); /* "Q4_K", ...; "?" when unknown */
const char *gguf_vtype_name(uint32_t vtype);

/* Typed reads of a pair: false when its type does not fit (any integer type for the integer
 * reads, when the value is in range; any number for the float read). */
bool gguf_kv_int(const gguf_kv *kv, int64_t *out);
bool gguf_kv_float(const gguf_kv *kv, double *out);
bool gguf_kv_bool(const gguf_kv *kv, bool *out);
bool gguf_kv_string(const gguf_kv *kv, gguf_str *out);

/* A walk over the elements of an array of strings (or numbers). */
typedef struct {
    const gguf_kv *kv;
    const uint8_t *p;
    uint64_t i;
} gguf_iter;
void gguf_iter_init(gguf_iter *it, const gguf_kv *kv);
/* The next string of an array of strings: false at the end. */
bool gguf_iter_str(gguf_iter *it, gguf_str *out);
/* Element i of an array of numbers (integer or float element types) as a double. */
bool gguf_arr_num(const gguf_kv *kv, uint64_t i, double *out);

#endif
