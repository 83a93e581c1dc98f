/*
 * test_quant_file.c — pre-quantized model directories (moge quantize; format in
 * runtime/quant_file.c):
 *  - for stories260K (tied embedding), the Pangu MoGE, Mixtral, Qwen2-MoE and Qwen3-MoE fixtures,
 *    a Llama with biases (BF16) and a sharded Mistral (F16), Q8 and Q4: the written directory
 *    loads and its logits equal those of quantization at load bit for bit, on the cpu and the
 *    ref backend; moge_model_info reports the format, the same parameters and resident bytes;
 *    no quantization pass (the ref backend uses the blocks in the mapping, the cpu backend copies
 *    them once into its panel layout); loading it with its own format
 *    is a no-op, with the other one an error;
 *  - the file: a valid safetensors file by the reference reader's rules (data section 64-byte
 *    aligned, tensors contiguous, every tensor naturally aligned), the metadata and config marks,
 *    U8 shapes [rows, nb * 36 | nb * 20], unquantized tensors byte-identical to the input;
 *  - broken files: truncated, a U8 tensor of the wrong byte count, q4 sizes under a q8 mark,
 *    marks that disagree, a matrix left unquantized, an unknown quantization method or format:
 *    each error names the file and tensor or key;
 *  - moge_quantize_model: refuses an existing non-empty output (overwrite replaces it, but not
 *    a directory holding directories), the input as output, a pre-quantized input; a failure
 *    leaves no output and no temporary directory;
 *  - the `moge quantize` command: success, --help, missing -o, bad --quant, existing output,
 *    --force, and `moge run` on the result prints what `moge run --quant` prints.
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

static const char *qname(moge_quant q) { return q == MOGE_QUANT_Q8 ? "q8" : "q4"; }

/* TMP/<last path component of dir>-q8 */
static void out_dir(char *buf, size_t cap, const char *dir, moge_quant q) {
    const char *base = strrchr(dir, '/');
    snprintf(buf, cap, "%s/%s-%s", TMP, base ? base + 1 : dir, qname(q));
}

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

