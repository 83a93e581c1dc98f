/*
 * test_pad.c — memory-bound stand-ins (moge pad; construction in runtime/pad.c):
 *  - the demo target (Pangu MoGE) and stories260K (dense, tied) padded to small stand-ins (hidden
 *    x2, heads x2, +3 layers, wider experts / MLP): on the cpu and the ref backend every row of a
 *    prompt's logits is within 1e-4 of the source's (max |d| / max |logit|), and the greedy text of
 *    20 prompts x 24 tokens is the source's, token for token;
 *  - each size alone (layers, hidden, heads, MLP, expert, shared-expert width): within 1e-4, and
 *    exactly the source's logits (bit for bit on the cpu backend) when the hidden size is kept,
 *    since the added terms are exact zeros then;
 *  - the other architectures (Llama with biases BF16, sharded Mistral F16 with its own head_dim,
 *    Qwen2 tied BF16, Pangu, Mixtral, Qwen2-MoE, Qwen3-MoE with q/k norms) padded: within 1e-4;
 *  - the construction read back from the file: zeros where pad.c says, random values (not zero)
 *    where it says, the source's values in the top-left blocks, norm weights x sqrt(d/D),
 *    rms_norm_eps x d/D, inserted layers where expected; the same seed gives the same bytes, another
 *    seed other bytes but the same logits;
 *  - the comparison can fail: a stand-in whose residual padding is not zero, or whose inserted
 *    layer writes into the residual, is caught;
 *  - bad input: sizes smaller than the source's, heads not a multiple of the GQA ratio, Pangu's
 *    hidden != heads x head_dim, widths the model does not have, an unknown architecture, a
 *    pre-quantized source, a missing source, an existing output: each a clear error naming the
 *    flag or file; nothing is left behind by a failure (a write failing mid-file under
 *    RLIMIT_FSIZE, a side file that cannot be read), and a replaced output stays intact until the
 *    new one is complete;
 *  - the `moge pad` command: success and its summary, --help, usage errors (exit 2), failures
 *    (exit 1), and `moge run` on the stand-in prints the source's text.
 */
#include <cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "test_model.h"
#include "test_util.h"
#include "moge.h"
#include "runtime/model.h"

#define TMP "build/test_pad"
#define OUT TMP "/cmd.out"
#define ERR TMP "/cmd.err"
#define MOGE_SRC "models/tinystories-moge"
#define DENSE_SRC "models/stories260K"
#define TOL 1e-4

static moge_status pad(const char *in, const char *out, const moge_pad_params *p, char *err, size_t n) {
    return moge_pad_model(in, out, p, err, n);
}

/* Pads in into TMP/name with p; a failure is a failed check. */
static const char *pad_ok(const char *in, const char *name, const moge_pad_params *p) {
    static char out[4][512];
    static int k;
    char *o = out[k++ % 4], err[1024];
    snprintf(o, 512, "%s/%s", TMP, name);
    moge_pad_params q = *p;
    q.overwrite = true;
    moge_status st = pad(in, o, &q, err, sizeof err);
    CHECKF(st == MOGE_OK, "pad %s -> %s: %s", in, o, err);
    return o;
}

static moge_model *load(const char *dir, moge_backend b) { return test_load(dir, b, 2); }

/* The tokens of text with the model's tokenizer (BOS first). */
static int tokenize(const char *dir, const char *text, int32_t *ids, int cap) {
    char err[512];
    moge_tokenizer *tok = NULL;
    size_t n = 0;
    if (moge_tokenizer_load(dir, &tok, err, sizeof err) != MOGE_OK) {
        CHECKF(0, "%s: %s", dir, err);
        return 0;
    }
    moge_status st = moge_tokenize(tok, text, strlen(text), true, ids, (size_t)cap, &n);
    CHECK(st == MOGE_OK);
    moge_tokenizer_free(tok);
    return (int)n;
}

/* Logits of the rows of ids (one causal batch), malloc'd. */
static float *logits(moge_model *m, const int32_t *ids, int n) {
    moge_model_info info;
    moge_model_get_info(m, &info);
    moge_context *c = test_new_ctx(m, 128);
    float *out = NULL;
    const float *lg;
    moge_batch b = {.n = n, .tokens = ids};
    if (c && moge_forward(c, &b, &lg) == MOGE_OK && (out = malloc((size_t)n * info.n_vocab * sizeof(float))))
        memcpy(out, lg, (size_t)n * info.n_vocab * sizeof(float));
    CHECKF(out != NULL, "forward failed: %s", c ? moge_context_error(c) : "no context");
    moge_context_free(c);
    return out;
}

/* The worst row of max |a - b| / max |b| over n rows of V. */
static double worst_row(const float *a, const float *b, int n, int V) {
    double worst = 0;
    for (int r = 0; r < n; r++) {
        double d = 0, mx = 0;
        for (int v = 0; v < V; v++) {
            double x = fabs((double)a[(int64_t)r * V + v] - b[(int64_t)r * V + v]), y = fabs((double)b[(int64_t)r * V + v]);
            d = x > d ? x : d;
            mx = y > mx ? y : mx;
        }
        double e = mx > 0 ? d / mx : d;
        worst = e > worst ? e : worst;
    }
    return worst;
}

