/*
 * generate.c — moge_generate(): one sequence's generation (verify/sequence.c) in sequence 0 of a
 * context, each step's tree verified alone.
 */
#include <string.h>

#include "base/clock.h"
#include "runtime/context.h"
#include "verify/sequence.h"

moge_generate_params moge_generate_default_params(void) {
    moge_generate_params p = {.n_predict = 128, .sampler = moge_sampler_default_params(), .spec = MOGE_SPEC_NONE,
                              .drafter = NULL, .draft = moge_draft_default_params(), .adaptive = true};
    return p;
}

moge_status moge_generate(moge_context *ctx, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                          moge_token_cb cb, void *user, moge_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!ctx) return MOGE_ERR_ARG;
    seq_gen g;
    moge_status st = seq_begin(&g, ctx, 0, prompt, n_prompt, params, cb, user, true);
    if (st != MOGE_OK) return st;
    moge_moe_stats_reset(ctx);
    const int32_t *toks;
    for (int32_t left; (left = seq_prefill_left(&g, &toks)) > 0;) {
        moge_batch b = {.n = left < ctx->seq_rows ? left : ctx->seq_rows, .tokens = toks, .logits_last_only = true};
        const float *logits = NULL;
        if ((st = moge_forward(ctx, &b, &logits)) != MOGE_OK) {
            seq_fail(&g, st);
            break;
        }
        seq_prefilled(&g, b.n, logits);
    }
    while (seq_plan(&g, ctx->n_batch)) {
        moge_verify_item it = {.seq = 0, .tree = g.vt, .sp = &g.gp.sampler, .history = g.hist, .n_history = g.n_hist - 1,
                               .rng = &g.rng, .path = g.path};
        double t = clock_now();
        st = moge_verify_trees(ctx, &it, 1);
        if (st != MOGE_OK && it.status == MOGE_OK) it.status = st; /* the forward itself failed */
        seq_after(&g, &it, clock_now() - t);
    }
    st = g.st;
    seq_end(&g);
    if (stats) *stats = g.stats;
    return st;
}
