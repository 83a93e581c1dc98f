/*
 * test_gguf.c — GGUF files (runtime/gguf.c, runtime/model_gguf.c) against the Hugging Face
 * directories of the same weights. Fixtures: tests/fixtures/gguf, written by
 * tools/make_gguf_fixtures.py with tools/gguf_write.py.
 *   - files of the fixtures' own dtype (F32, F16, BF16; llama, Mistral, Mixtral, qwen2, qwen3moe,
 *     attention biases, stories260K): logits equal to the directory's (within 1e-5), both backends;
 *   - quantized files (Q8_0, Q4_0, Q4_K, Q6_K; llama with tied embeddings, qwen2moe with merged
 *     experts and a shared expert): logits within 1e-4 (normalised) of tools/reference_forward.py's
 *     from the file's weights dequantized (.gguf.ref), both backends;
 *   - the reader's own twin: every Q4_K / Q6_K / Q4_0 / Q8_0 matrix dequantized by a slow
 *     per-element decoder here equals the loaded model's values;
 *   - hostile headers built in memory, each a clear error naming the key or tensor.
 */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "harness.h"
#include "moge.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/quant.h"
#include "test_model.h"
#include "test_util.h"

#define DIR "tests/fixtures/gguf/"

/* Logits of n tokens from an empty cache (malloc'd, n * V), or NULL after a failed check. */
static float *logits_of(const char *path, moge_backend backend, const int32_t *tok, int n, int *V) {
    moge_model *m = test_load(path, backend, 2);
    moge_context *c = m ? test_new_ctx(m, 64) : NULL;
    float *out = NULL;
    const float *lg = NULL;
    moge_batch b = {.n = n, .tokens = tok};
    if (c && moge_forward(c, &b, &lg) == MOGE_OK) {
        moge_model_info info;
        moge_model_get_info(m, &info);
        *V = info.n_vocab;
        out = malloc((size_t)n * (size_t)*V * sizeof *out);
        memcpy(out, lg, (size_t)n * (size_t)*V * sizeof *out);
    } else if (c) {
        CHECKF(0, "%s: forward failed: %s", path, moge_context_error(c));
    }
    moge_context_free(c);
    moge_model_free(m);
    return out;
}

/* Worst row's normalised error of a against b (n rows of V). */
static double worst_row(const float *a, const float *b, int n, int V) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = nerr(a + (int64_t)i * V, b + (int64_t)i * V, V);
        if (e > worst) worst = e;
    }
    return worst;
}

static const struct { const char *gguf, *dir; } SAME[] = {
    {"llama_f32", "tests/fixtures/models/llama_f32"},
    {"mistral_f16", "tests/fixtures/models/mistral_f16_sharded"},
    {"qwen2_bf16", "tests/fixtures/models/qwen2_bf16"},
    {"llama_bias_bf16", "tests/fixtures/models/llama_bias_bf16"},
    {"mixtral_f16", "tests/fixtures/moe/mixtral_8e"},
    {"qwen3moe_f32", "tests/fixtures/moe/qwen3_moe"},
    {"stories260K_f32", "models/stories260K"},
};

static void check_same(moge_backend backend) {
    for (size_t i = 0; i < sizeof SAME / sizeof SAME[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, DIR "%s.gguf", SAME[i].gguf);
        int32_t tok[12];
        for (int k = 0; k < 12; k++) tok[k] = (int32_t)((k * 7 + 3) % 29);
        int V1 = 0, V2 = 0;
        float *a = logits_of(path, backend, tok, 12, &V1), *b = logits_of(SAME[i].dir, backend, tok, 12, &V2);
        CHECKF(a && b && V1 == V2, "%s: vocab %d vs %d", path, V1, V2);
        if (a && b && V1 == V2) {
            double e = worst_row(a, b, 12, V1);
            CHECKF(e <= 1e-5, "%s (%s): worst row error %.3g against %s", path, backend == MOGE_BACKEND_REF ? "ref" : "cpu", e, SAME[i].dir);
        }
        free(a);
        free(b);
    }
}
static void test_same_weights_cpu(void) { check_same(MOGE_BACKEND_CPU); }
static void test_same_weights_ref(void) { check_same(MOGE_BACKEND_REF); }

static const char *QUANT[] = {"llama256_q8_0", "llama256_q4_0", "llama256_q4_k", "llama256_q6_k", "qwen2moe64_q8_0", "qwen2moe64_q4_0"};

static void check_quant(moge_backend backend) {
    for (size_t i = 0; i < sizeof QUANT / sizeof QUANT[0]; i++) {
        char path[256], ref[300];
        snprintf(path, sizeof path, DIR "%s.gguf", QUANT[i]);
        snprintf(ref, sizeof ref, "%s.ref", path);
        int32_t n = 0, V = 0, *tok = NULL;
        float *want = NULL;
        bool ok = test_read_ref(ref, &n, &V, &tok, &want);
        CHECKF(ok, "%s: bad or truncated", ref);
        int V2 = 0;
        float *got = ok ? logits_of(path, backend, tok, n, &V2) : NULL;
        if (got) {
            CHECK(V2 == V);
            double e = V2 == V ? worst_row(got, want, n, V) : 1;
            CHECKF(e <= 1e-4, "%s (%s): worst row error %.3g against the dequantized weights' reference logits", path,
                   backend == MOGE_BACKEND_REF ? "ref" : "cpu", e);
        }
        free(got);
        free(tok);
        free(want);
    }
}
static void test_quantized_cpu(void) { check_quant(MOGE_BACKEND_CPU); }
static void test_quantized_ref(void) { check_quant(MOGE_BACKEND_REF); }