static const char *TEXT = "Once upon a time, there was a little girl named Lily. She liked to play with her red ball in the park.";

/* The worst row error of the stand-in's logits against the source's on backend b, over the tokens
 * of TEXT (or, for a model without a tokenizer, 24 fixed ids); -1 on failure. */
static double compare(const char *src, const char *standin, moge_backend b) {
    int32_t ids[64];
    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/tokenizer.json", src);
    bool has_tok = stat(path, &sb) == 0;
    int n = has_tok ? tokenize(src, TEXT, ids, 64) : 24;
    moge_model *ms = load(src, b), *mp = load(standin, b);
    double e = -1;
    if (ms && mp && n > 0) {
        moge_model_info info;
        moge_model_get_info(ms, &info);
        if (!has_tok)
            for (int i = 0; i < n; i++) ids[i] = (i * 131 + 7) % info.n_vocab;
        float *a = logits(mp, ids, n), *r = logits(ms, ids, n);
        if (a && r) e = worst_row(a, r, n, info.n_vocab);
        free(a);
        free(r);
    }
    moge_model_free(ms);
    moge_model_free(mp);
    return e;
}

static void check_close(const char *what, const char *src, const char *standin, bool ref) {
    double cpu = compare(src, standin, MOGE_BACKEND_CPU), rf = ref ? compare(src, standin, MOGE_BACKEND_REF) : 0;
    CHECKF(cpu >= 0 && cpu <= TOL, "%s: cpu backend: worst row max |d| / max |logit| = %.3g", what, cpu);
    CHECKF(rf >= 0 && rf <= TOL, "%s: ref backend: worst row max |d| / max |logit| = %.3g", what, rf);
    if (ref) printf("  %s: worst row max |d logit| / max |logit|: cpu %.2g, ref %.2g\n", what, cpu, rf);
    else printf("  %s: worst row max |d logit| / max |logit|: cpu %.2g\n", what, cpu);
}

typedef struct { int32_t ids[64]; int n; } collected;
static bool collect(int32_t tok, void *user) {
    collected *c = user;
    if (c->n < 64) c->ids[c->n++] = tok;
    return true;
}

static const char *PROMPTS[20] = {
    "Once upon a time", "The little dog", "Lily and Tom", "One day, a boy named Tim", "The sun was shining",
    "There was a big tree", "Mom said", "The cat saw a bird", "Sara had a red ball", "In the park,",
    "The old man", "A little bird", "Ben wanted to", "The princess", "It was a rainy day",
    "The frog jumped", "Max and his friend", "Anna found a box", "The car was fast", "At night, the moon",
};

/* Greedy text (24 tokens) of the 20 prompts: the stand-in's equals the source's, token for token. */
static void check_greedy(const char *what, const char *src, const char *standin) {
    moge_model *ms = load(src, MOGE_BACKEND_CPU), *mp = load(standin, MOGE_BACKEND_CPU);
    moge_context *cs = ms ? test_new_ctx(ms, 128) : NULL, *cp = mp ? test_new_ctx(mp, 128) : NULL;
    int same = 0;
    for (int i = 0; cs && cp && i < 20; i++) {
        int32_t ids[64];
        int n = tokenize(src, PROMPTS[i], ids, 64);
        moge_generate_params gp = moge_generate_default_params();
        gp.n_predict = 24;
        gp.sampler.temperature = 0;
        collected a = {.n = 0}, b = {.n = 0};
        CHECK(moge_kv_truncate(cs, 0) == MOGE_OK && moge_kv_truncate(cp, 0) == MOGE_OK);
        CHECK(moge_generate(cs, ids, n, &gp, collect, &a, NULL) == MOGE_OK);
        CHECK(moge_generate(cp, ids, n, &gp, collect, &b, NULL) == MOGE_OK);
        bool eq = a.n == b.n && a.n > 0 && !memcmp(a.ids, b.ids, (size_t)a.n * sizeof a.ids[0]);
        CHECKF(eq, "%s: prompt \"%s\": %d vs %d tokens, the stand-in's greedy text differs", what, PROMPTS[i], a.n, b.n);
        same += eq;
    }
    printf("  %s: greedy text identical on %d of 20 prompts (24 tokens each)\n", what, same);
    moge_context_free(cs);
    moge_context_free(cp);
    moge_model_free(ms);
    moge_model_free(mp);
}

static moge_pad_params sizes(int hidden, int layers, int heads, int ff, int ff_expert, int ff_shared) {
    moge_pad_params p = moge_pad_default_params();
    p.hidden = hidden;
    p.layers = layers;
    p.heads = heads;
    p.ff = ff;
    p.ff_expert = ff_expert;
    p.ff_shared = ff_shared;
    return p;
}

