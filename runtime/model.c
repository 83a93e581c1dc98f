/*
 * model.c — load a Hugging Face model directory into a moge_model: parse config.json, open the
 * safetensors, bind every weight by name with its expected shape, and say exactly what is wrong
 * when something does not fit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/bigalloc.h"
#include "runtime/comm.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/moe.h"
#include "runtime/quant.h"

moge_model_params moge_model_default_params(void) {
    moge_model_params p = {.backend = MOGE_BACKEND_CPU, .n_threads = 0};
    return p;
}

typedef struct {
    moge_model *m;
    const char *source; /* the file to name in messages: model.safetensors or the index */
    char *err;
    size_t n;
} binder;

static void fmt_shape(char *buf, size_t size, int n_dims, const int64_t *shape) {
    int off = snprintf(buf, size, "[");
    for (int i = 0; i < n_dims && off < (int)size; i++)
        off += snprintf(buf + off, size - (size_t)off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < (int)size) snprintf(buf + off, size - (size_t)off, "]");
}

/* Finds `name` and checks its dtype and shape (n_dims 1 or 2; rows == 0 for 1-D). */
static moge_status bind(binder *b, const char *name, int64_t rows, int64_t cols, const st_entry **out) {
    const st_entry *e = st_find(&b->m->st, name);
    if (!e) return set_err(b->err, b->n, MOGE_ERR_FORMAT, "%s: missing tensor %s", b->source, name);
    const char *file = b->m->st.files[e->file].path;
    if (!e->supported)
        return set_err(b->err, b->n, MOGE_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (supported: F32, F16, BF16)",
                       file, name, e->dtype_str);
    int64_t want[2] = {rows ? rows : cols, cols};
    int want_dims = rows ? 2 : 1;
    if (e->n_dims != want_dims || e->shape[0] != want[0] || (want_dims == 2 && e->shape[1] != want[1])) {
        char found[128], expected[64];
        fmt_shape(found, sizeof found, e->n_dims, e->shape);
        fmt_shape(expected, sizeof expected, want_dims, want);
        return set_err(b->err, b->n, MOGE_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", file, name, found, expected);
    }
    *out = e;
    return MOGE_OK;
}

/* A file moge quantize wrote pads the rows of a last partial panel past the matrix's own with
 * zeros (scales and codes; tensor_pack_panels): anything else there means config.json gives fewer
 * rows than the file was written for (the panel count alone cannot tell 170 rows from 172). */
static moge_status check_panel_padding(binder *b, const st_entry *e, const tensor *t) {
    int64_t rows = t->shape[0], cols = t->shape[1], nb = (cols + QBLOCK - 1) / QBLOCK;
    int P = TENSOR_PANEL, used = (int)(rows % P);
    if (used == 0) return MOGE_OK;
    size_t bs = tensor_panel_bytes(t->type, P, QBLOCK), code_cols = (bs - P * sizeof(float)) / (size_t)P;
    /* the bytes of row j: code_cols of them, at stride P (Q8, Q4) or in runs of 4 at stride 4 P (Q8A8) */
    int run = dtype_act8(t->type) ? 4 : 1;
    const unsigned char *last = (const unsigned char *)t->data + (size_t)(rows / P) * (size_t)nb * bs;
    for (int j = used; j < P; j++)
        for (int64_t k = 0; k < nb; k++) {
            const unsigned char *blk = last + (size_t)k * bs;
            bool zero = true;
            for (size_t i = 0; i < sizeof(float); i++) zero &= blk[(size_t)j * sizeof(float) + i] == 0;
            for (size_t c = 0; c < code_cols; c++)
                zero &= blk[P * sizeof(float) + (c / (size_t)run * (size_t)P + (size_t)j) * (size_t)run + c % (size_t)run] == 0;
            if (!zero)
                return set_err(b->err, b->n, MOGE_ERR_SHAPE,
                               "%s: tensor %s: row %lld of its last panel is not zero padding: the file holds more rows than the %lld of the "
                               "[%lld, %lld] matrix config.json gives",
                               b->m->st.files[e->file].path, e->name, (long long)(rows / P * P + j), (long long)rows, (long long)rows,
                               (long long)cols);
        }
    return MOGE_OK;
}

/* A U8 tensor of a pre-quantized file: the blocks of a (rows, cols) matrix, row-major
 * [rows, row bytes], or in panel layout [panels, panel bytes] when the file says so ("moge.layout":
 * "panel16"); then it is bound as a panel tensor (tensor.h) in place. */
static moge_status bind_blocks(binder *b, const st_entry *e, int64_t rows, int64_t cols, tensor *t) {
    const st_file *f = &b->m->st.files[e->file];
    dtype type = quant_format_dtype(f->quant);
    int P = f->panel;
    int64_t n0 = P ? (rows + P - 1) / P : rows;
    int64_t n1 = P ? (int64_t)tensor_panel_bytes(type, P, cols) : (int64_t)dtype_row_bytes(type, cols);
    if (e->n_dims != 2 || e->shape[0] != n0 || e->shape[1] != n1) {
        char found[128];
        fmt_shape(found, sizeof found, e->n_dims, e->shape);
        return set_err(b->err, b->n, MOGE_ERR_SHAPE,
                       "%s: tensor %s has shape %s (U8, %zu bytes), expected [%lld, %lld] (%s blocks%s of a [%lld, %lld] matrix: %lld bytes)",
                       f->path, e->name, found, e->nbytes, (long long)n0, (long long)n1, quant_format_name(f->quant),
                       P ? " in panels of 16 rows" : "", (long long)rows, (long long)cols, (long long)(n0 * n1));
    }
    *t = (tensor){.name = e->name, .type = type, .n_dims = 2, .shape = {rows, cols}, .data = e->data, .panel = P};
    return P ? check_panel_padding(b, e, t) : MOGE_OK;
}

static moge_status bind_matrix(binder *b, const char *name, int64_t rows, int64_t cols, tensor *t) {
    const st_entry *e = st_find(&b->m->st, name);
    if (e && b->m->st.files[e->file].quant != MOGE_QUANT_NONE && strcmp(e->dtype_str, "U8") == 0)
        return bind_blocks(b, e, rows, cols, t);
    moge_status st = bind(b, name, rows, cols, &e);
    if (st != MOGE_OK) return st;
    t->name = e->name;
    t->type = e->type;
    t->n_dims = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->data = e->data;
    return MOGE_OK;
}

/* 1-D weights are converted to an f32 copy owned by the model. A (1, len) matrix is accepted too
 * (checkpoints store router_scale and shared_expert_gate either way). */
static moge_status bind_vector(binder *b, const char *name, int64_t len, float **out) {
    const st_entry *e = st_find(&b->m->st, name);
    moge_status st = e && e->n_dims == 2 && e->shape[0] == 1 ? bind(b, name, 1, len, &e) : bind(b, name, 0, len, &e);
    if (st != MOGE_OK) return st;
    *out = malloc((size_t)len * sizeof(float));
    if (!*out) return set_err(b->err, b->n, MOGE_ERR_NOMEM, "out of memory loading %s", name);
    b->m->vector_bytes += len * (int64_t)sizeof(float);
    tensor t = {.name = e->name, .type = e->type, .n_dims = 1, .shape = {len, 0}, .data = e->data};
    tensor_to_f32(&t, 0, len, *out);
    return MOGE_OK;
}

static moge_status bind_all(binder *b) {
    moge_model *m = b->m;
    const model_config *c = &m->cfg;
    int64_t E = c->n_embd, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff;
    moge_status st;
    char name[256];
    TRY(bind_matrix(b, "model.embed_tokens.weight", c->n_vocab, E, &m->tok_embd));
    TRY(bind_vector(b, "model.norm.weight", E, &m->out_norm));
    /* A pre-quantized file stores the quantized copy of a tied embedding as lm_head.weight. */
    if (c->tie_embeddings && !m->prequantized) m->lm_head = m->tok_embd;
    else TRY(bind_matrix(b, "lm_head.weight", c->n_vocab, E, &m->lm_head));
    if (c->n_layer > m->st.n_entries) { /* each layer holds tensors: name the first missing one rather than allocate for the claim */
        int l = 0;
        while (snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l), l < c->n_layer && st_find(&m->st, name)) l++;
        float *v = NULL;
        st = bind_vector(b, name, E, &v); /* fails, naming it */
        free(v);
        if (st != MOGE_OK) return st;
    }
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return set_err(b->err, b->n, MOGE_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
        TRY(bind_vector(b, NAME("input_layernorm.weight"), E, &w->attn_norm));
        TRY(bind_matrix(b, NAME("self_attn.q_proj.weight"), Q, E, &w->wq));
        TRY(bind_matrix(b, NAME("self_attn.k_proj.weight"), KV, E, &w->wk));
        TRY(bind_matrix(b, NAME("self_attn.v_proj.weight"), KV, E, &w->wv));
        TRY(bind_matrix(b, NAME("self_attn.o_proj.weight"), E, Q, &w->wo));
        if (c->qkv_bias) {
            TRY(bind_vector(b, NAME("self_attn.q_proj.bias"), Q, &w->bq));
            TRY(bind_vector(b, NAME("self_attn.k_proj.bias"), KV, &w->bk));
            TRY(bind_vector(b, NAME("self_attn.v_proj.bias"), KV, &w->bv));
        }
        if (c->o_bias) TRY(bind_vector(b, NAME("self_attn.o_proj.bias"), E, &w->bo));
        if (c->qk_norm) {
            TRY(bind_vector(b, NAME("self_attn.q_norm.weight"), c->head_dim, &w->q_norm));
            TRY(bind_vector(b, NAME("self_attn.k_norm.weight"), c->head_dim, &w->k_norm));
        }
        TRY(bind_vector(b, NAME("post_attention_layernorm.weight"), E, &w->ffn_norm));
        if (c->n_expert == 0) {
            TRY(bind_matrix(b, NAME("mlp.gate_proj.weight"), F, E, &w->w_gate));
            TRY(bind_matrix(b, NAME("mlp.up_proj.weight"), F, E, &w->w_up));
            TRY(bind_matrix(b, NAME("mlp.down_proj.weight"), E, F, &w->w_down));
            continue;
        }
        /* MoE layer */
        int64_t FE = c->n_ff_expert, FS = c->n_ff_shared;
        bool mixtral = c->arch == ARCH_MIXTRAL;
        const char *moe = mixtral ? "block_sparse_moe" : "mlp";
        char part[160];
        snprintf(part, sizeof part, "%s.gate.weight", moe);
        TRY(bind_matrix(b, NAME(part), c->n_expert, E, &w->router));
        if (st_find(&m->st, NAME("mlp.router_scale"))) TRY(bind_vector(b, name, c->n_expert, &w->router_scale));
        w->exp_gate = calloc((size_t)c->n_expert, sizeof(tensor));
        w->exp_up = calloc((size_t)c->n_expert, sizeof(tensor));
        w->exp_down = calloc((size_t)c->n_expert, sizeof(tensor));
        if (!w->exp_gate || !w->exp_up || !w->exp_down) return set_err(b->err, b->n, MOGE_ERR_NOMEM, "out of memory");
        for (int j = m->expert_lo; j < m->expert_hi; j++) { /* this rank's experts (all in one process) */
            snprintf(part, sizeof part, "%s.experts.%d.%s.weight", moe, j, mixtral ? "w1" : "gate_proj");
            TRY(bind_matrix(b, NAME(part), FE, E, &w->exp_gate[j]));
            snprintf(part, sizeof part, "%s.experts.%d.%s.weight", moe, j, mixtral ? "w3" : "up_proj");
            TRY(bind_matrix(b, NAME(part), FE, E, &w->exp_up[j]));
            snprintf(part, sizeof part, "%s.experts.%d.%s.weight", moe, j, mixtral ? "w2" : "down_proj");
            TRY(bind_matrix(b, NAME(part), E, FE, &w->exp_down[j]));
        }
        if (FS > 0) {
            TRY(bind_matrix(b, NAME("mlp.shared_expert.gate_proj.weight"), FS, E, &w->sh_gate));
            TRY(bind_matrix(b, NAME("mlp.shared_expert.up_proj.weight"), FS, E, &w->sh_up));
            TRY(bind_matrix(b, NAME("mlp.shared_expert.down_proj.weight"), E, FS, &w->sh_down));
            if (c->shared_gate) TRY(bind_vector(b, NAME("mlp.shared_expert_gate.weight"), E, &w->sh_gate_w));
        }
#undef NAME
    }
#undef TRY
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* quantization at load                                                                       */

void model_for_each_matrix(moge_model *m, void (*fn)(moge_model *, tensor *, matrix_kind, void *), void *arg) {
    const model_config *c = &m->cfg;
    fn(m, &m->tok_embd, MAT_EMBD, arg);
    fn(m, &m->lm_head, MAT_OTHER, arg);
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        tensor *mats[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down, &w->sh_gate, &w->sh_up, &w->sh_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (mats[i]->data) fn(m, mats[i], MAT_OTHER, arg);
        if (c->n_expert == 0) continue;
        fn(m, &w->router, MAT_ROUTER, arg);
        for (int e = m->expert_lo; e < m->expert_hi; e++) {
            fn(m, &w->exp_gate[e], MAT_OTHER, arg);
            fn(m, &w->exp_up[e], MAT_OTHER, arg);
            fn(m, &w->exp_down[e], MAT_OTHER, arg);
        }
    }
}

static int64_t matrix_bytes(const tensor *t) { return (int64_t)dtype_row_bytes(t->type, t->shape[1]) * t->shape[0]; }
/* Bytes the data of t takes in its layout (a panel layout rounds the rows up to whole panels). */
static int64_t held_bytes(const tensor *t) {
    return t->panel ? (int64_t)tensor_panel_bytes(t->type, t->shape[0], t->shape[1]) : matrix_bytes(t);
}

int64_t model_expert_bytes(const moge_model *m) {
    int64_t sum = 0;
    for (int l = 0; m->cfg.n_expert > 0 && l < m->cfg.n_layer; l++)
        for (int e = m->expert_lo; e < m->expert_hi; e++)
            sum += held_bytes(&m->layers[l].exp_gate[e]) + held_bytes(&m->layers[l].exp_up[e]) + held_bytes(&m->layers[l].exp_down[e]);
    return sum;
}

/* Drops the pages of a matrix's source in the mapping once it was read into an owned form (the
 * kernel would read them again from the file if touched). The tied embedding is still needed
 * by the token lookup, so its pages stay. */
static void release_source(moge_model *m, const tensor *src) {
    const st_entry *e = st_find(&m->st, src->name);
    if (src->data != m->tok_embd.data && e) st_release(e);
}

bool load_abort_check(load_progress *p) {
    if (!p->aborted && p->abort_cb && p->abort_cb(p->abort_cb_user)) p->aborted = true;
    return p->aborted;
}

static bool load_aborted(moge_model *m) { return load_abort_check(&m->progress); }

/* Another `bytes` of source matrices done: tells the caller at each new percent. */
static void progress_add(moge_model *m, int64_t bytes) {
    load_progress *p = &m->progress;
    if (!p->fn || p->total <= 0) return;
    p->done += bytes;
    int pct = p->done >= p->total ? 100 : (int)(100 * p->done / p->total);
    if (pct > p->reported) {
        p->reported = pct;
        p->fn(pct >= 100 ? 1.0 : (double)p->done / (double)p->total, p->user);
    }
}

typedef struct {
    dtype type;
    bool panels;             /* the cpu backend's panel layout (tensor.h), else row-major blocks */
    int64_t bytes, max_cols; /* sizing pass */
    char *dst;               /* quantizing pass: next free byte of qbuf */
    float *row;
    void *slab;              /* panels: TENSOR_PANEL quantized rows */
} quant_pass;

static int64_t quant_bytes(const quant_pass *q, const tensor *t) {
    return q->panels ? (int64_t)tensor_panel_bytes(q->type, t->shape[0], t->shape[1])
                     : (int64_t)dtype_row_bytes(q->type, t->shape[1]) * t->shape[0];
}

#define QBUF_ALIGN 64
static int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

static void quant_size(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    (void)m;
    quant_pass *q = arg;
    if (kind != MAT_OTHER || dtype_is_quant(t->type)) return; /* a GGUF's blocks come converted (model_gguf.c) */
    q->bytes += align_up(quant_bytes(q, t), QBUF_ALIGN);
    if (t->shape[1] > q->max_cols) q->max_cols = t->shape[1];
}

/* Quantizes one matrix into qbuf, then releases the pages of its source in the mapping. */
static void quant_one(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    quant_pass *q = arg;
    if (kind != MAT_OTHER || dtype_is_quant(t->type) || load_aborted(m)) return;
    tensor src = *t;
    if (q->panels) quant_tensor_panels(&src, q->type, q->dst, q->row, q->slab, t);
    else quant_tensor(&src, q->type, q->dst, q->row, t);
    int64_t bytes = quant_bytes(q, &src);
    m->qbuf_bytes += bytes;
    progress_add(m, matrix_bytes(&src));
    q->dst += align_up(bytes, QBUF_ALIGN);
    release_source(m, &src);
}

/* panels: the cpu backend's layout, quantized TENSOR_PANEL rows at a time straight into it. */
static moge_status quantize_weights(moge_model *m, moge_quant quant, bool panels, char *err, size_t n) {
    quant_pass q = {.type = quant_format_dtype(quant), .panels = panels};
    model_for_each_matrix(m, quant_size, &q);
    int64_t cols = q.max_cols > 0 ? q.max_cols : 1;
    m->qbuf = big_alloc((size_t)align_up(q.bytes > 0 ? q.bytes : 1, QBUF_ALIGN));
    q.row = malloc((size_t)cols * sizeof(float));
    q.slab = panels ? malloc(TENSOR_PANEL * dtype_row_bytes(q.type, cols)) : NULL;
    if (!m->qbuf || !q.row || (panels && !q.slab)) {
        free(q.row);
        free(q.slab);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory quantizing the weights (%lld bytes)", (long long)q.bytes);
    }
    q.dst = m->qbuf;
    model_for_each_matrix(m, quant_one, &q);
    free(q.row);
    free(q.slab);
    return MOGE_OK;
}

static void count_block_params(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    /* a tied embedding's quantized copy (lm_head.weight) is not a parameter of its own */
    if (dtype_is_quant(t->type) && !(kind == MAT_OTHER && t == &m->lm_head && m->cfg.tie_embeddings)) *(int64_t *)arg += t->shape[0] * t->shape[1];
}

/* Panel layout for the cpu backend (tensor.h): every matrix but the embedding (the token lookup
 * reads it by rows; so does a tied lm_head left in float, which keeps the row-major kernel) —
 * float, or row-major blocks of a pre-quantized file without "moge.layout" — copied once into
 * pbuf; the source pages are released. Quantization at load writes this layout itself, and the
 * blocks of a "panel16" file are in it already (used in place from the mapping). */
static int packable(moge_model *m, tensor *t, matrix_kind kind) {
    return kind != MAT_EMBD && !t->panel && t->data != m->tok_embd.data;
}

static void pack_size(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    if (packable(m, t, kind)) *(int64_t *)arg += align_up((int64_t)tensor_panel_bytes(t->type, t->shape[0], t->shape[1]), QBUF_ALIGN);
}

static void pack_one(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    if (!packable(m, t, kind) || load_aborted(m)) return;
    char **dst = arg;
    tensor src = *t;
    tensor_pack_panels(&src, *dst, t);
    progress_add(m, matrix_bytes(&src));
    int64_t bytes = (int64_t)tensor_panel_bytes(t->type, t->shape[0], t->shape[1]);
    m->pbuf_bytes += bytes;
    /* pre-quantized blocks counted in qbuf_bytes while they were used from the mapping */
    if (dtype_is_quant(src.type)) m->qbuf_bytes -= matrix_bytes(&src);
    *dst += align_up(bytes, QBUF_ALIGN);
    release_source(m, &src);
}

static moge_status pack_weights(moge_model *m, char *err, size_t n) {
    int64_t bytes = 0;
    model_for_each_matrix(m, pack_size, &bytes);
    if (bytes == 0) return MOGE_OK;
    m->pbuf = big_alloc((size_t)bytes);
    if (!m->pbuf) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory laying out the weights (%lld bytes)", (long long)bytes);
    char *dst = m->pbuf;
    model_for_each_matrix(m, pack_one, &dst);
    return MOGE_OK;
}

/* The work moge_model_load will do after binding: bytes of the matrices to quantize (at load) and
 * of those to lay out for the cpu backend (every packable one the quantization leaves). */
typedef struct { bool quant, panels; int64_t bytes; } work_count;
static void count_work(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    work_count *w = arg;
    bool quantized = w->quant && kind == MAT_OTHER;
    if (quantized) w->bytes += matrix_bytes(t);
    if (w->panels && !quantized && packable(m, t, kind)) w->bytes += matrix_bytes(t); /* quantized: straight into panels */
}

static void resident_add(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    int64_t *sum = arg;
    if (kind == MAT_OTHER && t == &m->lm_head && t->data == m->tok_embd.data) return; /* tied: counted once */
    if (!dtype_is_quant(t->type) && !t->panel) *sum += (int64_t)dtype_row_bytes(t->type, t->shape[1]) * t->shape[0];
}

typedef struct { const st_table *st; int64_t bytes; } mapped_sum;
/* Bytes of the matrices whose data lies in a file's mapping (a tied lm_head counted once). */
static void mapped_add(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    mapped_sum *s = arg;
    if (kind == MAT_OTHER && t == &m->lm_head && t->data == m->tok_embd.data) return;
    uintptr_t p = (uintptr_t)t->data, bytes = (uintptr_t)held_bytes(t);
    for (int i = 0; i < s->st->n_files; i++) {
        uintptr_t lo = (uintptr_t)s->st->files[i].map;
        if (p >= lo && p + bytes <= lo + s->st->files[i].size) {
            s->bytes += (int64_t)bytes;
            return;
        }
    }
}


/* ------------------------------------------------------------------------------------------ */
/* pre-quantized files (written by moge quantize; format in runtime/quant_file.c)             */

static const char *layout_mark(int panel) { return panel ? "moge.layout panel16" : "no moge.layout (row-major blocks)"; }

/* The format and layout of the weight files (every file that names a format must agree) and of
 * config.json must be the same; a quantization requested at load must be that one (or none). */
static moge_status check_prequantized(moge_model *m, const char *dir, moge_quant want, char *err, size_t n) {
    moge_quant fq = MOGE_QUANT_NONE;
    int fpanel = 0;
    const char *fpath = NULL;
    for (int i = 0; i < m->st.n_files; i++) {
        const st_file *f = &m->st.files[i];
        if (f->quant == MOGE_QUANT_NONE) continue;
        if (fq != MOGE_QUANT_NONE && f->quant != fq)
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: __metadata__ moge.quant is %s but %s says %s", f->path,
                           quant_format_name(f->quant), fpath, quant_format_name(fq));
        if (fq != MOGE_QUANT_NONE && f->panel != fpanel)
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: __metadata__ has %s but %s has %s", f->path, layout_mark(f->panel), fpath,
                           layout_mark(fpanel));
        fq = f->quant;
        fpanel = f->panel;
        fpath = f->path;
    }
    moge_quant cq = m->cfg.quant_file;
    if (fq != cq) {
        if (cq == MOGE_QUANT_NONE)
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: __metadata__ moge.quant is %s but %s/config.json has no moge quantization_config",
                           fpath, quant_format_name(fq), dir);
        if (fq == MOGE_QUANT_NONE)
            return set_err(err, n, MOGE_ERR_FORMAT, "%s/config.json: quantization_config.format is %s but no safetensors file has __metadata__ moge.quant",
                           dir, quant_format_name(cq));
        return set_err(err, n, MOGE_ERR_FORMAT, "%s/config.json: quantization_config.format is %s but %s has __metadata__ moge.quant %s", dir,
                       quant_format_name(cq), fpath, quant_format_name(fq));
    }
    if (fq != MOGE_QUANT_NONE && fpanel != m->cfg.quant_panel)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s/config.json: quantization_config %s but %s: __metadata__ %s; both must say the same",
                       dir, m->cfg.quant_panel ? "has layout panel16" : "has no layout (row-major blocks)", fpath,
                       fpanel ? "has moge.layout panel16" : "has no moge.layout (row-major blocks)");
    if (fq != MOGE_QUANT_NONE && want != MOGE_QUANT_NONE && want != fq)
        return set_err(err, n, MOGE_ERR_ARG,
                       "%s: the weights are pre-quantized %s; they cannot be loaded as %s (requantizing %s blocks would not give the %s of "
                       "the original weights): load them without a quantization, or quantize the original model to %s",
                       dir, quant_format_name(fq), quant_format_name(want), quant_format_name(fq), quant_format_name(want), quant_format_name(want));
    m->prequantized = fq != MOGE_QUANT_NONE;
    m->quant = fq;
    return MOGE_OK;
}

