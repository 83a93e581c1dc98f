/*
 * safetensors.h — read-only access to the tensors of a Hugging Face model directory:
 * `model.safetensors`, or the shards listed by `model.safetensors.index.json`. Files are mmapped;
 * every header, dtype, shape and offset is validated before a pointer is handed out.
 * In a file whose __metadata__ has "moge.quant" (runtime/quant_file.c), U8 tensors hold blocks
 * with f32 scales (row-major, or in panel layout when "moge.layout" is "panel16"): they are kept
 * 4-byte aligned (copied when the file misaligns them).
 */
#ifndef MOGE_SAFETENSORS_H
#define MOGE_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "moge.h"
#include "runtime/tensor.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype_str[12];  /* as written in the header, e.g. "BF16", "I32" */
    int supported;       /* dtype is F32, F16 or BF16 (then `type` is set) */
    dtype type;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    const void *data;    /* into the mapping, or into `copy` when the mapping was misaligned */
    void *copy;          /* owned aligned copy, or NULL */
    size_t nbytes;
    int file;            /* index into st_table.files */
    bool release_copy;   /* st_release frees `copy` (a converted form read once into an owned one) */
} st_entry;

typedef struct {
    char *path;
    void *map;
    size_t size;
    moge_quant quant;    /* __metadata__ "moge.quant" ("q8"/"q4": a pre-quantized file), else NONE */
    int panel;           /* __metadata__ "moge.layout": TENSOR_PANEL for "panel16" (blocks in panel
                            layout), 0 when absent (row-major blocks) */
    bool gguf;           /* a GGUF file (st_table_add_file): entries are its tensors converted, dtype_str its type */
} st_file;

typedef struct {
    st_file *files;
    int n_files;
    st_entry *entries;
    int n_entries;
    int *slots;          /* open-addressing hash of the names: entry index + 1, 0 when empty */
    size_t n_slots;      /* a power of two, at least twice n_entries (or 0) */
} st_table;

/* Opens the weights of model directory `dir`. A tensor name twice (in one header, or in two
 * shards) and two tensors of one file whose data overlap are refused. On failure returns a status with a message naming
 * the file (and tensor) at fault; *t is then empty and needs no st_close (calling it is fine). */
moge_status st_open_dir(st_table *t, const char *dir, char *err, size_t err_size);
void st_close(st_table *t);

/* The entry called `name`, or NULL (a hash lookup). */
const st_entry *st_find(const st_table *t, const char *name);

/* Drops the pages of e's data from this process (whole pages inside it; the kernel reads them
 * again from the file if they are touched later). For weights read once (quantized, copied). */
void st_release(const st_entry *e);

/* For other formats' loaders (runtime/model_gguf.c): appends a file whose mapping (map, size)
 * the table owns from now on (st_close unmaps it), and an entry (the table owns its name and
 * copy from now on, also on failure); a name already there is an error naming `what`. */
moge_status st_table_add_file(st_table *t, const char *path, void *map, size_t size, char *err, size_t err_size);
moge_status st_table_add(st_table *t, st_entry *e, const char *what, char *err, size_t err_size);

#endif
