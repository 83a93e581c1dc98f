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
#include "test_stats.h"
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
                int32_t stopped_ids[64], n_stopped = moge_decoder_stopped(dec, stopped_ids, 64), n_found = 0;
                for (int j = 0; j < n; j++) {
                    bool stopped = false;
                    if (id[j] >= 0 && moge_decoder_seq_stats(dec, id[j], NULL, &stopped, NULL) == MOGE_OK && stopped) {
                        bool listed = false;
                        for (int k = 0; k < n_stopped; k++) listed = listed || stopped_ids[k] == id[j];
                        CHECK(listed);
                        n_found++;
                        CHECK(moge_decoder_remove(dec, id[j]) == MOGE_OK);
                        id[j] = -2; /* done */
                    }
                }
                CHECK(n_found == n_stopped && moge_decoder_stopped(dec, NULL, 0) == 0);
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
    /* rows too dear to pay: plain steps, and probes in which only some sequences draft */
    setenv("MOGE_PLAN_COST", "0.001,0.01", 1);
    int pd = run_cases_ex(&ms, CASES8, 8, 8, 256, D_SHARED, MOGE_SPEC_TREE, 0, true);
    unsetenv("MOGE_PLAN_COST");
    int pc = run_cases_ex(&ms, CASES8, 8, 8, 128, D_SHARED, MOGE_SPEC_CHAIN, 0, true); /* calibrated */
    printf("  planner: %d, %d (3 slots), %d (probing), %d (calibrated) differing\n", pa, pb, pd, pc);
    CHECK(pa == 0 && pb == 0 && pd == 0 && pc == 0);
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

/* ------------------------------------------------------------------------------------------ */
/* sampled speculation in batches: the distribution of target-only sampling                    */

#define N_POS 4 /* tokens 2..5 */

/* n_seeds generations of N_POS + 1 tokens of one prompt, seed k = 1000003 k + 17: alone with
 * moge_generate (gp->drafter NULL: target only), or in decoders of 8 sequences with one drafter
 * serving them all. */
static void sample_batched(moge_model *m, moge_drafter *shared, const moge_generate_params *gp, int n_seeds, int32_t (*out)[N_POS],
                           moge_stats *sum) {
    int32_t prompt[3] = {1, 359, 329};
    moge_context *ctx = ctx_seqs(m, 64, 8, 256);
    if (!ctx) return;
    test_ids ids[8];
    for (int first = 0; first < n_seeds; first += 8) {
        moge_decoder *dec = NULL;
        CHECK(moge_decoder_new(ctx, &dec) == MOGE_OK);
        int n = n_seeds - first < 8 ? n_seeds - first : 8;
        for (int k = 0; k < n; k++) {
            moge_generate_params g = *gp;
            g.sampler.seed = 1000003ull * (uint64_t)(first + k) + 17;
            if (shared) {
                g.spec = MOGE_SPEC_TREE;
                g.drafter = shared;
            }
            ids[k].n = 0;
            int32_t id;
            if (shared) CHECK(moge_decoder_add(dec, prompt, 3, &g, test_collect, &ids[k], &id) == MOGE_OK);
            else {
                moge_seq_kv_truncate(ctx, 0, 0);
                CHECK(moge_generate(ctx, prompt, 3, &g, test_collect, &ids[k], NULL) == MOGE_OK);
            }
        }
        for (int32_t running = 1; shared && running > 0;) CHECK(moge_decoder_step(dec, &running) == MOGE_OK);
        for (int k = 0; k < n && shared && sum; k++) {
            moge_stats st;
            CHECK(moge_decoder_seq_stats(dec, k, &st, NULL, NULL) == MOGE_OK);
            sum->n_draft_nodes += st.n_draft_nodes;
            sum->n_draft_proposed += st.n_draft_proposed;
            sum->n_plain_steps += st.n_plain_steps;
            sum->n_forward += st.n_forward;
        }
        moge_decoder_free(dec);
        for (int k = 0; k < n; k++)
            for (int p = 0; p < N_POS; p++) out[first + k][p] = p + 1 < ids[k].n ? ids[k].ids[p + 1] : 0;
    }
    moge_context_free(ctx);
}

