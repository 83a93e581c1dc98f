/*
 * test_speculative.c — speculative decoding is lossless:
 *  - greedy: for 20 prompts, each proposer (a separate draft model, layer-skip self-draft, prompt
 *    lookup) and each tree shape (chain, static tree, dynamic tree), speculative output equals
 *    target-only output token for token (stories260K; a random Pangu MoGE model with a layer-skip
 *    draft);
 *  - sampling: over 2000 seeds, tokens 2..5 with speculation are distributed as without it
 *    (per-position marginals and the joint of tokens 2 and 3, chi-square homogeneity at a fixed
 *    threshold), at temperature 1.0 and at 0.7 with top-p 0.9, for chain and tree drafts; a
 *    deliberately wrong acceptance rule run through the same check must be detected;
 *  - KV rollback: after many accept/reject cycles the target's cache equals a fresh prefill of the
 *    emitted sequence, bit for bit;
 *  - statistics: τ = emitted / target passes; per-depth acceptance adds up;
 *  - a draft with another tokenizer is refused.
 */
#include <stdint.h>

#include "harness.h"
#include "test_model.h"
#include "moge.h"
#include "draft/drafter.h"
#include "runtime/context.h"
#include "sampling/sampling.h"
#include "test_stats.h"

#define STORIES "models/stories260K"
#define PANGU "tests/fixtures/moe/pangu_64e8g_bf16"

static moge_model *load_threads(const char *dir, int n_threads) { return test_load(dir, MOGE_BACKEND_CPU, n_threads); }
static moge_model *load(const char *dir) { return load_threads(dir, 2); }
static moge_context *new_ctx(moge_model *m, int n_ctx) { return test_new_ctx(m, n_ctx); }

/* 20 prompts of real TinyStories-like ids (BOS first), and random ones for the random model. */
static void make_prompt(int i, int n_vocab, int32_t *p, int *n) {
    static const int32_t seeds[][6] = {
        {403, 407, 261, 378}, {317, 269, 274, 287}, {346, 306, 414}, {359, 329, 421, 417}, {291, 410, 456, 425},
        {403, 407}, {317}, {289, 280, 261}, {411, 303, 299}, {263, 377, 267, 265}, {282, 295, 433}, {426, 359},
        {340, 268, 420}, {327, 416, 272}, {414, 444, 410}, {449, 425, 423}, {427, 419, 334}, {330, 265, 278},
        {412, 451, 422}, {400, 428, 443},
    };
    p[0] = 1;
    *n = 1;
    for (int k = 0; k < 6 && seeds[i][k]; k++) p[(*n)++] = seeds[i][k] % n_vocab;
}

static void check_greedy(const char *what, moge_context *ctx, moge_drafter *d, moge_spec_mode mode, const int32_t *shape,
                         int n_shape, int n_vocab, int n_predict, int *n_same, int *n_runs, double *tau) {
    moge_generate_params base = moge_generate_default_params();
    base.sampler.temperature = 0;
    base.n_predict = n_predict;
    moge_generate_params spec = base;
    spec.spec = mode;
    spec.drafter = d;
    spec.draft.shape = shape;
    spec.draft.n_shape = n_shape;
    spec.adaptive = false;
    *tau = 0;
    for (int i = 0; i < 20; i++) {
        int32_t prompt[8];
        int np;
        make_prompt(i, n_vocab, prompt, &np);
        test_ids a, b;
        moge_stats sa, sb;
        CHECK(test_generate(ctx, prompt, np, &base, &a, &sa) == MOGE_OK);
        CHECK(test_generate(ctx, prompt, np, &spec, &b, &sb) == MOGE_OK);
        int same = a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * sizeof(int32_t)) == 0;
        if (!same) {
            int at = 0;
            while (at < a.n && at < b.n && a.ids[at] == b.ids[at]) at++;
            printf("  %s prompt %d: differs at token %d (%d vs %d), lengths %d/%d\n", what, i, at, at < a.n ? a.ids[at] : -1,
                   at < b.n ? b.ids[at] : -1, a.n, b.n);
        }
        *n_same += same;
        (*n_runs)++;
        *tau += sb.mean_accepted / 20;
    }
}

