/*
 * test_quant_file.c — pre-quantized model directories (moge quantize; format in
 * runtime/quant_file.c):
 *  - for stories260K (tied embedding), the Pangu MoGE, Mixtral, Qwen2-MoE and Qwen3-MoE fixtures,
 *    a Llama with biases (BF16) and a sharded Mistral (F16), Q8, Q4, W8A8 and W4A8, in the panel layout and in
 *    the first version's row-major layout (moge_quantize_params.row_major): the written directory
 *    loads and its logits equal those of quantization at load bit for bit, on the cpu and the
 *    ref backend; moge_model_info reports the format, the same parameters, resident bytes that
 *    differ from quantization at load only by the layout of the quantized matrices, and mapped
 *    bytes that are exactly the resident bytes not owned by the model; no quantization pass.
 *    Panel layout: every quantized matrix is a panel view into the mapping on both backends (no
 *    copy, no repack: the model holds at most 1.05x the bytes of the file), its bytes those of
 *    quantization at load for the cpu backend. Row-major: the ref backend uses the blocks in the
 *    mapping, the cpu backend copies them once into its panel layout. Loading with the file's own
 *    format is a no-op, with the other one an error;
 *  - the file: a valid safetensors file by the reference reader's rules (data section 64-byte
 *    aligned, tensors contiguous, every tensor naturally aligned; panel tensors at multiples of 64
 *    bytes), the metadata and config marks (format, and "panel16" layout or none), U8 shapes
 *    [ceil(rows / 16), nb * 576 | nb * 320] or [rows, nb * 36 | nb * 20], unquantized tensors
 *    byte-identical to the input;
 *  - broken files: truncated, a U8 tensor of the wrong byte count, q4 sizes under a q8 mark,
 *    marks that disagree, a matrix left unquantized, an unknown quantization method, format or
 *    layout, a layout mark in one place only, row-major blocks marked as panels and panels
 *    without the marks, config.json giving more panels' or fewer rows than the file holds: each
 *    error names the file and tensor or key; a header rewritten without the padding still loads
 *    (aligned copies, counted as owned, not mapped) with the same logits;
 *  - moge_quantize_model: refuses an existing non-empty output (overwrite replaces it, but not
 *    a directory holding directories), the input as output, a pre-quantized input; a failure
 *    leaves no output and no temporary directory;
 *  - the `moge quantize` command: success, --help, missing -o, bad --quant, existing output,
 *    --force, --row-major, and `moge run` on the result prints what `moge run --quant` prints.
 */
#include <cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"
#include "runtime/model.h"

#define TMP "build/test_quant_file"
#define OUT TMP "/cmd.out"
#define ERR TMP "/cmd.err"

static const char *MODELS[] = {
    "models/stories260K", "tests/fixtures/moe/pangu_64e8g_bf16", "tests/fixtures/moe/mixtral_8e", "tests/fixtures/moe/qwen2_moe",
    "tests/fixtures/moe/qwen3_moe", "tests/fixtures/models/llama_bias_bf16", "tests/fixtures/models/mistral_f16_sharded",
};
#define N_MODELS (int)(sizeof MODELS / sizeof MODELS[0])

static const char *qname(moge_quant q) {
    return q == MOGE_QUANT_Q8 ? "q8" : q == MOGE_QUANT_W8A8 ? "w8a8" : q == MOGE_QUANT_W4A8 ? "w4a8" : "q4";
}

/* TMP/<last path component of dir>-q8 (panel layout), or -q8-rows (row-major) */
static void layout_dir(char *buf, size_t cap, const char *dir, moge_quant q, bool rows) {
    const char *base = strrchr(dir, '/');
    snprintf(buf, cap, "%s/%s-%s%s", TMP, base ? base + 1 : dir, qname(q), rows ? "-rows" : "");
}
static void out_dir(char *buf, size_t cap, const char *dir, moge_quant q) { layout_dir(buf, cap, dir, q, false); }

static moge_model *load_as(const char *dir, moge_quant q, moge_backend backend, moge_status want, char *err, size_t n) {
    moge_model_params p = moge_model_default_params();
    p.n_threads = 2;
    p.quant = q;
    p.backend = backend;
    moge_model *m = NULL;
    moge_status st = moge_model_load(dir, &p, &m, err, n);
    CHECKF(st == want, "%s: status %d, expected %d: %s", dir, (int)st, (int)want, err);
    return m;
}

static moge_model *load(const char *dir, moge_quant q, moge_backend backend) {
    char err[1024];
    return load_as(dir, q, backend, MOGE_OK, err, sizeof err);
}

static moge_status quantize_layout(const char *in, const char *out, moge_quant q, bool overwrite, bool rows, char *err, size_t n) {
    moge_quantize_params p = moge_quantize_default_params();
    p.quant = q;
    p.overwrite = overwrite;
    p.row_major = rows;
    return moge_quantize_model(in, out, &p, NULL, err, n);
}
static moge_status quantize(const char *in, const char *out, moge_quant q, bool overwrite, char *err, size_t n) {
    return quantize_layout(in, out, q, overwrite, false, err, n);
}

