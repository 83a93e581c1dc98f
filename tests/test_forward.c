/*
 * test_forward.c — properties of the batched forward on real model files:
 *  - batched prefill == token-by-token decoding: bit for bit up to 64 rows (the cpu backend is
 *    batch-invariant there), normalised error <= 1e-5 for a 100-row prefill;
 *  - a tree forward gives each node the logits of its root-to-node path run alone, bit for bit;
 *  - the same tree run level by level (`extend`) gives the same bits;
 *  - committing a tree path then decoding == decoding that path from scratch, bit for bit;
 *  - the cpu backend == the ref backend over the whole forward;
 *  - errors: context full, bad token, bad parent, commit misuse, all leaving the context usable.
 * Models: models/stories260K (F32, real weights) and the random fixtures of
 * tests/fixtures/models (F16/BF16, biases, sharding, GQA, explicit head_dim).
 */
#include <stdint.h>

#include "harness.h"
#include "test_util.h"
#include "test_model.h"
#include "moge.h"

static const char *MODELS[] = {
    "models/stories260K",
    "tests/fixtures/models/llama_f32",
    "tests/fixtures/models/qwen2_bf16",
    "tests/fixtures/models/mistral_f16_sharded",
    "tests/fixtures/models/llama_bias_bf16",
};
#define N_MODELS (int)(sizeof MODELS / sizeof MODELS[0])

static moge_model *load(const char *dir, moge_backend backend) { return test_load(dir, backend, 2); }
static moge_context *new_ctx(moge_model *m, int n_ctx) { return test_new_ctx(m, n_ctx); }

static void random_tokens(int32_t *t, int n, int n_vocab, uint64_t *seed) {
    for (int i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((*seed >> 33) % (uint64_t)n_vocab);
    }
}

/* Forward a causal batch, copy all rows' logits to out (may be NULL), commit them. */
static void eval(moge_context *c, const int32_t *tok, int n, float *out, int n_vocab) {
    const float *lg = NULL;
    moge_batch b = {.n = n, .tokens = tok};
    moge_status st = moge_forward(c, &b, &lg);
    CHECKF(st == MOGE_OK, "forward: %s", moge_context_error(c));
    if (st != MOGE_OK) return;
    if (out) memcpy(out, lg, (size_t)n * n_vocab * sizeof(float));
    CHECK(moge_kv_commit(c, NULL, n) == MOGE_OK);
}

static void test_prefill_equals_decode(void) {
    for (int mi = 0; mi < N_MODELS; mi++) {
        moge_model *m = load(MODELS[mi], MOGE_BACKEND_CPU);
        if (!m) continue;
        moge_model_info info;
        moge_model_get_info(m, &info);
        int V = info.n_vocab, n = 24;
        int32_t tok[24];
        uint64_t seed = 7 + mi;
        random_tokens(tok, n, V, &seed);
        float *a = malloc((size_t)n * V * sizeof(float)), *b = malloc((size_t)n * V * sizeof(float));
        moge_context *c1 = new_ctx(m, 64), *c2 = new_ctx(m, 64);
        eval(c1, tok, n, a, V);
        for (int i = 0; i < n; i++) eval(c2, tok + i, 1, b + (int64_t)i * V, V);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double e = nerr(b + (int64_t)i * V, a + (int64_t)i * V, V);
            if (e > worst) worst = e;
        }
        CHECKF(worst == 0, "%s: prefill vs decode: worst row normalised error %.3g (must be bitwise equal)", MODELS[mi], worst);
        CHECK(moge_context_n_past(c1) == n && moge_context_n_past(c2) == n);
        moge_context_free(c1);
        moge_context_free(c2);
        moge_model_free(m);
        free(a);
        free(b);
    }
}

/* A tree of 11 nodes below a 5-token prefix: root 0; parents before children. */
static const int32_t TREE_PARENT[11] = {-1, 0, 0, 0, 1, 1, 2, 4, 4, 7, 9};