static void test_greedy_stories(void) {
    moge_model *m = load(STORIES), *dm = load(STORIES);
    char err[512];
    moge_tokenizer *tok = NULL;
    CHECKF(moge_tokenizer_load(STORIES, &tok, err, sizeof err) == MOGE_OK, "%s", err);
    if (!m || !dm || !tok) return;
    moge_context *ctx = new_ctx(m, 512);
    moge_drafter *drafters[3] = {NULL, NULL, NULL};
    CHECKF(moge_drafter_new_model(dm, tok, tok, 512, &drafters[0], err, sizeof err) == MOGE_OK, "%s", err);
    CHECKF(moge_drafter_new_layer_skip(m, 2, 512, &drafters[1], err, sizeof err) == MOGE_OK, "%s", err);
    CHECKF(moge_drafter_new_lookup(3, &drafters[2], err, sizeof err) == MOGE_OK, "%s", err);
    static const char *names[3] = {"draft model", "layer-skip 2", "lookup"};
    static const int32_t shape[5] = {4, 2, 2, 1, 1};
    for (int di = 0; di < 3; di++) {
        if (!drafters[di]) continue;
        int same = 0, runs = 0;
        double t_chain, t_static, t_dyn;
        check_greedy(names[di], ctx, drafters[di], MOGE_SPEC_CHAIN, NULL, 0, 512, 120, &same, &runs, &t_chain);
        check_greedy(names[di], ctx, drafters[di], MOGE_SPEC_TREE, shape, 5, 512, 120, &same, &runs, &t_static);
        check_greedy(names[di], ctx, drafters[di], MOGE_SPEC_TREE, NULL, 0, 512, 120, &same, &runs, &t_dyn);
        printf("  %s: %d/%d identical; mean tau chain %.2f, static tree %.2f, dynamic tree %.2f\n", names[di], same, runs, t_chain,
               t_static, t_dyn);
        CHECK(same == runs);
        moge_drafter_free(drafters[di]);
    }
    moge_context_free(ctx);
    moge_tokenizer_free(tok);
    moge_model_free(m);
    moge_model_free(dm);
}

static void test_greedy_moge_layer_skip(void) {
    moge_model *m = load(PANGU);
    if (!m) return;
    char err[512];
    moge_context *ctx = new_ctx(m, 128);
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip(m, 1, 128, &d, err, sizeof err) == MOGE_OK, "%s", err);
    int same = 0, runs = 0;
    double t1, t2;
    static const int32_t shape[3] = {3, 2, 1};
    check_greedy("pangu layer-skip", ctx, d, MOGE_SPEC_CHAIN, NULL, 0, 97, 60, &same, &runs, &t1);
    check_greedy("pangu layer-skip", ctx, d, MOGE_SPEC_TREE, shape, 3, 97, 60, &same, &runs, &t2);
    printf("  pangu MoGE + layer-skip(1): %d/%d identical; tau chain %.2f, tree %.2f\n", same, runs, t1, t2);
    CHECK(same == runs);
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_model_free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* KV rollback and statistics                                                                 */

