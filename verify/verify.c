/*
 * verify.c — one speculative step on the target: forward the whole tree in one batch (positions
 * n_past + depth, tree mask), walk it from the root with the acceptance rule, commit the accepted
 * path into the KV cache (design.md §1, §4).
 */
#include <string.h>

#include "runtime/context.h"
#include "runtime/errors.h"
#include "sampling/sampling.h"

moge_status moge_verify_tree(moge_context *ctx, const moge_tree *tree, const moge_sampler_params *sp, const int32_t *history,
                             int32_t n_history, uint64_t *rng, int32_t *path, moge_verify_result *res) {
    if (!ctx || !tree || !sp || !rng || !path || !res || tree->n < 1 || (n_history > 0 && !history))
        return MOGE_ERR_ARG;
    const int32_t V = ctx->model->cfg.n_vocab;
    const float *logits = NULL;
    moge_batch b = {.n = tree->n, .tokens = tree->token, .parent = tree->parent};
    moge_status st = moge_forward(ctx, &b, &logits);
    if (st != MOGE_OK) return st;

    /* recent tokens for the repetition penalty: the end of the history, then the path */
    int32_t window = sp->repeat_penalty != 1.0f ? sp->repeat_last_n : 0;
    if (window > n_history) window = n_history;
    int32_t n_recent = window;
    if (window > 0) memcpy(ctx->samp_recent, history + n_history - window, (size_t)window * sizeof(int32_t));

    int32_t cur = 0, n_path = 1, bonus = -1;
    path[0] = 0;
    for (;;) {
        int32_t nc = 0;
        for (int32_t i = cur + 1; i < tree->n; i++)
            if (tree->parent[i] == cur) {
                ctx->samp_children[nc] = i;
                ctx->samp_child_tok[nc++] = tree->token[i];
            }
        const float *lg = logits + (int64_t)cur * V;
        ctx->samp_recent[n_recent++] = tree->token[cur];
        int32_t c;
        if (sp->temperature <= 0.0f) {
            int32_t best = sampling_choose(lg, V, sp, ctx->samp_recent, n_recent, ctx->samp_probs, ctx->samp_idx, rng);
            c = accept_greedy(best, ctx->samp_child_tok, nc, &bonus);
        } else {
            sampling_probs(lg, V, sp, ctx->samp_recent, n_recent, ctx->samp_probs, ctx->samp_idx);
            if (nc > 0 && tree->sampled) {
                if (!tree->q || !tree->q[cur])
                    return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_verify_tree: sampled tree without q at node %d", cur);
                c = accept_rejection(ctx->samp_probs, tree->q[cur], ctx->samp_q, V, ctx->samp_child_tok, nc,
                                     tree->without_replacement, rng, &bonus);
            } else {
                c = accept_match(ctx->samp_probs, V, ctx->samp_child_tok, nc, rng_uniform(rng), &bonus);
            }
        }
        if (c < 0) break;
        cur = ctx->samp_children[c];
        path[n_path++] = cur;
    }
    st = moge_kv_commit(ctx, path, n_path);
    if (st != MOGE_OK) return st;
    res->n_path = n_path;
    res->bonus = bonus;
    return MOGE_OK;
}
