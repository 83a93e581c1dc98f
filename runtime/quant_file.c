/*
 * quant_file.c — pre-quantized model directories: moge_quantize_model() writes them; model.c
 * (bind_blocks, check_prequantized) and safetensors.c (the metadata) read them.
 *
 * The format is an ordinary Hugging Face model directory:
 *  - model.safetensors (one file, also for sharded input) holds every matrix that quantization
 *    at load converts (every 2-D weight but the embedding table and the MoE routers; lm_head
 *    included) as a U8 tensor in the cpu backend's panel layout (runtime/tensor.h): a [rows, cols]
 *    matrix is stored as shape [ceil(rows / 16), nb * 576] (Q8, W8A8) or [ceil(rows / 16),
 *    nb * 320] (Q4, W4A8), nb = ceil(cols / 32): one stored row per panel of 16 matrix rows, each panel
 *    its nb pblock_q8 / pblock_q4 (the 16 rows' f32 scales, then per column of the block the 16
 *    rows' codes) or pblock_q8a8 / pblock_q4a8 (W8A8 / W4A8: the scales, then per 4 columns the 16
 *    rows' 4 codes + 128, or their 4 bytes of two codes + 8)
 *    exactly as they lie in memory; the rows of a last partial panel past the matrix are
 *    zero. The bytes are those quant_tensor_panels() makes at load for the cpu backend, so the
 *    logits are bit-identical, and both backends use the blocks in place from the mapping (the
 *    ref backend reads them through tensor_get). cols, and rows beyond the panel count, come from
 *    config.json. A tied embedding stays unquantized under its name and its quantized copy is
 *    stored as lm_head.weight.
 *  - every other tensor (norms, biases, embedding, routers, anything the model does not use) is
 *    copied unchanged: same name, dtype, shape and bytes.
 *  - "__metadata__": {"format": "pt", "moge.quant": "q8" | "q4" | "w8a8" | "w4a8", "moge.layout": "panel16"}.
 *  - config.json gains "quantization_config": {"quant_method": "moge", "format": "q8" | "q4" | "w8a8" | "w4a8",
 *    "block_size": 32, "layout": "panel16"}; the loader requires both marks (format and layout)
 *    to agree.
 * The first version of the format (still read, and written with moge_quantize_params.row_major)
 * has no layout marks and stores row-major blocks instead: U8 [rows, nb * 36] (Q8, W8A8) or
 * [rows, nb * 20] (Q4), each row its blocks (block_q8 / block_q4: an f32 scale, then the codes)
 * as quant_tensor() makes them; the ref backend uses them in place, the cpu backend copies them
 * once into its panel layout at load.
 * Layout: the header is padded with spaces so that the data section starts at byte 64 * k of
 * the file. The data section has no gaps (the safetensors reference reader rejects gaps), so the
 * tensors are ordered by alignment, as the reference writer does: first every tensor whose size
 * is a multiple of 64 bytes (every panel-layout one: 576 and 320 are; in a real model nearly all
 * others too), each therefore starting at a multiple of 64; then those of a multiple of 4 bytes
 * (row-major blocks, F32), of 2, of 1. Every f32 scale is so 4-byte aligned in the mapping, and
 * every panel starts at a multiple of 64 bytes, the alignment of the buffer quantization at load
 * writes.
 */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/errors.h"
#include "runtime/fileio.h"
#include "runtime/model.h"
#include "runtime/quant.h"

#define DATA_ALIGN 64
#define PATH_CAP 4096
_Static_assert(TENSOR_PANEL == 16, "the layout mark \"panel16\" names panels of 16 rows");
_Static_assert(sizeof(pblock_q8) % DATA_ALIGN == 0 && sizeof(pblock_q4) % DATA_ALIGN == 0, "panels keep the 64-byte alignment");

/* a + b into buf (PATH_CAP bytes); false when it does not fit. */
static bool join(char *buf, const char *a, const char *b) {
    int k = snprintf(buf, PATH_CAP, "%s%s", a, b);
    return k >= 0 && k < PATH_CAP;
}

