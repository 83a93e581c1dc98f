/*
 * test_batch.c — many sequences in one context (moge_decoder, moge_forward with seq):
 *  - logits: rows of 3 sequences (different cached lengths, causal and tree rows) in one forward
 *    equal, bit for bit, each sequence's rows forwarded alone in a one-sequence context (demo
 *    MoGE target, stories260K, a quantized w8a8 target);
 *  - greedy: every sequence's tokens in a batch of 1, 3 and 8 (mixed prompt lengths and
 *    n_predict, sequences joining mid-run and reusing finished slots) equal moge_generate() alone,
 *    target-only, with a separate draft model (chain and tree) and with prompt lookup;
 *  - sampling: the same seed gives the same tokens in a batch as alone (so the distribution tests
 *    of test_speculative hold per sequence), and 8 sequences x 250 seeds of sampled tree
 *    speculation in batches are distributed as target-only sampling alone (chi-square);
 *  - bad input: more sequences than slots, a prompt longer than n_ctx, bad ids, a drafter shared
 *    by two sequences, non-contiguous or out-of-range seq rows: clear errors; a sequence whose
 *    drafter fails stops alone and the others' tokens are unchanged.
 */
#include <stdint.h>

#include "harness.h"
#include "test_model.h"
#include "moge.h"

#define TARGET "models/tinystories-moge"
#define DRAFT "models/tinystories-draft"
#define STORIES "models/stories260K"

static moge_context *ctx_seqs(moge_model *m, int n_ctx, int n_seq, int n_batch) {
    char err[512];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    moge_context *c = NULL;
    CHECKF(moge_context_new(m, &p, &c, err, sizeof err) == MOGE_OK, "%s", err);
    return c;
}