/* Logits of the 24 rows of a fixed token sequence (one causal batch) into a malloc'd array. */
static float *logits(moge_model *m, int *n_out) {
    char err[512];
    moge_model_info info;
    moge_model_get_info(m, &info);
    int V = info.n_vocab, n = 24;
    int32_t seq[24];
    for (int i = 0; i < n; i++) seq[i] = (i * 131 + 7) % V;
    moge_context *c = NULL;
    float *out = NULL;
    if (moge_context_new(m, NULL, &c, err, sizeof err) == MOGE_OK) {
        const float *lg;
        moge_batch b = {.n = n, .tokens = seq};
        if (moge_forward(c, &b, &lg) == MOGE_OK && (out = malloc((size_t)n * V * sizeof(float))))
            memcpy(out, lg, (size_t)n * V * sizeof(float));
    }
    CHECKF(out != NULL, "forward failed: %s", err);
    moge_context_free(c);
    *n_out = n * V;
    return out;
}

/* Bytes a matrix's data takes in its layout. */
static int64_t held_bytes(const tensor *t) {
    return t->panel ? (int64_t)tensor_panel_bytes(t->type, t->shape[0], t->shape[1])
                    : (int64_t)dtype_row_bytes(t->type, t->shape[1]) * t->shape[0];
}

typedef struct { const moge_model *m; int bad_type, outside, panels, n; int64_t qbytes; const tensor *mats[4096]; } mapped_check;

/* The quantized matrices (MAT_OTHER) of a model: how many, in which layout, inside a mapping. */
static void check_mapped(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    mapped_check *c = arg;
    if (kind != MAT_OTHER) return;
    if (c->n < 4096) c->mats[c->n] = t;
    c->n++;
    c->bad_type += !dtype_is_quant(t->type);
    c->panels += t->panel != 0;
    c->qbytes += held_bytes(t);
    int inside = 0;
    for (int i = 0; i < m->st.n_files; i++) {
        uintptr_t lo = (uintptr_t)m->st.files[i].map, hi = lo + m->st.files[i].size, p = (uintptr_t)t->data;
        inside |= p >= lo && p + (uintptr_t)held_bytes(t) <= hi;
    }
    c->outside += !inside;
}

/* moge_model_info's bytes are truthful: what is resident but not mapped is what the model owns. */
static void check_accounting(const char *what, moge_model *m) {
    moge_model_info in;
    moge_model_get_info(m, &in);
    int copies = 0;
    for (int i = 0; i < m->st.n_entries; i++) copies += m->st.entries[i].copy != NULL;
    int64_t owned = m->vector_bytes + m->pbuf_bytes + (m->qbuf ? m->qbuf_bytes : 0);
    CHECKF(copies == 0 && in.resident_bytes - in.mapped_bytes == owned && in.mapped_bytes > 0,
           "%s: resident %lld, mapped %lld, owned %lld (vectors %lld, panels %lld, quantized %lld), %d copies", what, (long long)in.resident_bytes,
           (long long)in.mapped_bytes, (long long)owned, (long long)m->vector_bytes, (long long)m->pbuf_bytes, (long long)m->qbuf_bytes, copies);
}