moge_quantize_params moge_quantize_default_params(void) {
    moge_quantize_params p = {.quant = MOGE_QUANT_Q8};
    return p;
}

typedef struct {
    const char *name;
    const st_entry *src; /* copied unchanged, or NULL */
    const tensor *mat;   /* quantized, or NULL */
    const st_entry *from; /* where the data is read from (its pages are released once written) */
    uint64_t offset, nbytes;
    int order;           /* position in the input, for a stable sort */
} out_tensor;

typedef struct {
    const tensor **v;
    int n, cap;
    const tensor *skip; /* the tied lm_head: quantized under its own name, not the embedding's */
} matrix_list;

static void collect_matrix(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    (void)m;
    matrix_list *l = arg;
    if (kind != MAT_OTHER || t == l->skip || l->n < 0) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        const tensor **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) { l->n = -1; return; }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = t;
}

/* Largest of 64, 4, 2, 1 dividing n: the order class of a tensor. */
static int align_class(uint64_t n) { return n % 64 == 0 ? 64 : n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : 1; }

static int cmp_out(const void *a, const void *b) {
    const out_tensor *x = a, *y = b;
    int cx = align_class(x->nbytes), cy = align_class(y->nbytes);
    if (cx != cy) return cy - cx;
    return x->order - y->order;
}

typedef struct {
    out_tensor *t;
    int n;
    uint64_t data_bytes;
    char *header;   /* JSON padded with spaces */
    size_t header_len;
} plan;

static void plan_free(plan *p) {
    free(p->t);
    free(p->header);
    memset(p, 0, sizeof *p);
}

/* The stored U8 shape of a quantized [rows, cols] matrix (panels: one stored row per panel). */
static void stored_shape(const tensor *t, dtype qtype, bool panels, int64_t shape[2]) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    shape[0] = panels ? (rows + TENSOR_PANEL - 1) / TENSOR_PANEL : rows;
    shape[1] = panels ? (int64_t)tensor_panel_bytes(qtype, TENSOR_PANEL, cols) : (int64_t)dtype_row_bytes(qtype, cols);
}

static uint64_t stored_bytes(const tensor *t, dtype qtype, bool panels) {
    int64_t shape[2];
    stored_shape(t, qtype, panels, shape);
    return (uint64_t)shape[0] * (uint64_t)shape[1];
}

static bool add_tensor_json(cJSON *root, const out_tensor *t, dtype qtype, bool panels) {
    cJSON *o = cJSON_AddObjectToObject(root, t->name), *shape = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
    cJSON *offs = o ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
    if (!shape || !offs || !cJSON_AddStringToObject(o, "dtype", t->mat ? "U8" : t->src->dtype_str)) return false;
    int n_dims = t->mat ? 2 : t->src->n_dims;
    int64_t qshape[2] = {0, 0};
    if (t->mat) stored_shape(t->mat, qtype, panels, qshape);
    for (int d = 0; d < n_dims; d++) {
        double v = t->mat ? (double)qshape[d] : (double)t->src->shape[d];
        cJSON *num = cJSON_CreateNumber(v);
        if (!num || !cJSON_AddItemToArray(shape, num)) { cJSON_Delete(num); return false; }
    }
    double ends[2] = {(double)t->offset, (double)(t->offset + t->nbytes)};
    for (int i = 0; i < 2; i++) {
        cJSON *num = cJSON_CreateNumber(ends[i]);
        if (!num || !cJSON_AddItemToArray(offs, num)) { cJSON_Delete(num); return false; }
    }
    return true;
}