/* A prompt of length len (BOS first) from a seed: token ids of the demo vocabulary. */
static void make_prompt(int seed, int len, int32_t *p) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(seed + 1);
    p[0] = 1;
    for (int i = 1; i < len; i++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        p[i] = 3 + (int32_t)((x * 0x2545F4914F6CDD1Dull) >> 33) % 400;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* logits                                                                                     */

/* Forwards 3 sequences' rows together (after different cached prefixes; one causal run, one tree
 * run, one single row) and compares each run with the same rows forwarded alone. */
static void check_logits(const char *dir, moge_quant quant) {
    moge_model_params mp = moge_model_default_params();
    mp.quant = quant;
    mp.n_threads = 2;
    moge_model *m = test_load_params(dir, &mp);
    if (!m) return;
    moge_model_info info;
    moge_model_get_info(m, &info);
    int V = info.n_vocab;
    moge_context *multi = ctx_seqs(m, 96, 4, 64), *one = ctx_seqs(m, 96, 1, 64);
    if (!multi || !one) goto out;
    static const int pre[3] = {17, 5, 40};
    int32_t prefix[3][40];
    for (int s = 0; s < 3; s++) {
        make_prompt(s, pre[s], prefix[s]);
        int32_t seq[40];
        for (int i = 0; i < pre[s]; i++) seq[i] = s + 1; /* sequences 1..3; 0 stays empty */
        moge_batch b = {.n = pre[s], .tokens = prefix[s], .seq = seq, .logits_last_only = true};
        const float *lg;
        CHECK(moge_forward(multi, &b, &lg) == MOGE_OK);
        CHECK(moge_seq_kv_commit(multi, s + 1, NULL, pre[s]) == MOGE_OK);
    }
    /* the batch: seq 2 causal (4 rows), seq 1 a tree (6 rows), seq 3 one row */
    int32_t tok[11] = {40, 41, 42, 43, 50, 51, 52, 53, 54, 55, 60};
    int32_t par[11] = {-1, 0, 1, 2, -1, 0, 0, 1, 1, 4, -1};
    int32_t seq[11] = {2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 3};
    moge_batch b = {.n = 11, .tokens = tok, .parent = par, .seq = seq};
    const float *lg;
    CHECK(moge_forward(multi, &b, &lg) == MOGE_OK);
    float *all = malloc((size_t)11 * V * sizeof(float));
    memcpy(all, lg, (size_t)11 * V * sizeof(float));
    static const int first[3] = {4, 0, 10}, count[3] = {6, 4, 1}; /* seq 1, 2, 3 */
    for (int s = 0; s < 3; s++) {
        moge_kv_truncate(one, 0);
        moge_batch pb = {.n = pre[s], .tokens = prefix[s], .logits_last_only = true};
        CHECK(moge_forward(one, &pb, &lg) == MOGE_OK);
        CHECK(moge_kv_commit(one, NULL, pre[s]) == MOGE_OK);
        int32_t rp[6];
        for (int i = 0; i < count[s]; i++) rp[i] = par[first[s] + i];
        moge_batch ob = {.n = count[s], .tokens = tok + first[s], .parent = rp};
        CHECK(moge_forward(one, &ob, &lg) == MOGE_OK);
        CHECKF(memcmp(lg, all + (int64_t)first[s] * V, (size_t)count[s] * V * sizeof(float)) == 0, "%s: sequence %d's logits differ in a batch",
               dir, s + 1);
    }
    /* committing a tree path in sequence 1 leaves the others as they were */
    int32_t path[3] = {0, 1, 3};
    CHECK(moge_seq_kv_commit(multi, 1, path, 3) == MOGE_OK);
    CHECK(moge_seq_n_past(multi, 1) == pre[0] + 3 && moge_seq_n_past(multi, 2) == pre[1] && moge_seq_n_past(multi, 3) == pre[2]);
    CHECK(moge_seq_n_past(multi, 0) == 0 && moge_seq_n_past(multi, 4) == -1);
    free(all);
out:
    moge_context_free(multi);
    moge_context_free(one);
    moge_model_free(m);
}

static void test_logits_bit_identical(void) {
    check_logits(TARGET, MOGE_QUANT_NONE);
    check_logits(STORIES, MOGE_QUANT_NONE);
    check_logits(TARGET, MOGE_QUANT_W8A8);
}

/* ------------------------------------------------------------------------------------------ */
/* the decoder against moge_generate alone                                                    */

typedef struct {
    int len, n_predict, join_at; /* join_at: the decoder step at which it is added */
} seq_case;

typedef struct {
    moge_model *target, *draft;
    moge_tokenizer *tok;
} models;

static bool load_models(models *ms) {
    char err[512];
    ms->target = test_load(TARGET, MOGE_BACKEND_CPU, 2);
    ms->draft = test_load(DRAFT, MOGE_BACKEND_CPU, 1);
    ms->tok = NULL;
    CHECKF(moge_tokenizer_load(TARGET, &ms->tok, err, sizeof err) == MOGE_OK, "%s", err);
    return ms->target && ms->draft && ms->tok;
}

static void free_models(models *ms) {
    moge_model_free(ms->target);
    moge_model_free(ms->draft);
    moge_tokenizer_free(ms->tok);
}

enum { D_NONE, D_MODEL, D_LOOKUP, D_SHARED }; /* D_SHARED: one model drafter for every sequence of the batch */

static moge_drafter *new_drafter(models *ms, int kind) {
    char err[512];
    moge_drafter *d = NULL;
    if (kind == D_MODEL || kind == D_SHARED) CHECKF(moge_drafter_new_model(ms->draft, ms->tok, ms->tok, 512, &d, err, sizeof err) == MOGE_OK, "%s", err);
    if (kind == D_LOOKUP) CHECKF(moge_drafter_new_lookup(3, &d, err, sizeof err) == MOGE_OK, "%s", err);
    return d;
}

static moge_generate_params params_for(int kind, moge_spec_mode mode, moge_drafter *d, float temp, uint64_t seed, int n_predict) {
    moge_generate_params gp = moge_generate_default_params();
    gp.sampler.temperature = temp;
    gp.sampler.seed = seed;
    gp.n_predict = n_predict;
    gp.adaptive = false;
    if (kind != D_NONE) {
        gp.spec = mode;
        gp.drafter = d;
    }
    return gp;
}

/* Runs the cases through one decoder (n_seq slots, n_batch rows) and alone; counts sequences
 * whose tokens differ. */
static int run_cases_ex(models *ms, const seq_case *cases, int n, int n_seq, int n_batch, int kind, moge_spec_mode mode, float temp,
                        bool adaptive) {
    moge_context *ctx = ctx_seqs(ms->target, 256, n_seq, n_batch), *alone = ctx_seqs(ms->target, 256, 1, 64);
    moge_decoder *dec = NULL;
    if (!ctx || !alone || moge_decoder_new(ctx, &dec) != MOGE_OK) {
        CHECK(0);
        moge_context_free(ctx);
        moge_context_free(alone);
        return n;
    }
    test_ids *got = calloc((size_t)n, sizeof *got), want;
    moge_drafter **dr = calloc((size_t)n, sizeof *dr);
    int32_t *id = calloc((size_t)n, sizeof(int32_t));
    int32_t prompt[64];
    int added = 0, step = 0, diff = 0;
    for (int i = 0; i < n; i++) id[i] = -1;
    moge_drafter *shared = NULL;
    if (kind == D_SHARED) {
        char err[512];
        CHECKF(moge_drafter_new_model_seqs(ms->draft, ms->tok, ms->tok, 512, n_seq, &shared, err, sizeof err) == MOGE_OK, "%s", err);
    }
    while (step < 5000) {
        for (int i = 0; i < n; i++) {
            if (id[i] != -1 || cases[i].join_at > step) continue;
            if (!dr[i]) dr[i] = new_drafter(ms, kind);
            make_prompt(i, cases[i].len, prompt);
            moge_generate_params gp = params_for(kind, mode, shared ? shared : dr[i], temp, 100 + (uint64_t)i, cases[i].n_predict);
            gp.adaptive = adaptive;
            moge_status st = moge_decoder_add(dec, prompt, cases[i].len, &gp, test_collect, &got[i], &id[i]);
            if (st == MOGE_ERR_CONTEXT_FULL) { /* every slot taken: free the stopped ones */
                for (int j = 0; j < n; j++) {
                    bool stopped = false;
                    if (id[j] >= 0 && moge_decoder_seq_stats(dec, id[j], NULL, &stopped, NULL) == MOGE_OK && stopped) {
                        CHECK(moge_decoder_remove(dec, id[j]) == MOGE_OK);
                        id[j] = -2; /* done */
                    }
                }
                st = moge_decoder_add(dec, prompt, cases[i].len, &gp, test_collect, &got[i], &id[i]);
                if (st == MOGE_ERR_CONTEXT_FULL) { id[i] = -1; continue; } /* next step */
            }
            CHECKF(st == MOGE_OK, "add: %s", moge_context_error(ctx));
            added++;
        }
        int32_t running = 0;
        CHECKF(moge_decoder_step(dec, &running) == MOGE_OK, "%s", moge_context_error(ctx));
        step++;
        if (running == 0 && added == n) break;
    }
    CHECKF(step < 5000, "the decoder did not finish");
    for (int i = 0; i < n; i++) {
        make_prompt(i, cases[i].len, prompt);
        moge_generate_params gp = params_for(kind, mode, dr[i], temp, 100 + (uint64_t)i, cases[i].n_predict);
        gp.adaptive = adaptive;
        CHECK(test_generate(alone, prompt, cases[i].len, &gp, &want, NULL) == MOGE_OK);
        if (want.n != got[i].n || memcmp(want.ids, got[i].ids, (size_t)want.n * sizeof(int32_t)) != 0) {
            int at = 0;
            while (at < want.n && at < got[i].n && want.ids[at] == got[i].ids[at]) at++;
            printf("  batch of %d, sequence %d: differs at token %d (lengths %d alone, %d in the batch)\n", n, i, at, want.n, got[i].n);
            diff++;
        }
        moge_drafter_free(dr[i]);
    }
    moge_decoder_free(dec);
    moge_drafter_free(shared);
    moge_context_free(ctx);
    moge_context_free(alone);
    free(got); free(dr); free(id);
    return diff;
}

static int run_cases(models *ms, const seq_case *cases, int n, int n_seq, int n_batch, int kind, moge_spec_mode mode, float temp) {
    return run_cases_ex(ms, cases, n, n_seq, n_batch, kind, mode, temp, false);
}

static const seq_case CASES8[8] = {
    {5, 40, 0}, {23, 25, 0}, {1, 60, 0}, {40, 12, 0}, {9, 50, 3}, {14, 30, 3}, {31, 45, 7}, {2, 20, 12},
};

static void test_greedy_equals_alone(void) {
    models ms;
    if (!load_models(&ms)) { free_models(&ms); return; }
    static const seq_case one[1] = {{12, 40, 0}}, three[3] = {{3, 30, 0}, {20, 45, 0}, {8, 15, 2}};
    static const struct { int kind; moge_spec_mode mode; const char *name; } modes[6] = {
        {D_NONE, MOGE_SPEC_NONE, "target only"}, {D_MODEL, MOGE_SPEC_CHAIN, "draft chain"},
        {D_MODEL, MOGE_SPEC_TREE, "draft tree"}, {D_LOOKUP, MOGE_SPEC_TREE, "lookup"},
        {D_SHARED, MOGE_SPEC_CHAIN, "shared draft chain"}, {D_SHARED, MOGE_SPEC_TREE, "shared draft tree"}};
    for (int k = 0; k < 6; k++) {
        int d1 = run_cases(&ms, one, 1, 1, 64, modes[k].kind, modes[k].mode, 0);
        int d3 = run_cases(&ms, three, 3, 3, 128, modes[k].kind, modes[k].mode, 0);
        int d8 = run_cases(&ms, CASES8, 8, 8, 256, modes[k].kind, modes[k].mode, 0);
        /* 8 sequences through 3 slots: joining as slots free up */
        int d8s = run_cases(&ms, CASES8, 8, 3, 128, modes[k].kind, modes[k].mode, 0);
        printf("  %s: sequences differing: batch 1 %d, 3 %d, 8 %d, 8 in 3 slots %d\n", modes[k].name, d1, d3, d8, d8s);
        CHECK(d1 == 0 && d3 == 0 && d8 == 0 && d8s == 0);
    }
    /* a row budget smaller than the trees: each sequence's tree is cut to fit, still exact */
    int small = run_cases(&ms, CASES8, 8, 8, 20, D_MODEL, MOGE_SPEC_TREE, 0);
    printf("  draft tree, 8 sequences in 20-row passes: %d differing\n", small);
    CHECK(small == 0);
    /* the planner sharing one pass among the sequences (the cost model fixed: its choices then
     * depend on the acceptance counts only), per-sequence and shared drafters */
    setenv("MOGE_PLAN_COST", "0.001,0.0002,0", 1);
    int pa = run_cases_ex(&ms, CASES8, 8, 8, 256, D_MODEL, MOGE_SPEC_TREE, 0, true);
    int pb = run_cases_ex(&ms, CASES8, 8, 3, 64, D_SHARED, MOGE_SPEC_TREE, 0, true);
    unsetenv("MOGE_PLAN_COST");
    int pc = run_cases_ex(&ms, CASES8, 8, 8, 128, D_SHARED, MOGE_SPEC_CHAIN, 0, true); /* calibrated */
    printf("  planner: %d, %d (3 slots), %d (calibrated) differing\n", pa, pb, pc);
    CHECK(pa == 0 && pb == 0 && pc == 0);
    free_models(&ms);
}

static void test_sampled_same_seed(void) {
    models ms;
    if (!load_models(&ms)) { free_models(&ms); return; }
    int a = run_cases(&ms, CASES8, 8, 8, 256, D_NONE, MOGE_SPEC_NONE, 0.8f);
    int b = run_cases(&ms, CASES8, 8, 8, 256, D_MODEL, MOGE_SPEC_TREE, 0.8f);
    int c = run_cases(&ms, CASES8, 8, 8, 256, D_MODEL, MOGE_SPEC_CHAIN, 1.0f);
    int e = run_cases(&ms, CASES8, 8, 8, 256, D_SHARED, MOGE_SPEC_TREE, 0.8f);
    printf("  sampled, same seed, sequences differing from alone: target only %d, tree %d, chain %d, shared drafter %d\n", a, b, c, e);
    CHECK(a == 0 && b == 0 && c == 0 && e == 0);
    free_models(&ms);
}

int main(void) {
    RUN_TESTS(T(test_logits_bit_identical), T(test_greedy_equals_alone), T(test_sampled_same_seed));
}