static void test_moge_standin(void) {
    moge_pad_params p = sizes(256, 9, 8, 0, 80, 320);
    const char *out = pad_ok(MOGE_SRC, "moge", &p);
    check_close("tinystories-moge hidden 256, 9 layers, 8 heads, experts 80, shared 320", MOGE_SRC, out, true);
    check_greedy("tinystories-moge stand-in", MOGE_SRC, out);
}

static void test_dense_standin(void) {
    moge_pad_params p = sizes(128, 8, 16, 256, 0, 0);
    const char *out = pad_ok(DENSE_SRC, "dense", &p);
    check_close("stories260K hidden 128, 8 layers, 16 heads, MLP 256", DENSE_SRC, out, true);
    check_greedy("stories260K stand-in", DENSE_SRC, out);
}

/* Exactly the source's logits: the hidden size is kept, so every added term is an exact zero. */
static void check_exact(const char *what, const char *src, const char *standin) {
    double e = compare(src, standin, MOGE_BACKEND_CPU);
    CHECKF(e == 0, "%s: cpu backend: worst row %.3g, expected the source's logits bit for bit", what, e);
    printf("  %s: cpu logits bit-identical: %s\n", what, e == 0 ? "yes" : "no");
}

static void test_one_size_at_a_time(void) {
    moge_pad_params p = sizes(0, 8, 0, 0, 0, 0);
    check_exact("stories260K layers 5 -> 8", DENSE_SRC, pad_ok(DENSE_SRC, "layers", &p));
    p = sizes(0, 0, 16, 0, 0, 0);
    check_exact("stories260K heads 8 -> 16", DENSE_SRC, pad_ok(DENSE_SRC, "heads", &p));
    p = sizes(0, 0, 0, 256, 0, 0);
    check_exact("stories260K MLP 172 -> 256", DENSE_SRC, pad_ok(DENSE_SRC, "ff", &p));
    p = sizes(0, 0, 0, 0, 80, 0);
    check_exact("tinystories-moge experts 64 -> 80", MOGE_SRC, pad_ok(MOGE_SRC, "ff-expert", &p));
    p = sizes(0, 0, 0, 0, 0, 320);
    check_exact("tinystories-moge shared expert 256 -> 320", MOGE_SRC, pad_ok(MOGE_SRC, "ff-shared", &p));
    p = sizes(0, 1 + 6, 0, 0, 0, 0);
    check_exact("tinystories-moge layers 6 -> 7", MOGE_SRC, pad_ok(MOGE_SRC, "layers-moge", &p));
    /* hidden alone: Llama reads head_dim from config.json, which gets it */
    p = sizes(128, 0, 0, 0, 0, 0);
    const char *out = pad_ok(DENSE_SRC, "hidden", &p);
    check_close("stories260K hidden 64 -> 128", DENSE_SRC, out, true);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", out);
    char *text = slurp_text(path);
    cJSON *c = cJSON_Parse(text);
    CHECKF(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "head_dim")) == 8, "%s: head_dim 8 expected (hidden 128 / 8 heads would give 16)", path);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "hidden_size")) == 128);
    cJSON_Delete(c);
    free(text);
}