/* Which tensors go out, in which order, where; and the header. */
static moge_status make_plan(moge_model *m, dtype qtype, bool panels, plan *p, char *err, size_t n) {
    const st_table *st = &m->st;
    bool tied = m->cfg.tie_embeddings;
    matrix_list ml = {.skip = tied ? &m->lm_head : NULL};
    model_for_each_matrix(m, collect_matrix, &ml);
    p->t = calloc((size_t)st->n_entries + 1, sizeof *p->t);
    if (ml.n < 0 || !p->t) {
        free(ml.v);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory planning the quantized file");
    }
    for (int i = 0; i < st->n_entries; i++) {
        const st_entry *e = &st->entries[i];
        if (st_find(st, e->name) != e) continue; /* a name a later shard repeats: the loader uses the first */
        if (tied && strcmp(e->name, "lm_head.weight") == 0) continue; /* replaced by the quantized embedding */
        out_tensor *o = &p->t[p->n];
        *o = (out_tensor){.name = e->name, .src = e, .from = e, .nbytes = e->nbytes, .order = p->n};
        for (int k = 0; k < ml.n; k++)
            if (ml.v[k]->name == e->name) { /* bound views keep the entry's name pointer */
                o->src = NULL;
                o->mat = ml.v[k];
                o->nbytes = stored_bytes(ml.v[k], qtype, panels);
                break;
            }
        p->n++;
    }
    free(ml.v);
    if (tied) {
        const tensor *t = &m->lm_head;
        p->t[p->n] = (out_tensor){.name = "lm_head.weight", .mat = t, .from = st_find(st, t->name), .order = p->n,
                                  .nbytes = stored_bytes(t, qtype, panels)};
        p->n++;
    }
    qsort(p->t, (size_t)p->n, sizeof *p->t, cmp_out);
    for (int i = 0; i < p->n; i++) {
        p->t[i].offset = p->data_bytes;
        p->data_bytes += p->t[i].nbytes;
    }

    cJSON *root = cJSON_CreateObject(), *meta = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    bool ok = meta && cJSON_AddStringToObject(meta, "format", "pt") &&
              cJSON_AddStringToObject(meta, "moge.quant", quant_dtype_format(qtype)) &&
              (!panels || cJSON_AddStringToObject(meta, "moge.layout", "panel16"));
    for (int i = 0; ok && i < p->n; i++) ok = add_tensor_json(root, &p->t[i], qtype, panels);
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing the safetensors header");
    size_t len = strlen(json), padded = (8 + len + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN - 8;
    p->header = malloc(padded);
    if (!p->header) {
        free(json);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing the safetensors header");
    }
    memcpy(p->header, json, len);
    memset(p->header + len, ' ', padded - len);
    p->header_len = padded;
    free(json);
    return MOGE_OK;
}

static moge_status write_bytes(FILE *f, const void *data, size_t len, const char *path, char *err, size_t n) {
    if (len && fwrite(data, 1, len, f) != len) return set_err(err, n, MOGE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MOGE_OK;
}

/* Quantizes t into f a slab of rows at a time with the function the load path uses, so the bytes
 * are the same: quant_tensor_panels (panels; a slab is whole panels) or quant_tensor (row-major). */
static moge_status write_blocks(FILE *f, const tensor *t, dtype qtype, bool panels, const char *path, char *err, size_t n) {
    int64_t rows = t->shape[0], cols = t->shape[1], unit = panels ? TENSOR_PANEL : 1;
    size_t rb = dtype_row_bytes(qtype, cols), ub = panels ? tensor_panel_bytes(qtype, TENSOR_PANEL, cols) : rb, esize = dtype_size(t->type);
    int64_t units = (rows + unit - 1) / unit, slab = (int64_t)((1u << 22) / ub); /* in units (rows or panels) */
    if (slab < 1) slab = 1;
    if (slab > units) slab = units;
    char *buf = malloc((size_t)slab * ub);
    float *row = malloc((size_t)cols * sizeof(float));
    void *pslab = panels ? malloc(TENSOR_PANEL * rb) : NULL; /* quant_tensor_panels: one panel's rows, row-major */
    moge_status st = buf && row && (pslab || !panels) ? MOGE_OK : set_err(err, n, MOGE_ERR_NOMEM, "out of memory quantizing %s", t->name);
    for (int64_t u = 0; st == MOGE_OK && u < units; u += slab) {
        int64_t k = units - u < slab ? units - u : slab, r = u * unit;
        tensor part = *t, out;
        part.shape[0] = rows - r < k * unit ? rows - r : k * unit;
        part.data = (const char *)t->data + (size_t)r * (size_t)cols * esize;
        if (panels) quant_tensor_panels(&part, qtype, buf, row, pslab, &out);
        else quant_tensor(&part, qtype, buf, row, &out);
        st = write_bytes(f, buf, (size_t)k * ub, path, err, n);
    }
    free(buf);
    free(row);
    free(pslab);
    return st;
}

static moge_status close_file(FILE *f, const char *path, char *err, size_t n) {
    bool bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) { bad = true; e = errno; }
    return bad ? set_err(err, n, MOGE_ERR_IO, "%s: write failed: %s", path, strerror(e)) : MOGE_OK;
}

static moge_status write_safetensors(const plan *p, dtype qtype, const char *path, const moge_quantize_params *qp,
                                     char *err, size_t n) {
    bool panels = !qp->row_major;
    FILE *f = fopen(path, "wb");
    if (!f) return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)p->header_len >> (8 * i));
    moge_status st = write_bytes(f, len8, 8, path, err, n);
    if (st == MOGE_OK) st = write_bytes(f, p->header, p->header_len, path, err, n);
    for (int i = 0; st == MOGE_OK && i < p->n; i++) {
        const out_tensor *t = &p->t[i];
        st = t->mat ? write_blocks(f, t->mat, qtype, panels, path, err, n) : write_bytes(f, t->src->data, t->nbytes, path, err, n);
        if (t->from) st_release(t->from); /* read once: keeps the memory of a large model bounded */
        if (st == MOGE_OK && qp->progress)
            qp->progress(t->name, i + 1, p->n, (int64_t)(t->offset + t->nbytes), (int64_t)p->data_bytes, qp->user);
    }
    moge_status cst = close_file(f, path, err, n);
    return st != MOGE_OK ? st : cst;
}