static void test_sampled_distribution(void) {
    int n_seeds = 2000;
    const char *env = getenv("MOGE_TEST_SEEDS"); /* make asan: fewer */
    if (env && atoi(env) > 0 && atoi(env) < n_seeds) n_seeds = atoi(env);
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 1);
    if (!m) return;
    char err[512];
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip_seqs(m, 4, 64, 8, &d, err, sizeof err) == MOGE_OK, "%s", err);
    int32_t (*base)[N_POS] = calloc((size_t)n_seeds, sizeof *base), (*spec)[N_POS] = calloc((size_t)n_seeds, sizeof *spec);
    int32_t *x = malloc((size_t)n_seeds * sizeof(int32_t)), *y = malloc((size_t)n_seeds * sizeof(int32_t));
    static const int32_t shape[3] = {3, 2, 1};
    moge_generate_params gp = moge_generate_default_params();
    gp.n_predict = N_POS + 1;
    gp.sampler.temperature = 0.7f;
    gp.sampler.top_k = 0;
    gp.sampler.top_p = 0.9f;
    sample_batched(m, NULL, &gp, n_seeds, base, NULL);
    for (int planner = 0; planner < 2 && d; planner++) {
        moge_generate_params sg = gp;
        sg.draft.draft_max = 4;
        sg.draft.sampled = true; /* children drawn from the draft: rejection sampling */
        sg.draft.shape = shape;
        sg.draft.n_shape = 3;
        sg.adaptive = planner == 1;
        if (planner) setenv("MOGE_PLAN_COST", "1,0.01", 1); /* rows cheap enough that a batch of 8 speculates */
        moge_stats sum = {0};
        sample_batched(m, d, &sg, n_seeds, spec, &sum);
        unsetenv("MOGE_PLAN_COST");
        printf("  %lld of %lld drafted nodes verified, %d plain steps of %d\n", (long long)sum.n_draft_nodes, (long long)sum.n_draft_proposed,
               sum.n_plain_steps, sum.n_forward);
        CHECK(sum.n_draft_nodes > 0); /* speculation ran, */
        if (planner) CHECK(sum.n_draft_nodes < sum.n_draft_proposed); /* and the planner cut trees */
        double worst = 0;
        int fails = 0;
        for (int k = 0; k <= N_POS; k++) { /* 4 marginals, then the joint of tokens 2 and 3 */
            for (int s = 0; s < n_seeds; s++) {
                x[s] = k < N_POS ? base[s][k] : base[s][0] * 512 + base[s][1];
                y[s] = k < N_POS ? spec[s][k] : spec[s][0] * 512 + spec[s][1];
            }
            int dof;
            double chi = chi2_two_sample(x, y, n_seeds, k < N_POS ? 512 : 512 * 512, &dof), crit = chi2_critical(dof);
            if (chi / crit > worst) worst = chi / crit;
            fails += chi > crit;
        }
        printf("  batches of 8, T=0.7 top-p 0.9, sampled tree {3,2,1}%s: worst chi2 / critical %.2f over %d seeds\n",
               planner ? " + planner" : "", worst, n_seeds);
        CHECK(fails == 0);
    }
    free(base); free(spec); free(x); free(y);
    moge_drafter_free(d);
    moge_model_free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* bad input, and one sequence's failure                                                       */

/* A drafter that proposes one child of the root and fails on its third proposal. */
typedef struct { int calls; } failing;

static moge_status fail_propose(void *self, const int32_t *h, int32_t nh, const moge_draft_params *dp, const moge_sampler_params *sp,
                                moge_tree *tree) {
    (void)h; (void)nh; (void)dp; (void)sp;
    failing *f = self;
    if (++f->calls == 3) return MOGE_ERR_FORMAT;
    moge_tree_add(tree, 0, 5, -1.0f);
    return MOGE_OK;
}
static moge_status fail_accept(void *self, const moge_tree *t, const int32_t *p, int32_t n) {
    (void)self; (void)t; (void)p; (void)n;
    return MOGE_OK;
}