typedef struct {
    dtype type;
    const char *format; /* its name */
    const char *path; /* the file to name */
    char *err;
    size_t n;
    moge_status st;
} prequant_check;

/* Exactly the matrices quantization at load converts are blocks of the file's format. */
static void check_matrix(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    prequant_check *c = arg;
    if (c->st != MOGE_OK) return;
    if (kind == MAT_OTHER && t->type != c->type)
        c->st = set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s is %s, but a pre-quantized file (moge.quant %s) holds it as U8 blocks",
                        c->path, t->name, dtype_name(t->type), c->format);
    else if (kind != MAT_OTHER && dtype_is_quant(t->type))
        c->st = set_err(c->err, c->n, MOGE_ERR_FORMAT, "%s: tensor %s is stored as %s blocks; the %s stays unquantized (F32, F16 or BF16)", c->path,
                        t->name, dtype_name(t->type), kind == MAT_EMBD ? "embedding table" : "router");
    else if (kind == MAT_OTHER)
        m->qbuf_bytes += held_bytes(t);
}

/* Matrices a GGUF file holds as blocks (Q8_0, Q4_0: moge's Q8 / Q4) are counted as quantized
 * weights (with a quantization at load, already in its format: model_gguf.c); when every one is
 * of one format, the model's format is that one (moge info: "q8 at load"). */