/* ---- the slow twin: one element of a ggml block row, decoded from the format's description ---- */

static float h2f(const uint8_t *p) { return f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static float slow_value(uint32_t type, const uint8_t *row, int64_t c) {
    if (type == GGML_Q8_0) {
        const uint8_t *b = row + (c / 32) * 34;
        return h2f(b) * (float)(int8_t)b[2 + c % 32];
    }
    if (type == GGML_Q4_0) {
        const uint8_t *b = row + (c / 32) * 18;
        int j = (int)(c % 32), q = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;
        return h2f(b) * (float)(q - 8);
    }
    if (type == GGML_Q4_K) {
        const uint8_t *b = row + (c / 256) * 144, *s = b + 4;
        int j = (int)(c % 256), sub = j / 32, sc, mn;
        if (sub < 4) sc = s[sub] & 63, mn = s[sub + 4] & 63;
        else sc = (s[sub + 4] & 15) | (s[sub - 4] >> 6) << 4, mn = (s[sub + 4] >> 4) | (s[sub] >> 6) << 4;
        uint8_t byte = b[16 + (sub / 2) * 32 + j % 32];
        int q = sub % 2 ? byte >> 4 : byte & 15;
        return h2f(b) * (float)sc * (float)q - h2f(b + 2) * (float)mn;
    }
    /* Q6_K: value j of a half h: position l = j % 32 of quarter k = j / 32 */
    const uint8_t *b = row + (c / 256) * 210;
    int j = (int)(c % 256), h = j / 128, k = (j % 128) / 32, l = j % 32;
    const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
    int lo = k % 2 ? ql[l + 32] : ql[l];
    lo = k < 2 ? lo & 15 : lo >> 4;
    int q = (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
    return h2f(b + 208) * (float)(int8_t)b[192 + 8 * h + 2 * k + l / 16] * (float)q;
}

static void test_dequant_twin(void) {
    const char *files[] = {"llama256_q8_0", "llama256_q4_0", "llama256_q4_k", "llama256_q6_k"};
    for (size_t f = 0; f < 4; f++) {
        char path[256], err[512];
        snprintf(path, sizeof path, DIR "%s.gguf", files[f]);
        gguf_file g;
        moge_status st = gguf_open(&g, path, err, sizeof err);
        CHECKF(st == MOGE_OK, "%s", err);
        moge_model_params mp = moge_model_default_params();
        mp.backend = MOGE_BACKEND_REF;
        moge_model *m = NULL;
        if (st == MOGE_OK) st = moge_model_load(path, &mp, &m, err, sizeof err);
        CHECKF(st == MOGE_OK, "%s", err);
        if (st != MOGE_OK) { gguf_close(&g); continue; }
        const gguf_tensor *gt = gguf_find_tensor(&g, "blk.0.ffn_up.weight");
        const gguf_tensor *ge = gguf_find_tensor(&g, "token_embd.weight");
        CHECK(gt && ge);
        const tensor *mats[2] = {&m->layers[0].w_up, &m->tok_embd};
        const gguf_tensor *gts[2] = {gt, ge};
        int64_t bad = 0;
        for (int k = 0; k < 2 && gt && ge; k++) {
            int64_t rows = gts[k]->ne[1], cols = gts[k]->ne[0];
            size_t rb = (size_t)(gts[k]->nbytes / (uint64_t)rows);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    float want = gts[k]->type == GGML_F32 ? ((const float *)gts[k]->data)[r * cols + c]
                                                          : slow_value(gts[k]->type, (const uint8_t *)gts[k]->data + r * rb, c);
                    bad += tensor_get(mats[k], r * cols + c) != want;
                }
        }
        CHECKF(bad == 0, "%s: %lld values differ from the slow decoder", path, (long long)bad);
        CHECKF(gt && gt->type == (uint32_t)(f == 0 ? GGML_Q8_0 : f == 1 ? GGML_Q4_0 : f == 2 ? GGML_Q4_K : GGML_Q6_K), "%s: type %u", path,
               gt ? gt->type : 0);
        /* what each type becomes */
        dtype want = f == 0 ? DTYPE_Q8 : f == 1 ? DTYPE_Q4 : DTYPE_F32;
        CHECKF(m->layers[0].w_up.type == want, "%s: ffn_up loaded as %s", path, dtype_name(m->layers[0].w_up.type));
        moge_model_free(m);
        gguf_close(&g);
    }
}

/* With a quantization at load, a GGUF's block matrices are converted straight to its format:
 * Q8_0 to q8 / w8a8 and Q4_0 to q4 by their codes, the others dequantized (slow decoder) and quantized as at load
 * (quant_row_q8 / quant_row_q4); the attention's q rows (un-interleaved) too. The logits stay near
 * the file's own (.gguf.ref). */
static void test_quant_at_load(void) {
    const char *files[] = {"llama256_q8_0", "llama256_q4_0", "llama256_q4_k", "llama256_q6_k"};
    const moge_quant quants[] = {MOGE_QUANT_Q8, MOGE_QUANT_Q4, MOGE_QUANT_W8A8};
    for (size_t f = 0; f < 4; f++)
        for (size_t qi = 0; qi < 3; qi++) {
            char path[256], err[512];
            snprintf(path, sizeof path, DIR "%s.gguf", files[f]);
            gguf_file g;
            moge_status st = gguf_open(&g, path, err, sizeof err);
            moge_model_params mp = moge_model_default_params();
            mp.backend = MOGE_BACKEND_REF;
            mp.quant = quants[qi];
            moge_model *m = NULL;
            if (st == MOGE_OK) st = moge_model_load(path, &mp, &m, err, sizeof err);
            CHECKF(st == MOGE_OK, "%s: %s", path, err);
            if (st != MOGE_OK) { gguf_close(&g); continue; }
            const char *names[] = {"blk.0.ffn_up.weight", "blk.0.attn_q.weight"};
            const tensor *mats[] = {&m->layers[0].w_up, &m->layers[0].wq};
            dtype want_type = quant_format_dtype(quants[qi]);
            int64_t bad = 0;
            for (int k = 0; k < 2; k++) {
                const gguf_tensor *gt = gguf_find_tensor(&g, names[k]);
                CHECK(gt != NULL && mats[k]->type == want_type);
                if (!gt) continue;
                int64_t rows = gt->ne[1], cols = gt->ne[0], hd = 32;
                size_t rb = (size_t)(gt->nbytes / (uint64_t)rows);
                float *row = malloc((size_t)cols * sizeof *row);
                block_q8 *q8 = malloc((size_t)(cols / 32) * sizeof *q8);
                block_q4 *q4 = malloc((size_t)(cols / 32) * sizeof *q4);
                for (int64_t r = 0; r < rows; r++) {
                    int64_t from = r;
                    if (k == 1) { /* Hugging Face row r of head h: the file's interleaved row */
                        int64_t h = r / hd, i = r % hd;
                        from = h * hd + (i < hd / 2 ? 2 * i : 2 * (i - hd / 2) + 1);
                    }
                    for (int64_t c = 0; c < cols; c++) row[c] = slow_value(gt->type, (const uint8_t *)gt->data + from * rb, c);
                    if (dtype_base(want_type) == DTYPE_Q8) quant_row_q8(row, cols, q8);
                    else quant_row_q4(row, cols, q4);
                    for (int64_t c = 0; c < cols; c++) {
                        float want = dtype_base(want_type) == DTYPE_Q8 ? q8_value(&q8[c / 32], (int)(c % 32)) : q4_value(&q4[c / 32], (int)(c % 32));
                        if ((gt->type == GGML_Q8_0 && dtype_base(want_type) == DTYPE_Q8) || (gt->type == GGML_Q4_0 && dtype_base(want_type) == DTYPE_Q4))
                            want = row[c]; /* the codes themselves */
                        bad += tensor_get(mats[k], r * cols + c) != want;
                    }
                }
                free(row);
                free(q8);
                free(q4);
            }
            CHECKF(bad == 0, "%s as %s: %lld values differ", path, quant_format_name(quants[qi]), (long long)bad);
            moge_model_free(m);
            gguf_close(&g);
            if (quants[qi] != MOGE_QUANT_Q8) continue;
            /* the logits against the file's own values' */
            char ref[300];
            snprintf(ref, sizeof ref, "%s.ref", path);
            int32_t n = 0, V = 0, *tok = NULL;
            float *want = NULL;
            CHECK(test_read_ref(ref, &n, &V, &tok, &want));
            mp.backend = MOGE_BACKEND_CPU;
            m = test_load_params(path, &mp);
            moge_context *c = m ? test_new_ctx(m, 64) : NULL;
            const float *lg;
            moge_batch b = {.n = n, .tokens = tok};
            if (c && tok && moge_forward(c, &b, &lg) == MOGE_OK) {
                double e = worst_row(lg, want, n, V);
                CHECKF(e < 0.02, "%s as q8: worst row error %.3g against the file's values", path, e);
            }
            moge_context_free(c);
            moge_model_free(m);
            free(tok);
            free(want);
        }
}

/* ---- hostile headers, built in memory ---- */

typedef struct { uint8_t *p; size_t n, cap; } wbuf;
static void put(wbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put32(wbuf *b, uint32_t v) { put(b, &v, 4); }
static void put64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static void putstr(wbuf *b, const char *s) { put64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(wbuf *b, size_t a) { while (b->n % a) put(b, "", 1); }

/* A valid file: 2 keys, 2 F32 tensors (a [4] vector and a [4 x 2] matrix) with `variant` broken. */
static wbuf hostile(int variant) {
    wbuf b = {0};
    put(&b, "GGUF", 4);
    put32(&b, variant == 1 ? 1 : variant == 2 ? 0x03000000u : 3);
    put64(&b, variant == 3 ? (uint64_t)1 << 60 : 2);       /* tensors */
    put64(&b, variant == 4 ? (uint64_t)1 << 62 : 2);       /* keys */
    putstr(&b, "general.architecture");
    put32(&b, variant == 5 ? 99 : GGUF_STR);
    if (variant == 6) put64(&b, (uint64_t)1 << 40), put(&b, "llama", 5);
    else putstr(&b, "llama");
    putstr(&b, variant == 7 ? "general.architecture" : "general.alignment");
    put32(&b, GGUF_U32);
    put32(&b, variant == 8 ? 24 : 32);
    /* tensor a */
    putstr(&b, "a");
    put32(&b, variant == 9 ? 5 : 1);
    put64(&b, variant == 10 ? 0 : 4);
    put32(&b, variant == 11 ? 77 : GGML_F32);
    put64(&b, variant == 12 ? 8 : 0);
    /* tensor b */
    putstr(&b, variant == 13 ? "a" : "b");
    put32(&b, 2);
    put64(&b, variant == 14 ? (uint64_t)1 << 62 : 4);
    put64(&b, variant == 14 ? 16 : 2);
    put32(&b, variant == 18 ? GGML_Q8_0 : GGML_F32);
    put64(&b, variant == 15 ? 0 : variant == 16 ? 4096 : 32);
    pad_to(&b, 32);
    for (int i = 0; i < (variant == 17 ? 8 : 24); i++) put32(&b, 0x3f800000u);
    return b;
}

static void test_hostile_headers(void) {
    static const struct { int variant; const char *needle; } cases[] = {
        {1, "GGUF version 1 is not supported"},
        {2, "big-endian"},
        {3, "tensors; the"},
        {4, "metadata pairs; the"},
        {5, "key \"general.architecture\": unknown value type 99"},
        {6, "reaches past the end of the file"},
        {7, "metadata key \"general.architecture\" appears twice"},
        {8, "general.alignment must be a u32 power of two"},
        {9, "tensor a has 5 dimensions"},
        {10, "tensor a: dimension 0 is 0"},
        {11, "tensor a has unknown ggml type 77"},
        {12, "tensor a: offset 8 is not a multiple of the alignment 32"},
        {13, "tensor a appears twice"},
        {14, "tensor b: its dimensions' product overflows"},
        {15, "tensors a and b overlap"},
        {16, "tensor b: its 32 bytes at offset 4096"},
        {17, "tensor b: its 32 bytes at offset 32"},
        {18, "tensor b: rows of 4 values are not whole Q8_0 blocks"},
    };
    wbuf ok = hostile(0);
    gguf_file g;
    char err[512];
    moge_status st = gguf_parse(&g, ok.p, ok.n, "good", err, sizeof err);
    CHECKF(st == MOGE_OK, "the unbroken file: %s", err);
    if (st == MOGE_OK) {
        CHECK(g.n_tensors == 2 && g.n_kv == 2 && g.alignment == 32);
        const gguf_tensor *t = gguf_find_tensor(&g, "b");
        CHECK(t && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32 && ((const float *)t->data)[7] == 1.0f);
        gguf_str s;
        CHECK(gguf_kv_string(gguf_find(&g, "general.architecture"), &s) && s.len == 5 && !memcmp(s.s, "llama", 5));
    }
    gguf_close(&g);
    /* every prefix of it is truncated: an error, never a crash */
    for (size_t k = 0; k < ok.n; k++) {
        if (k >= 176 && k < ok.n - 32) continue; /* inside the data: not every cut is noticed before the end */
        st = gguf_parse(&g, ok.p, k, "cut", err, sizeof err);
        CHECKF(st != MOGE_OK || k >= ok.n - 32, "a file cut at %zu bytes parsed", k);
        if (st != MOGE_OK) CHECKF(strstr(err, "cut:") != NULL, "%zu: %s", k, err);
        gguf_close(&g);
    }
    free(ok.p);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wbuf b = hostile(cases[i].variant);
        err[0] = 0;
        st = gguf_parse(&g, b.p, b.n, "hostile.gguf", err, sizeof err);
        CHECKF(st != MOGE_OK && strstr(err, cases[i].needle) && strstr(err, "hostile.gguf"), "variant %d: expected \"%s\", got \"%s\"",
               cases[i].variant, cases[i].needle, st == MOGE_OK ? "(parsed)" : err);
        gguf_close(&g);
        free(b.p);
    }
}

/* Nested arrays of every type parse, and the typed reads answer. */
static void test_metadata_types(void) {
    wbuf b = {0};
    put(&b, "GGUF", 4);
    put32(&b, 2);
    put64(&b, 0);
    put64(&b, 4);
    putstr(&b, "x.nested");
    put32(&b, GGUF_ARR);
    put32(&b, GGUF_ARR);
    put64(&b, 2);
    put32(&b, GGUF_STR), put64(&b, 2), putstr(&b, "ab"), putstr(&b, "");
    put32(&b, GGUF_F64), put64(&b, 1), put64(&b, 0x3ff0000000000000ull);
    putstr(&b, "x.i8");
    put32(&b, GGUF_I8);
    put(&b, "\xfe", 1);
    putstr(&b, "x.arr");
    put32(&b, GGUF_ARR);
    put32(&b, GGUF_U16), put64(&b, 3);
    uint16_t v[3] = {1, 2, 65535};
    put(&b, v, 6);
    putstr(&b, "x.bool");
    put32(&b, GGUF_BOOL);
    put(&b, "\x01", 1);
    gguf_file g;
    char err[256];
    moge_status st = gguf_parse(&g, b.p, b.n, "types", err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    int64_t i = 0;
    double d = 0;
    bool bo = false;
    CHECK(st == MOGE_OK && gguf_kv_int(gguf_find(&g, "x.i8"), &i) && i == -2);
    CHECK(st == MOGE_OK && gguf_arr_num(gguf_find(&g, "x.arr"), 2, &d) && d == 65535);
    CHECK(st == MOGE_OK && gguf_kv_bool(gguf_find(&g, "x.bool"), &bo) && bo);
    CHECK(st == MOGE_OK && gguf_find(&g, "x.nested")->arr_n == 2 && !gguf_kv_int(gguf_find(&g, "x.nested"), &i));
    gguf_close(&g);
    /* arrays nested deeper than the limit */
    wbuf deep = {0};
    put(&deep, "GGUF", 4);
    put32(&deep, 3), put64(&deep, 0), put64(&deep, 1);
    putstr(&deep, "deep");
    put32(&deep, GGUF_ARR);
    for (int k = 0; k < 20; k++) put32(&deep, GGUF_ARR), put64(&deep, 1);
    put32(&deep, GGUF_U8), put64(&deep, 0);
    st = gguf_parse(&g, deep.p, deep.n, "deep", err, sizeof err);
    CHECKF(st != MOGE_OK && strstr(err, "key \"deep\": arrays nested more than"), "%s", err);
    gguf_close(&g);
    free(deep.p);
    free(b.p);
}

/* Loading errors name the file and the tensor or key. */
static void test_load_errors(void) {
    char err[1024];
    moge_model *m = NULL;
    /* a quantization at load takes every GGUF type (blocks dequantized first): the logits are
     * those of the dequantized weights quantized at load, as a float file's are */
    moge_model_params mp = moge_model_default_params();
    mp.quant = MOGE_QUANT_Q8;
    mp.n_threads = 1;
    moge_status st = MOGE_OK;
    const char *files[] = {DIR "llama256_q4_0.gguf", DIR "llama256_q6_k.gguf"};
    for (int f = 0; f < 2; f++) {
        st = moge_model_load(files[f], &mp, &m, err, sizeof err);
        CHECKF(st == MOGE_OK, "%s", err);
        if (st == MOGE_OK) {
            moge_model_info info;
            moge_model_get_info(m, &info);
            CHECKF(!strcmp(info.quant, "q8") && m->layers[0].w_up.type == DTYPE_Q8, "%s: %s", files[f], info.quant);
        }
        moge_model_free(m);
        m = NULL;
    }
    /* a file cut short */
    FILE *in = fopen(DIR "llama_f32.gguf", "rb"), *out = fopen("build/test_gguf_cut.gguf", "wb");
    CHECK(in && out);
    if (in && out) { /* all but its last 100 bytes */
        char *buf = malloc(1 << 20);
        size_t got = fread(buf, 1, 1 << 20, in);
        fwrite(buf, 1, got > 100 ? got - 100 : 0, out);
        free(buf);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    st = moge_model_load("build/test_gguf_cut.gguf", NULL, &m, err, sizeof err);
    CHECKF(st == MOGE_ERR_FORMAT && strstr(err, "build/test_gguf_cut.gguf: tensor") && strstr(err, "past the end of the file"), "%s", err);
    moge_model_free(m);
}

/* ---- tokenizers: a tokenizer.json converted to GGUF metadata as llama.cpp's converter does ---- */

static void put_kv_str(wbuf *b, const char *key, const char *v) { putstr(b, key); put32(b, GGUF_STR); putstr(b, v); }
static void put_kv_u32(wbuf *b, const char *key, uint32_t v) { putstr(b, key); put32(b, GGUF_U32); put32(b, v); }
static void put_kv_bool(wbuf *b, const char *key, bool v) { putstr(b, key); put32(b, GGUF_BOOL); put(b, v ? "\1" : "\0", 1); }

static bool byte_piece(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>';
}

/* Writes the tokenizer of tokenizer.json (and tokenizer_config.json next to it) in dir as a GGUF
 * file with no tensors at out. spm: model "llama" with scores from the merge ranks (and the merges
 * themselves when with_merges); else "gpt2" with pre-tokenizer `pre`. False when it cannot. */
static bool write_tok_gguf(const char *dir, const char *out, bool spm, bool with_merges, const char *pre) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *text = slurp_text(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *ctext = slurp_text(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL, *cfg = ctext ? cJSON_Parse(ctext) : NULL;
    free(text);
    free(ctext);
    if (!root) return false;
    cJSON *model = cJSON_GetObjectItem(root, "model"), *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    cJSON *added = cJSON_GetObjectItem(root, "added_tokens");
    int n = 0;
    for (cJSON *e = vocab->child; e; e = e->next) n = e->valueint + 1 > n ? e->valueint + 1 : n;
    for (cJSON *e = added ? added->child : NULL; e; e = e->next) {
        int id = cJSON_GetObjectItem(e, "id")->valueint;
        n = id + 1 > n ? id + 1 : n;
    }
    const char **tok = calloc((size_t)n, sizeof *tok);
    int32_t *type = calloc((size_t)n, sizeof *type);
    float *score = calloc((size_t)n, sizeof *score);
    for (cJSON *e = vocab->child; e; e = e->next) tok[e->valueint] = e->string, type[e->valueint] = 1;
    const char *unk = cJSON_GetStringValue(cJSON_GetObjectItem(model, "unk_token"));
    for (cJSON *e = added ? added->child : NULL; e; e = e->next) {
        int id = cJSON_GetObjectItem(e, "id")->valueint;
        tok[id] = cJSON_GetStringValue(cJSON_GetObjectItem(e, "content"));
        type[id] = cJSON_IsTrue(cJSON_GetObjectItem(e, "special")) ? (unk && !strcmp(unk, tok[id]) ? 2 : 3) : 4;
    }
    /* merge strings "a b"; the rank of the first merge making each piece */
    int n_merges = cJSON_GetArraySize(merges);
    char **ms = calloc((size_t)n_merges + 1, sizeof *ms);
    int k = 0;
    for (cJSON *e = merges->child; e; e = e->next, k++) {
        const char *a = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, 0)->valuestring : e->valuestring;
        const char *b2 = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, 1)->valuestring : NULL;
        size_t la = strlen(a), lb = b2 ? strlen(b2) : 0;
        ms[k] = malloc(la + lb + 2);
        if (b2) snprintf(ms[k], la + lb + 2, "%s %s", a, b2);
        else memcpy(ms[k], a, la + 1);
    }
    if (spm) {
        for (int i = 0; i < n; i++) score[i] = type[i] == 1 && tok[i] && !byte_piece(tok[i]) ? -1e6f - (float)i : 0.0f;
        for (int r = n_merges - 1; r >= 0; r--) { /* lowest rank last: it wins */
            char joined[1024];
            const char *sp = strchr(ms[r], ' ');
            snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - ms[r]), ms[r], sp + 1);
            cJSON *id = cJSON_GetObjectItem(vocab, joined);
            if (id) score[id->valueint] = -(float)r;
        }
        for (int i = 0; i < n; i++)
            if (tok[i] && type[i] == 1 && byte_piece(tok[i])) type[i] = 6;
    }
    wbuf b = {0};
    put(&b, "GGUF", 4);
    put32(&b, 3);
    put64(&b, 0);
    int n_kv = 6 + 1 + (spm ? (with_merges ? 1 : 0) : 1) + 1; /* ... scores or pre, merges, unk */
    const char *bos = cfg ? cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "bos_token")) : NULL;
    const char *eos = cfg ? cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "eos_token")) : NULL;
    const char *tmpl = cfg ? cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "chat_template")) : NULL;
    int bos_id = -1, eos_id = -1;
    for (int i = 0; i < n; i++) {
        if (tok[i] && bos && !strcmp(tok[i], bos) && bos_id < 0) bos_id = i;
        if (tok[i] && eos && !strcmp(tok[i], eos) && eos_id < 0) eos_id = i;
    }
    n_kv += (bos_id >= 0) + (eos_id >= 0) + (tmpl != NULL);
    put64(&b, (uint64_t)n_kv);
    put_kv_str(&b, "general.architecture", "llama");
    put_kv_str(&b, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    putstr(&b, "tokenizer.ggml.tokens");
    put32(&b, GGUF_ARR), put32(&b, GGUF_STR), put64(&b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", i);
        putstr(&b, tok[i] ? tok[i] : pad);
    }
    putstr(&b, "tokenizer.ggml.token_type");
    put32(&b, GGUF_ARR), put32(&b, GGUF_I32), put64(&b, (uint64_t)n);
    for (int i = 0; i < n; i++) put32(&b, (uint32_t)(tok[i] ? type[i] : 5));
    put_kv_bool(&b, "tokenizer.ggml.add_bos_token", cfg ? cJSON_IsTrue(cJSON_GetObjectItem(cfg, "add_bos_token")) : spm);
    put_kv_bool(&b, "tokenizer.ggml.add_eos_token", false);
    if (spm) {
        putstr(&b, "tokenizer.ggml.scores");
        put32(&b, GGUF_ARR), put32(&b, GGUF_F32), put64(&b, (uint64_t)n);
        put(&b, score, (size_t)n * 4);
    } else {
        put_kv_str(&b, "tokenizer.ggml.pre", pre);
    }
    if (!spm || with_merges) {
        putstr(&b, "tokenizer.ggml.merges");
        put32(&b, GGUF_ARR), put32(&b, GGUF_STR), put64(&b, (uint64_t)n_merges);
        for (int r = 0; r < n_merges; r++) putstr(&b, ms[r]);
    }
    if (unk) {
        for (int i = 0; i < n; i++)
            if (tok[i] && !strcmp(tok[i], unk)) { put_kv_u32(&b, "tokenizer.ggml.unknown_token_id", (uint32_t)i); break; }
    } else {
        put_kv_u32(&b, "general.quantization_version", 2); /* keeps the count */
    }
    if (bos_id >= 0) put_kv_u32(&b, "tokenizer.ggml.bos_token_id", (uint32_t)bos_id);
    if (eos_id >= 0) put_kv_u32(&b, "tokenizer.ggml.eos_token_id", (uint32_t)eos_id);
    if (tmpl) put_kv_str(&b, "tokenizer.chat_template", tmpl);
    FILE *f = fopen(out, "wb");
    bool ok = f && fwrite(b.p, 1, b.n, f) == b.n;
    if (f) fclose(f);
    for (int r = 0; r < n_merges; r++) free(ms[r]);
    free(ms);
    free(b.p);
    free(tok);
    free(type);
    free(score);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return ok;
}

