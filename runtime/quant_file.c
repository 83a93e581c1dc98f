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
 * Layout (md_st_layout in runtime/model_dir.c): the header is padded with spaces so that the data section starts at byte 64 * k of
 * the file. The data section has no gaps (the safetensors reference reader rejects gaps), so the
 * tensors are ordered by alignment, as the reference writer does: first every tensor whose size
 * is a multiple of 64 bytes (every panel-layout one: 576 and 320 are; in a real model nearly all
 * others too), each therefore starting at a multiple of 64; then those of a multiple of 4 bytes
 * (row-major blocks, F32), of 2, of 1. Every f32 scale is so 4-byte aligned in the mapping, and
 * every panel starts at a multiple of 64 bytes, the alignment of the buffer quantization at load
 * writes.
 */
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "runtime/model.h"
#include "runtime/model_dir.h"
#include "runtime/quant.h"

_Static_assert(TENSOR_PANEL == 16, "the layout mark \"panel16\" names panels of 16 rows");
_Static_assert(sizeof(pblock_q8) % 64 == 0 && sizeof(pblock_q4) % 64 == 0, "panels keep the 64-byte alignment");

moge_quantize_params moge_quantize_default_params(void) {
    moge_quantize_params p = {.quant = MOGE_QUANT_Q8};
    return p;
}

typedef struct {
    const st_entry *src; /* copied unchanged, or NULL */
    const tensor *mat;   /* quantized, or NULL */
    const st_entry *from; /* where the data is read from (its pages are released once written) */
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

typedef struct {
    out_tensor *t;  /* in input order */
    md_tensor *w;   /* in file order; w[i].index into t */
    int n;
    md_st_header h;
} plan;

static void plan_free(plan *p) {
    free(p->t);
    free(p->w);
    md_st_header_free(&p->h);
    memset(p, 0, sizeof *p);
}

/* The stored U8 shape of a quantized [rows, cols] matrix (panels: one stored row per panel). */
static void stored_shape(const tensor *t, dtype qtype, bool panels, int64_t shape[2]) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    shape[0] = panels ? (rows + TENSOR_PANEL - 1) / TENSOR_PANEL : rows;
    shape[1] = panels ? (int64_t)tensor_panel_bytes(qtype, TENSOR_PANEL, cols) : (int64_t)dtype_row_bytes(qtype, cols);
}

/* The tensor as written: a quantized matrix as U8 blocks, anything else as it is in the input. */
static md_tensor describe(const char *name, const out_tensor *t, dtype qtype, bool panels, int index) {
    md_tensor w = {.name = name, .index = index};
    if (t->mat) {
        w.dtype = "U8";
        w.n_dims = 2;
        stored_shape(t->mat, qtype, panels, w.shape);
        w.nbytes = (uint64_t)w.shape[0] * (uint64_t)w.shape[1];
    } else {
        w.dtype = t->src->dtype_str;
        w.n_dims = t->src->n_dims;
        memcpy(w.shape, t->src->shape, sizeof w.shape);
        w.nbytes = t->src->nbytes;
    }
    return w;
}