typedef struct { int64_t bytes; int q8, q4; } gguf_blocks;
static void count_gguf_blocks(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    gguf_blocks *g = arg;
    if (!dtype_is_quant(t->type) || (kind == MAT_OTHER && t == &m->lm_head && t->data == m->tok_embd.data)) return;
    g->bytes += held_bytes(t);
    g->q8 += t->type == DTYPE_Q8;
    g->q4 += t->type == DTYPE_Q4;
}

static void gguf_blocks_count(moge_model *m) {
    gguf_blocks g = {0};
    model_for_each_matrix(m, count_gguf_blocks, &g);
    m->qbuf_bytes += g.bytes;
    if (g.q8 && !g.q4) m->quant = MOGE_QUANT_Q8;
    if (g.q4 && !g.q8) m->quant = MOGE_QUANT_Q4;
}

/* The cpu kernel variant a load asks for (moge_model_params.kernels, else MOGE_KERNELS, else the
 * best this processor runs), checked: a name not built or not runnable here is an error naming
 * the ones that are. */
static moge_status cpu_kernels(const char *name, const backend_ops **out, char *err, size_t n) {
    const char *from = "moge_model_params.kernels";
    if (!name || !*name) name = getenv("MOGE_KERNELS"), from = "MOGE_KERNELS";
    if (!name || !*name) {
        *out = backend_cpu_best();
        return MOGE_OK;
    }
    const backend_ops *v = backend_cpu_find(name);
    if (v && backend_cpu_runs(v)) {
        *out = v;
        return MOGE_OK;
    }
    char list[256], cpu[128];
    moge_cpu_kernels_list(list, sizeof list);
    moge_cpu_name(cpu, sizeof cpu);
    if (!v) return set_err(err, n, MOGE_ERR_ARG, "%s: no kernel variant \"%s\" (this processor runs: %s)", from, name, list);
    return set_err(err, n, MOGE_ERR_ARG, "%s: this processor (%s) cannot run the \"%s\" kernels (it runs: %s)", from, cpu, name, list);
}