static void test_logits_bit_identical(void) {
    char err[1024], dir[512];
    shell("rm -rf " TMP " && mkdir -p " TMP);
    for (int rows = 0; rows <= 1; rows++)
        for (int mi = 0; mi < N_MODELS; mi++)
            for (moge_quant q = MOGE_QUANT_Q8; q <= MOGE_QUANT_W4A8; q++) {
                layout_dir(dir, sizeof dir, MODELS[mi], q, rows);
                moge_status st = quantize_layout(MODELS[mi], dir, q, false, rows, err, sizeof err);
                CHECKF(st == MOGE_OK, "quantize %s %s%s: %s", MODELS[mi], qname(q), rows ? " row-major" : "", err);
                if (st != MOGE_OK) continue;
                for (moge_backend be = MOGE_BACKEND_CPU; be <= MOGE_BACKEND_REF; be++) {
                    bool cpu = be == MOGE_BACKEND_CPU;
                    const char *bn = cpu ? "cpu" : "ref";
                    moge_model *ma = load(MODELS[mi], q, be), *mf = load(dir, MOGE_QUANT_NONE, be), *ms = load(dir, q, be);
                    if (!ma || !mf || !ms) { moge_model_free(ma); moge_model_free(mf); moge_model_free(ms); continue; }
                    int na, nf, ns;
                    float *la = logits(ma, &na), *lf = logits(mf, &nf), *ls = logits(ms, &ns);
                    CHECKF(la && lf && ls && na == nf && na == ns && memcmp(la, lf, (size_t)na * 4) == 0 && memcmp(la, ls, (size_t)na * 4) == 0,
                           "%s %s %s: pre-quantized logits differ from quantization at load (normalised error %.3g)", dir, qname(q), bn,
                           la && lf ? nerr(lf, la, na) : -1.0);
                    free(la); free(lf); free(ls);
                    moge_model_info ia, iff;
                    moge_model_get_info(ma, &ia);
                    moge_model_get_info(mf, &iff);
                    CHECKF(strcmp(iff.quant, qname(q)) == 0 && iff.prequantized && !ia.prequantized, "%s: info quant %s", dir, iff.quant);
                    CHECKF(strcmp(iff.dtype, ia.dtype) == 0 && iff.tie_embeddings == ia.tie_embeddings, "%s: dtype %s", dir, iff.dtype);
                    /* no quantization pass (no qbuf); where each quantized matrix is, in which layout */
                    mapped_check *ca = calloc(1, sizeof *ca), *cf = calloc(1, sizeof *cf);
                    model_for_each_matrix(ma, check_mapped, ca);
                    model_for_each_matrix(mf, check_mapped, cf);
                    bool where = rows ? (cpu ? cf->panels == cf->n && cf->outside == cf->n : cf->panels == 0 && cf->outside == 0)
                                      : cf->panels == cf->n && cf->outside == 0; /* panels: in place on both backends */
                    CHECKF(mf->qbuf == NULL && cf->n > 0 && cf->n <= 4096 && cf->bad_type == 0 && where,
                           "%s (%s): qbuf %p, %d of %d matrices not quantized, %d outside the mapping, %d in panels", dir, bn, mf->qbuf,
                           cf->bad_type, cf->n, cf->outside, cf->panels);
                    /* the same bytes as quantization at load where the layouts are the same (cpu: both panels) */
                    int same = 0, compared = 0;
                    for (int i = 0; i < cf->n && i < 4096 && ca->n == cf->n; i++) {
                        const tensor *a = ca->mats[i], *f = cf->mats[i];
                        if (a->panel != f->panel) continue;
                        compared++;
                        same += a->type == f->type && held_bytes(a) == held_bytes(f) && memcmp(a->data, f->data, (size_t)held_bytes(f)) == 0;
                    }
                    CHECKF(same == compared && (compared == cf->n || (!cpu && !rows)), "%s (%s): %d of %d matrices equal to quantization at load",
                           dir, bn, same, compared);
                    /* resident bytes: those of quantization at load but for the layout of the quantized matrices */
                    CHECKF(iff.resident_bytes - cf->qbytes == ia.resident_bytes - ca->qbytes && (!cpu || iff.resident_bytes == ia.resident_bytes) &&
                               iff.n_params == ia.n_params && iff.n_params_active == ia.n_params_active,
                           "%s (%s): resident %lld (quantized %lld) / params %lld, at load %lld (%lld) / %lld", dir, bn, (long long)iff.resident_bytes,
                           (long long)cf->qbytes, (long long)iff.n_params, (long long)ia.resident_bytes, (long long)ca->qbytes, (long long)ia.n_params);
                    check_accounting(dir, mf);
                    check_accounting(MODELS[mi], ma);
                    /* panels in place: no duplicate copy of the weights (a bit over 1x: f32 copies of 16-bit vectors) */
                    double ratio = (double)iff.resident_bytes / (double)iff.weight_bytes;
                    CHECKF(rows || ratio <= 1.05, "%s (%s): holds %.3f x the bytes of its file", dir, bn, ratio);
                    if (q == MOGE_QUANT_Q8)
                        printf("  %s (%s): %lld bytes stored, %lld resident (%.3f x), %lld of them mapped, %d quantized matrices%s\n", dir, bn,
                               (long long)iff.weight_bytes, (long long)iff.resident_bytes, ratio, (long long)iff.mapped_bytes, cf->n,
                               rows && cpu ? " (copied into panel layout)" : " (in place)");
                    free(ca); free(cf);
                    moge_model_free(ma); moge_model_free(mf); moge_model_free(ms);
                }
                /* the other format: an error that says why */
                moge_model *mo = load_as(dir, q == MOGE_QUANT_Q8 ? MOGE_QUANT_Q4 : MOGE_QUANT_Q8, MOGE_BACKEND_CPU, MOGE_ERR_ARG, err, sizeof err);
                CHECKF(!mo && strstr(err, "pre-quantized") && strstr(err, qname(q)), "%s: %s", dir, err);
            }
}

/* ------------------------------------------------------------------------------------------ */