/* Every case text of the jsonl files encodes (with the case's add_special) to the same ids with a
 * and b, and decodes to the same text; *cases counts them. */
static void same_ids(const moge_tokenizer *a, const moge_tokenizer *b, const char *jsonl, const char *name, int *cases) {
    char *data = slurp_text(jsonl);
    CHECKF(data != NULL, "cannot read %s", jsonl);
    int bad = 0;
    for (char *line = data; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        cJSON *c = strstr(line, "\\u0000") ? NULL : cJSON_Parse(line); /* cJSON strings end at a NUL */
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(c, "text"));
        if (text) {
            bool sp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_special"));
            size_t len = strlen(text), na = 0, nb = 0, cap = len * 2 + 16;
            int32_t *ia = malloc(cap * 4), *ib = malloc(cap * 4);
            moge_status sa = moge_tokenize(a, text, len, sp, ia, cap, &na), sb = moge_tokenize(b, text, len, sp, ib, cap, &nb);
            bool same = sa == MOGE_OK && sb == MOGE_OK && na == nb && !memcmp(ia, ib, na * 4);
            cJSON *want = cJSON_GetObjectItem(c, "ids");
            if (same && want && cJSON_GetArraySize(want) == (int)nb) {
                int i = 0;
                for (cJSON *w = want->child; w; w = w->next, i++) same &= w->valueint == ib[i];
            } else if (want) {
                same = false;
            }
            if (!same && bad++ < 3) printf("  %s: ids differ on %.60s\n", name, text);
            (*cases)++;
            free(ia);
            free(ib);
        }
        cJSON_Delete(c);
        line = end ? end + 1 : NULL;
    }
    CHECKF(bad == 0, "%s: %d cases of %s differ", name, bad, jsonl);
    free(data);
}

