/*
 * verify.c — one speculative step on the target: forward the whole tree in one batch (positions
 * n_past + depth, tree mask), walk it from the root with the acceptance rule, commit the accepted
 * path into the KV cache (design.md §1, §4). Several sequences' trees go through one forward
 * (moge_verify_trees): each is walked and committed in its own sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"
#include "base/errors.h"
#include "sampling/sampling.h"
#include "verify/planner.h"
#include "verify/verify_state.h"

static void verify_state_free(void *p) {
    verify_state *vs = p;
    if (!vs) return;
    planner_free(vs->planner);
    free(vs->probs); free(vs->q); free(vs->idx); free(vs->recent); free(vs->children); free(vs->child_tok);
    free(vs);
}

verify_state *verify_state_get(moge_context *ctx) {
    if (ctx->upper_state) return ctx->upper_state;
    const size_t V = (size_t)ctx->model->cfg.n_vocab, B = (size_t)ctx->n_batch;
    verify_state *vs = calloc(1, sizeof *vs);
    if (vs) {
        vs->probs = calloc(V, sizeof(float));
        vs->q = calloc(V, sizeof(float));
        vs->idx = calloc(V, sizeof(int32_t));
        vs->children = calloc(B, sizeof(int32_t));
        vs->child_tok = calloc(B, sizeof(int32_t));
    }
    if (!vs || !vs->probs || !vs->q || !vs->idx || !vs->children || !vs->child_tok ||
        verify_state_recent(ctx, vs, ctx->kv_cap + ctx->seq_rows) != MOGE_OK) {
        verify_state_free(vs);
        set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory for the verification scratch (%zu-token vocabulary)", V);
        return NULL;
    }
    ctx->upper_state = vs;
    ctx->upper_free = verify_state_free;
    return vs;
}

moge_status verify_state_recent(moge_context *ctx, verify_state *vs, int64_t cap) {
    if (cap <= vs->recent_cap) return MOGE_OK;
    int32_t *r = cap <= INT32_MAX ? realloc(vs->recent, (size_t)cap * sizeof(int32_t)) : NULL;
    if (!r)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory for the repetition penalty's %lld tokens", (long long)cap);
    vs->recent = r;
    vs->recent_cap = (int32_t)cap;
    return MOGE_OK;
}

/* The children of node cur of tree into vs->children (their tokens in vs->child_tok); their count. */
static int32_t children_of(verify_state *vs, const moge_tree *tree, int32_t cur) {
    int32_t nc = 0;
    for (int32_t i = cur + 1; i < tree->n; i++)
        if (tree->parent[i] == cur) {
            vs->children[nc] = i;
            vs->child_tok[nc++] = tree->token[i];
        }
    return nc;
}

/* The acceptance rule at node cur (its logits lg, its nc children in vs): the index of the
 * accepted child, or -1 with the bonus token in *bonus. -2: a sampled tree without q (message in
 * the context). */
static int32_t accept_at(moge_context *ctx, verify_state *vs, const moge_verify_item *it, int32_t cur, const float *lg,
                         int32_t n_recent, int32_t nc, int32_t *bonus) {
    const moge_tree *tree = it->tree;
    const moge_sampler_params *sp = it->sp;
    const int32_t V = ctx->model->cfg.n_vocab;
    if (sp->temperature <= 0.0f) {
        int32_t best = sampling_choose(lg, V, sp, vs->recent, n_recent, vs->probs, vs->idx, it->rng);
        return accept_greedy(best, vs->child_tok, nc, bonus);
    }
    sampling_probs(lg, V, sp, vs->recent, n_recent, vs->probs, vs->idx);
    if (nc > 0 && tree->sampled) {
        if (!tree->q || !tree->q[cur]) {
            set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_tree: sampled tree without q at node %d", cur);
            return -2;
        }
        return accept_rejection(vs->probs, tree->q[cur], vs->q, V, vs->child_tok, nc, tree->without_replacement, it->rng, bonus);
    }
    return accept_match(vs->probs, V, vs->child_tok, nc, rng_uniform(it->rng), bonus);
}

/* Walks tree (its rows' logits at `logits`) from the root and commits the accepted path into
 * sequence `seq`. */