/* Every architecture moge loads, from the fixtures. */
static void test_architectures(void) {
    static const struct { const char *dir; moge_pad_params p; } cases[] = {
        {"tests/fixtures/models/llama_f32", {.hidden = 96, .layers = 4, .heads = 12, .ff = 160}},
        {"tests/fixtures/models/llama_bias_bf16", {.hidden = 64, .layers = 3, .heads = 8, .ff = 96}},
        {"tests/fixtures/models/mistral_f16_sharded", {.hidden = 80, .layers = 5, .heads = 8, .ff = 128}},
        {"tests/fixtures/models/qwen2_bf16", {.hidden = 128, .layers = 4, .heads = 8, .ff = 200}},
        {"tests/fixtures/moe/pangu_16e4g", {.hidden = 96, .layers = 4, .heads = 12, .ff_expert = 48, .ff_shared = 64}},
        {"tests/fixtures/moe/pangu_64e8g_bf16", {.hidden = 64, .layers = 3, .heads = 8, .ff_expert = 32}},
        {"tests/fixtures/moe/mixtral_8e", {.hidden = 96, .layers = 3, .heads = 8, .ff_expert = 64}},
        {"tests/fixtures/moe/qwen2_moe", {.hidden = 128, .layers = 3, .heads = 8, .ff_expert = 48, .ff_shared = 96}},
        {"tests/fixtures/moe/qwen3_moe", {.hidden = 96, .layers = 4, .heads = 8, .ff_expert = 48}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *base = strrchr(cases[i].dir, '/') + 1;
        char name[128], what[256];
        snprintf(name, sizeof name, "arch-%s", base);
        const char *out = pad_ok(cases[i].dir, name, &cases[i].p);
        snprintf(what, sizeof what, "%s (hidden %d, %d layers, %d heads)", base, cases[i].p.hidden, cases[i].p.layers, cases[i].p.heads);
        check_close(what, cases[i].dir, out, false);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the construction, read back                                                                 */

static float at(const st_entry *e, int64_t r, int64_t c) {
    int64_t cols = e->n_dims == 2 ? e->shape[1] : e->shape[0];
    return ((const float *)e->data)[r * cols + c];
}

/* Counts of zeros in [r0, r1) x [c0, c1) of e. */
static int64_t zeros(const st_entry *e, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    int64_t z = 0;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) z += at(e, r, c) == 0.0f;
    return z;
}
#define ALL_ZERO(e, r0, r1, c0, c1) (zeros(e, r0, r1, c0, c1) == ((int64_t)(r1) - (r0)) * ((int64_t)(c1) - (c0)))
#define NONE_ZERO(e, r0, r1, c0, c1) (zeros(e, r0, r1, c0, c1) == 0)

static const st_entry *get(const st_table *t, const char *fmt, int l) {
    char name[256];
    snprintf(name, sizeof name, fmt, l);
    const st_entry *e = st_find(t, name);
    CHECKF(e != NULL && strcmp(e->dtype_str, "F32") == 0, "%s: missing or not F32", name);
    return e;
}

/* src's block equals out's top-left block (times scale). */
static bool same_block(const st_entry *src, const st_entry *out, double scale) {
    int64_t rows = src->n_dims == 2 ? src->shape[0] : 1, cols = src->n_dims == 2 ? src->shape[1] : src->shape[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (fabs(at(out, r, c) - at(src, r, c) * scale) > 1e-6 * fabs(at(src, r, c)) + 1e-12) return false;
    return true;
}

static void test_construction(void) {
    moge_pad_params p = sizes(256, 9, 8, 0, 80, 320);
    const char *out = pad_ok(MOGE_SRC, "moge", &p);
    char err[512];
    st_table s = {0}, o = {0};
    if (st_open_dir(&s, MOGE_SRC, err, sizeof err) != MOGE_OK || st_open_dir(&o, out, err, sizeof err) != MOGE_OK) {
        CHECKF(0, "%s", err);
        st_close(&s);
        return;
    }
    const int d = 128, D = 256, Q = 128, Q2 = 256, KV = 64, KV2 = 128, FE = 64, FE2 = 80, FS = 256, FS2 = 320, V = 512;
    /* 6 real layers over 9: round(i * 8 / 5) = 0, 2, 3, 5, 6, 8 */
    const int real_at[9] = {0, -1, 1, 2, -1, 3, 4, -1, 5};
    const st_entry *e = get(&o, "model.embed_tokens.weight", 0);
    if (e) {
        CHECK(e->shape[0] == V && e->shape[1] == D);
        CHECKF(ALL_ZERO(e, 0, V, d, D), "embedding columns >= d must be zero");
        CHECK(same_block(get(&s, "model.embed_tokens.weight", 0), e, 1.0));
    }
    e = get(&o, "lm_head.weight", 0);
    if (e) CHECKF(NONE_ZERO(e, 0, V, d, D) && same_block(get(&s, "lm_head.weight", 0), e, 1.0), "lm_head: source block, random columns >= d");
    double sc = sqrt((double)d / D);
    e = get(&o, "model.norm.weight", 0);
    if (e) CHECKF(same_block(get(&s, "model.norm.weight", 0), e, sc) && NONE_ZERO(e, 0, 1, d, D), "final norm: x sqrt(d/D), random beyond d");
    for (int l = 0; l < 9; l++) {
        int i = real_at[l];
        const st_entry *q = get(&o, "model.layers.%d.self_attn.q_proj.weight", l), *k = get(&o, "model.layers.%d.self_attn.k_proj.weight", l);
        const st_entry *wo = get(&o, "model.layers.%d.self_attn.o_proj.weight", l), *bo = get(&o, "model.layers.%d.self_attn.o_proj.bias", l);
        const st_entry *bq = get(&o, "model.layers.%d.self_attn.q_proj.bias", l), *router = get(&o, "model.layers.%d.mlp.gate.weight", l);
        const st_entry *sd = get(&o, "model.layers.%d.mlp.shared_expert.down_proj.weight", l);
        const st_entry *sg = get(&o, "model.layers.%d.mlp.shared_expert.gate_proj.weight", l);
        const st_entry *norm = get(&o, "model.layers.%d.input_layernorm.weight", l);
        if (!q || !k || !wo || !bo || !bq || !router || !sd || !sg || !norm) break;
        CHECK(q->shape[0] == Q2 && q->shape[1] == D && k->shape[0] == KV2 && wo->shape[0] == D && wo->shape[1] == Q2);
        if (i >= 0) {
            CHECKF(same_block(get(&s, "model.layers.%d.self_attn.q_proj.weight", i), q, 1.0), "layer %d: q_proj holds layer %d's", l, i);
            CHECKF(same_block(get(&s, "model.layers.%d.self_attn.o_proj.weight", i), wo, 1.0), "layer %d: o_proj holds layer %d's", l, i);
            CHECKF(same_block(get(&s, "model.layers.%d.input_layernorm.weight", i), norm, sc), "layer %d: norm x sqrt(d/D)", l);
            CHECKF(NONE_ZERO(q, 0, Q, d, D) && NONE_ZERO(q, Q, Q2, 0, D) && NONE_ZERO(k, KV, KV2, 0, D) && NONE_ZERO(bq, 0, 1, Q, Q2),
                   "layer %d: q/k columns of padding dims, rows and biases of added heads are random", l);
            CHECKF(ALL_ZERO(wo, d, D, 0, Q2) && ALL_ZERO(wo, 0, d, Q, Q2) && ALL_ZERO(bo, 0, 1, d, D),
                   "layer %d: o_proj rows >= d, columns of added heads, bias >= d are zero", l);
            CHECKF(NONE_ZERO(router, 0, 32, d, D), "layer %d: router columns of padding dims are random", l);
            CHECKF(ALL_ZERO(sd, d, D, 0, FS2) && ALL_ZERO(sd, 0, d, FS, FS2) && NONE_ZERO(sg, FS, FS2, 0, D),
                   "layer %d: shared down rows >= d and columns of added units zero, added gate rows random", l);
            for (int x = 0; x < 32; x++) {
                char name[160];
                snprintf(name, sizeof name, "model.layers.%%d.mlp.experts.%d.down_proj.weight", x);
                const st_entry *dn = get(&o, name, l);
                if (!dn) break;
                CHECKF(dn->shape[0] == D && dn->shape[1] == FE2 && ALL_ZERO(dn, d, D, 0, FE2) && ALL_ZERO(dn, 0, d, FE, FE2) &&
                           same_block(get(&s, name, i), dn, 1.0),
                       "layer %d expert %d: down_proj: the source's, zeros elsewhere", l, x);
            }
        } else {
            CHECKF(ALL_ZERO(wo, 0, D, 0, Q2) && ALL_ZERO(bo, 0, 1, 0, D) && ALL_ZERO(sd, 0, D, 0, FS2),
                   "inserted layer %d: o_proj, its bias and the shared down_proj are zero", l);
            CHECKF(NONE_ZERO(q, 0, Q2, 0, D) && NONE_ZERO(router, 0, 32, 0, D) && NONE_ZERO(sg, 0, FS2, 0, D) && NONE_ZERO(norm, 0, 1, 0, D),
                   "inserted layer %d: q_proj, router, shared gate, norm are random", l);
            for (int x = 0; x < 32; x++) {
                char name[160];
                snprintf(name, sizeof name, "model.layers.%%d.mlp.experts.%d.down_proj.weight", x);
                const st_entry *dn = get(&o, name, l), *g = NULL;
                snprintf(name, sizeof name, "model.layers.%%d.mlp.experts.%d.gate_proj.weight", x);
                g = get(&o, name, l);
                if (!dn || !g) break;
                CHECKF(ALL_ZERO(dn, 0, D, 0, FE2) && NONE_ZERO(g, 0, FE2, 0, D), "inserted layer %d expert %d: down zero, gate random", l, x);
            }
        }
    }
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", out);
    char *text = slurp_text(path);
    cJSON *c = cJSON_Parse(text);
    double eps = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "rms_norm_eps"));
    CHECKF(fabs(eps - 1e-5 * d / D) < 1e-12, "rms_norm_eps %g, expected %g", eps, 1e-5 * d / D);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "num_key_value_heads")) == 4);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "num_experts")) == 32 && cJSON_GetNumberValue(cJSON_GetObjectItem(c, "num_experts_per_tok")) == 8);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "moe_intermediate_size")) == FE2);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "shared_expert_intermediate_size")) == FS2);
    CHECK(cJSON_GetObjectItem(c, "head_dim") == NULL); /* Pangu derives it: hidden = heads x head_dim */
    cJSON_Delete(c);
    free(text);
    snprintf(path, sizeof path, "%s/README.md", out);
    text = slurp_text(path);
    CHECKF(strstr(text, "stand-in") && strstr(text, MOGE_SRC) && strstr(text, "moge pad -m"), "%s: %s", path, text);
    free(text);
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    struct stat sb;
    CHECKF(stat(path, &sb) == 0, "%s: not copied", path);
    st_close(&s);
    st_close(&o);
}