/* Which tensors go out, in which order, where; and the header. */
static moge_status make_plan(moge_model *m, dtype qtype, bool panels, plan *p, char *err, size_t n) {
    const st_table *st = &m->st;
    bool tied = m->cfg.tie_embeddings;
    matrix_list ml = {.skip = tied ? &m->lm_head : NULL};
    model_for_each_matrix(m, collect_matrix, &ml);
    p->t = calloc((size_t)st->n_entries + 1, sizeof *p->t);
    p->w = calloc((size_t)st->n_entries + 1, sizeof *p->w);
    if (ml.n < 0 || !p->t || !p->w) {
        free(ml.v);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory planning the quantized file");
    }
    for (int i = 0; i < st->n_entries; i++) {
        const st_entry *e = &st->entries[i];
        if (tied && strcmp(e->name, "lm_head.weight") == 0) continue; /* replaced by the quantized embedding */
        out_tensor *o = &p->t[p->n];
        *o = (out_tensor){.src = e, .from = e};
        for (int k = 0; k < ml.n; k++)
            if (ml.v[k]->name == e->name) { /* bound views keep the entry's name pointer */
                o->src = NULL;
                o->mat = ml.v[k];
                break;
            }
        p->w[p->n] = describe(e->name, o, qtype, panels, p->n);
        p->n++;
    }
    free(ml.v);
    if (tied) {
        const tensor *t = &m->lm_head;
        p->t[p->n] = (out_tensor){.mat = t, .from = st_find(st, t->name)};
        p->w[p->n] = describe("lm_head.weight", &p->t[p->n], qtype, panels, p->n);
        p->n++;
    }
    const char *meta[] = {"format", "pt", "moge.quant", quant_dtype_format(qtype), panels ? "moge.layout" : NULL, "panel16", NULL};
    return md_st_layout(p->w, p->n, meta, &p->h, err, n);
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
        st = md_write_bytes(f, buf, (size_t)k * ub, path, err, n);
    }
    free(buf);
    free(row);
    free(pslab);
    return st;
}

static moge_status write_safetensors(const plan *p, dtype qtype, const char *path, const moge_quantize_params *qp,
                                     char *err, size_t n) {
    bool panels = !qp->row_major;
    FILE *f;
    moge_status st = md_st_begin(path, &p->h, &f, err, n);
    if (st != MOGE_OK) return st;
    for (int i = 0; st == MOGE_OK && i < p->n; i++) {
        const md_tensor *w = &p->w[i];
        const out_tensor *t = &p->t[w->index];
        st = t->mat ? write_blocks(f, t->mat, qtype, panels, path, err, n) : md_write_bytes(f, t->src->data, w->nbytes, path, err, n);
        if (t->from) st_release(t->from); /* read once: keeps the memory of a large model bounded */
        if (st == MOGE_OK && qp->progress)
            qp->progress(w->name, i + 1, p->n, (int64_t)(w->offset + w->nbytes), (int64_t)p->h.data_bytes, qp->progress_user);
    }
    moge_status cst = md_close_file(f, path, err, n);
    return st != MOGE_OK ? st : cst;
}

typedef struct { dtype qtype; bool panels; } config_marks;

/* config.json with "quantization_config" set. */
static moge_status set_quant_config(cJSON *root, const char *config_path, void *user, char *err, size_t n) {
    (void)config_path;
    const config_marks *c = user;
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
    bool ok = q && cJSON_AddStringToObject(q, "quant_method", "moge") &&
              cJSON_AddStringToObject(q, "format", quant_dtype_format(c->qtype)) && cJSON_AddNumberToObject(q, "block_size", QBLOCK) &&
              (!c->panels || cJSON_AddStringToObject(q, "layout", "panel16"));
    return ok ? MOGE_OK : set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing config.json");
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
    char path[MD_PATH_CAP];
    md_out o;
    moge_status st = md_out_check(&o, in_dir, out_dir, qp.overwrite, err, n);
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
    st = make_plan(m, qtype, !qp.row_major, &p, err, n);
    if (st == MOGE_OK) st = md_out_make_tmp(&o, err, n);
    int64_t out_bytes = 0;
    if (st == MOGE_OK && (st = md_out_path(&o, "model.safetensors", path, err, n)) == MOGE_OK) {
        st = write_safetensors(&p, qtype, path, &qp, err, n);
        out_bytes = md_file_size(path);
    }
    config_marks marks = {.qtype = qtype, .panels = !qp.row_major};
    if (st == MOGE_OK && (st = md_out_path(&o, "config.json", path, err, n)) == MOGE_OK)
        st = md_write_config(in_dir, path, set_quant_config, &marks, err, n);
    int32_t n_files = 0;
    if (st == MOGE_OK) st = md_copy_side_files(in_dir, o.tmp, false, &n_files, err, n);
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
    return md_out_finish(&o, st, &mp, err, n);
}
