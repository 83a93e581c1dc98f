/*
 * draft_model.c — the model drafters: a separate draft model with the target's vocabulary, or the
 * target's own first layers (layer-skip self-draft). Both keep a KV cache of their own, grow the
 * tree one level per batched forward (`extend` batches with a tree mask), and keep in their
 * cache exactly the tokens the target accepted.
 *
 * Rows of the draft context during one proposal: pending tokens (accepted earlier but never run
 * through the draft, e.g. an accepted leaf), then the root, then the tree levels.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draft/drafter.h"
#include "runtime/errors.h"
#include "runtime/model.h"
#include "sampling/sampling.h"

#define DRAFT_BATCH 64
#define MAX_BRANCH 16

typedef struct {
    moge_model *view;   /* owned layer-skip view, or NULL */
    moge_context *ctx;
    int32_t V, n_ctx;
    int32_t *cached;    /* (n_ctx) the tokens in the draft's committed cache */
    int32_t n_cached;
    int32_t n_pending;  /* rows 0..n_pending-1 of the current proposal: pending tokens; then the root */
    int32_t pending[DRAFT_BATCH];
    int32_t row_of[DRAFT_BATCH + 1];     /* draft row of each tree node, -1 if never forwarded */
    float *q;           /* (DRAFT_BATCH, V) distributions children were drawn from (sampled mode) */
    float *logits;      /* (DRAFT_BATCH, V) logits of the frontier */
    float *probs;       /* (V) */
    int32_t *idx;       /* (V) */
    uint64_t rng;
} model_drafter;

static void md_free(void *self) {
    model_drafter *d = self;
    if (!d) return;
    moge_context_free(d->ctx);
    moge_model_free(d->view);
    free(d->cached); free(d->q); free(d->logits); free(d->probs); free(d->idx);
    free(d);
}

static void md_reset(void *self) {
    model_drafter *d = self;
    moge_kv_truncate(d->ctx, 0);
    d->n_cached = 0;
}

/* The k best tokens of logits (descending, ties to the lower id) with their log-softmax. */
static int top_k_logprobs(const float *logits, int32_t V, int k, int32_t *tok, float *lp) {
    float maxl = logits[sampling_argmax(logits, V)];
    double sum = 0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)logits[i] - maxl);
    double lse = maxl + log(sum);
    int n = 0;
    for (int j = 0; j < k && j < V; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < V; i++) {
            int used = 0;
            for (int u = 0; u < n; u++) if (tok[u] == i) { used = 1; break; }
            if (!used && (best < 0 || logits[i] > logits[best])) best = i;
        }
        tok[n] = best;
        lp[n++] = (float)(logits[best] - lse);
    }
    return n;
}

/* Draws k distinct tokens from q in order (each from q without the earlier draws). */
static int draw_without_replacement(const float *q, int32_t V, int k, uint64_t *rng, int32_t *tok, float *lp) {
    int n = 0;
    double removed = 0;
    for (int j = 0; j < k; j++) {
        double rest = 1.0 - removed;
        if (rest <= 1e-9) break;
        double coin = rng_uniform(rng) * rest, cum = 0;
        int32_t pick = -1;
        for (int32_t i = 0; i < V; i++) {
            int used = 0;
            for (int u = 0; u < n; u++) if (tok[u] == i) { used = 1; break; }
            if (used || q[i] <= 0) continue;
            cum += q[i];
            pick = i;
            if (coin < cum) break;
        }
        if (pick < 0) break;
        tok[n] = pick;
        lp[n++] = logf(q[pick]);
        removed += q[pick];
    }
    return n;
}

typedef struct { int32_t parent, token; float score; } cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return x->token < y->token ? -1 : 1;
}