static moge_status load_abort_err(const char *dir, char *err, size_t n) {
    return set_err(err, n, MOGE_ERR_ABORTED, "moge_model_load: %s: aborted by the caller", dir);
}

moge_status moge_model_load(const char *dir, const moge_model_params *params, moge_model **out, char *err, size_t n) {
    if (out) *out = NULL;
    if (!dir || !out) return set_err(err, n, MOGE_ERR_ARG, "moge_model_load: dir and out must not be NULL");
    moge_model_params p = params ? *params : moge_model_default_params();
    if (comm_multi(p.comm) && !p.comm->following) return comm_model_load(dir, &p, out, err, n); /* every rank, then here */
    if (p.backend != MOGE_BACKEND_CPU && p.backend != MOGE_BACKEND_REF)
        return set_err(err, n, MOGE_ERR_ARG, "moge_model_load: unknown backend %d", (int)p.backend);
    if (p.quant != MOGE_QUANT_NONE && p.quant != MOGE_QUANT_Q8 && p.quant != MOGE_QUANT_Q4 && p.quant != MOGE_QUANT_W8A8 &&
        p.quant != MOGE_QUANT_W4A8)
        return set_err(err, n, MOGE_ERR_ARG, "moge_model_load: unknown quantization %d", (int)p.quant);
    const backend_ops *ops = &backend_ref;
    if (p.backend == MOGE_BACKEND_CPU) {
        moge_status ks = cpu_kernels(p.kernels, &ops, err, n);
        if (ks != MOGE_OK) return ks;
    }
    moge_model *m = calloc(1, sizeof *m);
    if (!m) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");

    m->progress.abort_cb = p.abort_cb;
    m->progress.abort_cb_user = p.abort_cb_user;
    char path[4096];
    bool gguf = gguf_is_file(dir); /* a .gguf file: its metadata and tensors stand for the directory's */
    snprintf(path, sizeof path, "%s/config.json", dir);
    moge_status st = gguf ? gguf_model_open(&m->cfg, &m->st, dir, p.quant, &m->progress, err, n) : config_load(&m->cfg, path, err, n);
    if (st == MOGE_OK) st = config_set_routing(&m->cfg, &p, err, n);
    m->expert_hi = m->cfg.n_expert;
    if (st == MOGE_OK && m->cfg.n_expert > 0) st = comm_expert_range(p.comm, &m->cfg, &m->expert_lo, &m->expert_hi, err, n);
    if (st == MOGE_OK && load_aborted(m)) st = load_abort_err(dir, err, n);
    if (st == MOGE_OK && !gguf) st = st_open_dir(&m->st, dir, err, n);
    if (st == MOGE_OK && load_aborted(m)) st = load_abort_err(dir, err, n);
    if (st == MOGE_OK) {
        char single[4096];
        snprintf(single, sizeof single, "%s/model.safetensors", dir);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        int sharded = !(m->st.n_files == 1 && strcmp(m->st.files[0].path, single) == 0);
        binder b = {.m = m, .source = gguf ? dir : sharded ? path : single, .err = err, .n = n};
        st = check_prequantized(m, dir, p.quant, err, n);
        if (st == MOGE_OK) st = bind_all(&b);
        if (st == MOGE_OK && gguf) gguf_blocks_count(m);
        if (st == MOGE_OK && m->prequantized) {
            prequant_check pc = {.type = quant_format_dtype(m->quant), .format = quant_format_name(m->quant), .path = b.source, .err = err, .n = n};
            model_for_each_matrix(m, check_matrix, &pc);
            st = pc.st;
        }
    }
    if (st == MOGE_OK && load_aborted(m)) st = load_abort_err(dir, err, n);
    if (st == MOGE_OK && p.progress) {
        work_count w = {.quant = !m->prequantized && p.quant != MOGE_QUANT_NONE, .panels = p.backend == MOGE_BACKEND_CPU};
        model_for_each_matrix(m, count_work, &w);
        m->progress.fn = p.progress;
        m->progress.user = p.progress_user;
        m->progress.total = w.bytes;
    }
    if (st == MOGE_OK && !m->prequantized && p.quant != MOGE_QUANT_NONE) {
        st = quantize_weights(m, p.quant, p.backend == MOGE_BACKEND_CPU, err, n);
        m->quant = p.quant;
    }
    if (st == MOGE_OK && load_aborted(m)) st = load_abort_err(dir, err, n);
    if (st == MOGE_OK && p.backend == MOGE_BACKEND_CPU) st = pack_weights(m, err, n);
    if (st == MOGE_OK && m->progress.aborted) st = load_abort_err(dir, err, n);
    if (st == MOGE_OK && m->progress.fn && m->progress.reported < 100) m->progress.fn(1.0, m->progress.user);
    m->progress.fn = NULL;
    if (st == MOGE_OK) {
        int half = m->cfg.head_dim / 2;
        m->rope_inv_freq = malloc((size_t)half * sizeof(float));
        if (!m->rope_inv_freq) st = set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
        /* As Hugging Face computes it: 1 / theta^(2j/d) in float32. */
        for (int j = 0; st == MOGE_OK && j < half; j++)
            m->rope_inv_freq[j] = (float)(1.0 / pow((double)m->cfg.rope_theta, (double)(2 * j) / m->cfg.head_dim));
    }
    if (st != MOGE_OK) {
        moge_model_free(m);
        return st;
    }
    m->ops = ops;
    m->comm = p.comm; /* only now: a failed load frees the model without telling the other ranks */
    m->n_threads = p.n_threads > 0 ? p.n_threads : moge_cpu_default_threads();
    if (m->n_threads < 1) m->n_threads = 1;
    *out = m;
    if (err && n) err[0] = 0;
    return MOGE_OK;
}