/* config.json with "quantization_config" set. */
static moge_status write_config(const char *in_dir, const char *out_path, dtype qtype, bool panels, char *err, size_t n) {
    char path[4096], *text = NULL;
    size_t len = 0;
    if (!join(path, in_dir, "/config.json")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", in_dir);
    moge_status st = read_whole_file(path, &text, &len, err, n);
    if (st != MOGE_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: malformed JSON", path);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
    bool ok = q && cJSON_AddStringToObject(q, "quant_method", "moge") &&
              cJSON_AddStringToObject(q, "format", quant_dtype_format(qtype)) && cJSON_AddNumberToObject(q, "block_size", QBLOCK) &&
              (!panels || cJSON_AddStringToObject(q, "layout", "panel16"));
    char *out = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!out) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing %s", out_path);
    FILE *f = fopen(out_path, "wb");
    if (!f) {
        free(out);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", out_path, strerror(errno));
    }
    st = write_bytes(f, out, strlen(out), out_path, err, n);
    if (st == MOGE_OK) st = write_bytes(f, "\n", 1, out_path, err, n);
    free(out);
    moge_status cst = close_file(f, out_path, err, n);
    return st != MOGE_OK ? st : cst;
}

/* Copies in_dir/name to out_dir/name when it exists; *copied counts. */
static moge_status copy_if_present(const char *in_dir, const char *out_dir, const char *name, int32_t *copied, char *err, size_t n) {
    char src[PATH_CAP], dst[PATH_CAP], file[64];
    snprintf(file, sizeof file, "/%s", name);
    if (!join(src, in_dir, file) || !join(dst, out_dir, file)) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", in_dir);
    FILE *in = fopen(src, "rb");
    if (!in) return errno == ENOENT ? MOGE_OK : set_err(err, n, MOGE_ERR_IO, "%s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t got;
    moge_status st = MOGE_OK;
    while (st == MOGE_OK && (got = fread(buf, 1, sizeof buf, in)) > 0) st = write_bytes(out, buf, got, dst, err, n);
    if (st == MOGE_OK && ferror(in)) st = set_err(err, n, MOGE_ERR_IO, "%s: read error", src);
    fclose(in);
    moge_status cst = close_file(out, dst, err, n);
    if (st == MOGE_OK && cst == MOGE_OK) (*copied)++;
    return st != MOGE_OK ? st : cst;
}

/* The files of a model directory besides config.json and the weights. */
static const char *const EXTRA_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt",
    "added_tokens.json", "chat_template.json", "chat_template.jinja", "generation_config.json", "LICENSE", "LICENSE.txt",
    "LICENSE.md", "NOTICE", "README.md",
};

/* Removes the regular files directly in dir, then dir. Returns 0 or an errno. */
static int remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno;
    struct dirent *de;
    char path[PATH_CAP], file[260];
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(file, sizeof file, "/%s", de->d_name);
        if ((!join(path, dir, file) || unlink(path) != 0) && !rc) rc = errno ? errno : ENAMETOOLONG;
    }
    closedir(d);
    if (rmdir(dir) != 0 && !rc) rc = errno;
    return rc;
}

