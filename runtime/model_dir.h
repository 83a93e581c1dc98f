/*
 * model_dir.h — writing a model directory, shared by moge_quantize_model (quant_file.c) and
 * moge_pad_model (pad.c): everything goes into a temporary directory next to the output, which
 * is renamed into place at the end (a failure leaves nothing behind, and an output replaced with
 * `overwrite` stays intact until then); one safetensors file laid out as the reference writer
 * lays it out; config.json edited from the input's; the tokenizer, licence and other side files
 * copied. Errors name the file.
 */
#ifndef MOGE_MODEL_DIR_H
#define MOGE_MODEL_DIR_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "moge.h"
#include "runtime/safetensors.h"

#define MD_PATH_CAP 4096

/* a + b into buf (MD_PATH_CAP bytes); false when it does not fit. */
bool md_join(char *buf, const char *a, const char *b);

/* The output directory of one write. */
typedef struct {
    char out[MD_PATH_CAP]; /* the output directory as given, without trailing slashes */
    char tmp[MD_PATH_CAP]; /* the temporary directory next to it, once made */
    bool exists;           /* out exists (empty, or replaced with overwrite) */
    bool made;             /* tmp was created (and is removed by md_out_discard) */
} md_out;

/* Checks out_dir before any work: absent, or an empty directory, or (overwrite) a directory of
 * files that is not in_dir; and that every path written below it fits. */
moge_status md_out_check(md_out *o, const char *in_dir, const char *out_dir, bool overwrite, char *err, size_t n);
/* Creates the temporary directory (mode 0755). */
moge_status md_out_make_tmp(md_out *o, char *err, size_t n);
/* tmp/file into buf (MD_PATH_CAP bytes). */
moge_status md_out_path(const md_out *o, const char *file, char *buf, char *err, size_t n);
/* Puts the finished temporary directory in place of out (an old one is removed afterwards). */
moge_status md_out_install(md_out *o, char *err, size_t n);
/* Removes the temporary directory, if made (after a failure). */
void md_out_discard(md_out *o);
/* Ends a write whose status so far is st: when it succeeded, the written directory must load
 * with mp (else its error is returned) and is installed; on any failure the temporary directory
 * is discarded. Returns the final status. */
moge_status md_out_finish(md_out *o, moge_status st, const moge_model_params *mp, char *err, size_t n);

moge_status md_write_bytes(FILE *f, const void *data, size_t len, const char *path, char *err, size_t n);
/* Flushes, syncs and closes f; a failure of any names path. */
moge_status md_close_file(FILE *f, const char *path, char *err, size_t n);
/* Writes text to a new file path. */
moge_status md_write_text(const char *path, const char *text, char *err, size_t n);
/* Size of a file, 0 when it cannot be read. */
int64_t md_file_size(const char *path);

/* Reads in_dir/config.json, lets edit change it (an error status, with its message, stops), and
 * writes it to path, indented, with a final newline. */
typedef moge_status (*md_config_edit)(cJSON *root, const char *config_path, void *user, char *err, size_t n);
moge_status md_write_config(const char *in_dir, const char *path, md_config_edit edit, void *user, char *err, size_t n);

/* Copies the side files of a model directory that in_dir holds (tokenizer files, generation
 * config, chat template, LICENSE/NOTICE, and README.md unless skip_readme) into dir; *copied
 * counts them. */
moge_status md_copy_side_files(const char *in_dir, const char *dir, bool skip_readme, int32_t *copied, char *err, size_t n);

/* One tensor of a safetensors file to write. */
typedef struct {
    const char *name;
    const char *dtype;  /* as written in the header: "F32", "U8", ... */
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;    /* set by md_st_layout: from the start of the data section */
    int index;          /* the caller's */
    int order;          /* set by md_st_layout: the position before sorting */
} md_tensor;

typedef struct {
    char *header;       /* the JSON header padded with spaces, so that the data starts at a multiple of 64 */
    size_t header_len;
    uint64_t data_bytes;
} md_st_header;

/* The reference writer's layout: the data section has no gaps, so t is sorted (stably) by the
 * largest of 64, 4, 2, 1 dividing each size (multiples of 64 bytes first: each of those starts at
 * a multiple of 64) and the offsets are set in that order. The header holds __metadata__ with the
 * NULL-terminated key, value pairs of meta. */
moge_status md_st_layout(md_tensor *t, int count, const char *const *meta, md_st_header *h, char *err, size_t n);
void md_st_header_free(md_st_header *h);
/* Creates path and writes the header's length and the header; the caller writes the tensors'
 * data in t's order and closes the file with md_close_file. */
moge_status md_st_begin(const char *path, const md_st_header *h, FILE **out, char *err, size_t n);

#endif