static moge_status md_propose(void *self, const int32_t *history, int32_t n_history, const moge_draft_params *dp,
                              const moge_sampler_params *sp, moge_tree *tree) {
    model_drafter *d = self;
    moge_status st;
    const float *lg;
    /* Sync the cache with the history: keep the common prefix, run the rest as pending rows. */
    int32_t common = 0;
    while (common < d->n_cached && common < n_history && d->cached[common] == history[common]) common++;
    if (common < d->n_cached) {
        moge_kv_truncate(d->ctx, common);
        d->n_cached = common;
    }
    while (n_history - d->n_cached > DRAFT_BATCH / 2) { /* catch up in chunks, keeping room for the tree */
        int32_t chunk = n_history - d->n_cached - DRAFT_BATCH / 2;
        if (chunk > DRAFT_BATCH) chunk = DRAFT_BATCH;
        if (d->n_cached + chunk > d->n_ctx) return MOGE_OK; /* the draft's context is full: no proposal */
        moge_batch b = {.n = chunk, .tokens = history + d->n_cached, .logits_last_only = true};
        if ((st = moge_forward(d->ctx, &b, &lg)) != MOGE_OK || (st = moge_kv_commit(d->ctx, NULL, chunk)) != MOGE_OK) return st;
        memcpy(d->cached + d->n_cached, history + d->n_cached, (size_t)chunk * sizeof(int32_t));
        d->n_cached += chunk;
    }
    d->n_pending = n_history - d->n_cached;
    int32_t room = d->n_ctx - d->n_cached - d->n_pending - 1; /* slots left for tree nodes */
    if (room < 0) return MOGE_OK;
    int32_t level0[DRAFT_BATCH];
    memcpy(d->pending, history + d->n_cached, (size_t)d->n_pending * sizeof(int32_t));
    memcpy(level0, d->pending, (size_t)d->n_pending * sizeof(int32_t));
    level0[d->n_pending] = tree->token[0];
    moge_batch b0 = {.n = d->n_pending + 1, .tokens = level0, .logits_last_only = true};
    if ((st = moge_forward(d->ctx, &b0, &lg)) != MOGE_OK) return st;
    memcpy(d->logits, lg, (size_t)d->V * sizeof(float));
    for (int i = 0; i < tree->cap && i <= DRAFT_BATCH; i++) d->row_of[i] = -1;
    d->row_of[0] = d->n_pending;
    int32_t n_rows = d->n_pending + 1;

    int32_t budget = dp->tree_nodes;
    if (budget > tree->cap - 1) budget = tree->cap - 1;
    if (budget > DRAFT_BATCH - n_rows) budget = DRAFT_BATCH - n_rows;
    if (budget > room) budget = room;
    bool sampled = dp->sampled && sp->temperature > 0.0f;
    tree->sampled = sampled;
    tree->without_replacement = sampled;
    moge_sampler_params qp = *sp;
    qp.repeat_penalty = 1.0f; /* any q is lossless; keep the draft's cheap */
    float min_lp = dp->min_path_prob > 0 ? logf(dp->min_path_prob) : -INFINITY;

    int32_t frontier[DRAFT_BATCH], n_front = 1;
    frontier[0] = 0;
    cand cands[DRAFT_BATCH * MAX_BRANCH];
    for (int depth = 0; depth < dp->draft_max && budget > 0 && n_front > 0; depth++) {
        int k = dp->shape ? (depth < dp->n_shape ? dp->shape[depth] : 0) : dp->branch;
        if (k > MAX_BRANCH) k = MAX_BRANCH;
        if (k < 1) break;
        int nc = 0;
        for (int f = 0; f < n_front; f++) {
            int32_t node = frontier[f], toks[MAX_BRANCH];
            float lps[MAX_BRANCH];
            const float *nl = d->logits + (int64_t)f * d->V;
            int got;
            if (sampled) {
                float *q = d->q + (int64_t)(d->row_of[node] - d->n_pending) * d->V;
                sampling_probs(nl, d->V, &qp, NULL, 0, q, d->idx);
                tree->q[node] = q;
                got = draw_without_replacement(q, d->V, k, &d->rng, toks, lps);
            } else {
                got = top_k_logprobs(nl, d->V, k, toks, lps);
            }
            for (int j = 0; j < got; j++) cands[nc++] = (cand){node, toks[j], tree->logp[node] + lps[j]};
        }
        /* Static shapes and sampled children keep every candidate (parents' draws in order);
         * dynamic trees keep the `branch` most probable paths of this level. */
        int keep = nc;
        if (!dp->shape && !sampled) {
            qsort(cands, (size_t)nc, sizeof *cands, cmp_cand);
            if (keep > dp->branch) keep = dp->branch;
            /* a budget too small for `branch` nodes on every level is shared out over the levels
             * left (at least one each), so a small tree still goes deep: 4 nodes make a chain of
             * 4, not 4 siblings (a depth-1 tree accepts at most 1 token) */
            int left = dp->draft_max - depth, fair = (budget + left - 1) / left;
            if (keep > fair) keep = fair;
        }
        if (keep > budget) keep = budget;
        int32_t new_nodes[DRAFT_BATCH], n_new = 0;
        for (int c = 0; c < keep; c++) {
            if (cands[c].score < min_lp) {
                if (!dp->shape && !sampled) break; /* sorted: the rest are less probable still */
                continue;
            }
            int32_t id = moge_tree_add(tree, cands[c].parent, cands[c].token, cands[c].score);
            if (id < 0) break;
            new_nodes[n_new++] = id;
        }
        budget -= n_new;
        if (n_new == 0 || depth + 1 >= dp->draft_max || budget == 0) break;
        /* forward the new level to get its children's distributions */
        int32_t toks[DRAFT_BATCH], par[DRAFT_BATCH];
        for (int i = 0; i < n_new; i++) {
            toks[i] = tree->token[new_nodes[i]];
            par[i] = d->row_of[tree->parent[new_nodes[i]]];
            d->row_of[new_nodes[i]] = n_rows + i;
        }
        moge_batch b = {.n = n_new, .tokens = toks, .parent = par, .extend = true};
        if ((st = moge_forward(d->ctx, &b, &lg)) != MOGE_OK) return st;
        memcpy(d->logits, lg, (size_t)n_new * d->V * sizeof(float));
        n_rows += n_new;
        memcpy(frontier, new_nodes, (size_t)n_new * sizeof(int32_t));
        n_front = n_new;
    }
    return MOGE_OK;
}