static bool same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = false;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_seed(void) {
    moge_pad_params p = sizes(128, 7, 16, 200, 0, 0);
    const char *a = pad_ok(DENSE_SRC, "seed-a", &p), *b = pad_ok(DENSE_SRC, "seed-b", &p);
    p.seed = 12345;
    const char *c = pad_ok(DENSE_SRC, "seed-c", &p);
    char fa[600], fb[600], fc[600];
    snprintf(fa, sizeof fa, "%s/model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/model.safetensors", b);
    snprintf(fc, sizeof fc, "%s/model.safetensors", c);
    CHECKF(same_file(fa, fb), "the same seed must give the same bytes");
    CHECKF(!same_file(fa, fc), "another seed must give other random weights");
    double e = compare(a, c, MOGE_BACKEND_CPU);
    CHECKF(e >= 0 && e <= 1e-6, "two seeds: worst row %.3g, the same function expected", e);
}

/* Overwrites n floats of tensor name in dir's model.safetensors at element `first` with v. */
static bool poke(const char *dir, const char *name, int64_t first, int64_t stride, int n, float v) {
    char err[512], path[600];
    st_table t = {0};
    if (st_open_dir(&t, dir, err, sizeof err) != MOGE_OK) return false;
    const st_entry *e = st_find(&t, name);
    int64_t off = e ? (int64_t)((const char *)e->data - (const char *)t.files[e->file].map) : -1;
    st_close(&t);
    if (off < 0) return false;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    bool ok = f != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = fseek(f, (long)(off + (first + i * stride) * 4), SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1;
    if (f) fclose(f);
    return ok;
}

/* The checks can fail: a stand-in that breaks the construction is caught. */
static void test_broken_standin_caught(void) {
    moge_pad_params p = sizes(128, 8, 16, 0, 0, 0);
    const char *out = pad_ok(DENSE_SRC, "broken-embd", &p);
    /* the residual's padding dims are not zero: column 100 of every embedding row */
    CHECK(poke(out, "model.embed_tokens.weight", 100, 128, 512, 0.5f));
    double e = compare(DENSE_SRC, out, MOGE_BACKEND_CPU);
    CHECKF(e > TOL, "a nonzero padding column of the embedding went unnoticed (%.3g)", e);
    printf("  nonzero embedding padding: worst row %.3g (caught)\n", e);
    /* an inserted layer writes into the residual: layer 1 of 8 (5 real layers at 0, 2, 4, 5, 7) */
    out = pad_ok(DENSE_SRC, "broken-layer", &p);
    CHECK(poke(out, "model.layers.1.mlp.down_proj.weight", 0, 173, 64, 0.5f));
    e = compare(DENSE_SRC, out, MOGE_BACKEND_CPU);
    CHECKF(e > TOL, "an inserted layer's nonzero down_proj went unnoticed (%.3g)", e);
    printf("  inserted layer writing into the residual: worst row %.3g (caught)\n", e);
}

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                      */

/* Nothing but the entries named keep in TMP starts with prefix (no output, no .tmp- directory). */
static bool nothing_left(const char *prefix) {
    DIR *d = opendir(TMP);
    bool clean = true;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, prefix, strlen(prefix))) {
            printf("  left behind: %s/%s\n", TMP, de->d_name);
            clean = false;
        }
    if (d) closedir(d);
    return clean;
}