static void test_bad_input(void) {
    models ms;
    if (!load_models(&ms)) { free_models(&ms); return; }
    char err[512];
    moge_context *ctx = ctx_seqs(ms.target, 64, 3, 64);
    moge_decoder *dec = NULL;
    if (!ctx || moge_decoder_new(ctx, &dec) != MOGE_OK) { CHECK(0); goto out; }
    int32_t prompt[80], id = -1;
    make_prompt(1, 80, prompt);
    moge_generate_params gp = params_for(D_NONE, MOGE_SPEC_NONE, NULL, 0, 1, 20);
    /* a prompt longer than a sequence's slots */
    CHECK(moge_decoder_add(dec, prompt, 70, &gp, NULL, NULL, &id) == MOGE_ERR_CONTEXT_FULL && id == -1);
    CHECKF(strstr(moge_context_error(ctx), "64 slots") != NULL, "%s", moge_context_error(ctx));
    /* bad ids */
    int32_t bad[3] = {1, 5000, 3};
    CHECK(moge_decoder_add(dec, bad, 3, &gp, NULL, NULL, &id) == MOGE_ERR_ARG);
    CHECKF(strstr(moge_context_error(ctx), "5000") != NULL, "%s", moge_context_error(ctx));
    CHECK(moge_decoder_add(dec, prompt, 0, &gp, NULL, NULL, &id) == MOGE_ERR_ARG);
    /* a one-sequence drafter for two sequences */
    moge_drafter *one = new_drafter(&ms, D_MODEL), *many = NULL;
    moge_generate_params sp = params_for(D_MODEL, MOGE_SPEC_TREE, one, 0, 1, 20);
    int32_t a = -1, b = -1, c = -1;
    CHECK(moge_decoder_add(dec, prompt, 5, &sp, NULL, NULL, &a) == MOGE_OK);
    CHECK(moge_decoder_add(dec, prompt, 5, &sp, NULL, NULL, &b) == MOGE_ERR_ARG && b == -1);
    CHECKF(strstr(moge_context_error(ctx), "drafter") != NULL, "%s", moge_context_error(ctx));
    /* a drafter serving fewer sequences than the context's slot */
    CHECK(moge_drafter_new_model_seqs(ms.draft, ms.tok, ms.tok, 64, 2, &many, err, sizeof err) == MOGE_OK);
    sp.drafter = many;
    CHECK(moge_decoder_add(dec, prompt, 5, &sp, NULL, NULL, &b) == MOGE_OK && b == 1);
    CHECK(moge_decoder_add(dec, prompt, 5, &sp, NULL, NULL, &c) == MOGE_ERR_ARG);
    CHECKF(strstr(moge_context_error(ctx), "serves 2 sequences") != NULL, "%s", moge_context_error(ctx));
    CHECK(moge_decoder_add(dec, prompt, 5, &gp, NULL, NULL, &c) == MOGE_OK && c == 2);
    /* more sequences than slots */
    int32_t d4 = -1;
    CHECK(moge_decoder_add(dec, prompt, 5, &gp, NULL, NULL, &d4) == MOGE_ERR_CONTEXT_FULL && d4 == -1);
    CHECKF(strstr(moge_context_error(ctx), "n_seq 3") != NULL, "%s", moge_context_error(ctx));
    CHECK(moge_decoder_remove(dec, 7) == MOGE_ERR_ARG && moge_decoder_seq_stats(dec, 7, NULL, NULL, NULL) == MOGE_ERR_ARG);
    moge_decoder_free(dec); /* running sequences are ended */
    dec = NULL;
    moge_drafter_free(one);
    moge_drafter_free(many);
    /* moge_forward: rows of a sequence apart, a sequence out of range, a parent of another sequence */
    int32_t tok[4] = {5, 6, 7, 8}, seq_split[4] = {0, 1, 0, 1}, seq_far[4] = {0, 0, 3, 3}, par[4] = {-1, 0, -1, 1};
    int32_t seq_ok[4] = {0, 0, 1, 1};
    const float *lg;
    moge_batch bs = {.n = 4, .tokens = tok, .seq = seq_split};
    CHECK(moge_forward(ctx, &bs, &lg) == MOGE_ERR_ARG && strstr(moge_context_error(ctx), "not contiguous"));
    bs.seq = seq_far;
    CHECK(moge_forward(ctx, &bs, &lg) == MOGE_ERR_ARG && strstr(moge_context_error(ctx), "seq[2] = 3"));
    bs.seq = seq_ok;
    bs.parent = par; /* row 3's parent 1 is sequence 1's row 1: itself */
    CHECK(moge_forward(ctx, &bs, &lg) == MOGE_ERR_ARG && strstr(moge_context_error(ctx), "parent[3] = 1"));
    CHECK(moge_seq_kv_commit(ctx, 5, NULL, 0) == MOGE_ERR_ARG && moge_seq_kv_truncate(ctx, -1, 0) == MOGE_ERR_ARG);
    /* n_seq limits */
    moge_context_params cp = moge_context_default_params();
    moge_context *big = NULL;
    cp.n_seq = MOGE_MAX_SEQ + 1;
    CHECK(moge_context_new(ms.target, &cp, &big, err, sizeof err) == MOGE_ERR_ARG && !big);
    CHECKF(strstr(err, "n_seq") != NULL, "%s", err);
    cp.n_seq = -1;
    CHECK(moge_context_new(ms.target, &cp, &big, err, sizeof err) == MOGE_ERR_ARG && !big);
    /* one sequence's drafter fails: it stops with that status, the others are unchanged */
    {
        moge_context *c8 = ctx_seqs(ms.target, 128, 3, 64), *alone = ctx_seqs(ms.target, 128, 1, 64);
        failing f = {0};
        static const moge_drafter_iface fiface = {.propose = fail_propose, .accept = fail_accept};
        moge_drafter *fd = NULL, *d0 = new_drafter(&ms, D_MODEL), *d2 = new_drafter(&ms, D_MODEL);
        CHECK(moge_drafter_new_custom(&fiface, &f, &fd) == MOGE_OK);
        moge_decoder *dx = NULL;
        CHECK(c8 && alone && moge_decoder_new(c8, &dx) == MOGE_OK);
        test_ids got[3], want;
        moge_drafter *drs[3] = {d0, fd, d2};
        int32_t ids3[3];
        for (int i = 0; i < 3 && dx; i++) {
            make_prompt(i, 6 + i, prompt);
            moge_generate_params g = params_for(D_MODEL, MOGE_SPEC_TREE, drs[i], 0, 1, 30);
            got[i].n = 0;
            CHECK(moge_decoder_add(dx, prompt, 6 + i, &g, test_collect, &got[i], &ids3[i]) == MOGE_OK);
        }
        for (int32_t running = 1, steps = 0; dx && running > 0 && steps < 500; steps++)
            CHECK(moge_decoder_step(dx, &running) == MOGE_OK);
        moge_status st1 = MOGE_OK;
        bool stopped = false;
        CHECK(dx && moge_decoder_seq_stats(dx, ids3[1], NULL, &stopped, &st1) == MOGE_OK && stopped && st1 == MOGE_ERR_FORMAT);
        for (int i = 0; i < 3; i += 2) {
            make_prompt(i, 6 + i, prompt);
            moge_generate_params g = params_for(D_MODEL, MOGE_SPEC_TREE, drs[i], 0, 1, 30);
            CHECK(test_generate(alone, prompt, 6 + i, &g, &want, NULL) == MOGE_OK);
            CHECKF(want.n == got[i].n && memcmp(want.ids, got[i].ids, (size_t)want.n * sizeof(int32_t)) == 0,
                   "sequence %d changed when sequence 1 failed", i);
        }
        moge_decoder_free(dx);
        moge_drafter_free(fd); moge_drafter_free(d0); moge_drafter_free(d2);
        moge_context_free(c8);
        moge_context_free(alone);
    }
out:
    moge_decoder_free(dec);
    moge_context_free(ctx);
    free_models(&ms);
}

