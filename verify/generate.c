/*
 * generate.c — the generation loop: prefill the prompt in chunks of n_batch rows, then sample
 * one token per target forward. (Speculative steps — draft tree, verification, acceptance —
 * plug in here; this is the target-only path every speculative mode must reproduce.)
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/context.h"
#include "runtime/errors.h"
#include "sampling/sampling.h"

moge_generate_params moge_generate_default_params(void) {
    moge_generate_params p = {.n_predict = 128, .sampler = moge_sampler_default_params()};
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

moge_status moge_generate(moge_context *ctx, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                          moge_token_cb cb, void *user, moge_stats *stats) {
    moge_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!ctx) return MOGE_ERR_ARG;
    if (!prompt || n_prompt < 1)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: the prompt needs at least one token");
    moge_generate_params gp = params ? *params : moge_generate_default_params();
    const model_config *c = &ctx->model->cfg;
    if (ctx->n_past + n_prompt > ctx->n_ctx)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL,
                       "the prompt (%d tokens) does not fit in the context (%d of %d slots used)", n_prompt, ctx->n_past, ctx->n_ctx);
    int32_t n_vocab = c->n_vocab, n_hist_max = n_prompt + (gp.n_predict > 0 ? gp.n_predict : 0);
    float *probs = malloc((size_t)n_vocab * sizeof(float));
    int32_t *idx = malloc((size_t)n_vocab * sizeof(int32_t));
    int32_t *hist = malloc((size_t)n_hist_max * sizeof(int32_t));
    if (!probs || !idx || !hist) {
        free(probs); free(idx); free(hist);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof(int32_t));
    int32_t n_hist = n_prompt;
    uint64_t rng = gp.sampler.seed;
    moge_status st = MOGE_OK;
    const float *logits = NULL;

    moge_moe_stats_reset(ctx);
    double t0 = now_s();
    for (int32_t done = 0; done < n_prompt && st == MOGE_OK;) {
        int32_t chunk = n_prompt - done < ctx->n_batch ? n_prompt - done : ctx->n_batch;
        moge_batch b = {.n = chunk, .tokens = prompt + done, .logits_last_only = true};
        st = moge_forward(ctx, &b, &logits);
        if (st == MOGE_OK) st = moge_kv_commit(ctx, NULL, chunk);
        stats->n_forward++;
        done += chunk;
    }
    stats->n_prompt = n_prompt;
    double t1 = now_s();
    stats->t_prefill_s = t1 - t0;
    stats->stop = MOGE_STOP_LENGTH;
    while (st == MOGE_OK && stats->n_generated < gp.n_predict) {
        int32_t tok;
        if (gp.sampler.temperature <= 0.0f) {
            tok = sampling_argmax(logits, n_vocab);
        } else {
            sampling_probs(logits, n_vocab, &gp.sampler, hist, n_hist, probs, idx);
            tok = sampling_draw(probs, n_vocab, rng_uniform(&rng));
        }
        if (tok == c->eos_id) { stats->stop = MOGE_STOP_EOS; break; }
        hist[n_hist++] = tok;
        stats->n_generated++;
        if (cb && !cb(tok, user)) { stats->stop = MOGE_STOP_CALLBACK; break; }
        if (stats->n_generated == gp.n_predict) break;
        if (ctx->n_past + 1 > ctx->n_ctx) { stats->stop = MOGE_STOP_CONTEXT_FULL; break; }
        moge_batch b = {.n = 1, .tokens = &tok};
        st = moge_forward(ctx, &b, &logits);
        if (st == MOGE_OK) st = moge_kv_commit(ctx, NULL, 1);
        stats->n_forward++;
    }
    stats->t_decode_s = now_s() - t1;
    stats->tokens_per_s = stats->t_decode_s > 0 ? stats->n_generated / stats->t_decode_s : 0;
    free(probs); free(idx); free(hist);
    return st;
}