static void test_tree_equals_paths(void) {
    for (int mi = 0; mi < N_MODELS; mi++) {
        moge_model *m = load(MODELS[mi], MOGE_BACKEND_CPU);
        if (!m) continue;
        moge_model_info info;
        moge_model_get_info(m, &info);
        int V = info.n_vocab, n_prefix = 5, n = 11;
        int32_t prefix[5], tree[11];
        uint64_t seed = 99 + mi;
        random_tokens(prefix, n_prefix, V, &seed);
        random_tokens(tree, n, V, &seed);
        tree[2] = tree[1]; /* siblings with the same token must not interfere either */
        moge_context *c = new_ctx(m, 64), *path_ctx = new_ctx(m, 64);
        eval(c, prefix, n_prefix, NULL, V);
        eval(path_ctx, prefix, n_prefix, NULL, V);
        const float *lg = NULL;
        moge_batch b = {.n = n, .tokens = tree, .parent = TREE_PARENT};
        CHECK(moge_forward(c, &b, &lg) == MOGE_OK);
        float *tree_logits = malloc((size_t)n * V * sizeof(float));
        memcpy(tree_logits, lg, (size_t)n * V * sizeof(float));
        double worst = 0;
        for (int node = 0; node < n; node++) {
            int32_t path[11];
            int len = 0;
            for (int x = node; x >= 0; x = TREE_PARENT[x]) path[len++] = tree[x];
            for (int i = 0; i < len / 2; i++) { int32_t t = path[i]; path[i] = path[len - 1 - i]; path[len - 1 - i] = t; }
            moge_batch pb = {.n = len, .tokens = path};
            CHECK(moge_forward(path_ctx, &pb, &lg) == MOGE_OK);
            double e = nerr(tree_logits + (int64_t)node * V, lg + (int64_t)(len - 1) * V, V);
            if (e > worst) worst = e;
        }
        CHECKF(worst == 0, "%s: tree node vs its path alone: worst normalised error %.3g (must be bitwise equal)", MODELS[mi], worst);

        /* The same tree level by level: depth 0, then each depth as an `extend` batch. */
        moge_context *lc = new_ctx(m, 64);
        eval(lc, prefix, n_prefix, NULL, V);
        int32_t order[11], lvl_tok[11], lvl_par[11], node_row[11];
        int n_done = 0;
        double lworst = 0;
        for (int depth = 0; n_done < n; depth++) {
            int cnt = 0;
            for (int node = 0; node < n; node++) {
                int d = 0;
                for (int x = node; TREE_PARENT[x] >= 0; x = TREE_PARENT[x]) d++;
                if (d != depth) continue;
                order[cnt] = node;
                lvl_tok[cnt] = tree[node];
                lvl_par[cnt] = TREE_PARENT[node] < 0 ? -1 : node_row[TREE_PARENT[node]];
                cnt++;
            }
            for (int k = 0; k < cnt; k++) node_row[order[k]] = n_done + k;
            moge_batch lb = {.n = cnt, .tokens = lvl_tok, .parent = lvl_par, .extend = depth > 0};
            CHECK(moge_forward(lc, &lb, &lg) == MOGE_OK);
            for (int k = 0; k < cnt; k++) {
                double e = nerr(lg + (int64_t)k * V, tree_logits + (int64_t)order[k] * V, V);
                if (e > lworst) lworst = e;
            }
            n_done += cnt;
        }
        CHECKF(lworst == 0, "%s: level-by-level tree vs one tree forward: normalised error %.3g", MODELS[mi], lworst);
        /* commit a path through the level-numbered rows: 0 -> 1 -> 4 */
        int32_t lrows[3] = {node_row[0], node_row[1], node_row[4]};
        CHECK(moge_kv_commit(lc, lrows, 3) == MOGE_OK && moge_context_n_past(lc) == n_prefix + 3);
        moge_context_free(lc);

        /* Commit the path 0 -> 1 -> 4 -> 7 -> 9, decode one more token, compare with scratch. */
        int32_t rows[5] = {0, 1, 4, 7, 9}, next = tree[10];
        CHECK(moge_kv_commit(c, rows, 5) == MOGE_OK);
        CHECK(moge_context_n_past(c) == n_prefix + 5);
        float *after = malloc((size_t)V * sizeof(float));
        eval(c, &next, 1, after, V);
        int32_t scratch[5 + 5 + 1];
        memcpy(scratch, prefix, sizeof prefix);
        for (int k = 0; k < 5; k++) scratch[5 + k] = tree[rows[k]];
        scratch[10] = next;
        float *full = malloc((size_t)11 * V * sizeof(float));
        moge_context *c3 = new_ctx(m, 64);
        eval(c3, scratch, 11, full, V);
        double e = nerr(after, full + (int64_t)10 * V, V);
        CHECKF(e == 0, "%s: commit path then decode vs from scratch: normalised error %.3g (must be bitwise equal)", MODELS[mi], e);
        moge_context_free(c);
        moge_context_free(path_ctx);
        moge_context_free(c3);
        moge_model_free(m);
        free(tree_logits);
        free(after);
        free(full);
    }
}

/* A prefill longer than 64 rows (the tied lm_head, in row layout, then takes the converted-panel
 * path): equal to decoding within 1e-5. */