static moge_status quantize(const char *in, const char *out, moge_quant q, bool overwrite, char *err, size_t n) {
    moge_quantize_params p = moge_quantize_default_params();
    p.quant = q;
    p.overwrite = overwrite;
    return moge_quantize_model(in, out, &p, NULL, err, n);
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

typedef struct { const moge_model *m; int bad_type, outside, panels, n; } mapped_check;

static void check_mapped(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    mapped_check *c = arg;
    if (kind != MAT_OTHER) return;
    c->n++;
    c->bad_type += !dtype_is_quant(t->type);
    c->panels += t->panel != 0;
    int inside = 0;
    for (int i = 0; i < m->st.n_files; i++) {
        const char *lo = m->st.files[i].map, *hi = lo + m->st.files[i].size;
        inside |= (const char *)t->data >= lo && (const char *)t->data + dtype_row_bytes(t->type, t->shape[1]) * (size_t)t->shape[0] <= hi;
    }
    c->outside += !inside;
}

static void test_logits_bit_identical(void) {
    char err[1024], dir[512];
    shell("rm -rf " TMP " && mkdir -p " TMP);
    for (int mi = 0; mi < N_MODELS; mi++)
        for (moge_quant q = MOGE_QUANT_Q8; q <= MOGE_QUANT_Q4; q++) {
            out_dir(dir, sizeof dir, MODELS[mi], q);
            moge_status st = quantize(MODELS[mi], dir, q, false, err, sizeof err);
            CHECKF(st == MOGE_OK, "quantize %s %s: %s", MODELS[mi], qname(q), err);
            if (st != MOGE_OK) continue;
            for (moge_backend be = MOGE_BACKEND_CPU; be <= MOGE_BACKEND_REF; be++) {
                moge_model *ma = load(MODELS[mi], q, be), *mf = load(dir, MOGE_QUANT_NONE, be), *ms = load(dir, q, be);
                if (!ma || !mf || !ms) { moge_model_free(ma); moge_model_free(mf); moge_model_free(ms); continue; }
                int na, nf, ns;
                float *la = logits(ma, &na), *lf = logits(mf, &nf), *ls = logits(ms, &ns);
                CHECKF(la && lf && ls && na == nf && na == ns && memcmp(la, lf, (size_t)na * 4) == 0 && memcmp(la, ls, (size_t)na * 4) == 0,
                       "%s %s %s: pre-quantized logits differ from quantization at load (normalised error %.3g)", MODELS[mi], qname(q),
                       be == MOGE_BACKEND_CPU ? "cpu" : "ref", la && lf ? nerr(lf, la, na) : -1.0);
                free(la); free(lf); free(ls);
                moge_model_info ia, iff;
                moge_model_get_info(ma, &ia);
                moge_model_get_info(mf, &iff);
                CHECKF(strcmp(iff.quant, qname(q)) == 0 && iff.prequantized && !ia.prequantized, "%s: info quant %s", dir, iff.quant);
                CHECKF(iff.resident_bytes == ia.resident_bytes && iff.n_params == ia.n_params && iff.n_params_active == ia.n_params_active,
                       "%s: resident %lld / params %lld, at load %lld / %lld", dir, (long long)iff.resident_bytes, (long long)iff.n_params,
                       (long long)ia.resident_bytes, (long long)ia.n_params);
                CHECKF(strcmp(iff.dtype, ia.dtype) == 0 && iff.tie_embeddings == ia.tie_embeddings, "%s: dtype %s", dir, iff.dtype);
                /* no quantization pass: no row-major buffer; the ref backend uses the blocks in place (every
                 * quantized matrix inside a mapping), the cpu backend has copied them once into its panel layout */
                mapped_check mc = {.m = mf};
                model_for_each_matrix(mf, check_mapped, &mc);
                int copies = 0;
                for (int i = 0; i < mf->st.n_entries; i++) copies += mf->st.entries[i].copy != NULL;
                bool cpu = be == MOGE_BACKEND_CPU;
                CHECKF(mf->qbuf == NULL && mc.n > 0 && mc.bad_type == 0 && copies == 0 &&
                           (cpu ? mc.panels == mc.n : mc.outside == 0 && mc.panels == 0),
                       "%s (%s): qbuf %p, %d of %d matrices not quantized, %d outside the mapping, %d in panels, %d copies", dir,
                       cpu ? "cpu" : "ref", mf->qbuf, mc.bad_type, mc.n, mc.outside, mc.panels, copies);
                if (be == MOGE_BACKEND_CPU && q == MOGE_QUANT_Q8)
                    printf("  %s: %lld bytes stored, %lld resident, %d quantized matrices (cpu: copied into panel layout)\n", dir, (long long)iff.weight_bytes,
                           (long long)iff.resident_bytes, mc.n);
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
    for (int mi = 0; mi < 2; mi++)
        for (moge_quant q = MOGE_QUANT_Q8; q <= MOGE_QUANT_Q4; q++) {
            out_dir(dir, sizeof dir, MODELS[mi], q);
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            uint64_t hlen;
            long size;
            cJSON *root = read_header(path, &hlen, &size);
            CHECKF(root != NULL, "%s: no header", path);
            if (!root) continue;
            CHECKF((8 + hlen) % 64 == 0, "%s: data section starts at byte %llu", path, (unsigned long long)(8 + hlen));
            cJSON *mq = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "__metadata__"), "moge.quant");
            CHECK(cJSON_IsString(mq) && strcmp(mq->valuestring, qname(q)) == 0);
            /* the reference reader: tensors sorted by offset cover the data section without gaps */
            int n = cJSON_GetArraySize(root), k = 0, misaligned = 0, bad_shape = 0, aligned64 = 0;
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
                if (!strcmp(dt, "U8")) { /* [rows, nb * block bytes] with cols = hidden size or the matrix's width */
                    int64_t rows = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble, w = (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
                    int64_t bs = q == MOGE_QUANT_Q8 ? 36 : 20;
                    bad_shape += w % bs != 0 || (uint64_t)(rows * w) != e - b;
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
            CHECKF(misaligned == 0 && bad_shape == 0 && differ == 0, "%s: %d misaligned, %d bad U8 shapes, %d copied tensors differ", path,
                   misaligned, bad_shape, differ);
            printf("  %s: %d tensors, %d start at a multiple of 64 bytes\n", path, k, aligned64);
            free(spans);
            cJSON_Delete(root);
            moge_model_free(src);
            /* config.json */
            snprintf(path, sizeof path, "%s/config.json", dir);
            char *cfg = slurp_text(path);
            cJSON *c = cJSON_Parse(cfg), *qc = cJSON_GetObjectItem(c, "quantization_config");
            cJSON *fm = cJSON_GetObjectItem(qc, "format"), *me = cJSON_GetObjectItem(qc, "quant_method"), *bs = cJSON_GetObjectItem(qc, "block_size");
            CHECKF(cJSON_IsString(me) && !strcmp(me->valuestring, "moge") && cJSON_IsString(fm) && !strcmp(fm->valuestring, qname(q)) &&
                       cJSON_IsNumber(bs) && bs->valuedouble == 32, "%s: %s", path, cfg);
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
    char q8[512], q4[512], pq8[512];
    out_dir(q8, sizeof q8, MODELS[0], MOGE_QUANT_Q8);
    out_dir(q4, sizeof q4, MODELS[0], MOGE_QUANT_Q4);
    out_dir(pq8, sizeof pq8, MODELS[1], MOGE_QUANT_Q8);
    const char *st = TMP "/broken/model.safetensors", *cfg = TMP "/broken/config.json";

    /* truncated: the tensor at the end of the data runs past the end of the file */
    broken_copy(q8);
    long size;
    const char *last = last_tensor(st, &size);
    CHECK(truncate(st, size - 100) == 0);
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, last, "past the end", NULL}, "truncated");

    /* a U8 tensor one byte per row short */
    broken_copy(q8);
    rewrite_header(st, set_shape, "model.layers.0.self_attn.q_proj.weight");
    expect_error(TMP "/broken", MOGE_ERR_SHAPE,
                 (const char *[]){st, "model.layers.0.self_attn.q_proj.weight", "[64, 71]", "4544 bytes", "4608 bytes", NULL}, "wrong byte count");

    /* q4 blocks under q8 marks: the first matrix bound (the tied embedding's lm_head.weight) has
     * 20-byte blocks where 36 are expected */
    broken_copy(q4);
    rewrite_header(st, set_meta, "q8");
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
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){st, "moge.quant", "\"q8\" or \"q4\"", NULL}, "bad metadata value");
    broken_copy(pq8);
    patch_text(cfg, "\"q8\"", "\"int8\"");
    expect_error(TMP "/broken", MOGE_ERR_FORMAT, (const char *[]){cfg, "quantization_config.format", NULL}, "bad format");
    broken_copy(pq8);
    patch_text(cfg, "\"moge\"", "\"gptq\"");
    expect_error(TMP "/broken", MOGE_ERR_UNSUPPORTED, (const char *[]){cfg, "quant_method", "gptq", NULL}, "foreign method");
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
    expect_cmd("quantize --help", 0, true, ALL("usage: moge quantize", "--force"));
    expect_cmd("quantize -m models/stories260K --quant q8", 2, false, ALL("-o OUT_DIR is required"));
    expect_cmd("quantize -m models/stories260K -o " TMP "/cli-q4", 2, false, ALL("--quant q8|q4 is required"));
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
    free(a); free(b);
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
    RUN_TESTS(T(test_logits_bit_identical), T(test_file_format), T(test_broken_files), T(test_writer_refusals), T(test_cli), T(test_cleanup));
}