/* The header of a safetensors file (parsed) and its length. */
static cJSON *read_header(const char *path, uint64_t *hlen, long *size) {
    FILE *f = fopen(path, "rb");
    unsigned char b[8] = {0};
    *hlen = 0;
    *size = 0;
    if (!f) return NULL;
    if (fread(b, 1, 8, f) == 8)
        for (int i = 7; i >= 0; i--) *hlen = (*hlen << 8) | b[i];
    char *h = calloc(*hlen + 1, 1);
    cJSON *root = h && fread(h, 1, *hlen, f) == *hlen ? cJSON_Parse(h) : NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fclose(f);
    free(h);
    return root;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_file_format(void) {
    char dir[512], path[600];
    for (int rows = 0; rows <= 1; rows++)
        for (int mi = 0; mi < N_MODELS; mi++)
            for (moge_quant q = MOGE_QUANT_Q8; q <= MOGE_QUANT_W4A8; q++) {
                layout_dir(dir, sizeof dir, MODELS[mi], q, rows);
                snprintf(path, sizeof path, "%s/model.safetensors", dir);
                uint64_t hlen;
                long size;
                cJSON *root = read_header(path, &hlen, &size);
                CHECKF(root != NULL, "%s: no header", path);
                if (!root) continue;
                CHECKF((8 + hlen) % 64 == 0, "%s: data section starts at byte %llu", path, (unsigned long long)(8 + hlen));
                cJSON *mq = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "__metadata__"), "moge.quant");
                cJSON *ml = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "__metadata__"), "moge.layout");
                bool panel16 = cJSON_IsString(ml) && !strcmp(ml->valuestring, "panel16");
                CHECKF(cJSON_IsString(mq) && strcmp(mq->valuestring, qname(q)) == 0 && (rows ? !ml : panel16),
                       "%s: moge.quant %s, moge.layout %s", path, cJSON_IsString(mq) ? mq->valuestring : "-", cJSON_IsString(ml) ? ml->valuestring : "-");
                /* the reference reader: tensors sorted by offset cover the data section without gaps */
                int n = cJSON_GetArraySize(root), k = 0, misaligned = 0, bad_shape = 0, aligned64 = 0, n_u8 = 0;
                uint64_t *spans = calloc((size_t)n * 2, sizeof(uint64_t));
                moge_model *src = load(MODELS[mi], MOGE_QUANT_NONE, MOGE_BACKEND_CPU);
                moge_model_info info;
                moge_model_get_info(src, &info);
                int differ = 0;
                for (cJSON *t = root->child; t; t = t->next) {
                    if (!strcmp(t->string, "__metadata__")) continue;
                    const char *dt = cJSON_GetObjectItem(t, "dtype")->valuestring;
                    cJSON *offs = cJSON_GetObjectItem(t, "data_offsets"), *shape = cJSON_GetObjectItem(t, "shape");
                    uint64_t b = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble, e = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
                    spans[2 * k] = b;
                    spans[2 * k + 1] = e;
                    k++;
                    uint64_t need = !strcmp(dt, "U8") || !strcmp(dt, "F32") ? 4 : 2;
                    misaligned += (8 + hlen + b) % need != 0;
                    aligned64 += (8 + hlen + b) % 64 == 0;
                    if (!strcmp(dt, "U8")) { /* [panels, nb * panel block bytes] at a multiple of 64, or [rows, nb * block bytes] */
                        int64_t h = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble, w = (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
                        bool four = q == MOGE_QUANT_Q4 || q == MOGE_QUANT_W4A8;
                        int64_t bs = rows ? (four ? 20 : 36) : (four ? 320 : 576);
                        bad_shape += cJSON_GetArraySize(shape) != 2 || w % bs != 0 || (uint64_t)(h * w) != e - b || (!rows && (8 + hlen + b) % 64 != 0);
                        n_u8++;
                    } else { /* unchanged: the same bytes as the input's tensor of that name */
                        const st_entry *se = st_find(&src->st, t->string);
                        FILE *f = fopen(path, "rb");
                        char *buf = malloc(e - b + 1);
                        differ += !se || !f || !buf || se->nbytes != e - b || fseek(f, (long)(8 + hlen + b), SEEK_SET) != 0 ||
                                  fread(buf, 1, e - b, f) != e - b || memcmp(buf, se->data, e - b) != 0;
                        if (f) fclose(f);
                        free(buf);
                    }
                }
                qsort(spans, (size_t)k, 2 * sizeof(uint64_t), cmp_u64);
                int gaps = 0;
                for (int i = 0; i < k; i++) gaps += spans[2 * i] != (i ? spans[2 * i - 1] : 0);
                CHECKF(gaps == 0 && (long)(8 + hlen + spans[2 * k - 1]) == size, "%s: %d gaps, data ends at %llu of %ld", path, gaps,
                       (unsigned long long)(8 + hlen + spans[2 * k - 1]), size);
                CHECKF(misaligned == 0 && bad_shape == 0 && differ == 0 && n_u8 > 0,
                       "%s: %d misaligned, %d bad U8 shapes (or misaligned panels), %d copied tensors differ", path,
                       misaligned, bad_shape, differ);
                printf("  %s: %d tensors (%d quantized), %d start at a multiple of 64 bytes\n", path, k, n_u8, aligned64);
                free(spans);
                cJSON_Delete(root);
                moge_model_free(src);
                /* config.json */
                snprintf(path, sizeof path, "%s/config.json", dir);
                char *cfg = slurp_text(path);
                cJSON *c = cJSON_Parse(cfg), *qc = cJSON_GetObjectItem(c, "quantization_config");
                cJSON *fm = cJSON_GetObjectItem(qc, "format"), *me = cJSON_GetObjectItem(qc, "quant_method"), *bs = cJSON_GetObjectItem(qc, "block_size");
                cJSON *lo = cJSON_GetObjectItem(qc, "layout");
                CHECKF(cJSON_IsString(me) && !strcmp(me->valuestring, "moge") && cJSON_IsString(fm) && !strcmp(fm->valuestring, qname(q)) &&
                           cJSON_IsNumber(bs) && bs->valuedouble == 32 && (rows ? !lo : cJSON_IsString(lo) && !strcmp(lo->valuestring, "panel16")),
                       "%s: %s", path, cfg);
                cJSON_Delete(c);
                free(cfg);
            }
    /* the tokenizer and licence files came along */
    out_dir(dir, sizeof dir, MODELS[0], MOGE_QUANT_Q8);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json", "LICENSE", "README.md"};
    for (int i = 0; i < 4; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "models/stories260K/%s", files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        char *x = slurp_text(a), *y = slurp_text(b);
        CHECKF(x[0] && strcmp(x, y) == 0, "%s differs from %s", b, a);
        free(x); free(y);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* broken files */

/* Rewrites the header of path through fn (the data section is kept byte for byte). */
static void rewrite_header(const char *path, void (*fn)(cJSON *root, void *arg), void *arg) {
    uint64_t hlen;
    long size;
    cJSON *root = read_header(path, &hlen, &size);
    FILE *f = fopen(path, "rb");
    char *data = malloc((size_t)size);
    CHECKF(root && f && data && fread(data, 1, (size_t)size, f) == (size_t)size, "%s: cannot read", path);
    if (f) fclose(f);
    if (!root || !data) { cJSON_Delete(root); free(data); return; }
    fn(root, arg);
    char *h = cJSON_PrintUnformatted(root);
    uint64_t n = strlen(h);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    f = fopen(path, "wb");
    CHECK(f && fwrite(len8, 1, 8, f) == 8 && fwrite(h, 1, n, f) == n &&
          fwrite(data + 8 + hlen, 1, (size_t)size - 8 - hlen, f) == (size_t)size - 8 - hlen);
    if (f) fclose(f);
    free(h); free(data);
    cJSON_Delete(root);
}

/* Replaces the first occurrence of `from` in the file by `to`. */
static void patch_text(const char *path, const char *from, const char *to) {
    char *s = slurp_text(path), *at = strstr(s, from);
    CHECKF(at != NULL, "%s: no \"%s\"", path, from);
    FILE *f = fopen(path, "wb");
    if (f && at) {
        fwrite(s, 1, (size_t)(at - s), f);
        fputs(to, f);
        fputs(at + strlen(from), f);
    }
    if (f) fclose(f);
    free(s);
}

/* A fresh copy of src as TMP/broken; returns its path. */
static const char *broken_copy(const char *src) {
    static char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s/broken && cp -r %s %s/broken", TMP, src, TMP);
    CHECK(shell(cmd) == 0);
    return TMP "/broken";
}

static void expect_error(const char *dir, moge_status want, const char *const *needles, const char *what) {
    char err[1024] = "";
    moge_model *m = load_as(dir, MOGE_QUANT_NONE, MOGE_BACKEND_CPU, want, err, sizeof err);
    moge_model_free(m);
    for (int i = 0; needles[i]; i++) CHECKF(strstr(err, needles[i]) != NULL, "%s: \"%s\" not in: %s", what, needles[i], err);
    printf("  %s: %s\n", what, err);
}

static void set_shape(cJSON *root, void *arg) { /* q_proj of layer 0: one byte short per row */
    cJSON *t = cJSON_GetObjectItem(root, (const char *)arg), *shape = cJSON_GetObjectItem(t, "shape");
    cJSON *offs = cJSON_GetObjectItem(t, "data_offsets");
    double rows = cJSON_GetArrayItem(shape, 0)->valuedouble, w = cJSON_GetArrayItem(shape, 1)->valuedouble;
    cJSON_ReplaceItemInArray(shape, 1, cJSON_CreateNumber(w - 1));
    cJSON_ReplaceItemInArray(offs, 1, cJSON_CreateNumber(cJSON_GetArrayItem(offs, 0)->valuedouble + rows * (w - 1)));
}

static void set_meta(cJSON *root, void *arg) {
    cJSON_DeleteItemFromObject(root, "__metadata__");
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "moge.quant", (const char *)arg);
}

