/*
 * decoder.c — many sequences in one context (moge.h, "Many sequences at once"): continuous
 * batching over the context's sequence slots. Each step prefills the prompts of new sequences
 * (runs of several sequences per forward, up to n_batch rows), then verifies every running
 * sequence's tree in one target pass (moge_verify_trees). A sequence's generation is the same
 * seq_gen that moge_generate() runs (verify/sequence.c), so its tokens are those it gets alone.
 */
#include <stdlib.h>
#include <string.h>

#include "draft/drafter.h"
#include "runtime/context.h"
#include "runtime/errors.h"
#include "verify/planner.h"
#include "verify/sequence.h"

struct moge_decoder {
    moge_context *ctx;
    int32_t n_slots;
    seq_gen *g;            /* (n_slots) */
    uint8_t *used;         /* (n_slots) the slot holds a sequence (running or stopped) */
    moge_verify_item *items;
    int32_t *item_slot;    /* (n_slots) */
    int32_t *tok, *seq;    /* (n_batch) prefill batch */
    int32_t *pf_slot, *pf_n; /* (n_batch) the prefill batch's runs */
    int32_t next;          /* the slot the next pass starts with (fair when slots > n_batch) */
    moge_decoder_stats stats;
};

moge_status moge_decoder_new(moge_context *ctx, moge_decoder **out) {
    if (!out) return MOGE_ERR_ARG;
    *out = NULL;
    if (!ctx) return MOGE_ERR_ARG;
    moge_decoder *d = calloc(1, sizeof *d);
    int32_t S = ctx->n_seq, B = ctx->n_batch;
    if (d) {
        d->ctx = ctx;
        d->n_slots = S;
        d->g = calloc((size_t)S, sizeof *d->g);
        d->used = calloc((size_t)S, 1);
        d->items = calloc((size_t)S, sizeof *d->items);
        d->item_slot = calloc((size_t)S, sizeof(int32_t));
        d->tok = calloc((size_t)B, sizeof(int32_t));
        d->seq = calloc((size_t)B, sizeof(int32_t));
        d->pf_slot = calloc((size_t)B, sizeof(int32_t));
        d->pf_n = calloc((size_t)B, sizeof(int32_t));
    }
    if (!d || !d->g || !d->used || !d->items || !d->item_slot || !d->tok || !d->seq || !d->pf_slot || !d->pf_n) {
        moge_decoder_free(d);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    moge_moe_stats_reset(ctx);
    *out = d;
    return MOGE_OK;
}

void moge_decoder_free(moge_decoder *d) {
    if (!d) return;
    for (int32_t s = 0; d->g && d->used && s < d->n_slots; s++)
        if (d->used[s]) seq_end(&d->g[s]);
    free(d->g); free(d->used); free(d->items); free(d->item_slot);
    free(d->tok); free(d->seq); free(d->pf_slot); free(d->pf_n);
    free(d);
}

moge_status moge_decoder_add(moge_decoder *d, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                             moge_token_cb cb, void *user, int32_t *id) {
    if (!d || !id) return MOGE_ERR_ARG;
    moge_context *ctx = d->ctx;
    *id = -1;
    if (params && params->n_context_tokens != 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_decoder_add: a sequence starts in an empty slot (context_tokens must be empty)");
    int32_t slot = -1;
    for (int32_t s = 0; s < d->n_slots && slot < 0; s++)
        if (!d->used[s]) slot = s;
    if (slot < 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL,
                       "moge_decoder_add: all %d sequence slots of the context are in use (n_seq %d); remove a stopped sequence first",
                       d->n_slots, d->n_slots);
    if (params && params->spec != MOGE_SPEC_NONE && params->drafter)
        for (int32_t s = 0; s < d->n_slots; s++)
            if (d->used[s] && !d->g[s].ended && d->g[s].gp.spec != MOGE_SPEC_NONE && d->g[s].gp.drafter == params->drafter)
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                               "moge_decoder_add: the drafter already runs sequence %d; each sequence needs a drafter of its own", s);
    moge_seq_kv_truncate(ctx, slot, 0);
    moge_status st = seq_begin(&d->g[slot], ctx, slot, prompt, n_prompt, params, cb, user, false);
    if (st != MOGE_OK) return st;
    d->used[slot] = 1;
    *id = slot;
    return MOGE_OK;
}

/* Prefills every new sequence's prompt: forwards of runs of several sequences, n_batch rows each. */
static moge_status prefill(moge_decoder *d) {
    moge_context *ctx = d->ctx;
    for (;;) {
        int32_t rows = 0, runs = 0;
        for (int32_t s = 0; s < d->n_slots && rows < ctx->n_batch; s++) {
            const int32_t *toks;
            int32_t left = d->used[s] ? seq_prefill_left(&d->g[s], &toks) : 0;
            if (left == 0) continue;
            int32_t n = left < ctx->n_batch - rows ? left : ctx->n_batch - rows;
            memcpy(d->tok + rows, toks, (size_t)n * sizeof(int32_t));
            for (int32_t i = 0; i < n; i++) d->seq[rows + i] = s;
            d->pf_slot[runs] = s;
            d->pf_n[runs++] = n;
            rows += n;
        }
        if (runs == 0) return MOGE_OK;
        double t = seq_now();
        moge_batch b = {.n = rows, .tokens = d->tok, .seq = d->seq, .logits_last_only = true};
        const float *logits = NULL;
        moge_status st = moge_forward(ctx, &b, &logits);
        d->stats.n_prefill_passes++;
        for (int32_t r = 0; r < runs; r++) {
            seq_gen *g = &d->g[d->pf_slot[r]];
            if (st != MOGE_OK) seq_fail(g, st);
            else seq_prefilled(g, d->pf_n[r], logits + (int64_t)r * ctx->model->cfg.n_vocab);
            if (!g->go) seq_end(g);
        }
        d->stats.t_prefill_s += seq_now() - t;
        if (st != MOGE_OK) return st;
    }
}

moge_status moge_decoder_step(moge_decoder *d, int32_t *n_running) {
    if (n_running) *n_running = 0;
    if (!d) return MOGE_ERR_ARG;
    moge_context *ctx = d->ctx;
    moge_status st = prefill(d);
    double t = seq_now();
    /* the pass: every running sequence's tree, each at least its root, in at most n_batch rows */
    int32_t waiting = 0;
    for (int32_t s = 0; s < d->n_slots; s++) waiting += d->used[s] && d->g[s].go;
    int32_t n_items = 0, rows = 0;
    for (int32_t k = 0; k < d->n_slots && rows < ctx->n_batch; k++) {
        int32_t s = (d->next + k) % d->n_slots;
        seq_gen *g = &d->g[s];
        if (!d->used[s] || !g->go) continue;
        waiting--;
        int32_t others = waiting < ctx->n_batch - rows - 1 ? waiting : ctx->n_batch - rows - 1;
        if (!seq_plan(g, ctx->n_batch - rows - others)) {
            seq_end(g);
            continue;
        }
        d->items[n_items] = (moge_verify_item){.seq = s, .tree = g->vt, .sp = &g->gp.sampler, .history = g->hist,
                                               .n_history = g->n_hist - 1, .rng = &g->rng, .path = g->path};
        d->item_slot[n_items++] = s;
        rows += g->vt->n;
    }
    if (n_items > 0) {
        double tp = seq_now();
        moge_status pst = moge_verify_trees(ctx, d->items, n_items);
        double pass_s = seq_now() - tp;
        d->stats.n_steps++;
        d->stats.n_passes++;
        d->stats.n_rows += rows;
        d->stats.expert_bytes_read += planner_expert_bytes(ctx);
        bool shared_failed = pst != MOGE_OK;
        for (int32_t i = 0; i < n_items; i++) shared_failed = shared_failed && d->items[i].status == MOGE_OK;
        for (int32_t i = 0; i < n_items; i++) {
            seq_gen *g = &d->g[d->item_slot[i]];
            if (shared_failed) d->items[i].status = pst; /* the forward itself failed: every item */
            int32_t before = g->stats.n_generated;
            seq_after(g, &d->items[i], pass_s);
            d->stats.n_generated += g->stats.n_generated - before;
            if (!g->go) seq_end(g);
        }
        if (shared_failed && st == MOGE_OK) st = pst;
        d->next = (d->item_slot[n_items - 1] + 1) % d->n_slots;
    }
    d->stats.t_decode_s += seq_now() - t;
    int32_t running = 0;
    for (int32_t s = 0; s < d->n_slots; s++) running += d->used[s] && d->g[s].go;
    if (n_running) *n_running = running;
    return st;
}

moge_status moge_decoder_seq_stats(const moge_decoder *d, int32_t id, moge_stats *stats, bool *stopped, moge_status *status) {
    if (!d || id < 0 || id >= d->n_slots || !d->used[id]) return MOGE_ERR_ARG;
    const seq_gen *g = &d->g[id];
    if (stats) {
        *stats = g->stats;
        if (!g->ended) { /* running: the figures so far */
            double t1 = g->t1 > 0 ? g->t1 : seq_now();
            stats->t_decode_s = seq_now() - t1;
            stats->tokens_per_s = stats->t_decode_s > 0 ? stats->n_generated / stats->t_decode_s : 0;
            stats->mean_accepted = (double)stats->n_generated / (stats->n_forward + 1);
        }
    }
    if (stopped) *stopped = !g->go;
    if (status) *status = g->st;
    return MOGE_OK;
}

moge_status moge_decoder_remove(moge_decoder *d, int32_t id) {
    if (!d || id < 0 || id >= d->n_slots || !d->used[id]) return MOGE_ERR_ARG;
    seq_end(&d->g[id]);
    d->used[id] = 0;
    return MOGE_OK;
}

void moge_decoder_get_stats(const moge_decoder *d, moge_decoder_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (d) *out = d->stats;
}