/* examples/batch.c, the library's decoder example, next to the binary: $(BUILD)/examples/batch.
 * Its four texts equal moge_generate's for the same prompts alone (the demo pair, greedy). */
static void test_library_example(void) {
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "\"$(dirname %s)/examples/batch\" >build/test_batch_example.out 2>&1 </dev/null", bin);
    int rc = system(cmd);
    FILE *f = fopen("build/test_batch_example.out", "rb");
    char out[16384] = {0};
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    if (f) fclose(f);
    out[n] = 0;
    CHECKF(rc == 0, "examples/batch failed: %s", out);
    models ms;
    if (!load_models(&ms)) { free_models(&ms); return; }
    static const char *const prompts[4] = {"Once upon a time", "The little dog", "Lily and Ben", "One day, the sun"};
    moge_context *alone = ctx_seqs(ms.target, 256, 1, 64);
    for (int i = 0; i < 4 && alone; i++) {
        int32_t ids[64];
        size_t n_ids = 0;
        CHECK(moge_tokenize(ms.tok, prompts[i], strlen(prompts[i]), true, ids, 64, &n_ids) == MOGE_OK);
        moge_generate_params gp = moge_generate_default_params();
        gp.n_predict = 48;
        gp.sampler.temperature = 0;
        test_ids want;
        CHECK(test_generate(alone, ids, (int)n_ids, &gp, &want, NULL) == MOGE_OK);
        int32_t all[128];
        memcpy(all, ids, n_ids * sizeof(int32_t));
        memcpy(all + n_ids, want.ids, (size_t)want.n * sizeof(int32_t));
        char text[4096], line[4200];
        size_t len = 0;
        size_t skip = moge_tokenizer_is_special(ms.tok, all[0]); /* the BOS */
        CHECK(moge_detokenize(ms.tok, all + skip, n_ids + (size_t)want.n - skip, text, sizeof text, &len) == MOGE_OK);
        snprintf(line, sizeof line, "[%d] %s\n", i, text[0] == ' ' ? text + 1 : text);
        CHECKF(strstr(out, line) != NULL, "examples/batch: sequence %d is not \"%s\":\n%s", i, line, out);
    }
    CHECKF(strstr(out, "tokens in") && strstr(out, "target passes"), "%s", out);
    moge_context_free(alone);
    free_models(&ms);
}

int main(void) {
    RUN_TESTS(T(test_logits_bit_identical), T(test_greedy_equals_alone), T(test_sampled_same_seed), T(test_sampled_distribution),
              T(test_bad_input), T(test_library_example));
}