static moge_status md_accept(void *self, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    model_drafter *d = self;
    if (d->row_of[0] < 0) return MOGE_OK; /* nothing was proposed */
    int32_t rows[DRAFT_BATCH + 1], n = 0;
    for (int i = 0; i < d->n_pending; i++) {
        rows[n++] = i;
        d->cached[d->n_cached++] = d->pending[i];
    }
    for (int i = 0; i < n_path && path[i] < tree->n && path[i] <= DRAFT_BATCH && d->row_of[path[i]] >= 0; i++) {
        rows[n++] = d->row_of[path[i]];
        d->cached[d->n_cached++] = tree->token[path[i]];
    }
    d->row_of[0] = -1;
    return moge_kv_commit(d->ctx, rows, n);
}

static moge_status md_new(moge_model *model, moge_model *view, int32_t n_ctx, moge_drafter **out, char *err, size_t n) {
    model_drafter *d = calloc(1, sizeof *d);
    if (!d) { moge_model_free(view); return set_err(err, n, MOGE_ERR_NOMEM, "out of memory"); }
    d->view = view;
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = DRAFT_BATCH;
    moge_status st = moge_context_new(view ? view : model, &cp, &d->ctx, err, n);
    if (st != MOGE_OK) { md_free(d); return st; }
    moge_model_info in;
    moge_model_get_info(view ? view : model, &in);
    d->V = in.n_vocab;
    d->n_ctx = moge_context_n_ctx(d->ctx);
    d->cached = malloc((size_t)d->n_ctx * sizeof(int32_t));
    d->q = malloc((size_t)DRAFT_BATCH * d->V * sizeof(float));
    d->logits = malloc((size_t)DRAFT_BATCH * d->V * sizeof(float));
    d->probs = malloc((size_t)d->V * sizeof(float));
    d->idx = malloc((size_t)d->V * sizeof(int32_t));
    d->rng = 0x5eed5eedull;
    d->row_of[0] = -1;
    if (!d->cached || !d->q || !d->logits || !d->probs || !d->idx) { md_free(d); return set_err(err, n, MOGE_ERR_NOMEM, "out of memory"); }
    static const moge_drafter_iface iface = {.propose = md_propose, .accept = md_accept, .reset = md_reset, .free = md_free};
    st = moge_drafter_new_custom(&iface, d, out);
    if (st != MOGE_OK) { md_free(d); return set_err(err, n, st, "out of memory"); }
    return MOGE_OK;
}

moge_status moge_drafter_new_model(moge_model *draft, const moge_tokenizer *target_tok, const moge_tokenizer *draft_tok,
                                   int32_t n_ctx, moge_drafter **out, char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_model: out must not be NULL");
    *out = NULL;
    if (!draft || !target_tok || !draft_tok) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_model: NULL argument");
    int32_t nv_t = moge_tokenizer_n_vocab(target_tok), nv_d = moge_tokenizer_n_vocab(draft_tok);
    if (nv_t != nv_d)
        return set_err(err, n, MOGE_ERR_ARG, "the draft's tokenizer differs from the target's: %d tokens vs %d", nv_d, nv_t);
    for (int32_t i = 0; i < nv_t; i++) {
        const char *a = moge_tokenizer_piece(target_tok, i), *b = moge_tokenizer_piece(draft_tok, i);
        if (!a || !b || strcmp(a, b) != 0)
            return set_err(err, n, MOGE_ERR_ARG, "the draft's tokenizer differs from the target's at token %d (\"%s\" vs \"%s\")", i,
                           b ? b : "(none)", a ? a : "(none)");
    }
    moge_model_info in;
    moge_model_get_info(draft, &in);
    if (in.n_vocab < nv_t)
        return set_err(err, n, MOGE_ERR_ARG, "the draft model's vocab_size %d is smaller than the tokenizer's %d tokens", in.n_vocab, nv_t);
    return md_new(draft, NULL, n_ctx, out, err, n);
}

moge_status moge_drafter_new_layer_skip(moge_model *target, int32_t n_layers, int32_t n_ctx, moge_drafter **out, char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_layer_skip: out must not be NULL");
    *out = NULL;
    if (!target) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_layer_skip: NULL target");
    moge_model *view = NULL;
    moge_status st = model_new_layer_view(target, n_layers, &view, err, n);
    if (st != MOGE_OK) return st;
    return md_new(target, view, n_ctx, out, err, n);
}