static void test_tokenizers(void) {
    static const struct { const char *name, *dir, *jsonl, *pre; bool spm, with_merges; } T_[] = {
        {"stories260K", "models/stories260K", "tests/fixtures/tokenizers/hard-cases/stories260K.jsonl", NULL, true, false},
        {"mistral", "tests/fixtures/tokenizers/mistral", "tests/fixtures/tokenizers/hard-cases/mistral.jsonl", NULL, true, true},
        {"qwen3", "tests/fixtures/tokenizers/qwen3", "tests/fixtures/tokenizers/hard-cases/qwen3.jsonl", "qwen2", false, true},
    };
    for (size_t i = 0; i < sizeof T_ / sizeof T_[0]; i++) {
        char out[256], err[512], dev[256];
        snprintf(out, sizeof out, "build/test_gguf_tok_%s.gguf", T_[i].name);
        bool wrote = write_tok_gguf(T_[i].dir, out, T_[i].spm, T_[i].with_merges, T_[i].pre);
        CHECKF(wrote, "%s: cannot write %s", T_[i].name, out);
        moge_tokenizer *a = NULL, *b = NULL;
        moge_status st = moge_tokenizer_load(T_[i].dir, &a, err, sizeof err);
        CHECKF(st == MOGE_OK, "%s", err);
        if (st == MOGE_OK) st = moge_tokenizer_load(out, &b, err, sizeof err);
        CHECKF(st == MOGE_OK, "%s: %s", out, err);
        if (st == MOGE_OK) {
            int cases = 0;
            same_ids(a, b, T_[i].jsonl, T_[i].name, &cases);
            snprintf(dev, sizeof dev, "%s/cases-dev.jsonl", T_[i].dir);
            if (strcmp(T_[i].name, "stories260K") != 0) same_ids(a, b, dev, T_[i].name, &cases);
            CHECKF(cases >= 120, "%s: %d cases", T_[i].name, cases);
            CHECK(moge_tokenizer_bos(a) == moge_tokenizer_bos(b) && moge_tokenizer_eos(a) == moge_tokenizer_eos(b));
            CHECK(moge_tokenizer_n_vocab(a) == moge_tokenizer_n_vocab(b));
            CHECK(moge_tokenizer_chat_family(a) == moge_tokenizer_chat_family(b));
            const char *ta = moge_tokenizer_chat_template(a), *tb = moge_tokenizer_chat_template(b);
            CHECK((!ta && !tb) || (ta && tb && !strcmp(ta, tb)));
            if (i == 0) { /* a whole text */
                char *text = slurp_text("tests/fixtures/tokenizers/tinystories-valid.txt");
                size_t len = text ? strlen(text) : 0, na = 0, nb = 0, cap = len + 16;
                int32_t *ia = malloc(cap * 4), *ib = malloc(cap * 4);
                CHECK(text && moge_tokenize(a, text, len, true, ia, cap, &na) == MOGE_OK && moge_tokenize(b, text, len, true, ib, cap, &nb) == MOGE_OK &&
                      na == nb && na > 1000 && !memcmp(ia, ib, na * 4));
                free(ia);
                free(ib);
                free(text);
            }
        }
        moge_tokenizer_free(a);
        moge_tokenizer_free(b);
    }
    /* the committed stories260K file's own metadata (written by tools/gguf_write.py) */
    moge_tokenizer *a = NULL, *b = NULL;
    char err[512];
    CHECK(moge_tokenizer_load("models/stories260K", &a, err, sizeof err) == MOGE_OK);
    moge_status st = moge_tokenizer_load(DIR "stories260K_f32.gguf", &b, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    int cases = 0;
    if (st == MOGE_OK) same_ids(a, b, "tests/fixtures/tokenizers/hard-cases/stories260K.jsonl", "stories260K_f32.gguf", &cases);
    moge_tokenizer_free(a);
    moge_tokenizer_free(b);
    /* a model file without a tokenizer: a clear error */
    st = moge_tokenizer_load(DIR "llama256_q8_0.gguf", &b, err, sizeof err);
    CHECKF(st == MOGE_OK || strstr(err, "llama256_q8_0.gguf"), "%s", err);
    moge_tokenizer_free(b);
}

/* A one-byte change of a real file's header (to 0, 0xff, or the value + 1) either parses or
 * is an error naming the file; every 37th one is also loaded as a model and its tokenizer (the
 * loader's checks after the parse), never a crash (run under ASan by the lead's make asan). */
static void test_header_mutations(void) {
    const char *src = DIR "stories260K_f32.gguf", *tmp = "build/test_gguf_mut.gguf";
    FILE *f = fopen(src, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    bool ok = fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    CHECK(ok);
    gguf_file g;
    char err[1024];
    moge_status st = gguf_parse(&g, buf, (size_t)size, "mut", err, sizeof err);
    CHECK(st == MOGE_OK);
    size_t header = (size_t)g.data_offset;
    gguf_close(&g);
    int parsed = 0, refused = 0, loads = 0;
    /* every byte of the first KiB (the header, the small keys), then every 7th (the token arrays, the tensor table) */
    for (size_t at = 0; ok && at < header; at += at < 1024 ? 1 : 7) {
        uint8_t keep = buf[at], vals[3] = {0, 0xff, (uint8_t)(keep + 1)};
        for (int k = 0; k < 3; k++) {
            if (vals[k] == keep) continue;
            buf[at] = vals[k];
            err[0] = 0;
            st = gguf_parse(&g, buf, (size_t)size, "mut", err, sizeof err);
            if (st == MOGE_OK) parsed++;
            else refused++;
            if (st != MOGE_OK && strncmp(err, "mut: ", 5) != 0) {
                CHECKF(0, "byte %zu = %u: the error does not name the file: %s", at, vals[k], err);
                ok = false;
            }
            gguf_close(&g);
            if (st == MOGE_OK && (at * 3 + (size_t)k) % 37 == 0) { /* the loaders' checks on top */
                FILE *o = fopen(tmp, "wb");
                if (o) {
                    fwrite(buf, 1, (size_t)size, o);
                    fclose(o);
                }
                moge_model_params mp = moge_model_default_params();
                mp.backend = MOGE_BACKEND_REF;
                moge_model *m = NULL;
                moge_tokenizer *t = NULL;
                if (moge_model_load(tmp, &mp, &m, err, sizeof err) == MOGE_OK) {
                    moge_context *c = NULL;
                    int32_t tok[3] = {1, 2, 3};
                    moge_batch b = {.n = 3, .tokens = tok};
                    const float *lg;
                    if (moge_context_new(m, NULL, &c, err, sizeof err) == MOGE_OK) (void)moge_forward(c, &b, &lg);
                    moge_context_free(c);
                }
                if (moge_tokenizer_load(tmp, &t, err, sizeof err) == MOGE_OK) {
                    int32_t ids[64];
                    size_t n_ids;
                    (void)moge_tokenize(t, "Once upon a time", 16, true, ids, 64, &n_ids);
                }
                moge_model_free(m);
                moge_tokenizer_free(t);
                loads++;
            }
        }
        buf[at] = keep;
    }
    CHECKF(refused > 500 && parsed > 500 && loads > 50, "%d parsed, %d refused, %d loaded", parsed, refused, loads);
    free(buf);
}

/* ---- the command line: a .gguf wherever a model directory goes ---- */

#define OUT "build/test_gguf.out"
#define ERR "build/test_gguf.err"

/* stdout of `moge args` (exit status in *rc); malloc'd */
static char *run_out(const char *args, int *rc) {
    *rc = moge_cmd(args, OUT, ERR);
    return slurp_text(OUT);
}

static void test_cli(void) {
    int rc_dir, rc;
    char *want = run_out("run -m models/stories260K -p \"Once upon a time\" -n 60 --temp 0", &rc_dir);
    CHECK(rc_dir == 0 && strlen(want) > 100);
    static const char *const variants[] = {
        "run -m " DIR "stories260K_f32.gguf -p \"Once upon a time\" -n 60 --temp 0",
        "run -m " DIR "stories260K_f32.gguf -p \"Once upon a time\" -n 60 --temp 0 --backend ref",
        /* draft and target of different formats */
        "run -m models/stories260K -d " DIR "stories260K_f32.gguf -p \"Once upon a time\" -n 60 --temp 0",
        "run -m " DIR "stories260K_f32.gguf -d models/stories260K -p \"Once upon a time\" -n 60 --temp 0",
        "run -m " DIR "stories260K_f32.gguf --draft-layers 3 -p \"Once upon a time\" -n 60 --temp 0",
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char *got = run_out(variants[i], &rc);
        char *err = slurp_text(ERR);
        CHECKF(rc == 0 && !strcmp(got, want), "moge %s: exit %d, text differs from the directory's: %s", variants[i], rc, err);
        free(err);
        free(got);
    }
    free(want);
    char *info = run_out("info -m " DIR "mistral_f16.gguf", &rc);
    CHECKF(rc == 0 && strstr(info, "MistralForCausalLM") == NULL && strstr(info, "LlamaForCausalLM") && strstr(info, "F16"), "%s", info);
    free(info);
    info = run_out("info -m " DIR "qwen3moe_f32.gguf", &rc);
    CHECKF(rc == 0 && strstr(info, "Qwen3MoeForCausalLM") && strstr(info, "8 routed"), "%s", info);
    free(info);
    /* a broken file: a clear error naming it, no crash */
    FILE *f = fopen("build/test_gguf_bad.gguf", "wb");
    if (f) {
        fwrite("GGUF\3\0\0\0\1\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\0\0", 1, 24, f);
        fclose(f);
    }
    expect_moge_error("run -m build/test_gguf_bad.gguf -p hi -n 4", 1, "build/test_gguf_bad.gguf: the header says", OUT, ERR);
    expect_moge_error("run -m models/stories260K -d build/test_gguf_bad.gguf -p hi -n 4", 1, "build/test_gguf_bad.gguf", OUT, ERR);
    /* moge quantize / pad write directories from directories */
    expect_moge_error("quantize -m " DIR "llama_f32.gguf -o build/test_gguf_q8 --quant q8", 1, "llama_f32.gguf: a GGUF file; this writes", OUT, ERR);
    expect_moge_error("pad -m " DIR "llama_f32.gguf -o build/test_gguf_pad --hidden 64", 1, "llama_f32.gguf: a GGUF file; this writes", OUT, ERR);
}

int main(void) {
    RUN_TESTS(T(test_same_weights_cpu), T(test_same_weights_ref), T(test_quantized_cpu), T(test_quantized_ref), T(test_dequant_twin), T(test_quant_at_load),
              T(test_hostile_headers), T(test_metadata_types), T(test_load_errors), T(test_tokenizers), T(test_header_mutations), T(test_cli));
}