static moge_status walk_tree(moge_context *ctx, moge_verify_item *it, const float *logits) {
    const moge_tree *tree = it->tree;
    const moge_sampler_params *sp = it->sp;
    const int32_t V = ctx->model->cfg.n_vocab;
    int32_t *path = it->path;
    verify_state *vs = verify_state_get(ctx);
    if (!vs) return MOGE_ERR_NOMEM;
    /* recent tokens for the repetition penalty: the end of the history, then the path */
    int32_t window = sp->repeat_penalty != 1.0f ? sp->repeat_last_n : 0;
    if (window > it->n_history) window = it->n_history;
    int32_t n_recent = window;
    moge_status st = verify_state_recent(ctx, vs, (int64_t)window + tree->n); /* a history longer than the cache's first size */
    if (st != MOGE_OK) return st;
    if (window > 0) memcpy(vs->recent, it->history + it->n_history - window, (size_t)window * sizeof(int32_t));

    int32_t cur = 0, n_path = 1, bonus = -1;
    path[0] = 0;
    for (;;) {
        int32_t nc = children_of(vs, tree, cur);
        vs->recent[n_recent++] = tree->token[cur];
        int32_t c = accept_at(ctx, vs, it, cur, logits + (int64_t)cur * V, n_recent, nc, &bonus);
        if (c == -2) return MOGE_ERR_ARG;
        if (c < 0) break;
        cur = vs->children[c];
        path[n_path++] = cur;
    }
    st = moge_seq_kv_commit(ctx, it->seq, path, n_path);
    if (st != MOGE_OK) return st;
    it->res.n_path = n_path;
    it->res.bonus = bonus;
    return MOGE_OK;
}

moge_status moge_verify_trees(moge_context *ctx, moge_verify_item *items, int32_t n_items) {
    if (!ctx) return MOGE_ERR_ARG;
    if (!items || n_items < 1)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_trees: %s", !items ? "items is NULL" : "n_items < 1");
    int32_t rows = 0;
    for (int32_t k = 0; k < n_items; k++) {
        const moge_verify_item *it = &items[k];
        if (!it->tree || !it->sp || !it->rng || !it->path || it->tree->n < 1 || (it->n_history > 0 && !it->history))
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_trees: item %d lacks its tree, sampler, RNG, path or history", k);
        if (rows > ctx->n_batch - it->tree->n)
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_trees: the trees have more than the context's %d batch rows",
                           ctx->n_batch);
        rows += it->tree->n;
    }
    const float *logits = NULL;
    moge_status st;
    if (n_items == 1 && items[0].seq == 0) { /* one tree in sequence 0 (moge_generate): its arrays as they are */
        moge_batch b = {.n = rows, .tokens = items[0].tree->token, .parent = items[0].tree->parent};
        st = moge_forward(ctx, &b, &logits);
    } else {
        int32_t *buf = malloc((size_t)rows * 3 * sizeof(int32_t));
        if (!buf) return MOGE_ERR_NOMEM;
        int32_t *tok = buf, *par = buf + rows, *seq = buf + 2 * rows, r = 0;
        for (int32_t k = 0; k < n_items; k++) {
            const moge_tree *t = items[k].tree;
            memcpy(tok + r, t->token, (size_t)t->n * sizeof(int32_t));
            memcpy(par + r, t->parent, (size_t)t->n * sizeof(int32_t));
            for (int32_t i = 0; i < t->n; i++) seq[r + i] = items[k].seq;
            r += t->n;
        }
        moge_batch b = {.n = rows, .tokens = tok, .parent = par, .seq = seq};
        st = moge_forward(ctx, &b, &logits);
        free(buf);
    }
    if (st != MOGE_OK) return st;
    const int32_t V = ctx->model->cfg.n_vocab;
    for (int32_t k = 0, r = 0; k < n_items; r += items[k].tree->n, k++) {
        items[k].status = walk_tree(ctx, &items[k], logits + (int64_t)r * V);
        if (items[k].status != MOGE_OK) st = items[k].status;
    }
    return st;
}

moge_status moge_verify_tree(moge_context *ctx, const moge_tree *tree, const moge_sampler_params *sp, const int32_t *history,
                             int32_t n_history, uint64_t *rng, int32_t *path, moge_verify_result *res) {
    if (!ctx) return MOGE_ERR_ARG;
    if (!tree || !sp || !rng || !path || !res || tree->n < 1 || (n_history > 0 && !history))
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_tree: %s",
                       !tree ? "tree is NULL" : !sp ? "sampler params are NULL" : !rng ? "rng is NULL" : !path ? "path is NULL"
                       : !res ? "res is NULL" : tree->n < 1 ? "the tree has no root" : "n_history > 0 with a NULL history");
    moge_verify_item it = {.seq = 0, .tree = tree, .sp = sp, .history = history, .n_history = n_history, .rng = rng, .path = path};
    moge_status st = moge_verify_trees(ctx, &it, 1);
    if (st == MOGE_OK) *res = it.res;
    return st;
}