static void test_rollback_and_stats(void) {
    moge_model *m = load(STORIES);
    if (!m) return;
    char err[512];
    moge_context *ctx = new_ctx(m, 512), *fresh = new_ctx(m, 512);
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip(m, 1, 512, &d, err, sizeof err) == MOGE_OK, "%s", err);
    moge_generate_params gp = moge_generate_default_params();
    gp.sampler.temperature = 0.9f;
    gp.sampler.seed = 3;
    gp.n_predict = 300;
    gp.spec = MOGE_SPEC_TREE;
    gp.drafter = d;
    gp.adaptive = false;
    int32_t prompt[3] = {1, 403, 407};
    test_ids out;
    moge_stats st;
    CHECK(test_generate(ctx, prompt, 3, &gp, &out, &st) == MOGE_OK);
    CHECKF(st.n_forward > 50, "only %d verification passes", st.n_forward);
    /* the cache holds prompt + emitted but the last: compare with a fresh prefill, bit for bit */
    int32_t seq[512];
    int n = 0;
    for (int i = 0; i < 3; i++) seq[n++] = prompt[i];
    for (int i = 0; i + 1 < out.n; i++) seq[n++] = out.ids[i];
    CHECKF(moge_context_n_past(ctx) == n, "n_past %d, expected %d", moge_context_n_past(ctx), n);
    for (int done = 0; done < n;) {
        int chunk = n - done < 64 ? n - done : 64;
        const float *lg;
        moge_batch b = {.n = chunk, .tokens = seq + done};
        CHECK(moge_forward(fresh, &b, &lg) == MOGE_OK && moge_kv_commit(fresh, NULL, chunk) == MOGE_OK);
        done += chunk;
    }
    const model_config *c = &m->cfg;
    int64_t diffs = 0;
    for (int64_t lh = 0; lh < (int64_t)c->n_layer * c->n_head_kv; lh++) {
        size_t bytes = (size_t)n * c->head_dim * sizeof(float);
        diffs += memcmp(ctx->k_cache + lh * ctx->kv_cap * c->head_dim, fresh->k_cache + lh * fresh->kv_cap * c->head_dim, bytes) != 0;
        diffs += memcmp(ctx->v_cache + lh * ctx->kv_cap * c->head_dim, fresh->v_cache + lh * fresh->kv_cap * c->head_dim, bytes) != 0;
    }
    CHECKF(diffs == 0, "%lld layer/head blocks of the KV cache differ from a fresh prefill", (long long)diffs);
    /* τ and per-depth acceptance */
    CHECK(st.n_generated == out.n);
    CHECK(fabs(st.mean_accepted - (double)st.n_generated / (st.n_forward + 1)) < 1e-12);
    int64_t hits = 0;
    for (int dd = 1; dd < MOGE_MAX_DEPTH; dd++) {
        CHECK(st.accept_hits[dd] <= st.accept_tries[dd]);
        if (dd + 1 < MOGE_MAX_DEPTH) CHECK(st.accept_tries[dd + 1] <= st.accept_hits[dd]);
        hits += st.accept_hits[dd];
    }
    /* every pass emits its accepted draft tokens plus one; the last may be cut by n_predict */
    CHECKF(st.n_generated <= 1 + st.n_forward + hits && st.n_generated >= 1 + st.n_forward + hits - gp.draft.draft_max - 1,
           "emitted %d, passes %d, accepted draft tokens %lld", st.n_generated, st.n_forward, (long long)hits);
    CHECK(st.accept_tries[1] == st.n_forward || st.accept_tries[1] <= st.n_forward);
    printf("  tau %.2f over %d passes; acceptance by depth:", st.mean_accepted, st.n_forward);
    for (int dd = 1; dd <= 6; dd++) printf(" %.2f", st.accept_tries[dd] ? (double)st.accept_hits[dd] / st.accept_tries[dd] : 0.0);
    printf("\n");
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_context_free(fresh);
    moge_model_free(m);
}

/* A second call continues the same context (a conversation): with context_tokens the drafter
 * sees the earlier turn; greedy output still equals target-only output. */