moge_status model_new_layer_view(const moge_model *m, int n_layers, moge_model **out, char *err, size_t n) {
    *out = NULL;
    if (n_layers < 1 || n_layers >= m->cfg.n_layer)
        return set_err(err, n, MOGE_ERR_ARG, "layer-skip draft: %d layers requested, the model has %d (use 1..%d)", n_layers,
                       m->cfg.n_layer, m->cfg.n_layer - 1);
    moge_model *v = malloc(sizeof *v);
    if (!v) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    *v = *m;
    v->cfg.n_layer = n_layers;
    v->view_of = m;
    memset(&v->st, 0, sizeof v->st);
    if (comm_leads(m->comm)) { /* every rank makes the same view */
        v->comm_id = comm_new_id(m->comm);
        moge_status st = comm_command(m->comm, COMM_VIEW_NEW, v->comm_id, m->comm_id, n_layers, 0, 0, NULL, 0, err, n);
        if (st != MOGE_OK) {
            free(v);
            return st;
        }
    }
    *out = v;
    return MOGE_OK;
}

void moge_model_free(moge_model *m) {
    if (!m) return;
    if (comm_leads(m->comm)) comm_command(m->comm, COMM_MODEL_FREE, m->comm_id, 0, 0, 0, 0, NULL, 0, NULL, 0);
    if (m->view_of) { /* a view owns nothing but itself */
        free(m);
        return;
    }
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layer; l++) {
            layer_weights *w = &m->layers[l];
            free(w->attn_norm); free(w->ffn_norm);
            free(w->bq); free(w->bk); free(w->bv); free(w->bo);
            free(w->q_norm); free(w->k_norm); free(w->router_scale); free(w->sh_gate_w);
            free(w->exp_gate); free(w->exp_up); free(w->exp_down);
        }
        free(m->layers);
    }
    free(m->out_norm);
    free(m->rope_inv_freq);
    free(m->qbuf);
    free(m->pbuf);
    st_close(&m->st);
    free(m);
}