static void expect_error(const char *in, moge_pad_params p, moge_status want, const char *needle, const char *needle2) {
    char err[1024] = "";
    shell("rm -rf " TMP "/err-out*");
    moge_status st = pad(in, TMP "/err-out", &p, err, sizeof err);
    CHECKF(st == want, "%s: status %d, expected %d: %s", in, (int)st, (int)want, err);
    CHECKF(strstr(err, needle) != NULL, "%s: error does not mention \"%s\": %s", in, needle, err);
    CHECKF(!needle2 || strstr(err, needle2) != NULL, "%s: error does not mention \"%s\": %s", in, needle2, err);
    CHECK(nothing_left("err-out"));
    printf("  %s\n", err);
}

static void test_bad_input(void) {
    expect_error(DENSE_SRC, sizes(32, 0, 0, 0, 0, 0), MOGE_ERR_ARG, "--hidden", "hidden_size 64");
    expect_error(DENSE_SRC, sizes(0, 4, 0, 0, 0, 0), MOGE_ERR_ARG, "--layers", "num_hidden_layers 5");
    expect_error(DENSE_SRC, sizes(0, 0, 4, 0, 0, 0), MOGE_ERR_ARG, "--heads", "num_attention_heads 8");
    expect_error(DENSE_SRC, sizes(0, 0, 0, 100, 0, 0), MOGE_ERR_ARG, "--ff", "intermediate_size 172");
    expect_error(DENSE_SRC, sizes(0, 0, 9, 0, 0, 0), MOGE_ERR_ARG, "--heads", "multiple of 2");
    expect_error(MOGE_SRC, sizes(0, 0, 0, 0, 32, 0), MOGE_ERR_ARG, "--ff-expert", "moe_intermediate_size 64");
    expect_error(MOGE_SRC, sizes(0, 0, 0, 0, 0, 100), MOGE_ERR_ARG, "--ff-shared", "shared_expert_intermediate_size 256");
    expect_error(MOGE_SRC, sizes(256, 0, 0, 0, 0, 0), MOGE_ERR_ARG, "--hidden", "--heads 8");
    expect_error(MOGE_SRC, sizes(0, 0, 6, 0, 0, 0), MOGE_ERR_ARG, "head_dim 32", "--hidden 192");
    expect_error(MOGE_SRC, sizes(0, 0, 0, 256, 0, 0), MOGE_ERR_ARG, "--ff", "without a dense MLP");
    expect_error(DENSE_SRC, sizes(0, 0, 0, 0, 128, 0), MOGE_ERR_ARG, "--ff-expert", "dense");
    expect_error("tests/fixtures/moe/mixtral_8e", sizes(0, 0, 0, 0, 0, 64), MOGE_ERR_ARG, "--ff-shared", "no shared expert");
    expect_error(DENSE_SRC, sizes(-1, 0, 0, 0, 0, 0), MOGE_ERR_ARG, "negative", NULL);
    expect_error("models/does-not-exist", sizes(0, 0, 0, 0, 0, 0), MOGE_ERR_IO, "models/does-not-exist", NULL);
    /* an architecture moge does not know */
    shell("rm -rf " TMP "/gpt2 && mkdir -p " TMP "/gpt2 && cp " DENSE_SRC "/model.safetensors " DENSE_SRC "/tokenizer.json " TMP "/gpt2/ && "
          "sed 's/LlamaForCausalLM/GPT2LMHeadModel/' " DENSE_SRC "/config.json > " TMP "/gpt2/config.json");
    expect_error(TMP "/gpt2", sizes(128, 0, 16, 0, 0, 0), MOGE_ERR_UNSUPPORTED, "GPT2LMHeadModel", TMP "/gpt2/config.json");
    /* a pre-quantized source */
    char err[512];
    moge_quantize_params qp = moge_quantize_default_params();
    qp.overwrite = true;
    CHECKF(moge_quantize_model(DENSE_SRC, TMP "/q8", &qp, NULL, err, sizeof err) == MOGE_OK, "%s", err);
    expect_error(TMP "/q8", sizes(128, 0, 16, 0, 0, 0), MOGE_ERR_ARG, "pre-quantized", TMP "/q8");
    /* an existing output */
    moge_pad_params p = sizes(0, 6, 0, 0, 0, 0);
    shell("rm -rf " TMP "/exists && mkdir -p " TMP "/exists && echo keep > " TMP "/exists/note.txt");
    moge_status st = pad(DENSE_SRC, TMP "/exists", &p, err, sizeof err);
    CHECKF(st == MOGE_ERR_IO && strstr(err, "not overwriting") && strstr(err, "--force"), "existing output: %s", err);
    char *note = slurp_text(TMP "/exists/note.txt");
    CHECK(strcmp(note, "keep\n") == 0);
    free(note);
    p.overwrite = true; /* replaced */
    CHECKF(pad(DENSE_SRC, TMP "/exists", &p, err, sizeof err) == MOGE_OK, "%s", err);
    struct stat sb;
    CHECK(stat(TMP "/exists/note.txt", &sb) != 0 && stat(TMP "/exists/config.json", &sb) == 0);
    CHECKF(pad(DENSE_SRC, DENSE_SRC, &p, err, sizeof err) == MOGE_ERR_ARG && strstr(err, "input directory"), "output = input: %s", err);
    CHECK(nothing_left("exists."));
}