static void test_second_turn(void) {
    moge_model *m = load(STORIES);
    if (!m) return;
    char err[512];
    moge_context *ctx = new_ctx(m, 512);
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip(m, 3, 512, &d, err, sizeof err) == MOGE_OK, "%s", err);
    int32_t turn1[3] = {1, 403, 407}, turn2[2] = {291, 410};
    test_ids outs[2][2];
    for (int spec = 0; spec < 2; spec++) {
        moge_generate_params gp = moge_generate_default_params();
        gp.sampler.temperature = 0;
        gp.n_predict = 40;
        gp.spec = spec ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
        gp.drafter = spec ? d : NULL;
        gp.adaptive = false;
        CHECK(test_generate(ctx, turn1, 3, &gp, &outs[spec][0], NULL) == MOGE_OK);
        int32_t hist[64];
        int n = 0;
        for (int i = 0; i < 3; i++) hist[n++] = turn1[i];
        for (int i = 0; i + 1 < outs[spec][0].n; i++) hist[n++] = outs[spec][0].ids[i];
        CHECK(moge_context_n_past(ctx) == n);
        int32_t prompt[3] = {outs[spec][0].ids[outs[spec][0].n - 1], turn2[0], turn2[1]};
        gp.context_tokens = hist;
        gp.n_context_tokens = n;
        outs[spec][1].n = 0;
        CHECK(moge_generate(ctx, prompt, 3, &gp, test_collect, &outs[spec][1], NULL) == MOGE_OK);
        gp.n_context_tokens = n - 1; /* must be exactly what the context holds */
        CHECK(moge_generate(ctx, prompt, 1, &gp, NULL, NULL, NULL) == MOGE_ERR_ARG);
    }
    { /* a failing verification leaves a message like every failing call (one error channel) */
        moge_tree tree;
        uint64_t rng = 1;
        int32_t path[4];
        moge_verify_result res;
        CHECK(moge_tree_init(&tree, 4) == MOGE_OK);
        moge_sampler_params sp = moge_sampler_default_params();
        CHECK(moge_verify_tree(ctx, &tree, &sp, NULL, 0, &rng, path, NULL) == MOGE_ERR_ARG &&
              strstr(moge_context_error(ctx), "res is NULL"));
        CHECK(moge_verify_trees(ctx, NULL, 1) == MOGE_ERR_ARG && strstr(moge_context_error(ctx), "items is NULL"));
        moge_tree_free(&tree);
        (void)res;
    }
    for (int t = 0; t < 2; t++)
        CHECKF(outs[0][t].n == outs[1][t].n && memcmp(outs[0][t].ids, outs[1][t].ids, (size_t)outs[0][t].n * sizeof(int32_t)) == 0,
               "turn %d differs with speculation", t + 1);
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_model_free(m);
}

