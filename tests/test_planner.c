/*
 * test_planner.c — the speculation planner (verify/planner.c): the trees it verifies are valid
 * subtrees of the drafts (sampled children a prefix of their draws), output stays exactly the
 * target's when it prunes, goes plain or follows the real calibration, and the calibration cache
 * is written, read back, and survives a corrupt or unwritable cache.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "test_model.h"
#include "test_util.h"
#include "moge.h"
#include "runtime/context.h"
#include "verify/planner.h"

#define STORIES "models/stories260K"
#define PANGU "tests/fixtures/moe/pangu_64e8g_bf16"

static void make_prompt(int i, int32_t *p, int *n) {
    static const int32_t seeds[][4] = {
        {403, 407, 261, 378}, {317, 269, 274, 287}, {346, 306, 414}, {359, 329, 421, 417}, {291, 410, 456, 425},
        {403, 407}, {317}, {289, 280, 261}, {411, 303, 299}, {263, 377, 267, 265},
    };
    p[0] = 1;
    *n = 1;
    for (int k = 0; k < 4 && seeds[i][k]; k++) p[(*n)++] = seeds[i][k];
}

/* Greedy speculation with the planner on (cost: MOGE_PLAN_COST as given, NULL = calibrated) equals
 * target-only decoding on 10 prompts; returns the summed stats of the speculative runs. */
static void greedy_with_planner(const char *what, moge_context *ctx, moge_drafter *d, moge_spec_mode mode, const char *cost,
                                int n_vocab, moge_stats *sum) {
    if (cost) setenv("MOGE_PLAN_COST", cost, 1);
    else unsetenv("MOGE_PLAN_COST");
    moge_generate_params base = moge_generate_default_params();
    base.sampler.temperature = 0;
    base.n_predict = 80;
    moge_generate_params spec = base;
    spec.spec = mode;
    spec.drafter = d;
    spec.adaptive = true;
    memset(sum, 0, sizeof *sum);
    int same = 0;
    for (int i = 0; i < 10; i++) {
        int32_t prompt[8];
        int np;
        make_prompt(i, prompt, &np);
        for (int k = 0; k < np; k++) prompt[k] %= n_vocab;
        test_ids a, b;
        moge_stats sa, sb;
        CHECK(test_generate(ctx, prompt, np, &base, &a, &sa) == MOGE_OK);
        CHECKF(test_generate(ctx, prompt, np, &spec, &b, &sb) == MOGE_OK, "%s", moge_context_error(ctx));
        bool ok = a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * sizeof(int32_t)) == 0;
        if (!ok) printf("  %s (cost %s) prompt %d: output differs from target-only decoding\n", what, cost ? cost : "calibrated", i);
        same += ok;
        sum->n_generated += sb.n_generated;
        sum->n_forward += sb.n_forward;
        sum->n_draft_nodes += sb.n_draft_nodes;
        sum->n_draft_proposed += sb.n_draft_proposed;
        sum->n_plain_steps += sb.n_plain_steps;
        sum->predicted_speedup += sb.predicted_speedup / 10;
        sum->expert_bytes_read += sb.expert_bytes_read;
    }
    printf("  %s, cost %s: %d/10 identical, %d passes, nodes verified %lld of %lld proposed, %d plain steps, predicted %.2fx\n",
           what, cost ? cost : "calibrated", same, sum->n_forward, (long long)sum->n_draft_nodes, (long long)sum->n_draft_proposed,
           sum->n_plain_steps, sum->predicted_speedup);
    CHECK(same == 10);
    unsetenv("MOGE_PLAN_COST");
}

