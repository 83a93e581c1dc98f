/*
 * model_gguf.c — a GGUF file (llama.cpp's format) as the config and the named tensors of a
 * Hugging Face directory, so the rest of moge_model_load is shared: the metadata become the
 * config.json keys (checked by the same parser), and every tensor becomes an st_table entry under
 * its Hugging Face name and shape.
 *
 * Tensors: F32, F16 and BF16 are used in place from the mapping; Q8_0 becomes moge's Q8 and Q4_0
 * moge's Q4 (the same codes; the f16 scale widened to f32: the very same values); Q4_K and Q6_K
 * are dequantized to F32 (exact: the values llama.cpp computes). With a quantization at load
 * every block-type matrix goes straight to that format here, one at a time (Q8_0 to q8 / w8a8 and
 * Q4_0 to q4 / w4a8 by their codes, the rest dequantized row by row and quantized as at load), so
 * a K-quant file never needs its f32 size; float matrices are quantized by the usual pass. The embedding table, the MoE
 * routers and 1-D tensors are always float (dequantized when the file quantized them). Merged
 * expert tensors (ffn_*_exps, [experts, rows, cols]) are split into one entry per expert. The Q and
 * K rows of llama-family files (llama.cpp's converter interleaves the two halves of each head for
 * its RoPE) are put back into Hugging Face order, so the logits equal the directory's.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/quant.h"
#include "runtime/safetensors.h"

/* ---- dequantization of one row (ne values) of the ggml block types ---- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Q4_K: the 6-bit scale and min of sub-block j (of 8) from the 12 packed bytes */
static void k4_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Writes ne values of row `src` (type t) as f32. */
static void dequant_row(uint32_t t, const uint8_t *src, int64_t ne, float *y) {
    switch (t) {
    case GGML_F32: memcpy(y, src, (size_t)ne * 4); return;
    case GGML_F16: for (int64_t i = 0; i < ne; i++) y[i] = f16_to_f32(rd16(src + 2 * i)); return;
    case GGML_BF16: for (int64_t i = 0; i < ne; i++) y[i] = bf16_to_f32(rd16(src + 2 * i)); return;
    case GGML_Q8_0:
        for (int64_t b = 0; b < ne / 32; b++, src += 34) {
            float d = f16_to_f32(rd16(src));
            for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)(int8_t)src[2 + j] * d;
        }
        return;
    case GGML_Q4_0:
        for (int64_t b = 0; b < ne / 32; b++, src += 18) {
            float d = f16_to_f32(rd16(src));
            for (int j = 0; j < 16; j++) {
                y[b * 32 + j] = (float)((src[2 + j] & 15) - 8) * d;
                y[b * 32 + j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
            }
        }
        return;
    case GGML_Q4_K:
        /* d, dmin (f16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of
         * 4-bit codes: 4 groups of 32 bytes, low nibbles one sub-block, high nibbles the next;
         * value = d * scale * q - dmin * min */
        for (int64_t b = 0; b < ne / 256; b++, src += 144) {
            float d = f16_to_f32(rd16(src)), dmin = f16_to_f32(rd16(src + 2));
            const uint8_t *sc = src + 4, *q = src + 16;
            float *o = y + b * 256;
            for (int g = 0; g < 4; g++, q += 32, o += 64) {
                int s0, m0, s1, m1;
                k4_scale_min(2 * g, sc, &s0, &m0);
                k4_scale_min(2 * g + 1, sc, &s1, &m1);
                float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
                for (int l = 0; l < 32; l++) {
                    o[l] = d0 * (float)(q[l] & 15) - n0;
                    o[32 + l] = d1 * (float)(q[l] >> 4) - n1;
                }
            }
        }
        return;
    case GGML_Q6_K:
        /* 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales (sub-blocks of 16), d (f16);
         * value = d * scale * (q - 32), in two halves of 128 values */
        for (int64_t b = 0; b < ne / 256; b++, src += 210) {
            const uint8_t *ql = src, *qh = src + 128;
            const int8_t *sc = (const int8_t *)(src + 192);
            float d = f16_to_f32(rd16(src + 208));
            float *o = y + b * 256;
            for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, o += 128)
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    int q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    o[l] = d * (float)sc[is] * (float)q1;
                    o[l + 32] = d * (float)sc[is + 2] * (float)q2;
                    o[l + 64] = d * (float)sc[is + 4] * (float)q3;
                    o[l + 96] = d * (float)sc[is + 6] * (float)q4;
                }
        }
        return;
    }
}