typedef struct { const char *quant, *layout; } meta_marks; /* NULL: left out */
static void set_marks(cJSON *root, void *arg) {
    const meta_marks *mk = arg;
    cJSON_DeleteItemFromObject(root, "__metadata__");
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (mk->quant) cJSON_AddStringToObject(meta, "moge.quant", mk->quant);
    if (mk->layout) cJSON_AddStringToObject(meta, "moge.layout", mk->layout);
}

/* The tensor whose data ends last in the file (and the file's size). */
static const char *last_tensor(const char *path, long *size) {
    static char name[256];
    uint64_t hlen, best = 0;
    cJSON *root = read_header(path, &hlen, size);
    for (cJSON *t = root ? root->child : NULL; t; t = t->next) {
        cJSON *offs = cJSON_GetObjectItem(t, "data_offsets");
        if (offs && cJSON_GetArrayItem(offs, 1)->valuedouble >= (double)best) {
            best = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
            snprintf(name, sizeof name, "%s", t->string);
        }
    }
    cJSON_Delete(root);
    return name;
}

static void test_broken_files(void) {
    char q8[512], q4[512], pq8[512], rows8[512];
    out_dir(q8, sizeof q8, MODELS[0], MOGE_QUANT_Q8);
    layout_dir(rows8, sizeof rows8, MODELS[0], MOGE_QUANT_Q8, true);
    out_dir(q4, sizeof q4, MODELS[0], MOGE_QUANT_Q4);
    out_dir(pq8, sizeof pq8, MODELS[1], MOGE_QUANT_Q8);
    const char *st = TMP "/broken/model.safetensors", *cfg = TMP "/broken/config.json";

    /* truncated: the tensor at the end of the data runs past the end of the file */
    broken_copy(q8);
    long size;
    const char *last = last_tensor(st, &size);
    CHECK(truncate(st, size - 100) == 0);
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, last, "past the end", NULL}, "truncated");

    /* a U8 tensor one byte per stored row (panel) short */
    broken_copy(q8);
    rewrite_header(st, set_shape, "model.layers.0.self_attn.q_proj.weight");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE,
                 (const char *[]){st, "model.layers.0.self_attn.q_proj.weight", "[4, 1151]", "4604 bytes", "[4, 1152]", "4608 bytes",
                                  "q8 blocks in panels of 16 rows of a [64, 64] matrix", NULL},
                 "wrong byte count");
    broken_copy(rows8);
    rewrite_header(st, set_shape, "model.layers.0.self_attn.q_proj.weight");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE,
                 (const char *[]){st, "model.layers.0.self_attn.q_proj.weight", "[64, 71]", "4544 bytes", "4608 bytes", NULL},
                 "wrong byte count, row-major");

    /* the layout mark in one place only */
    broken_copy(q8);
    patch_text(cfg, "\"layout\"", "\"layout_x\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){cfg, "has no layout", st, "has moge.layout panel16", NULL},
                 "layout mark in the file only");
    broken_copy(q8);
    rewrite_header(st, set_meta, "q8");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){cfg, "has layout panel16", st, "has no moge.layout", NULL},
                 "layout mark in config.json only");
    /* the marks and the data disagree: row-major blocks marked as panels, panels without marks */
    broken_copy(rows8);
    rewrite_header(st, set_marks, &(meta_marks){"q8", "panel16"});
    patch_text(cfg, "\"block_size\"", "\"layout\": \"panel16\", \"block_size\"");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE, (const char *[]){st, "lm_head.weight", "[512, 72]", "expected [32, 1152]", "panels of 16 rows", NULL},
                 "row-major blocks marked panel16");
    broken_copy(q8);
    rewrite_header(st, set_meta, "q8");
    patch_text(cfg, "\"layout\"", "\"layout_x\"");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE, (const char *[]){st, "lm_head.weight", "[32, 1152]", "expected [512, 72]", NULL}, "panels without marks");
    /* unknown layouts; a layout without a format */
    broken_copy(q8);
    rewrite_header(st, set_marks, &(meta_marks){"q8", "panel8"});
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, "\"moge.layout\" must be \"panel16\"", NULL}, "bad layout value");
    broken_copy(q8);
    patch_text(cfg, "\"panel16\"", "\"panel8\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){cfg, "quantization_config.layout must be \"panel16\"", NULL}, "bad config layout");
    broken_copy("models/stories260K");
    rewrite_header(st, set_marks, &(meta_marks){NULL, "panel16"});
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, "\"moge.layout\" without \"moge.quant\"", NULL}, "layout without format");
    /* config.json gives other rows than the file holds: more panels (a shape error), or fewer rows
     * within the last panel (its padding rows are not zero); intermediate_size is 172 = 10 3/4 panels */
    broken_copy(q8);
    patch_text(cfg, "172", "200");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE, (const char *[]){st, "model.layers.0.mlp.gate_proj.weight", "[11, 1152]", "expected [13, 1152]", NULL},
                 "more panels in config.json");
    broken_copy(q8);
    patch_text(cfg, "172", "170");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE,
                 (const char *[]){st, "model.layers.0.mlp.gate_proj.weight", "row 170 of its last panel is not zero padding", "[170, 64]", NULL},
                 "fewer rows in config.json, q8");
    broken_copy(q4);
    patch_text(cfg, "172", "171");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE, (const char *[]){st, "model.layers.0.mlp.gate_proj.weight", "row 171 of its last panel", NULL},
                 "fewer rows in config.json, q4");

    /* q4 blocks under q8 marks: the first matrix bound (the tied embedding's lm_head.weight) has
     * 20-byte blocks where 36 are expected */
    broken_copy(q4);
    rewrite_header(st, set_marks, &(meta_marks){"q8", "panel16"});
    patch_text(cfg, "\"q4\"", "\"q8\"");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE, (const char *[]){"lm_head.weight", "20480 bytes", "36864 bytes", "q8 blocks", NULL},
                 "q4 sizes, q8 metadata");

    /* the marks disagree, or one is missing */
    broken_copy(q4);
    patch_text(cfg, "\"q4\"", "\"q8\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){"config.json", "format is q8", st, "moge.quant q4", NULL}, "marks disagree");
    broken_copy(q8);
    patch_text(cfg, "\"quantization_config\"", "\"quantization_config_x\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, "moge.quant is q8", "no moge quantization_config", NULL}, "no config mark");
    broken_copy("models/stories260K");
    patch_text(cfg, "\"torch_dtype\"", "\"quantization_config\": {\"quant_method\": \"moge\", \"format\": \"q8\", \"block_size\": 32}, \"torch_dtype\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){"config.json", "format is q8", "no safetensors file", NULL}, "no metadata mark");

    /* marks on unquantized weights: the first matrix that should be blocks is named */
    broken_copy("tests/fixtures/moe/pangu_64e8g_bf16");
    rewrite_header(st, set_meta, "q8");
    patch_text(cfg, "\"torch_dtype\"", "\"quantization_config\": {\"quant_method\": \"moge\", \"format\": \"q8\", \"block_size\": 32}, \"torch_dtype\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){"lm_head.weight", "BF16", "U8 blocks", NULL}, "unquantized matrix");

    /* a bad metadata value, a bad format, a foreign method */
    broken_copy(pq8);
    rewrite_header(st, set_meta, "q5");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, "moge.quant", "\"q8\", \"q4\", \"w8a8\" or \"w4a8\"", NULL}, "bad metadata value");
    broken_copy(pq8);
    patch_text(cfg, "\"q8\"", "\"int8\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){cfg, "quantization_config.format", NULL}, "bad format");
    broken_copy(pq8);
    patch_text(cfg, "\"moge\"", "\"gptq\"");
    expect_error(TMP "/broken", MOGE_ERR_UNSUPPORTED, (const char *[]){cfg, "quant_method", "gptq", NULL}, "foreign method");
    shell("rm -rf " TMP "/broken");
}

static void no_change(cJSON *root, void *arg) { (void)root; (void)arg; }

/* A panel file whose header another tool rewrote without the padding: the blocks are no longer
 * where the alignment rules put them; the loader keeps aligned copies (owned, not mapped) and the
 * logits are the same. */
static void test_unpadded_header(void) {
    char q8[512];
    out_dir(q8, sizeof q8, MODELS[0], MOGE_QUANT_Q8);
    const char *dir = broken_copy(q8), *st = TMP "/broken/model.safetensors";
    uint64_t hlen;
    long size;
    cJSON_Delete(read_header(st, &hlen, &size));
    rewrite_header(st, no_change, NULL);
    uint64_t hlen2;
    cJSON_Delete(read_header(st, &hlen2, &size));
    CHECKF((8 + hlen2) % 4 != 0, "%s: header of %llu bytes (was %llu) keeps the data 4-byte aligned; the test needs it not to", st,
           (unsigned long long)hlen2, (unsigned long long)hlen);
    for (moge_backend be = MOGE_BACKEND_CPU; be <= MOGE_BACKEND_REF; be++) {
        moge_model *a = load(q8, MOGE_QUANT_NONE, be), *b = load(dir, MOGE_QUANT_NONE, be);
        if (!a || !b) { moge_model_free(a); moge_model_free(b); continue; }
        int na, nb, copies = 0;
        float *la = logits(a, &na), *lb = logits(b, &nb);
        CHECKF(la && lb && na == nb && memcmp(la, lb, (size_t)na * 4) == 0, "%s: logits differ from the padded file", dir);
        for (int i = 0; i < b->st.n_entries; i++) copies += b->st.entries[i].copy != NULL;
        moge_model_info ia, ib;
        moge_model_get_info(a, &ia);
        moge_model_get_info(b, &ib);
        CHECKF(copies > 0 && ib.resident_bytes == ia.resident_bytes && ib.mapped_bytes < ia.mapped_bytes,
               "%s: %d copies, resident %lld (padded %lld), mapped %lld (padded %lld)", dir, copies, (long long)ib.resident_bytes,
               (long long)ia.resident_bytes, (long long)ib.mapped_bytes, (long long)ia.mapped_bytes);
        free(la); free(lb);
        moge_model_free(a); moge_model_free(b);
    }
    shell("rm -rf " TMP "/broken");
}

/* ------------------------------------------------------------------------------------------ */
/* the writer's refusals and clean failures */

static int count_tmp_dirs(void) { /* TMP/<anything>.tmp-* left behind */
    DIR *d = opendir(TMP);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) n += strstr(de->d_name, ".tmp-") != NULL || strstr(de->d_name, ".old-") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_writer_refusals(void) {
    char err[1024], q8[512];
    out_dir(q8, sizeof q8, MODELS[0], MOGE_QUANT_Q8);
    const char *out = TMP "/w";
    shell("rm -rf " TMP "/w && mkdir -p " TMP "/w && echo old > " TMP "/w/old.txt");
    CHECK(quantize("models/stories260K", out, MOGE_QUANT_Q8, false, err, sizeof err) == MOGE_ERR_IO);
    CHECKF(strstr(err, out) && strstr(err, "not empty"), "%s", err);
    CHECK(access(TMP "/w/old.txt", F_OK) == 0);
    /* overwrite: replaced, the old file gone */
    CHECKF(quantize("models/stories260K", TMP "/w/", MOGE_QUANT_Q4, true, err, sizeof err) == MOGE_OK, "%s", err);
    CHECK(access(TMP "/w/old.txt", F_OK) != 0 && access(TMP "/w/model.safetensors", F_OK) == 0);
    moge_model *m = load(out, MOGE_QUANT_NONE, MOGE_BACKEND_CPU);
    moge_model_info info;
    if (m) moge_model_get_info(m, &info);
    CHECK(m && strcmp(info.quant, "q4") == 0);
    moge_model_free(m);
    /* an empty directory is fine */
    shell("rm -rf " TMP "/w && mkdir -p " TMP "/w");
    CHECKF(quantize("models/stories260K", out, MOGE_QUANT_Q8, false, err, sizeof err) == MOGE_OK, "%s", err);
    /* a directory holding a directory is not replaced */
    shell("mkdir -p " TMP "/w/sub");
    CHECK(quantize("models/stories260K", out, MOGE_QUANT_Q8, true, err, sizeof err) == MOGE_ERR_IO);
    CHECKF(strstr(err, "sub") != NULL, "%s", err);
    CHECK(access(TMP "/w/sub", F_OK) == 0 && access(TMP "/w/model.safetensors", F_OK) == 0);
    /* the input itself; an already quantized input; no quantization */
    CHECK(quantize(q8, q8, MOGE_QUANT_Q8, true, err, sizeof err) == MOGE_ERR_ARG);
    CHECKF(strstr(err, "input directory") != NULL, "%s", err);
    CHECK(quantize(q8, TMP "/w2", MOGE_QUANT_Q4, false, err, sizeof err) == MOGE_ERR_ARG);
    CHECKF(strstr(err, "already pre-quantized") != NULL, "%s", err);
    CHECK(quantize("models/stories260K", TMP "/w2", MOGE_QUANT_NONE, false, err, sizeof err) == MOGE_ERR_ARG);
    /* a broken input fails before anything is written; a missing parent directory fails cleanly */
    CHECK(quantize("tests/fixtures/broken/wrong_shape", TMP "/w2", MOGE_QUANT_Q8, false, err, sizeof err) == MOGE_ERR_SHAPE);
    CHECK(quantize("models/stories260K", TMP "/nonexistent/w2", MOGE_QUANT_Q8, false, err, sizeof err) == MOGE_ERR_IO);
    CHECKF(strstr(err, TMP "/nonexistent/w2") != NULL, "%s", err);
    CHECK(access(TMP "/w2", F_OK) != 0 && access(TMP "/nonexistent", F_OK) != 0);
    CHECKF(count_tmp_dirs() == 0, "%d temporary directories left in %s", count_tmp_dirs(), TMP);
    /* the statistics */
    shell("rmdir " TMP "/w/sub");
    moge_quantize_stats s;
    moge_quantize_params p = moge_quantize_default_params();
    p.overwrite = true;
    CHECK(moge_quantize_model("models/stories260K", out, &p, &s, err, sizeof err) == MOGE_OK);
    CHECKF(s.in_bytes == 1044984 && s.out_bytes > 0 && s.out_bytes < s.in_bytes / 2 && s.n_quantized == 36 && s.n_copied == 12 && s.n_files == 4,
           "in %lld out %lld quantized %d copied %d files %d", (long long)s.in_bytes, (long long)s.out_bytes, s.n_quantized, s.n_copied, s.n_files);
}

/* ------------------------------------------------------------------------------------------ */
/* the command */

/* Runs `moge ARGS`; checks the exit status and that each needle is in stdout (out) or stderr. */
static void expect_cmd(const char *args, int rc, bool out, const char *const *needles) {
    int got = moge_cmd(args, OUT, ERR);
    char *text = slurp_text(out ? OUT : ERR);
    CHECKF(got == rc, "moge %s: exit %d, expected %d: %s", args, got, rc, text);
    for (int i = 0; needles[i]; i++) CHECKF(strstr(text, needles[i]) != NULL, "moge %s: \"%s\" not in: %s", args, needles[i], text);
    free(text);
}
#define NONE ((const char *[]){NULL})
#define ALL(...) ((const char *[]){__VA_ARGS__, NULL})

static void test_cli(void) {
    shell("rm -rf " TMP "/cli-q4");
    expect_cmd("quantize --help", 0, true, ALL("usage: moge quantize", "--force", "--row-major"));
    expect_cmd("quantize -m models/stories260K --quant q8", 2, false, ALL("-o OUT_DIR is required"));
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4", 2, false, ALL("--quant q8|q4|w8a8|w4a8 is required"));
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4 --quant q5", 2, false, ALL("--quant", "\"q5\""));
    expect_cmd("quantize -m " TMP "/no-such-model -o " TMP "/cli-q4 --quant q4", 1, false, ALL("no-such-model"));
    CHECK(access(TMP "/cli-q4", F_OK) != 0);

    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4 --quant q4", 0, true,
               ALL("wrote " TMP "/cli-q4 (q4)", "1.04 MB -> ", "36 quantized"));
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4x --quant q4", 0, false, ALL("100%")); /* progress */
    /* the same text as quantization at load */
    CHECK(moge_cmd("run -m " TMP "/cli-q4 -n 60 --temp 0", OUT, ERR) == 0);
    char *a = slurp_text(OUT);
    CHECK(moge_cmd("run -m models/stories260K --quant q4 -n 60 --temp 0", OUT, ERR) == 0);
    char *b = slurp_text(OUT);
    CHECKF(strlen(a) > 100 && strcmp(a, b) == 0, "pre-quantized:\n%s\nat load:\n%s", a, b);
    /* the first version's layout, still written on request */
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4-rows --quant q4 --row-major", 0, true, ALL("wrote " TMP "/cli-q4-rows (q4)"));
    char *h = slurp_text(TMP "/cli-q4-rows/config.json");
    CHECKF(strstr(h, "\"q4\"") && !strstr(h, "panel16"), "%s", h);
    free(h);
    CHECK(moge_cmd("run -m " TMP "/cli-q4-rows -n 60 --temp 0", OUT, ERR) == 0);
    h = slurp_text(OUT);
    CHECKF(strcmp(a, h) == 0, "row-major:\n%s\nat load:\n%s", h, b);
    free(a); free(b); free(h);
    expect_cmd("run -m " TMP "/cli-q4 --quant q8 -n 5", 1, false, ALL("pre-quantized q4"));
    expect_cmd("info -m " TMP "/cli-q4", 0, true, ALL("pre-quantized q4"));

    /* an existing output: refused, then replaced with --force */
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4 --quant q8", 1, false, ALL("not empty", "--force"));
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4 --quant q8 --force", 0, true, NONE);
    expect_cmd("info -m " TMP "/cli-q4", 0, true, ALL("pre-quantized q8"));
    CHECK(count_tmp_dirs() == 0);
}

static void test_cleanup(void) { CHECK(shell("rm -rf " TMP) == 0); }

int main(void) {
    RUN_TESTS(T(test_logits_bit_identical), T(test_file_format), T(test_broken_files), T(test_unpadded_header), T(test_writer_refusals), T(test_cli), T(test_cleanup));
}