static void test_greedy_exact(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 2), *dm = test_load(STORIES, MOGE_BACKEND_CPU, 2);
    char err[512];
    moge_tokenizer *tok = NULL;
    CHECKF(moge_tokenizer_load(STORIES, &tok, err, sizeof err) == MOGE_OK, "%s", err);
    if (!m || !dm || !tok) return;
    moge_context *ctx = test_new_ctx(m, 512);
    moge_drafter *dmodel = NULL, *skip = NULL;
    CHECKF(moge_drafter_new_model(dm, tok, tok, 512, &dmodel, err, sizeof err) == MOGE_OK, "%s", err);
    CHECKF(moge_drafter_new_layer_skip(m, 2, 512, &skip, err, sizeof err) == MOGE_OK, "%s", err);
    if (!dmodel || !skip) return;
    moge_stats s;
    /* rows cost a tenth of a pass each: the planner verifies part of each draft */
    greedy_with_planner("layer-skip 2, tree", ctx, skip, MOGE_SPEC_TREE, "1,0.1", 512, &s);
    CHECKF(s.n_draft_nodes > 0 && s.n_draft_nodes < s.n_draft_proposed, "pruned: %lld of %lld", (long long)s.n_draft_nodes,
           (long long)s.n_draft_proposed);
    CHECK(s.predicted_speedup > 1.0);
    CHECK(s.expert_bytes_read == 0); /* dense */
    greedy_with_planner("layer-skip 2, chain", ctx, skip, MOGE_SPEC_CHAIN, "1,0.1", 512, &s);
    CHECK(s.n_draft_nodes > 0);
    /* each row costs two thirds of a one-row pass: speculation hardly ever pays, the planner decodes plainly */
    greedy_with_planner("layer-skip 2, tree", ctx, skip, MOGE_SPEC_TREE, "1,2", 512, &s);
    CHECKF(s.n_plain_steps > s.n_forward / 2, "%d plain of %d", s.n_plain_steps, s.n_forward);
    CHECKF(s.predicted_speedup > 0.0 && s.predicted_speedup < 1.05, "%.4f", s.predicted_speedup);
    /* the same model drafting for itself: every draft is accepted */
    greedy_with_planner("itself, tree", ctx, dmodel, MOGE_SPEC_TREE, "1,0.02", 512, &s);
    CHECK(s.n_draft_nodes > 0);
    CHECKF((double)s.n_generated / (s.n_forward + 10) > 3.0, "tau %.2f", (double)s.n_generated / (s.n_forward + 10));
    /* the measured calibration: whatever it chooses, the text is the target's */
    char dir[] = "/tmp/moge-planner-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    setenv("MOGE_CACHE", dir, 1);
    greedy_with_planner("draft model, tree", ctx, dmodel, MOGE_SPEC_TREE, NULL, 512, &s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    shell(cmd);
    unsetenv("MOGE_CACHE");
    moge_drafter_free(dmodel);
    moge_drafter_free(skip);
    moge_context_free(ctx);
    moge_tokenizer_free(tok);
    moge_model_free(m);
    moge_model_free(dm);
}

static void test_greedy_exact_moe(void) {
    moge_model *m = test_load(PANGU, MOGE_BACKEND_CPU, 2);
    if (!m) return;
    char err[512];
    moge_context *ctx = test_new_ctx(m, 128);
    moge_drafter *d = NULL;
    CHECKF(moge_drafter_new_layer_skip(m, 1, 128, &d, err, sizeof err) == MOGE_OK, "%s", err);
    if (!d) return;
    moge_model_info in;
    moge_model_get_info(m, &in);
    moge_stats s;
    /* a cost per distinct expert as well as per row */
    greedy_with_planner("MoGE layer-skip 1, tree", ctx, d, MOGE_SPEC_TREE, "1,0.05,0.002", in.n_vocab, &s);
    CHECK(s.n_draft_proposed > 0);
    CHECK(s.expert_bytes_read > 0);
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_model_free(m);
}

/* A planner's choice on a drafted tree: out is the root plus a subtree in the draft's order, the
 * map names each node's draft node, and each chosen node's earlier siblings are chosen too. */
static void check_subtree(const moge_tree *t, const moge_tree *out, const int32_t *map) {
    CHECK(out->n >= 1 && out->token[0] == t->token[0] && map[0] == 0);
    for (int32_t i = 1; i < out->n; i++) {
        int32_t o = map[i];
        CHECK(o > map[i - 1] && o < t->n);
        CHECK(out->token[i] == t->token[o] && out->depth[i] == t->depth[o]);
        CHECK(out->parent[i] >= 0 && out->parent[i] < i && map[out->parent[i]] == t->parent[o]);
        for (int32_t s = 1; s < o; s++) { /* every earlier sibling is in out */
            if (t->parent[s] != t->parent[o]) continue;
            bool in = false;
            for (int32_t j = 1; j < out->n; j++) in |= map[j] == s;
            CHECKF(in, "node %d chosen without its earlier sibling %d", o, s);
        }
        CHECK(out->sampled == t->sampled);
        if (t->sampled) CHECK(out->q[i] == t->q[o]);
    }
}