void moge_model_get_info(const moge_model *m, moge_model_info *info) {
    const model_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->architecture = c->architecture;
    info->backend = m->ops->name;
    info->kernels = m->ops->variant;
    info->n_vocab = c->n_vocab; info->n_embd = c->n_embd; info->n_layer = c->n_layer;
    info->n_head = c->n_head; info->n_head_kv = c->n_head_kv; info->head_dim = c->head_dim;
    info->n_ff = c->n_ff; info->max_position = c->max_position;
    info->rope_theta = c->rope_theta; info->norm_eps = c->norm_eps;
    info->tie_embeddings = c->tie_embeddings;
    info->bos_id = c->bos_id; info->eos_id = c->eos_id;
    info->n_expert = c->n_expert;
    info->n_expert_used = c->n_expert_used;
    info->n_group = c->n_expert ? c->n_group : 0;
    info->n_ff_expert = c->n_ff_expert;
    info->n_ff_shared = c->n_ff_shared;
    info->routing = c->n_expert ? routing_name(c->routing) : "dense";
    info->n_devices = c->n_expert ? moe_default_devices(c, m->n_threads) : 0;
    info->kv_bytes_per_token = 2LL * c->n_layer * c->n_head_kv * c->head_dim * (int64_t)sizeof(float);
    const st_table *st = m->view_of ? &m->view_of->st : &m->st;
    info->dtype = NULL;
    for (int i = 0; i < st->n_entries; i++) {
        const st_entry *e = &st->entries[i];
        if (e->n_dims != 2 || !e->supported) continue;
        const char *d = st->files[e->file].gguf ? e->dtype_str : dtype_name(e->type); /* GGUF: the file's type (Q4_K, ...) */
        if (!info->dtype) info->dtype = d;
        else if (strcmp(info->dtype, d) != 0) { info->dtype = "mixed"; break; }
    }
    if (!info->dtype) info->dtype = "F32";
    for (int i = 0; i < m->st.n_entries; i++) {
        const st_entry *e = &m->st.entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->n_dims; d++) numel *= e->shape[d];
        if (!m->st.files[e->file].gguf) info->weight_bytes += (int64_t)e->nbytes; /* GGUF: the file's size, below */
        /* blocks of a pre-quantized file: counted below by their logical shape */
        if (!(m->st.files[e->file].quant != MOGE_QUANT_NONE && strcmp(e->dtype_str, "U8") == 0)) info->n_params += numel;
    }
    for (int i = 0; i < m->st.n_files; i++)
        if (m->st.files[i].gguf) info->weight_bytes += (int64_t)m->st.files[i].size;
    if (m->prequantized) model_for_each_matrix((moge_model *)m, count_block_params, &info->n_params);
    info->quant = quant_format_name(m->quant);
    info->prequantized = m->prequantized;
    int64_t mapped = 0;
    model_for_each_matrix((moge_model *)m, resident_add, &mapped);
    info->resident_bytes = m->qbuf_bytes + m->pbuf_bytes + m->vector_bytes + mapped;
    mapped_sum ms = {.st = st};
    model_for_each_matrix((moge_model *)m, mapped_add, &ms);
    info->mapped_bytes = ms.bytes;
    /* Active: everything but the embedding table and the experts a token does not use. */
    int64_t E = c->n_embd, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    int64_t per_layer = E * Q * 2 + E * KV * 2 + 2 * E;
    if (c->n_expert) per_layer += (int64_t)c->n_expert * E + (int64_t)c->n_expert_used * 3 * E * c->n_ff_expert + 3 * E * c->n_ff_shared;
    else per_layer += 3 * E * c->n_ff;
    info->n_params_active = per_layer * c->n_layer + E + (int64_t)c->n_vocab * E;
}