static void test_long_prefill(void) {
    moge_model *m = load("models/stories260K", MOGE_BACKEND_CPU);
    if (!m) return;
    int V = 512, n = 100;
    int32_t tok[100];
    uint64_t seed = 5;
    random_tokens(tok, n, V, &seed);
    float *a = malloc((size_t)n * V * sizeof(float)), *b = malloc((size_t)n * V * sizeof(float));
    moge_context *c1 = new_ctx(m, 128), *c2 = new_ctx(m, 128);
    char err[256];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = 128;
    moge_context_free(c1);
    CHECK(moge_context_new(m, &p, &c1, err, sizeof err) == MOGE_OK);
    eval(c1, tok, n, a, V);
    for (int i = 0; i < n; i++) eval(c2, tok + i, 1, b + (int64_t)i * V, V);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = nerr(b + (int64_t)i * V, a + (int64_t)i * V, V);
        if (e > worst) worst = e;
    }
    CHECKF(worst <= 1e-5, "100-row prefill vs decode: worst row normalised error %.3g", worst);
    moge_context_free(c1);
    moge_context_free(c2);
    moge_model_free(m);
    free(a);
    free(b);
}

static void test_cpu_equals_ref(void) {
    for (int mi = 0; mi < N_MODELS; mi++) {
        moge_model *mc = load(MODELS[mi], MOGE_BACKEND_CPU), *mr = load(MODELS[mi], MOGE_BACKEND_REF);
        if (!mc || !mr) { moge_model_free(mc); moge_model_free(mr); continue; }
        moge_model_info info;
        moge_model_get_info(mc, &info);
        int V = info.n_vocab, n = 12;
        int32_t tok[12];
        uint64_t seed = 1234 + mi;
        random_tokens(tok, n, V, &seed);
        float *a = malloc((size_t)n * V * sizeof(float)), *b = malloc((size_t)n * V * sizeof(float));
        moge_context *cc = new_ctx(mc, 32), *cr = new_ctx(mr, 32);
        eval(cc, tok, 8, a, V);
        eval(cr, tok, 8, b, V);
        eval(cc, tok + 8, 4, a + (int64_t)8 * V, V);
        eval(cr, tok + 8, 4, b + (int64_t)8 * V, V);
        double e = nerr(a, b, (int64_t)n * V);
        CHECKF(e <= 1e-5, "%s: cpu vs ref forward: normalised error %.3g", MODELS[mi], e);
        moge_context_free(cc);
        moge_context_free(cr);
        moge_model_free(mc);
        moge_model_free(mr);
        free(a);
        free(b);
    }
}

static void test_forward_errors(void) {
    moge_model *m = load("models/stories260K", MOGE_BACKEND_CPU);
    if (!m) return;
    moge_context *c = new_ctx(m, 8);
    const float *lg = NULL;
    int32_t tok[9] = {1, 5, 6, 7, 8, 9, 10, 11, 12};
    moge_batch full = {.n = 9, .tokens = tok};
    CHECK(moge_forward(c, &full, &lg) == MOGE_ERR_ARG); /* n > n_batch (clamped to n_ctx 8) */
    moge_batch eight = {.n = 8, .tokens = tok};
    CHECK(moge_forward(c, &eight, &lg) == MOGE_OK);
    CHECK(moge_kv_commit(c, NULL, 9) == MOGE_ERR_ARG);
    CHECK(moge_kv_commit(c, NULL, 6) == MOGE_OK);
    moge_batch three = {.n = 3, .tokens = tok};
    CHECK(moge_forward(c, &three, &lg) == MOGE_ERR_CONTEXT_FULL);
    CHECK(strstr(moge_context_error(c), "context full") != NULL);
    int32_t bad_tok = 512;
    moge_batch bad = {.n = 1, .tokens = &bad_tok};
    CHECK(moge_forward(c, &bad, &lg) == MOGE_ERR_ARG);
    CHECK(strstr(moge_context_error(c), "512") != NULL);
    int32_t parent[2] = {-1, 1};
    moge_batch badtree = {.n = 2, .tokens = tok, .parent = parent};
    CHECK(moge_forward(c, &badtree, &lg) == MOGE_ERR_ARG);
    int32_t rows[2] = {1, 0};
    moge_batch two = {.n = 2, .tokens = tok};
    CHECK(moge_forward(c, &two, &lg) == MOGE_OK);
    CHECK(moge_kv_commit(c, rows, 2) == MOGE_ERR_ARG);
    CHECK(moge_kv_truncate(c, 7) == MOGE_ERR_ARG);
    CHECK(moge_kv_truncate(c, 2) == MOGE_OK);
    CHECK(moge_forward(c, &three, &lg) == MOGE_OK); /* still usable */
    moge_context_free(c);
    char err[256];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = 100000;
    moge_context *big = NULL;
    CHECK(moge_context_new(m, &p, &big, err, sizeof err) == MOGE_ERR_ARG && big == NULL);
    CHECK(strstr(err, "max_position_embeddings") != NULL);
    moge_model_free(m);
}

int main(void) {
    RUN_TESTS(T(test_prefill_equals_decode), T(test_tree_equals_paths), T(test_long_prefill), T(test_cpu_equals_ref),
              T(test_forward_errors));
}