static void test_choose_subtrees(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 1);
    if (!m) return;
    moge_context *ctx = test_new_ctx(m, 128);
    setenv("MOGE_PLAN_COST", "1,0.05", 1);
    planner *p = NULL;
    int32_t hist[4] = {1, 403, 407, 261};
    CHECK(planner_start(ctx, 0, 64, NULL, 0, hist, 4, &p) == MOGE_OK);
    unsetenv("MOGE_PLAN_COST");
    if (!p) return;
    moge_tree t, out;
    CHECK(moge_tree_init(&t, 64) == MOGE_OK && moge_tree_init(&out, 64) == MOGE_OK);
    static float qbuf[512];
    uint64_t s = 12345;
    int chosen_total = 0, proposed_total = 0, shapes = 0;
    for (int trial = 0; trial < 200; trial++) {
        moge_tree_reset(&t, 5);
        t.sampled = trial % 2 == 1;
        t.without_replacement = t.sampled;
        int n = 1 + (int)(trial % 40);
        for (int i = 1; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int32_t par = (int32_t)((s >> 33) % (uint64_t)t.n);
            float lq = -(float)((s >> 20) % 4000) / 1000.0f; /* conditional probability e^-4 .. 1 */
            int32_t id = moge_tree_add(&t, par, 10 + i, t.logp[par] + lq);
            if (t.sampled && id > 0) t.q[par] = qbuf;
        }
        if (t.sampled) t.q[0] = qbuf;
        int32_t map[64];
        planner_choose(p, &t, 6, 0.0, &out, map);
        check_subtree(&t, &out, map);
        chosen_total += out.n - 1;
        proposed_total += t.n - 1;
        shapes += out.n > 1 && out.n < t.n;
        /* tell the planner the walk accepted the first child chain: its counts move the values */
        int32_t path[64], np = 1;
        path[0] = 0;
        for (int32_t i = 1; i < out.n; i++)
            if (out.parent[i] == path[np - 1]) path[np++] = i;
        planner_observe(p, &out, path, np, 0.001, 0.0);
    }
    printf("  200 drafts: %d of %d nodes chosen, %d drafts cut to a proper subtree\n", chosen_total, proposed_total, shapes);
    CHECK(shapes > 20);
    moge_tree_free(&t);
    moge_tree_free(&out);
    moge_context_free(ctx);
    moge_model_free(m);
}

static int count_calib_files(const char *dir, char *first, size_t n) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/calib/*.txt 2>/dev/null | wc -l > %s/count; ls %s/calib/*.txt 2>/dev/null | head -1 > %s/first", dir,
             dir, dir, dir);
    shell(cmd);
    char path[512];
    snprintf(path, sizeof path, "%s/count", dir);
    char *c = slurp_text(path);
    int k = c ? atoi(c) : -1;
    free(c);
    snprintf(path, sizeof path, "%s/first", dir);
    c = slurp_text(path);
    snprintf(first, n, "%s", c ? c : "");
    first[strcspn(first, "\n")] = 0;
    free(c);
    return k;
}

static void test_calibration_cache(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 1);
    if (!m) return;
    char dir[] = "/tmp/moge-calib-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    setenv("MOGE_CACHE", dir, 1);
    unsetenv("MOGE_PLAN_COST");
    int32_t hist[4] = {1, 403, 407, 261};
    /* first use: calibrates and writes one file */
    moge_context *ctx = test_new_ctx(m, 128);
    planner *p = NULL;
    CHECK(planner_start(ctx, 0, 25, NULL, 0, hist, 4, &p) == MOGE_OK);
    moge_context_free(ctx);
    char file[512];
    CHECK(count_calib_files(dir, file, sizeof file) == 1);
    char *text = slurp_text(file);
    CHECKF(text && strstr(text, "moge-calibration\nkey ") == text && strstr(text, "backend=cpu"), "%s", text ? text : "(none)");
    /* a new context reads it back (the file is not rewritten: same contents, same mtime) */
    struct stat st0, st1;
    CHECK(stat(file, &st0) == 0);
    ctx = test_new_ctx(m, 128);
    CHECK(planner_start(ctx, 0, 25, NULL, 0, hist, 4, &p) == MOGE_OK);
    moge_context_free(ctx);
    CHECK(stat(file, &st1) == 0);
    CHECK(st0.st_mtim.tv_sec == st1.st_mtim.tv_sec && st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec);
    char *again = slurp_text(file);
    CHECK(text && again && !strcmp(text, again));
    free(again);
    /* a corrupt file is ignored and replaced */
    FILE *f = fopen(file, "w");
    if (f) { fputs("moge-calibration\nkey garbage\nc_exp nan\n1 -1 x\n", f); fclose(f); }
    ctx = test_new_ctx(m, 128);
    CHECK(planner_start(ctx, 0, 25, NULL, 0, hist, 4, &p) == MOGE_OK);
    moge_context_free(ctx);
    again = slurp_text(file);
    CHECK(again && strstr(again, "backend=cpu") && strstr(again, "\n1 "));
    free(again);
    free(text);
    /* a cache that cannot be written (a file where the folder should be): still plans */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/not-a-dir", dir);
    f = fopen(bad, "w");
    if (f) fclose(f);
    setenv("MOGE_CACHE", bad, 1);
    ctx = test_new_ctx(m, 128);
    CHECK(planner_start(ctx, 0, 25, NULL, 0, hist, 4, &p) == MOGE_OK && p);
    moge_context_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    shell(cmd);
    unsetenv("MOGE_CACHE");
    moge_model_free(m);
}

int main(void) {
    RUN_TESTS(T(test_choose_subtrees), T(test_greedy_exact), T(test_greedy_exact_moe), T(test_calibration_cache));
}