/* What is in an existing output directory: 0 entries, or the first subdirectory (*subdir). */
static moge_status inspect_out_dir(const char *dir, int *entries, char *subdir, size_t cap, char *err, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return set_err(err, n, MOGE_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    char path[PATH_CAP], file[260];
    *entries = 0;
    subdir[0] = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        (*entries)++;
        struct stat sb;
        snprintf(file, sizeof file, "/%s", de->d_name);
        if (!subdir[0] && (!join(path, dir, file) || (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))) snprintf(subdir, cap, "%s", de->d_name);
    }
    closedir(d);
    return MOGE_OK;
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* Checks out_dir before any work: absent, or an empty directory, or (overwrite) a directory of
 * files that is not the input. *exists tells whether it is there. */
static moge_status check_out_dir(const char *in_dir, const char *out_dir, bool overwrite, bool *exists, char *err, size_t n) {
    struct stat so, si;
    *exists = stat(out_dir, &so) == 0;
    if (!*exists) return errno == ENOENT ? MOGE_OK : set_err(err, n, MOGE_ERR_IO, "%s: %s", out_dir, strerror(errno));
    if (!S_ISDIR(so.st_mode)) return set_err(err, n, MOGE_ERR_IO, "%s: exists and is not a directory", out_dir);
    if (stat(in_dir, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return set_err(err, n, MOGE_ERR_ARG, "%s: the output directory is the input directory", out_dir);
    int entries = 0;
    char sub[256];
    moge_status st = inspect_out_dir(out_dir, &entries, sub, sizeof sub, err, n);
    if (st != MOGE_OK || entries == 0) return st;
    if (!overwrite)
        return set_err(err, n, MOGE_ERR_IO, "%s: exists and is not empty; not overwriting it (overwrite / --force replaces it)", out_dir);
    if (sub[0])
        return set_err(err, n, MOGE_ERR_IO, "%s: holds the directory %s; not replacing a directory that holds directories", out_dir, sub);
    return MOGE_OK;
}

/* Puts the finished tmp directory in place of out_dir. */
static moge_status install(const char *tmp, const char *out_dir, bool exists, char *err, size_t n) {
    if (!exists || rmdir(out_dir) == 0) { /* absent, or empty */
        if (rename(tmp, out_dir) != 0) return set_err(err, n, MOGE_ERR_IO, "%s: cannot rename %s to it: %s", out_dir, tmp, strerror(errno));
        return MOGE_OK;
    }
    char old[PATH_CAP], suffix[32];
    snprintf(suffix, sizeof suffix, ".old-%ld", (long)getpid());
    if (!join(old, out_dir, suffix)) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", out_dir);
    if (rename(out_dir, old) != 0) return set_err(err, n, MOGE_ERR_IO, "%s: cannot move it aside to %s: %s", out_dir, old, strerror(errno));
    if (rename(tmp, out_dir) != 0) {
        int e = errno;
        rename(old, out_dir);
        return set_err(err, n, MOGE_ERR_IO, "%s: cannot rename %s to it: %s", out_dir, tmp, strerror(e));
    }
    int rc = remove_flat_dir(old);
    if (rc) return set_err(err, n, MOGE_ERR_IO, "%s: written, but its old contents in %s could not be removed: %s", out_dir, old, strerror(rc));
    return MOGE_OK;
}

moge_status moge_quantize_model(const char *in_dir, const char *out_dir, const moge_quantize_params *params, moge_quantize_stats *stats,
                                char *err, size_t n) {
    moge_quantize_params qp = params ? *params : moge_quantize_default_params();
    if (stats) memset(stats, 0, sizeof *stats);
    if (!in_dir || !out_dir || !out_dir[0])
        return set_err(err, n, MOGE_ERR_ARG, "moge_quantize_model: in_dir and out_dir must not be NULL or empty");
    if (qp.quant != MOGE_QUANT_Q8 && qp.quant != MOGE_QUANT_Q4 && qp.quant != MOGE_QUANT_W8A8 && qp.quant != MOGE_QUANT_W4A8)
        return set_err(err, n, MOGE_ERR_ARG, "moge_quantize_model: quantization must be q8, q4, w8a8 or w4a8 (got %d)", (int)qp.quant);
    dtype qtype = quant_format_dtype(qp.quant);
    char out[PATH_CAP], tmp[PATH_CAP], path[PATH_CAP];
    if (!join(out, out_dir, "")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", out_dir);
    for (size_t len = strlen(out); len > 1 && out[len - 1] == '/'; len--) out[len - 1] = 0; /* "x/" renames as "x" */
    /* the longest path written below, so that every one of them fits */
    if (!join(path, out, ".tmp-XXXXXX/special_tokens_map.json")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", out_dir);
    bool exists;
    moge_status st = check_out_dir(in_dir, out, qp.overwrite, &exists, err, n);
    if (st != MOGE_OK) return st;

    moge_model_params mp = moge_model_default_params();
    mp.backend = MOGE_BACKEND_REF; /* only the weight views are used */
    mp.n_threads = 1;
    moge_model *m = NULL;
    st = moge_model_load(in_dir, &mp, &m, err, n);
    if (st != MOGE_OK) return st;
    if (m->prequantized) {
        st = set_err(err, n, MOGE_ERR_ARG, "%s: already pre-quantized (%s); quantize the original weights", in_dir, quant_format_name(m->quant));
        moge_model_free(m);
        return st;
    }

    plan p = {0};
    bool made = false;
    st = make_plan(m, qtype, !qp.row_major, &p, err, n);
    if (st == MOGE_OK) {
        made = join(tmp, out, ".tmp-XXXXXX") && mkdtemp(tmp) != NULL;
        if (!made) st = set_err(err, n, MOGE_ERR_IO, "%s: cannot create a directory next to it: %s", out, strerror(errno));
        else chmod(tmp, 0755);
    }
    int64_t out_bytes = 0;
    if (st == MOGE_OK) {
        st = join(path, tmp, "/model.safetensors") ? write_safetensors(&p, qtype, path, &qp, err, n) : MOGE_ERR_ARG;
        out_bytes = file_size(path);
    }
    if (st == MOGE_OK) {
        st = join(path, tmp, "/config.json") ? write_config(in_dir, path, qtype, !qp.row_major, err, n) : MOGE_ERR_ARG;
    }
    int32_t n_files = 0;
    for (size_t i = 0; st == MOGE_OK && i < sizeof EXTRA_FILES / sizeof EXTRA_FILES[0]; i++)
        st = copy_if_present(in_dir, tmp, EXTRA_FILES[i], &n_files, err, n);
    if (stats && st == MOGE_OK) {
        for (int i = 0; i < m->st.n_files; i++) stats->in_bytes += (int64_t)m->st.files[i].size;
        stats->out_bytes = out_bytes;
        for (int i = 0; i < p.n; i++) {
            if (p.t[i].mat) stats->n_quantized++;
            else stats->n_copied++;
        }
        stats->n_files = n_files;
    }
    moge_model_free(m);
    plan_free(&p);
    if (st == MOGE_OK) { /* what was written loads */
        moge_model *check = NULL;
        st = moge_model_load(tmp, &mp, &check, err, n);
        moge_model_free(check);
    }
    if (st == MOGE_OK) st = install(tmp, out, exists, err, n);
    if (st != MOGE_OK && made) remove_flat_dir(tmp);
    return st;
}