static void test_refuses_other_tokenizer(void) {
    moge_model *m = load(STORIES);
    char err[512];
    moge_tokenizer *a = NULL, *b = NULL;
    CHECK(moge_tokenizer_load(STORIES, &a, err, sizeof err) == MOGE_OK);
    CHECK(moge_tokenizer_load("tests/fixtures/tokenizers/mistral/tokenizer.json", &b, err, sizeof err) == MOGE_OK);
    moge_drafter *d = (moge_drafter *)&err;
    if (m && a && b) {
        CHECK(moge_drafter_new_model(m, b, a, 0, &d, err, sizeof err) == MOGE_ERR_ARG && d == NULL);
        CHECKF(strstr(err, "tokenizer differs") != NULL, "%s", err);
    }
    moge_tokenizer_free(a);
    moge_tokenizer_free(b);
    moge_model_free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* distribution: chi-square homogeneity of emitted tokens 2..5                                 */

/* 2000 seeds; `make asan` sets MOGE_TEST_SEEDS lower (the sanitizers hunt memory errors, and the
 * statistics keep their threshold; only the negative control needs the full sample to have power). */
#define MAX_SEEDS 2000
static int N_SEEDS = MAX_SEEDS;
#define N_POS 4 /* tokens 2..5 */

typedef struct { int32_t tok[MAX_SEEDS][N_POS]; } samples;

/* A deliberately wrong speculative loop for the negative control: chain drafts from the
 * layer-skip drafter, accepted with min(1, p/q) — but on rejection it samples from p instead of
 * the residual max(0, p - q). It uses the library's lower-level calls. */
static void wrong_run(moge_context *ctx, moge_drafter *d, const moge_sampler_params *sp, const int32_t *prompt, int np, int32_t *out) {
    moge_kv_truncate(ctx, 0);
    int V = ctx->model->cfg.n_vocab;
    float *p = malloc((size_t)V * sizeof(float));
    int32_t *idx = malloc((size_t)V * sizeof(int32_t)), hist[64];
    uint64_t rng = sp->seed;
    const float *lg;
    moge_batch b = {.n = np, .tokens = prompt, .logits_last_only = true};
    moge_forward(ctx, &b, &lg);
    moge_kv_commit(ctx, NULL, np);
    memcpy(hist, prompt, (size_t)np * sizeof(int32_t));
    int nh = np, emitted = 0;
    int32_t first = sampling_choose(lg, V, sp, hist, nh, p, idx, &rng);
    hist[nh++] = first;
    emitted++;
    moge_tree tree;
    moge_tree_init(&tree, 8);
    moge_draft_params dp = moge_draft_default_params();
    dp.branch = 1; dp.tree_nodes = 3; dp.draft_max = 3; dp.sampled = true;
    d->iface.reset(d->self);
    while (emitted < N_POS + 1) {
        moge_tree_reset(&tree, hist[nh - 1]);
        d->iface.propose(d->self, hist, nh - 1, &dp, sp, &tree);
        moge_batch tb = {.n = tree.n, .tokens = tree.token, .parent = tree.parent};
        moge_forward(ctx, &tb, &lg);
        int32_t path[8] = {0}, n_path = 1, cur = 0;
        for (;;) {
            sampling_probs(lg + (int64_t)cur * V, V, sp, NULL, 0, p, idx);
            int32_t child = cur + 1 < tree.n && tree.parent[cur + 1] == cur ? cur + 1 : -1;
            if (child > 0) {
                int32_t x = tree.token[child];
                float q = tree.q[cur][x];
                if (rng_uniform(&rng) < (q > 0 ? p[x] / q : 1.0f)) { path[n_path++] = cur = child; continue; }
            }
            break; /* the bug: the bonus below comes from p, not from the residual */
        }
        int32_t bonus = sampling_draw(p, V, rng_uniform(&rng));
        moge_kv_commit(ctx, path, n_path);
        d->iface.accept(d->self, &tree, path, n_path);
        for (int i = 1; i < n_path; i++) hist[nh++] = tree.token[path[i]];
        hist[nh++] = bonus;
        emitted += n_path;
    }
    for (int k = 0; k < N_POS; k++) out[k] = hist[np + 1 + k];
    moge_tree_free(&tree);
    free(p);
    free(idx);
}

static void sample_many(moge_context *ctx, const moge_generate_params *gp, moge_drafter *wrong_d, samples *s) {
    int32_t prompt[3] = {1, 359, 329}; /* "I believe": a varied continuation */
    for (int seed = 0; seed < N_SEEDS; seed++) {
        moge_generate_params g = *gp;
        g.sampler.seed = 1000003ull * (uint64_t)seed + 17;
        if (wrong_d) {
            wrong_run(ctx, wrong_d, &g.sampler, prompt, 3, s->tok[seed]);
            continue;
        }
        test_ids out;
        test_generate(ctx, prompt, 3, &g, &out, NULL);
        for (int k = 0; k < N_POS; k++) s->tok[seed][k] = k + 1 < out.n ? out.ids[k + 1] : 0;
    }
}

/* Returns the number of failing comparisons (marginals of 4 positions + joint of positions 2,3). */
static int compare(const samples *a, const samples *b, const char *what, double *worst_ratio) {
    int fails = 0;
    *worst_ratio = 0;
    int32_t *x = malloc(N_SEEDS * sizeof(int32_t)), *y = malloc(N_SEEDS * sizeof(int32_t));
    for (int k = 0; k <= N_POS; k++) {
        int n_cat = k < N_POS ? 512 : 512 * 512;
        for (int s = 0; s < N_SEEDS; s++) {
            x[s] = k < N_POS ? a->tok[s][k] : a->tok[s][0] * 512 + a->tok[s][1];
            y[s] = k < N_POS ? b->tok[s][k] : b->tok[s][0] * 512 + b->tok[s][1];
        }
        int dof;
        double chi = chi2_two_sample(x, y, N_SEEDS, n_cat, &dof), crit = chi2_critical(dof);
        if (chi / crit > *worst_ratio) *worst_ratio = chi / crit;
        if (chi > crit) {
            fails++;
            printf("  %s: %s: chi2 %.1f > %.1f (dof %d)\n", what, k < N_POS ? "marginal" : "joint 2,3", chi, crit, dof);
        }
    }
    free(x);
    free(y);
    return fails;
}

static void test_sampling_distribution(void) {
    moge_model *m = load_threads(STORIES, 1);
    if (!m) return;
    char err[512];
    moge_context *ctx = new_ctx(m, 64);
    moge_drafter *d = NULL;
    /* 4 of 5 layers: about half of the draft tokens are accepted, so both acceptance and
     * rejection (and the wrong rule's bias) matter */
    CHECKF(moge_drafter_new_layer_skip(m, 4, 64, &d, err, sizeof err) == MOGE_OK, "%s", err);
    if (!d) return;
    samples *base = malloc(sizeof *base), *spec = malloc(sizeof *spec);
    static const int32_t shape[3] = {3, 2, 1};
    for (int setting = 0; setting < 2; setting++) {
        moge_generate_params gp = moge_generate_default_params();
        gp.n_predict = N_POS + 1;
        gp.sampler.temperature = setting == 0 ? 1.0f : 0.7f;
        gp.sampler.top_k = 0;
        gp.sampler.top_p = setting == 0 ? 1.0f : 0.9f;
        sample_many(ctx, &gp, NULL, base);
        /* Chain and tree{3,2,1} with children drawn from the draft (rejection sampling). Top-k
         * children with sample-and-match consume the RNG exactly as target-only sampling does, so
         * their output is identical per seed (the greedy tests cover them). */
        for (int mode = 0; mode < 3; mode++) {
            moge_generate_params sg = gp;
            sg.spec = mode == 0 ? MOGE_SPEC_CHAIN : MOGE_SPEC_TREE;
            sg.drafter = d;
            /* mode 2: the tree {3,2,1} cut by the planner (a fixed cost model, so its choices
             * depend on the acceptance counts only): a prefix of each node's draws */
            sg.adaptive = mode == 2;
            if (mode == 2) setenv("MOGE_PLAN_COST", "1,0.08", 1);
            sg.draft.draft_max = 4;
            sg.draft.sampled = true;
            sg.draft.shape = mode >= 1 ? shape : NULL;
            sg.draft.n_shape = mode >= 1 ? 3 : 0;
            sample_many(ctx, &sg, NULL, spec);
            if (mode == 2) { /* the planner did cut trees */
                moge_stats st;
                int32_t prompt[2] = {1, 403};
                moge_kv_truncate(ctx, 0);
                sg.n_predict = 64;
                CHECK(moge_generate(ctx, prompt, 2, &sg, NULL, NULL, &st) == MOGE_OK);
                printf("  planner: %lld of %lld sampled nodes verified, %d plain steps of %d\n", (long long)st.n_draft_nodes,
                       (long long)st.n_draft_proposed, st.n_plain_steps, st.n_forward);
                CHECK(st.n_draft_nodes > 0 && st.n_draft_nodes < st.n_draft_proposed);
                unsetenv("MOGE_PLAN_COST");
            }
            char what[96];
            snprintf(what, sizeof what, "T=%.1f top-p %.1f %s", gp.sampler.temperature, gp.sampler.top_p,
                     mode == 0 ? "chain" : mode == 1 ? "tree {3,2,1}" : "tree {3,2,1} + planner");
            double worst;
            int fails = compare(base, spec, what, &worst);
            printf("  %s: worst chi2 / critical %.2f\n", what, worst);
            CHECK(fails == 0);
        }
        /* Negative control: the wrong rule run through the same check. It is asserted at T=0.7
         * with top-p 0.9, where its bias is large (statistic about 2x the critical value here);
         * at T=1.0 it is printed only (about 1.2x: too close to the threshold to rely on across
         * CPUs whose kernels round differently). */
        sample_many(ctx, &gp, d, spec);
        double worst;
        int fails = compare(base, spec, "wrong rule (negative control)", &worst);
        printf("  wrong rule at T=%.1f: worst chi2 / critical %.2f\n", gp.sampler.temperature, worst);
        if (setting == 1 && N_SEEDS == MAX_SEEDS) CHECKF(fails > 0, "the wrong acceptance rule was not detected");
        else if (setting == 1) printf("  (negative control not asserted with %d seeds)\n", N_SEEDS);
    }
    free(base);
    free(spec);
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_model_free(m);
}

int main(void) {
    const char *seeds = getenv("MOGE_TEST_SEEDS");
    if (seeds && atoi(seeds) >= 100 && atoi(seeds) <= MAX_SEEDS) N_SEEDS = atoi(seeds);
    RUN_TESTS(T(test_greedy_stories), T(test_greedy_moge_layer_skip), T(test_rollback_and_stats), T(test_second_turn), T(test_refuses_other_tokenizer),
              T(test_sampling_distribution));
}