/* A failure after the output was begun leaves nothing: not the output, not its temporary
 * directory; an output being replaced stays as it was. */
static void test_nothing_half_written(void) {
    char err[1024];
    moge_pad_params p = sizes(256, 12, 32, 512, 0, 0); /* ~30 MB */
    /* writes fail past 1 MB (EFBIG) in the middle of model.safetensors */
    shell("rm -rf " TMP "/half*");
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1 << 20;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    moge_status st = pad(DENSE_SRC, TMP "/half", &p, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECKF(st == MOGE_ERR_IO && strstr(err, "model.safetensors") && strstr(err, "write failed"), "write failure: %d %s", (int)st, err);
    printf("  %s\n", err);
    CHECK(nothing_left("half"));
    /* the same failure while replacing an output: the old one is intact */
    moge_pad_params small = sizes(0, 6, 0, 0, 0, 0);
    small.overwrite = true;
    CHECKF(pad(DENSE_SRC, TMP "/half-keep", &small, err, sizeof err) == MOGE_OK, "%s", err);
    char *before = slurp_text(TMP "/half-keep/config.json");
    p.overwrite = true;
    setrlimit(RLIMIT_FSIZE, &lim);
    prev = signal(SIGXFSZ, SIG_IGN);
    st = pad(DENSE_SRC, TMP "/half-keep", &p, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(st == MOGE_ERR_IO);
    char *after = slurp_text(TMP "/half-keep/config.json");
    CHECKF(before[0] && strcmp(before, after) == 0, "the replaced output changed after a failure");
    CHECK(compare(DENSE_SRC, TMP "/half-keep", MOGE_BACKEND_CPU) == 0);
    free(before);
    free(after);
    shell("rm -rf " TMP "/half-keep");
    CHECK(nothing_left("half"));
    /* a side file that cannot be read (a directory named tokenizer.json): after the weights */
    shell("rm -rf " TMP "/badsrc && mkdir -p " TMP "/badsrc/tokenizer.json && cp " DENSE_SRC "/config.json " DENSE_SRC "/model.safetensors " TMP "/badsrc/");
    st = pad(TMP "/badsrc", TMP "/half", &small, err, sizeof err);
    CHECKF(st == MOGE_ERR_IO && strstr(err, "tokenizer.json"), "unreadable side file: %d %s", (int)st, err);
    printf("  %s\n", err);
    CHECK(nothing_left("half"));
}

/* ------------------------------------------------------------------------------------------ */
/* the command                                                                                 */

static void test_cli(void) {
    shell("rm -rf " TMP "/cli*");
    int rc = moge_cmd("pad -m " DENSE_SRC " -o " TMP "/cli --hidden 128 --layers 7 --heads 16 --ff 256 --seed 3", OUT, ERR);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(rc == 0, "moge pad: exit %d: %s", rc, err);
    CHECKF(strstr(out, "wrote " TMP "/cli") && strstr(out, "hidden 128, 7 layers, 16 / 8 heads of 8, MLP 256") && strstr(out, "MB model.safetensors"),
           "summary: %s", out);
    free(out);
    free(err);
    /* moge run on the stand-in prints the source's text */
    CHECK(moge_cmd("run -m " DENSE_SRC " -p \"Once upon a time\" -n 32 --temp 0", OUT, ERR) == 0);
    char *a = slurp_text(OUT);
    CHECK(moge_cmd("run -m " TMP "/cli -p \"Once upon a time\" -n 32 --temp 0", OUT, ERR) == 0);
    char *b = slurp_text(OUT);
    CHECKF(a[0] && strcmp(a, b) == 0, "moge run: the stand-in's text differs:\n%s\n%s", a, b);
    free(a);
    free(b);
    CHECK(moge_cmd("pad --help", OUT, ERR) == 0);
    out = slurp_text(OUT);
    CHECK(strstr(out, "--ff-expert") && strstr(out, "--force"));
    free(out);
    expect_moge_error("pad -m " DENSE_SRC, 2, "-o OUT", OUT, ERR);
    expect_moge_error("pad -o " TMP "/cli2", 2, "-m SRC", OUT, ERR);
    expect_moge_error("pad -m " DENSE_SRC " -o " TMP "/cli2 --hidden abc", 2, "--hidden", OUT, ERR);
    expect_moge_error("pad -m " DENSE_SRC " -o " TMP "/cli2 --bogus", 2, "--bogus", OUT, ERR);
    expect_moge_error("pad -m " DENSE_SRC " -o " TMP "/cli2 --hidden 32", 2, "--hidden", OUT, ERR);
    expect_moge_error("pad -m " DENSE_SRC " -o " TMP "/cli2 --heads 9", 2, "--heads", OUT, ERR);
    expect_moge_error("pad -m " MOGE_SRC " -o " TMP "/cli2 --hidden 256", 2, "--heads 8", OUT, ERR);
    expect_moge_error("pad -m " MOGE_SRC " -o " TMP "/cli2 --ff 256", 2, "--ff", OUT, ERR);
    expect_moge_error("pad -m " DENSE_SRC " -o " TMP "/cli --layers 6", 1, "--force", OUT, ERR);
    expect_moge_error("pad -m models/no-such-model -o " TMP "/cli2", 1, "models/no-such-model", OUT, ERR);
    expect_moge_error("pad -m " TMP "/gpt2 -o " TMP "/cli2", 1, "GPT2LMHeadModel", OUT, ERR);
    CHECK(moge_cmd("pad -m " DENSE_SRC " -o " TMP "/cli --layers 6 --force", OUT, ERR) == 0);
    out = slurp_text(TMP "/cli/config.json");
    CHECK(strstr(out, "\"num_hidden_layers\":\t6") != NULL);
    free(out);
    CHECK(nothing_left("cli2"));
    CHECK(nothing_left("cli."));
}

int main(void) {
    shell("rm -rf " TMP " && mkdir -p " TMP);
    static const harness_case cases[] = {
        T(test_moge_standin), T(test_dense_standin), T(test_one_size_at_a_time), T(test_architectures), T(test_construction),
        T(test_seed), T(test_broken_standin_caught), T(test_bad_input), T(test_nothing_half_written), T(test_cli),
    };
    int rc = harness_run(cases, (int)(sizeof cases / sizeof cases[0]));
    if (rc == 0) shell("rm -rf " TMP); /* ~200 MB of stand-ins; kept for a look when a case failed */
    return rc;
}