static bool type_supported(uint32_t t) {
    return t == GGML_F32 || t == GGML_F16 || t == GGML_BF16 || t == GGML_Q8_0 || t == GGML_Q4_0 || t == GGML_Q4_K || t == GGML_Q6_K;
}

/* ---- tensor names ---- */

typedef enum { ROLE_PLAIN, ROLE_EMBD_OR_ROUTER, ROLE_Q, ROLE_K } tensor_role;

typedef struct {
    const char *gguf; /* after "blk.N." (or the whole name for the global ones) */
    const char *hf;   /* after "model.layers.N." */
    tensor_role role;
} name_map;

static const name_map LAYER_NAMES[] = {
    {"attn_norm.weight", "input_layernorm.weight", ROLE_PLAIN},
    {"attn_q.weight", "self_attn.q_proj.weight", ROLE_Q},
    {"attn_k.weight", "self_attn.k_proj.weight", ROLE_K},
    {"attn_v.weight", "self_attn.v_proj.weight", ROLE_PLAIN},
    {"attn_output.weight", "self_attn.o_proj.weight", ROLE_PLAIN},
    {"attn_q.bias", "self_attn.q_proj.bias", ROLE_Q},
    {"attn_k.bias", "self_attn.k_proj.bias", ROLE_K},
    {"attn_v.bias", "self_attn.v_proj.bias", ROLE_PLAIN},
    {"attn_output.bias", "self_attn.o_proj.bias", ROLE_PLAIN},
    {"attn_q_norm.weight", "self_attn.q_norm.weight", ROLE_PLAIN},
    {"attn_k_norm.weight", "self_attn.k_norm.weight", ROLE_PLAIN},
    {"ffn_norm.weight", "post_attention_layernorm.weight", ROLE_PLAIN},
    {"ffn_gate.weight", "mlp.gate_proj.weight", ROLE_PLAIN},
    {"ffn_up.weight", "mlp.up_proj.weight", ROLE_PLAIN},
    {"ffn_down.weight", "mlp.down_proj.weight", ROLE_PLAIN},
    {"ffn_gate_inp.weight", "%s.gate.weight", ROLE_EMBD_OR_ROUTER},
    {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight", ROLE_PLAIN},
    {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight", ROLE_PLAIN},
    {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight", ROLE_PLAIN},
    {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight", ROLE_PLAIN},
};

/* The experts' tensors: merged ("ffn_gate_exps.weight") or one per expert ("ffn_gate.J.weight"). */
static const struct { const char *gguf, *hf, *mixtral; } EXPERT_NAMES[] = {
    {"ffn_gate", "gate_proj", "w1"}, {"ffn_up", "up_proj", "w3"}, {"ffn_down", "down_proj", "w2"},
};

/* ---- building the table ---- */

typedef struct {
    const gguf_file *g;
    st_table *t;
    const model_config *c;
    bool permute;   /* llama family: undo the Q/K interleave */
    moge_quant quant; /* a quantization at load: block-type matrices go straight to its format */
    bool mixtral;
    char *err;
    size_t n;
} builder;

/* Adds an entry named hf for rows x cols (rows 0: a 1-D tensor of cols) of data at src (ggml type
 * ty). out_float: keep as float (dequantize the block types). heads > 0: rows come in heads of
 * head_dim interleaved pairs, put back in halves. */
static moge_status add_entry(builder *b, const gguf_tensor *gt, const char *hf, const uint8_t *src, int64_t rows, int64_t cols,
                             bool out_float, int heads) {
    uint32_t ty = gt->type;
    if (!type_supported(ty))
        return set_err(b->err, b->n, MOGE_ERR_UNSUPPORTED, "%s: tensor %s has type %s (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)",
                       b->g->what, gt->name, gguf_type_name(ty));
    st_entry e;
    memset(&e, 0, sizeof e);
    e.supported = 1;
    e.n_dims = rows ? 2 : 1;
    e.shape[0] = rows ? rows : cols;
    e.shape[1] = rows ? cols : 0;
    int64_t nrows = rows ? rows : 1;
    bool in_place = (ty == GGML_F32 || ty == GGML_F16 || ty == GGML_BF16) && heads == 0;
    dtype out;
    if (ty == GGML_F32 || ty == GGML_F16 || ty == GGML_BF16) out = ty == GGML_F32 ? DTYPE_F32 : ty == GGML_F16 ? DTYPE_F16 : DTYPE_BF16;
    else if (out_float || rows <= 1) out = DTYPE_F32;
    else if (b->quant != MOGE_QUANT_NONE) out = quant_format_dtype(b->quant);
    else if (ty == GGML_Q8_0 || ty == GGML_Q4_0) out = ty == GGML_Q8_0 ? DTYPE_Q8 : DTYPE_Q4;
    else out = DTYPE_F32;
    dtype base = dtype_base(out);
    e.type = out;
    snprintf(e.dtype_str, sizeof e.dtype_str, "%s", gguf_type_name(ty));
    size_t src_row = (size_t)(gt->nbytes / (uint64_t)(gt->numel / cols)); /* bytes of one row of cols values */
    size_t dst_row = dtype_row_bytes(out, cols);
    e.nbytes = (size_t)nrows * dst_row;
    if (in_place) {
        e.data = src;
    } else {
        e.copy = malloc(e.nbytes ? e.nbytes : 1);
        float *row = dtype_is_quant(out) ? malloc((size_t)cols * sizeof *row) : NULL; /* a requantized row */
        if (!e.copy || (dtype_is_quant(out) && !row)) {
            free(e.copy);
            free(row);
            e.copy = NULL;
        }
        if (!e.copy) return set_err(b->err, b->n, MOGE_ERR_NOMEM, "%s: out of memory converting tensor %s (%zu bytes)", b->g->what, gt->name, e.nbytes);
        int64_t span = rows ? nrows : cols, hd = heads ? span / heads : 0, half = hd / 2;
        if (heads && (span % heads || hd % 2)) {
            free(e.copy);
            free(row);
            return set_err(b->err, b->n, MOGE_ERR_SHAPE, "%s: tensor %s: %lld rows are not %d heads of an even size", b->g->what, gt->name,
                           (long long)span, heads);
        }
        /* a 1-D bias of a head-permuted tensor: each value is a "row" */
        int64_t unit = rows ? 1 : 0;
        for (int64_t r = 0; r < (rows ? nrows : 1); r++) {
            int64_t from = r;
            if (heads && unit) { /* HF row r = head h, index i: GGUF row 2i (i < half) or 2(i - half) + 1 */
                int64_t h = r / hd, i = r % hd;
                from = h * hd + (i < half ? 2 * i : 2 * (i - half) + 1);
            }
            const uint8_t *s = src + (size_t)from * src_row;
            char *d = (char *)e.copy + (size_t)r * dst_row;
            if (ty == GGML_Q8_0 && base == DTYPE_Q8) {
                block_q8 *o = (block_q8 *)d;
                for (int64_t k = 0; k < cols / 32; k++, s += 34) {
                    o[k].d = f16_to_f32(rd16(s));
                    memcpy(o[k].q, s + 2, 32);
                }
            } else if (ty == GGML_Q4_0 && base == DTYPE_Q4) {
                block_q4 *o = (block_q4 *)d;
                for (int64_t k = 0; k < cols / 32; k++, s += 18) {
                    o[k].d = f16_to_f32(rd16(s));
                    memcpy(o[k].q, s + 2, 16);
                }
            } else if (out == DTYPE_F32) {
                dequant_row(ty, s, cols, (float *)d);
            } else if (dtype_is_quant(out)) { /* another block type: its values quantized as at load */
                dequant_row(ty, s, cols, row);
                if (base == DTYPE_Q8) quant_row_q8(row, cols, (block_q8 *)d);
                else quant_row_q4(row, cols, (block_q4 *)d);
            } else {
                memcpy(d, s, dst_row); /* F16 / BF16 rows */
            }
        }
        free(row);
        if (heads && !unit) { /* the bias: permute the values */
            size_t es = out == DTYPE_F32 ? 4 : 2;
            char *tmpv = malloc((size_t)cols * es);
            if (!tmpv) {
                free(e.copy);
                return set_err(b->err, b->n, MOGE_ERR_NOMEM, "out of memory");
            }
            memcpy(tmpv, e.copy, (size_t)cols * es);
            int64_t bhd = cols / heads, bhalf = bhd / 2;
            for (int64_t r = 0; r < cols; r++) {
                int64_t h = r / bhd, i = r % bhd;
                memcpy((char *)e.copy + (size_t)r * es, tmpv + (size_t)(h * bhd + (i < bhalf ? 2 * i : 2 * (i - bhalf) + 1)) * es, es);
            }
            free(tmpv);
        }
        e.data = e.copy;
    }
    e.name = strdup(hf);
    if (!e.name) {
        free(e.copy);
        return set_err(b->err, b->n, MOGE_ERR_NOMEM, "out of memory");
    }
    e.file = 0;
    e.release_copy = e.copy != NULL;
    return st_table_add(b->t, &e, b->g->what, b->err, b->n);
}

/* The (rows, cols) of a 2-D tensor, or (0, len) of a 1-D one; other ranks are errors. */
static moge_status dims2(builder *b, const gguf_tensor *gt, int64_t *rows, int64_t *cols) {
    if (gt->n_dims == 1) { *rows = 0; *cols = gt->ne[0]; return MOGE_OK; }
    if (gt->n_dims == 2) { *rows = gt->ne[1]; *cols = gt->ne[0]; return MOGE_OK; }
    return set_err(b->err, b->n, MOGE_ERR_SHAPE, "%s: tensor %s has %u dimensions (1 or 2 expected)", b->g->what, gt->name, gt->n_dims);
}

static moge_status map_tensor(builder *b, const gguf_tensor *gt) {
    int64_t rows = 0, cols = 0;
    moge_status st;
    char hf[320];
    const char *nm = gt->name;
    const char *moe = b->mixtral ? "block_sparse_moe" : "mlp";
    if (!strcmp(nm, "token_embd.weight") || !strcmp(nm, "output_norm.weight") || !strcmp(nm, "output.weight")) {
        if ((st = dims2(b, gt, &rows, &cols)) != MOGE_OK) return st;
        const char *to = nm[0] == 't' ? "model.embed_tokens.weight" : nm[7] == 'n' ? "model.norm.weight" : "lm_head.weight";
        return add_entry(b, gt, to, gt->data, rows, cols, nm[0] == 't', 0);
    }
    if (!strcmp(nm, "rope_freqs.weight"))
        return set_err(b->err, b->n, MOGE_ERR_UNSUPPORTED, "%s: tensor rope_freqs.weight: scaled RoPE (llama 3.1 style) is not supported", b->g->what);
    int layer = -1, used = 0;
    if (sscanf(nm, "blk.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0 || layer >= b->c->n_layer)
        return set_err(b->err, b->n, MOGE_ERR_UNSUPPORTED, "%s: tensor %s: not a tensor of the %d-layer %s architecture", b->g->what, nm,
                       b->c->n_layer, b->c->architecture);
    const char *rest = nm + used;
    for (size_t i = 0; i < sizeof LAYER_NAMES / sizeof LAYER_NAMES[0]; i++) {
        if (strcmp(rest, LAYER_NAMES[i].gguf) != 0) continue;
        if ((st = dims2(b, gt, &rows, &cols)) != MOGE_OK) return st;
        char part[128];
        snprintf(part, sizeof part, LAYER_NAMES[i].hf, moe);
        snprintf(hf, sizeof hf, "model.layers.%d.%s", layer, part);
        int heads = 0;
        if (b->permute && LAYER_NAMES[i].role == ROLE_Q) heads = b->c->n_head;
        if (b->permute && LAYER_NAMES[i].role == ROLE_K) heads = b->c->n_head_kv;
        return add_entry(b, gt, hf, gt->data, rows, cols, LAYER_NAMES[i].role == ROLE_EMBD_OR_ROUTER, heads);
    }
    for (size_t i = 0; i < sizeof EXPERT_NAMES / sizeof EXPERT_NAMES[0]; i++) {
        size_t k = strlen(EXPERT_NAMES[i].gguf);
        if (strncmp(rest, EXPERT_NAMES[i].gguf, k) != 0) continue;
        const char *hfp = b->mixtral ? EXPERT_NAMES[i].mixtral : EXPERT_NAMES[i].hf;
        if (!strcmp(rest + k, "_exps.weight")) { /* merged: ne = [cols, rows, experts] */
            if (gt->n_dims != 3)
                return set_err(b->err, b->n, MOGE_ERR_SHAPE, "%s: tensor %s has %u dimensions (3 expected: experts, rows, columns)", b->g->what, nm,
                               gt->n_dims);
            int64_t E = gt->ne[2];
            if (E != b->c->n_expert)
                return set_err(b->err, b->n, MOGE_ERR_SHAPE, "%s: tensor %s holds %lld experts, the metadata say %d", b->g->what, nm, (long long)E,
                               b->c->n_expert);
            uint64_t per = gt->nbytes / (uint64_t)E;
            for (int64_t j = 0; j < E; j++) {
                snprintf(hf, sizeof hf, "model.layers.%d.%s.experts.%lld.%s.weight", layer, moe, (long long)j, hfp);
                if ((st = add_entry(b, gt, hf, (const uint8_t *)gt->data + j * per, gt->ne[1], gt->ne[0], false, 0)) != MOGE_OK) return st;
            }
            return MOGE_OK;
        }
        int j = -1, end = 0;
        if (sscanf(rest + k, ".%d.weight%n", &j, &end) == 1 && rest[k + (size_t)end] == 0 && j >= 0) { /* one per expert (older files) */
            if ((st = dims2(b, gt, &rows, &cols)) != MOGE_OK) return st;
            snprintf(hf, sizeof hf, "model.layers.%d.%s.experts.%d.%s.weight", layer, moe, j, hfp);
            return add_entry(b, gt, hf, gt->data, rows, cols, false, 0);
        }
    }
    return set_err(b->err, b->n, MOGE_ERR_UNSUPPORTED, "%s: tensor %s: not a tensor moge knows for the %s architecture", b->g->what, nm,
                   b->c->architecture);
}

/* ---- metadata to config.json keys ---- */

typedef struct {
    const gguf_file *g;
    const char *arch;
    cJSON *root;
    char *err;
    size_t n;
} meta;

/* {arch}.suffix (or the bare key with arch NULL) as a positive integer into json key `to`;
 * required when `need`. */
static moge_status meta_int(meta *m, const char *suffix, const char *to, bool need) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    const gguf_kv *kv = gguf_find(m->g, key);
    if (!kv) return need ? set_err(m->err, m->n, MOGE_ERR_FORMAT, "%s: missing metadata key %s", m->g->what, key) : MOGE_OK;
    int64_t v;
    if (!gguf_kv_int(kv, &v) || v < 1 || v > 1000000000)
        return set_err(m->err, m->n, MOGE_ERR_FORMAT, "%s: metadata key %s must be a positive integer (found %s%s)", m->g->what, key,
                       gguf_vtype_name(kv->type), kv->type == GGUF_ARR ? ": per-layer values are not supported" : " out of range");
    cJSON_AddNumberToObject(m->root, to, (double)v);
    return MOGE_OK;
}

static moge_status meta_float(meta *m, const char *suffix, const char *to) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    const gguf_kv *kv = gguf_find(m->g, key);
    if (!kv) return MOGE_OK;
    double v;
    if (!gguf_kv_float(kv, &v) || !(v > 0) || v > 1e30)
        return set_err(m->err, m->n, MOGE_ERR_FORMAT, "%s: metadata key %s must be a positive number (found %s)", m->g->what, key, gguf_vtype_name(kv->type));
    cJSON_AddNumberToObject(m->root, to, v);
    return MOGE_OK;
}

static moge_status meta_token(meta *m, const char *key, const char *to) {
    const gguf_kv *kv = gguf_find(m->g, key);
    if (!kv) return MOGE_OK;
    int64_t v;
    if (!gguf_kv_int(kv, &v) || v < 0 || v > INT32_MAX - 1)
        return set_err(m->err, m->n, MOGE_ERR_FORMAT, "%s: metadata key %s must be a token id (found %s)", m->g->what, key, gguf_vtype_name(kv->type));
    cJSON_AddNumberToObject(m->root, to, (double)v);
    return MOGE_OK;
}

#define TRY_GOTO(x) do { if ((st = (x)) != MOGE_OK) goto done; } while (0)

static moge_status build_config(const gguf_file *g, model_config *c, bool *permute, char *err, size_t n) {
    gguf_str as;
    const gguf_kv *ak = gguf_find(g, "general.architecture");
    if (!gguf_kv_string(ak, &as)) return set_err(err, n, MOGE_ERR_FORMAT, "%s: missing string metadata key general.architecture", g->what);
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)(as.len < 63 ? as.len : 63), as.s);
    const gguf_kv *ek = NULL;
    char key[160];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    ek = gguf_find(g, key);
    int64_t experts = 0;
    if (ek && (!gguf_kv_int(ek, &experts) || experts < 0 || experts > 65536))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: metadata key %s must be an expert count", g->what, key);
    const char *hf = NULL;
    *permute = false;
    if (!strcmp(arch, "llama")) hf = experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM", *permute = true;
    else if (!strcmp(arch, "qwen2")) hf = "Qwen2ForCausalLM";
    else if (!strcmp(arch, "qwen3")) hf = "Qwen3ForCausalLM";
    else if (!strcmp(arch, "qwen2moe")) hf = "Qwen2MoeForCausalLM";
    else if (!strcmp(arch, "qwen3moe")) hf = "Qwen3MoeForCausalLM";
    if (!hf)
        return set_err(err, n, MOGE_ERR_UNSUPPORTED,
                       "%s: general.architecture \"%s\" is not supported (supported: llama (and Mistral, Mixtral in it), qwen2, qwen3, qwen2moe, qwen3moe)",
                       g->what, arch);
    cJSON *root = cJSON_CreateObject(), *archs = cJSON_AddArrayToObject(root, "architectures");
    if (!root || !archs) {
        cJSON_Delete(root);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    }
    cJSON_AddItemToArray(archs, cJSON_CreateString(hf));
    meta m = {.g = g, .arch = arch, .root = root, .err = err, .n = n};
    moge_status st = MOGE_OK;
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: missing tensor token_embd.weight (2-D)", g->what);
        goto done;
    }
    cJSON_AddNumberToObject(root, "vocab_size", (double)emb->ne[1]);
    TRY_GOTO(meta_int(&m, "embedding_length", "hidden_size", true));
    TRY_GOTO(meta_int(&m, "block_count", "num_hidden_layers", true));
    TRY_GOTO(meta_int(&m, "attention.head_count", "num_attention_heads", true));
    TRY_GOTO(meta_int(&m, "attention.head_count_kv", "num_key_value_heads", false));
    TRY_GOTO(meta_int(&m, "attention.key_length", "head_dim", false));
    TRY_GOTO(meta_int(&m, "context_length", "max_position_embeddings", false));
    TRY_GOTO(meta_int(&m, "feed_forward_length", "intermediate_size", !strcmp(hf, "LlamaForCausalLM") || !strcmp(hf, "Qwen2ForCausalLM") ||
                                                                         !strcmp(hf, "Qwen3ForCausalLM") || !strcmp(hf, "MixtralForCausalLM")));
    TRY_GOTO(meta_float(&m, "attention.layer_norm_rms_epsilon", "rms_norm_eps"));
    TRY_GOTO(meta_float(&m, "rope.freq_base", "rope_theta"));
    TRY_GOTO(meta_token(&m, "tokenizer.ggml.bos_token_id", "bos_token_id"));
    TRY_GOTO(meta_token(&m, "tokenizer.ggml.eos_token_id", "eos_token_id"));
    if (experts > 0) {
        TRY_GOTO(meta_int(&m, "expert_count", !strcmp(hf, "MixtralForCausalLM") ? "num_local_experts" : "num_experts", true));
        TRY_GOTO(meta_int(&m, "expert_used_count", "num_experts_per_tok", true));
        if (strcmp(hf, "MixtralForCausalLM") != 0) TRY_GOTO(meta_int(&m, "expert_feed_forward_length", "moe_intermediate_size", true));
        TRY_GOTO(meta_int(&m, "expert_shared_feed_forward_length", "shared_expert_intermediate_size", false));
        /* llama.cpp's rule: Qwen3-MoE and Mixtral renormalise the chosen experts' weights, Qwen2-MoE does not */
        cJSON_AddBoolToObject(root, "norm_topk_prob", strcmp(hf, "Qwen2MoeForCausalLM") != 0);
    }
    cJSON_AddBoolToObject(root, "tie_word_embeddings", gguf_find_tensor(g, "output.weight") == NULL);
    if (*permute) {
        bool qb = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL, ob = gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
        if (qb != ob) {
            st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: blk.0 has %s bias but not %s (moge's llama takes both or neither)", g->what,
                         qb ? "a q" : "an output", qb ? "an output one" : "a q one");
            goto done;
        }
        cJSON_AddBoolToObject(root, "attention_bias", qb);
    }
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    gguf_str rs;
    if (gguf_kv_string(gguf_find(g, key), &rs) && !(rs.len == 4 && !memcmp(rs.s, "none", 4))) {
        st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: %s \"%.*s\": scaled RoPE is not supported", g->what, key, (int)(rs.len < 40 ? rs.len : 40), rs.s);
        goto done;
    }
    char what[4200];
    snprintf(what, sizeof what, "%s (its metadata as config.json)", g->what);
    st = config_from_json(c, root, what, err, n);
    if (st == MOGE_OK) {
        snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
        int64_t rd;
        const gguf_kv *rk = gguf_find(g, key);
        if (rk && (!gguf_kv_int(rk, &rd) || rd != c->head_dim))
            st = set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: %s is not the head size %d (partial RoPE is not supported)", g->what, key, c->head_dim);
    }
done:
    cJSON_Delete(root);
    return st;
}

moge_status gguf_model_open(model_config *c, st_table *t, const char *path, moge_quant quant, load_progress *lp, char *err, size_t n) {
    memset(t, 0, sizeof *t);
    gguf_file g;
    moge_status st = gguf_open(&g, path, err, n);
    if (st != MOGE_OK) return st;
    bool permute = false;
    st = build_config(&g, c, &permute, err, n);
    if (st == MOGE_OK) st = st_table_add_file(t, path, g.map, g.size, err, n);
    if (st == MOGE_OK) {
        g.map = NULL; /* the table owns the mapping now */
        builder b = {.g = &g, .t = t, .c = c, .permute = permute, .quant = quant, .mixtral = c->arch == ARCH_MIXTRAL, .err = err, .n = n};
        for (uint64_t i = 0; st == MOGE_OK && i < g.n_tensors; i++) {
            if (lp && load_abort_check(lp)) /* between tensors: a K-quant's conversion to f32 takes a while */
                st = set_err(err, n, MOGE_ERR_ABORTED, "moge_model_load: %s: aborted by the caller", path);
            else st = map_tensor(&b, &g.tensors[i]);
        }
    }
    gguf_close(&g);
    if (st != MOGE_OK) st_close(t);
    return st;
}
